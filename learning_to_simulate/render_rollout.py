"""Renders rollouts of the learned simulator against ground truth.

Reproduces the viewer of "Learning to Simulate Complex Physics with Graph
Networks" (Sanchez-Gonzalez et al., ICML 2020, arXiv:2002.09405) for the
pickles written by `train --mode=eval_rollout` (see ../shared/FORMAT.md), and
adds headless output and an error plot. Reading and validating the pickles
(and their per-step error) is `rollout_files`; GIFs stream through
`gif_writer`. The module holds:

- `RolloutScene`: ground truth and prediction side by side on one figure,
  updated in place frame by frame (scatter offsets only);
- `render_animation` (GIF through Pillow, MP4 through ffmpeg),
  `show_animation` (interactive) and `plot_error` (PNG, PDF or SVG);
- a thin CLI:

  python -m learning_to_simulate.render_rollout \
      --rollout_path={OUTPUT_PATH}/rollout_test_0.pkl

shows the animation when a display is available, as the original does. With
`--output_path=FILE.gif` or `FILE.mp4`, or when there is no display (no
`DISPLAY` / `WAYLAND_DISPLAY` on Linux, or a non-interactive matplotlib
backend), it writes the animation instead (by default `<pickle stem>.gif`
next to the pickle). `--rollout_path` may be a directory: `--error_plot_path`
then plots every `rollout_*.pkl` in it, and the first one is animated.

Files are drawn on a private Agg canvas, never through pyplot, so writing
works whatever backend is configured and without a display. Every output is
written under a temporary name in its directory and moved into place only
when complete.

3D rollouts are drawn as `mpl_toolkits.mplot3d` scatter plots with the axes
fixed to the metadata bounds and a box aspect matching them. The vertical
axis is the coordinate with the largest mean acceleration in the metadata
(gravity), or y (the second coordinate, vertical in the 2D datasets) when the
metadata has no `acc_mean`.

Pickles can run arbitrary code when loaded: only render rollouts you trust.
"""

import os
import sys
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import matplotlib
import matplotlib.axes
from matplotlib import animation
from matplotlib import artist as mpl_artist
from matplotlib import colors as mpl_colors
from matplotlib import figure as mpl_figure
from matplotlib import lines as mpl_lines
from matplotlib.backends import backend_agg
from matplotlib.backends import backend_registry
import numpy as np

from learning_to_simulate import common
from learning_to_simulate import dataset_writer
from learning_to_simulate import gif_writer
from learning_to_simulate import rollout_files

ANIMATION_EXTENSIONS = (".gif", ".mp4")
ERROR_PLOT_EXTENSIONS = (".png", ".pdf", ".svg")

# Two square panels, a frame counter above and a legend below, in inches; the
# image is `FIGURE_SIZE * dpi` pixels.
FIGURE_SIZE = (10.0, 5.5)
DEFAULT_DPI = 100
DEFAULT_FPS = 20
# Marker diameter in points, as the original's `ms=2`.
DEFAULT_MARKER_SIZE = 2.0
# GIF frame delays are whole centiseconds, and browsers slow down delays
# under 2 cs, so GIFs play at most 50 frames per second.
MAX_GIF_FPS = 50

_NAMED_TYPE_COLORS = {
    common.ParticleType.KINEMATIC: "black",  # Boundaries and obstacles.
    common.ParticleType.RIGID: "green",
    common.ParticleType.WATER: "blue",
    common.ParticleType.SAND: "gold",
    common.ParticleType.GOOP: "magenta",
}
# Ids without a name in the datasets, in increasing order; far from the above.
_SPARE_COLORS = ("red", "darkorange", "saddlebrown", "darkturquoise")


def _type_colors() -> Dict[int, str]:
  spare = iter(_SPARE_COLORS)
  return {particle_type: _NAMED_TYPE_COLORS.get(particle_type) or next(spare)
          for particle_type in range(common.NUM_PARTICLE_TYPES)}


# One distinct matplotlib colour for each of the particle-type ids.
TYPE_COLORS: Dict[int, str] = _type_colors()


def type_label(particle_type: int) -> str:
  """Legend label of a particle-type id, e.g. "Water (5)" or "Type 1"."""
  try:
    name = common.ParticleType(particle_type).name.capitalize()
  except ValueError:
    return f"Type {particle_type}"
  return f"{name} ({particle_type})"


class MissingWriterError(RuntimeError):
  """The program needed to write an animation format is not installed."""


# ---------------------------------------------------------------------------
# Output files.


