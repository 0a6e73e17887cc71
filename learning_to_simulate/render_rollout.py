"""Renders rollouts of the learned simulator against ground truth.

Reproduces the viewer of "Learning to Simulate Complex Physics with Graph
Networks" (Sanchez-Gonzalez et al., ICML 2020, arXiv:2002.09405) for the
pickles written by `train --mode=eval_rollout` (see ../shared/FORMAT.md), and
adds headless output, an error plot and a physics plot (centre-of-mass height,
kinetic energy and density over time). This is the command line; the drawing is in
`visualization/` (`scene`, `animation`, `error_plot`, `physics_plot`,
`rollout_files`).

  python -m learning_to_simulate.render_rollout \
      --rollout_path={OUTPUT_PATH}/rollout_test_0.pkl

shows the animation when a display is available, as the original does. With
`--output_path=FILE.gif` or `FILE.mp4`, or when there is no display (no
`DISPLAY` / `WAYLAND_DISPLAY` on Linux, or a non-interactive matplotlib
backend), it writes the animation instead (by default `<pickle stem>.gif`
next to the pickle). `--rollout_path` may be a directory: `--error_plot_path`
then plots every `rollout_*.pkl` in it, and the first one is animated.
`--snapshots_path=FILE.png` writes still frames instead (ground truth above
prediction), with a row for each `--compare=NAME=PICKLE` rollout of another
model from the same trajectory.

Pickles can run arbitrary code when loaded: only render rollouts you trust.
"""

import os
import sys
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
import matplotlib
from matplotlib.backends import backend_registry

from learning_to_simulate.training import metrics as metrics_lib
from learning_to_simulate.visualization import animation
from learning_to_simulate.visualization import error_plot
from learning_to_simulate.visualization import physics_plot
from learning_to_simulate.visualization import rollout_files
from learning_to_simulate.visualization import scene as scene_lib
from learning_to_simulate.visualization import snapshots


