"""Stage 1, data: particle types and constants, writing datasets, test data.

- `common`: particle types (`ParticleType`, `kinematic_mask`), sequence
  constants, `Stats`, `time_diff` (a leaf: imports nothing of the package);
- `dataset_writer`: DeepMind-format TFRecords and metadata, written atomically;
- `synthetic`: small seeded datasets for tests and benchmarks;
- `water_drop_sample/`: the dataset bundled with the package.

Reading datasets is the original's `reading_utils` (top level).
"""