def _extension(path: str, supported: Sequence[str], what: str) -> str:
  extension = os.path.splitext(path)[1].lower()
  if extension not in supported:
    raise ValueError(f"Unsupported {what} extension {extension!r} in {path}; "
                     f"supported: {', '.join(supported)}")
  if os.path.isdir(path):
    raise ValueError(f"{what} path {path} is a directory")
  return extension


def check_animation_path(output_path: str, fps: float = DEFAULT_FPS) -> str:
  """Checks that an animation can be written to `output_path` at `fps`.

  Args:
    output_path: a `.gif` or `.mp4` file name.
    fps: frames per second: positive, and at most `MAX_GIF_FPS` for GIF.

  Returns:
    The lower-case extension.

  Raises:
    ValueError: for any other extension, a directory or a bad `fps`.
    MissingWriterError: for `.mp4` when ffmpeg is not installed.
  """
  extension = _extension(output_path, ANIMATION_EXTENSIONS, "animation")
  if not fps > 0:
    raise ValueError(f"fps must be positive, got {fps}")
  if extension == ".gif" and fps > MAX_GIF_FPS:
    raise ValueError(f"fps must be at most {MAX_GIF_FPS} for .gif (frame "
                     f"delays are whole centiseconds, >= 2), got {fps}")
  if extension == ".mp4" and not animation.writers.is_available("ffmpeg"):
    raise MissingWriterError(
        f"Cannot write {output_path}: .mp4 needs matplotlib's 'ffmpeg' "
        f"writer, but {matplotlib.rcParams['animation.ffmpeg_path']!r} is not "
        "on PATH; install ffmpeg or write a .gif")
  return extension


def _make_writer(extension: str, fps: float) -> animation.AbstractMovieWriter:
  if extension == ".gif":
    return gif_writer.StreamingGifWriter(fps)
  return animation.FFMpegWriter(fps=fps)


# ---------------------------------------------------------------------------
# Drawing.


def _vertical_axis(metadata: Mapping[str, Any], dim: int) -> int:
  acc_mean = np.asarray(metadata.get("acc_mean", ()), dtype=np.float64)
  if acc_mean.shape == (dim,) and np.any(acc_mean):
    return int(np.argmax(np.abs(acc_mean)))  # Gravity dominates.
  return 1


def new_figure(dpi: float = DEFAULT_DPI,
               size: Tuple[float, float] = FIGURE_SIZE) -> mpl_figure.Figure:
  """A figure (inches) on its own Agg canvas, independent of pyplot."""
  fig = mpl_figure.Figure(figsize=size, dpi=dpi)
  backend_agg.FigureCanvasAgg(fig)
  return fig