def display_available() -> bool:
  """Whether pyplot can open a window here.

  False on Linux without `DISPLAY` or `WAYLAND_DISPLAY`, and for
  non-interactive matplotlib backends (e.g. `MPLBACKEND=agg`). Resolves
  matplotlib's automatic backend choice, which imports pyplot.
  """
  if sys.platform.startswith("linux") and not (
      os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    return False
  framework = backend_registry.resolve_backend(matplotlib.get_backend())[1]
  return framework not in (None, "headless")


_ROLLOUT_PATH = flags.DEFINE_string(
    "rollout_path", None,
    "Rollout pickle, or a directory of rollout_*.pkl files (the first one is "
    "animated; all go into --error_plot_path).")
_STEP_STRIDE = flags.DEFINE_integer("step_stride", 3,
                                    "Show every step_stride-th frame.",
                                    lower_bound=1)
_BLOCK_ON_SHOW = flags.DEFINE_boolean(
    "block_on_show", True, "Block until the window is closed (for tests).")
_OUTPUT_PATH = flags.DEFINE_string(
    "output_path", None,
    "Write the animation to this .gif or .mp4 instead of showing it. Without "
    "a display it defaults to <pickle stem>.gif next to the pickle.")
_FPS = flags.DEFINE_integer("fps", animation.DEFAULT_FPS,
                            "Frames per second of a written animation.",
                            lower_bound=1)
_DPI = flags.DEFINE_integer(
    "dpi", scene_lib.DEFAULT_DPI,
    f"Pixels per inch of a written animation ({scene_lib.FIGURE_SIZE[0]:g} x "
    f"{scene_lib.FIGURE_SIZE[1]:g} inches).", lower_bound=10)
_ERROR_PLOT_PATH = flags.DEFINE_string(
    "error_plot_path", None,
    "Also write the per-step rollout MSE plot (.png, .pdf or .svg) here.")
_PHYSICS_PLOT_PATH = flags.DEFINE_string(
    "physics_plot_path", None,
    "Also write the first rollout's centre-of-mass height, kinetic energy "
    "and density over time, prediction against ground truth (.png, .pdf "
    "or .svg), here.")
_SNAPSHOTS_PATH = flags.DEFINE_string(
    "snapshots_path", None,
    "Write still frames of the first rollout here instead of an animation "
    "(.png, .pdf or .svg; with --output_path too, both): its ground truth "
    "above its prediction and each --compare rollout's, at "
    "--snapshot_columns steps from the last input frame to the end.")
_SNAPSHOT_NAME = flags.DEFINE_string(
    "snapshot_name", "Prediction",
    "Row label of the first rollout's prediction in --snapshots_path.")
_SNAPSHOT_COLUMNS = flags.DEFINE_integer(
    "snapshot_columns", 4, "Steps shown by --snapshots_path.", lower_bound=1)
_COMPARE = flags.DEFINE_list(
    "compare", [],
    "NAME=PICKLE pairs: rollouts of other models from the same trajectory, "
    "drawn as more rows of --snapshots_path (e.g. "
    "walls=rollouts_walls/rollout_valid_0.pkl).")

flags.mark_flag_as_required("rollout_path")


def _compared() -> list:
  """`(name, pickle path)` of each `--compare` entry.

  Raises:
    ValueError: an entry that is not NAME=PICKLE, or --compare without
      --snapshots_path.
  """
  pairs = []
  for entry in _COMPARE.value:
    name, _, path = entry.partition("=")
    if not name or not path:
      raise ValueError(f"--compare: {entry!r} is not NAME=PICKLE")
    pairs.append((name, path))
  if pairs and _SNAPSHOTS_PATH.value is None:
    raise ValueError("--compare draws rows of --snapshots_path: give it too")
  return pairs


def _run() -> None:
  """Turns the flags into library calls; see the module docstring."""
  paths = rollout_files.find_rollouts(_ROLLOUT_PATH.value)
  compared = _compared()
  output_path = _OUTPUT_PATH.value
  animate = output_path is not None or _SNAPSHOTS_PATH.value is None
  if animate and output_path is None and not display_available():
    output_path = os.path.splitext(paths[0])[0] + ".gif"
    logging.info("No display available: writing the animation to %s",
                 output_path)
  # Fail on bad paths before spending time on anything.
  if output_path is not None:
    animation.check_animation_path(output_path, _FPS.value)
  if _SNAPSHOTS_PATH.value is not None:
    scene_lib.output_extension(_SNAPSHOTS_PATH.value,
                               scene_lib.FIGURE_EXTENSIONS,
                               "--snapshots_path")
  if _PHYSICS_PLOT_PATH.value is not None:
    physics_plot.check_path(_PHYSICS_PLOT_PATH.value)
  if _ERROR_PLOT_PATH.value is not None:
    error_plot.plot_error(rollout_files.LazyRollouts(paths),
                          _ERROR_PLOT_PATH.value)
    logging.info("Wrote the error plot of %d rollout(s) to %s", len(paths),
                 _ERROR_PLOT_PATH.value)
  rollout = rollout_files.load_rollout(paths[0])
  if _PHYSICS_PLOT_PATH.value is not None:
    physics_plot.plot_physics(metrics_lib.physics_curves(rollout),
                              rollout["metadata"], _PHYSICS_PLOT_PATH.value,
                              os.path.basename(paths[0]))
    logging.info("Wrote the physics plot of %s to %s", paths[0],
                 _PHYSICS_PLOT_PATH.value)
  if _SNAPSHOTS_PATH.value is not None:
    named = [(_SNAPSHOT_NAME.value, rollout)] + [
        (name, rollout_files.load_rollout(path)) for name, path in compared]
    snapshots.write_comparison(named, _SNAPSHOTS_PATH.value,
                               _SNAPSHOT_COLUMNS.value)
    logging.info("Wrote still frames of %s to %s", ", ".join(
        [paths[0]] + [path for _, path in compared]), _SNAPSHOTS_PATH.value)
  if not animate:
    return
  if output_path is None:
    animation.show_animation(rollout, _STEP_STRIDE.value, _BLOCK_ON_SHOW.value)
  else:
    num_frames = animation.render_animation(
        rollout, output_path, _STEP_STRIDE.value, _FPS.value, _DPI.value)
    logging.info("Wrote %d frames of %s to %s", num_frames, paths[0],
                 output_path)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    _run()
  except (OSError, ValueError, animation.MissingWriterError) as e:
    # Bad input ends as one line on stderr and exit status 1, no traceback.
    sys.exit(f"render_rollout: error: {e}")


if __name__ == "__main__":
  app.run(main)
