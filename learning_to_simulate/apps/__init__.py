"""Stage 4, applications built on the library.

- `demo`: the main job end to end on the bundled dataset;
- `package_model`: a trained model packaged for shipping, with its
  provenance;
- `compare`: models side by side on a split, per trajectory.

The original's command lines (`train`, `render_rollout`, `model_demo`) stay
at the top level.
"""