class RolloutScene:
  """Ground truth (left) and prediction (right) of one rollout on a figure.

  Both panels share the metadata bounds; particles are coloured by type
  (`TYPE_COLORS`) with a legend entry per type present, and a header reads
  "step k/last" where k indexes the trajectory: the initial positions
  followed by the rollout. `update` only moves the scatter offsets and the
  counter text, so frames can be blitted (see `draw`).
  """

  def __init__(self, fig: mpl_figure.Figure, rollout: Mapping[str, Any],
               marker_size: float = DEFAULT_MARKER_SIZE):
    """Draws the static parts of the scene and the first frame.

    Args:
      fig: an empty figure, e.g. from `new_figure` or `pyplot.figure`.
      rollout: a rollout dict (validated with `check_rollout`).
      marker_size: particle marker diameter in points.

    Raises:
      ValueError: if the rollout is invalid or `marker_size` is not positive.
    """
    if not marker_size > 0:
      raise ValueError(f"marker_size must be positive, got {marker_size}")
    rollout = rollout_files.check_rollout(rollout)
    self.figure = fig
    bounds = rollout["metadata"]["bounds"]
    self.dim = bounds.shape[0]
    initial = rollout["initial_positions"]
    # `[num_frames, num_particles, dim]` each.
    self.trajectories = [
        np.concatenate([initial, rollout[key]], axis=0)
        for key in ("ground_truth_rollout", "predicted_rollout")]
    self.num_frames = self.trajectories[0].shape[0]
    particle_types = rollout["particle_types"]
    face_colors = mpl_colors.to_rgba_array(
        [TYPE_COLORS[t] for t in range(common.NUM_PARTICLE_TYPES)]
    )[particle_types]

    header = fig.add_axes((0.0, 0.92, 1.0, 0.08))
    header.set_axis_off()
    self.counter = header.text(0.5, 0.5, "", ha="center", va="center",
                               fontsize="large")
    self.axes = []
    self.scatters = []
    for i, title in enumerate(("Ground truth", "Prediction")):
      rect = (0.01 + 0.5 * i, 0.1, 0.48, 0.76)
      if self.dim == 2:
        ax = fig.add_axes(rect)
        ax.set_xlim(*bounds[0])
        ax.set_ylim(*bounds[1])
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        scatter = ax.scatter(initial[0, :, 0], initial[0, :, 1],
                             s=marker_size**2, c=face_colors, linewidths=0)
      else:
        ax = fig.add_axes(rect, projection="3d")
        ax.set_xlim(*bounds[0])
        ax.set_ylim(*bounds[1])
        ax.set_zlim(*bounds[2])
        ax.set_box_aspect(bounds[:, 1] - bounds[:, 0])
        ax.view_init(vertical_axis="xyz"[_vertical_axis(rollout["metadata"],
                                                        self.dim)])
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_zlabel("z")
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
          axis.set_ticklabels([])
        scatter = ax.scatter(initial[0, :, 0], initial[0, :, 1],
                             initial[0, :, 2], s=marker_size**2,
                             c=face_colors, linewidths=0, axlim_clip=True)
      ax.set_title(title)
      self.axes.append(ax)
      self.scatters.append(scatter)

    present = sorted(set(particle_types.tolist()))
    handles = [mpl_lines.Line2D([], [], linestyle="none", marker="o",
                                markersize=8, color=TYPE_COLORS[t],
                                label=type_label(t)) for t in present]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles),
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    self._background = None  # Static parts, for `draw`.
    self.update(0)

  def draw(self) -> None:
    """Renders the current frame on the figure's (Agg-based) canvas.

    Draws everything once and keeps the static background; later calls
    redraw only the scatters and the counter (blitting), which is two to
    three times faster. 3D scatters are reprojected first; the view is fixed.
    """
    canvas = self.figure.canvas
    # Drawn in this order over the background, as a full draw would.
    moving = []
    for scatter in self.scatters:
      moving.append(scatter)
      if self.dim == 2:  # Spines go over particles.
        moving.extend(scatter.axes.spines.values())
    moving.append(self.counter)
    if self._background is None:
      for moving_artist in moving:
        moving_artist.set_visible(False)
      canvas.draw()
      self._background = canvas.copy_from_bbox(self.figure.bbox)
      for moving_artist in moving:
        moving_artist.set_visible(True)
    canvas.restore_region(self._background)
    for moving_artist in moving:
      if self.dim == 3 and moving_artist in self.scatters:
        moving_artist.do_3d_projection()
      moving_artist.axes.draw_artist(moving_artist)

  @property
  def ground_truth_axes(self) -> matplotlib.axes.Axes:
    return self.axes[0]

  @property
  def prediction_axes(self) -> matplotlib.axes.Axes:
    return self.axes[1]

  def update(self, frame: int) -> List[mpl_artist.Artist]:
    """Shows trajectory frame `frame` and returns the artists it changed."""
    for scatter, trajectory in zip(self.scatters, self.trajectories):
      positions = trajectory[frame]
      scatter.set_offsets(positions[:, :2])
      if self.dim == 3:
        scatter.set_3d_properties(positions[:, 2], "z", axlim_clip=True)
    self.counter.set_text(f"step {frame}/{self.num_frames - 1}")
    return [*self.scatters, self.counter]


def animation_frames(num_frames: int, step_stride: int) -> np.ndarray:
  """Trajectory frames shown: every `step_stride`-th, from the first."""
  if step_stride < 1:
    raise ValueError(f"step_stride must be at least 1, got {step_stride}")
  return np.arange(0, num_frames, step_stride)


def render_animation(rollout: Mapping[str, Any], output_path: str,
                     step_stride: int = 3, fps: float = DEFAULT_FPS,
                     dpi: float = DEFAULT_DPI,
                     marker_size: float = DEFAULT_MARKER_SIZE) -> int:
  """Writes the ground-truth vs prediction animation to a GIF or MP4 file.

  Args:
    rollout: a rollout dict (see `check_rollout`).
    output_path: a `.gif` (Pillow) or `.mp4` (ffmpeg) file; its directory is
      created if needed, and the file appears only once complete.
    step_stride: show every `step_stride`-th frame of the trajectory.
    fps: frames per second of the animation (at most 50 for GIF).
    dpi: pixels per inch; the frames are `FIGURE_SIZE * dpi` pixels.
    marker_size: particle marker diameter in points.

  Returns:
    The number of frames written, `ceil(num_frames / step_stride)`.

  Raises:
    ValueError: for an unsupported extension or invalid arguments/rollout.
    MissingWriterError: for `.mp4` when ffmpeg is not installed.
  """
  extension = check_animation_path(output_path, fps)
  if not dpi > 0:
    raise ValueError(f"dpi must be positive, got {dpi}")
  writer = _make_writer(extension, fps)
  fig = new_figure(dpi)
  scene = RolloutScene(fig, rollout, marker_size)
  frames = animation_frames(scene.num_frames, step_stride)
  with dataset_writer.atomic_file(output_path) as temporary:
    with writer.saving(fig, temporary, dpi):
      for frame in frames:
        scene.update(frame)
        if extension == ".gif":
          scene.draw()  # ffmpeg's writer draws through savefig itself.
        writer.grab_frame()
  return len(frames)


