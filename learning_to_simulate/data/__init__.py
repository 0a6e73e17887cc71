"""Stage 1, data: particle types and constants, writing and converting datasets.

- `common`: particle types (`ParticleType`, `kinematic_mask`), sequence
  constants, `Stats`, `time_diff` (a leaf: imports nothing of the package);
- `dataset_writer`: DeepMind-format TFRecords and metadata, written atomically;
- `synthetic`: small seeded datasets for tests and benchmarks;
- `formats`: other layouts (gns npz, LagrangeBench HDF5, a folder of
  per-trajectory arrays) read one trajectory at a time, gns npz written;
- `neighbours`: particle spacing, a connectivity radius from it, neighbour
  counts;
- `trajectory_checks`: checks of trajectories read from other formats;
- `convert`: checked, streaming conversion to the DeepMind format (and back
  to gns npz) with its metadata, and the check of a dataset against its
  metadata; `convert_dataset` and `check_dataset`: their command lines;
- `water_drop_sample/`: the dataset bundled with the package;
  `multi_material_sample/` and `water_walls_sample/`: the test splits of the
  other pretrained models (`--pretrained=NAME` reads `NAME_sample`).

Reading datasets is the original's `reading_utils` (top level).
"""
