"""Pictures of rollouts, drawn headless (Agg), and their export to VTK and npz.

- `rollout_files`: reading and checking rollout pickles;
- `scene`: ground truth beside prediction, coloured by particle type;
- `animation`: GIF and MP4 through imageio-ffmpeg, the interactive window;
- `error_plot`: per-step error curves;
- `physics_plot`: centre-of-mass height and kinetic energy over time,
  prediction against ground truth;
- `snapshots`: ground truth above prediction (or several models'
  predictions) at a few steps (TensorBoard, `render_rollout
  --snapshots_path`);
- `rollout_export`: rollouts as VTK time series (ParaView) and npz arrays;
  `export_rollout`: its command line.

The rendering command line is the original's `render_rollout` (top level).
"""