def show_animation(rollout: Mapping[str, Any], step_stride: int = 3,
                   block: bool = True,
                   marker_size: float = DEFAULT_MARKER_SIZE
                  ) -> animation.FuncAnimation:
  """Shows the animation in a pyplot window, as the original viewer does.

  Args:
    rollout: a rollout dict (see `check_rollout`).
    step_stride: show every `step_stride`-th frame of the trajectory.
    block: whether `pyplot.show` blocks until the window is closed.
    marker_size: particle marker diameter in points.

  Returns:
    The animation; keep a reference while it plays when `block` is false.
  """
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig = plt.figure(figsize=FIGURE_SIZE)
  scene = RolloutScene(fig, rollout, marker_size)
  frames = animation_frames(scene.num_frames, step_stride)
  anim = animation.FuncAnimation(fig, scene.update, frames=frames,
                                 # 3D views can be rotated: redraw in full.
                                 interval=10, blit=scene.dim == 2)
  plt.show(block=block)
  return anim


def plot_error(rollouts: Mapping[str, Mapping[str, Any]],
               output_path: str) -> Dict[str, np.ndarray]:
  """Plots the per-step rollout MSE, one line per rollout, log y axis.

  Args:
    rollouts: name -> rollout dict, in legend order; walked once, so a
      `LazyRollouts` keeps one rollout in memory at a time.
    output_path: a `.png`, `.pdf` or `.svg` file, written once complete.

  Returns:
    name -> the y values of its plotted line, `[num_steps]` (x is 1..T).

  Raises:
    ValueError: for an unsupported extension or no rollouts.
  """
  extension = _extension(output_path, ERROR_PLOT_EXTENSIONS, "error plot")
  if not rollouts:
    raise ValueError("plot_error needs at least one rollout")
  fig = new_figure(DEFAULT_DPI, size=(8.0, 5.0))
  ax = fig.add_subplot()
  plotted = {}
  for name, rollout in rollouts.items():
    mse = rollout_files.rollout_mse_per_step(rollout)
    ax.plot(np.arange(1, mse.size + 1), mse, label=name, linewidth=1)
    plotted[name] = mse
  ax.set_yscale("log")
  ax.set_xlabel("rollout step (after the initial positions)")
  ax.set_ylabel("position MSE (mean over particles and dims)")
  ax.set_title("Rollout error")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize="small", ncol=1 + (len(plotted) - 1) // 12)
  with dataset_writer.atomic_file(output_path) as temporary:
    fig.savefig(temporary, format=extension[1:])
  return plotted


# ---------------------------------------------------------------------------
# Command line.


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
_FPS = flags.DEFINE_integer("fps", DEFAULT_FPS,
                            "Frames per second of a written animation.",
                            lower_bound=1)
_DPI = flags.DEFINE_integer(
    "dpi", DEFAULT_DPI,
    f"Pixels per inch of a written animation ({FIGURE_SIZE[0]:g} x "
    f"{FIGURE_SIZE[1]:g} inches).", lower_bound=10)
_ERROR_PLOT_PATH = flags.DEFINE_string(
    "error_plot_path", None,
    "Also write the per-step rollout MSE plot (.png, .pdf or .svg) here.")
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
    check_animation_path(output_path, _FPS.value)
  if _ERROR_PLOT_PATH.value is not None:
    plot_error(rollout_files.LazyRollouts(paths), _ERROR_PLOT_PATH.value)
    logging.info("Wrote the error plot of %d rollout(s) to %s", len(paths),
                 _ERROR_PLOT_PATH.value)
  rollout = rollout_files.load_rollout(paths[0])
  if output_path is None:
    show_animation(rollout, _STEP_STRIDE.value, _BLOCK_ON_SHOW.value)
  else:
    num_frames = render_animation(rollout, output_path, _STEP_STRIDE.value,
                                  _FPS.value, _DPI.value)
    logging.info("Wrote %d frames of %s to %s", num_frames, paths[0],
                 output_path)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    _run()
  except (OSError, ValueError, MissingWriterError) as e:
    # Bad input ends as one line on stderr and exit status 1, no traceback.
    sys.exit(f"render_rollout: error: {e}")


if __name__ == "__main__":
  app.run(main)
