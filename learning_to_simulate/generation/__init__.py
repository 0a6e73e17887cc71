"""Dataset generation with MLS-MPM (Hu et al. 2018) in Taichi.

- `scenes`: randomized initial conditions per scene and seed;
- `mpm`: the Taichi solver (optional `datagen` extra);
- `generate_dataset`: the command line that writes a dataset directory.
"""
