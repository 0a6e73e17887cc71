"""Pictures of rollouts, drawn headless (Agg), for files and TensorBoard.

- `rollout_files`: reading and checking rollout pickles;
- `scene`: ground truth beside prediction, coloured by particle type;
- `animation`: GIF and MP4 through imageio-ffmpeg, the interactive window;
- `error_plot`: per-step error curves;
- `snapshots`: ground truth above prediction at a few steps (TensorBoard).

The command line is the original's `render_rollout` (top level).
"""
