"""Stage 2, model: its configuration, its construction, kernels and options.

- `config`: `ModelConfig`, what determines the model's function and
  variables (the paper's defaults; every option beyond it off).
- `build`: the simulator for a dataset: normalization statistics (the
  noise folded in), the connectivity radius, variables created.
- `options`: `option(default, help)`, a configuration field that is also a
  command-line flag: a model option is one field of `ModelConfig`.

- `graph_ops`: LayerNorm with a hand-written gradient, sorted segment sums.
- `external_force`: the opt-in external-force target (gravity outside the
  network): `--external_acceleration` resolved against the metadata.
- `relaxation`: the opt-in density relaxation that rollouts apply after
  each predicted step (`--relaxation_steps`), an evaluation option.
- `grid_branch`: a global view for the particles: latents scattered onto a
  grid with linear weights, a small multi-resolution CNN, gathered back and
  added before decoding (`--grid_resolution`; `graph_network` calls it).

The model itself is the original's `graph_network` (encode-process-decode)
and `learned_simulator` (features, normalization, Euler integration), at the
top level.
"""
