"""Renders rollouts of the learned simulator against ground truth.

Reproduces the viewer of "Learning to Simulate Complex Physics with Graph
Networks" (Sanchez-Gonzalez et al., ICML 2020, arXiv:2002.09405) for the
pickles written by `train --mode=eval_rollout` (see ../shared/FORMAT.md), and
adds headless output, an error plot and a physics plot (centre-of-mass height
and kinetic energy over time). This is the command line; the drawing is in
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
    "Also write the first rollout's centre-of-mass height and kinetic "
    "energy over time, prediction against ground truth (.png, .pdf or "
    ".svg), here.")
flags.mark_flag_as_required("rollout_path")


def _run() -> None:
  """Turns the flags into library calls; see the module docstring."""
  paths = rollout_files.find_rollouts(_ROLLOUT_PATH.value)
  output_path = _OUTPUT_PATH.value
  if output_path is None and not display_available():
    output_path = os.path.splitext(paths[0])[0] + ".gif"
    logging.info("No display available: writing the animation to %s",
                 output_path)
  # Fail on bad paths before spending time on anything.
  if output_path is not None:
    animation.check_animation_path(output_path, _FPS.value)
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
