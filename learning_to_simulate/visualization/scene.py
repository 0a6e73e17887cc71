"""Drawing a rollout: ground truth beside prediction, coloured by particle type.

The figures are drawn on a private Agg canvas, never through pyplot, so they
render without a display whatever matplotlib backend is configured. Used by
the animations (`animation`), the error plot (`error_plot`) and the pictures
of validation rollouts in TensorBoard (`training.validation`).

3D rollouts are drawn as `mpl_toolkits.mplot3d` scatter plots with the axes
fixed to the metadata bounds and a box aspect matching them. The vertical
axis (`vertical_axis`, also the physics plot's height) comes from the metadata:
gravity's axis, else that of the train split's mean velocity, else y.
"""

import os
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import matplotlib.axes
from matplotlib import artist as mpl_artist
from matplotlib import colors as mpl_colors
from matplotlib import figure as mpl_figure
from matplotlib import lines as mpl_lines
from matplotlib.backends import backend_agg
import numpy as np

from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer
from learning_to_simulate.visualization import rollout_files

# Two square panels, a frame counter above and a legend below, in inches; the
# image is `FIGURE_SIZE * dpi` pixels.
FIGURE_SIZE = (10.0, 5.5)
DEFAULT_DPI = 100
# Marker diameter in points, as the original's `ms=2`.
DEFAULT_MARKER_SIZE = 2.0

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


def output_extension(path: str, supported: Sequence[str], what: str) -> str:
  """The lower-case extension of an output file, checked against `supported`.

  Raises:
    ValueError: for another extension, or when `path` is a directory.
  """
  extension = os.path.splitext(path)[1].lower()
  if extension not in supported:
    raise ValueError(f"Unsupported {what} extension {extension!r} in {path}; "
                     f"supported: {', '.join(supported)}")
  if os.path.isdir(path):
    raise ValueError(f"{what} path {path} is a directory")
  return extension


# What the still pictures (error, physics and snapshot plots) are written as.
FIGURE_EXTENSIONS = (".png", ".pdf", ".svg")


def save_figure(fig: mpl_figure.Figure, path: str, extension: str) -> None:
  """Writes `fig` to `path` in the format of `extension` (checked with
  `output_extension`), once complete: an existing file stays whole if
  drawing fails."""
  with dataset_writer.atomic_file(path) as temporary:
    fig.savefig(temporary, format=extension[1:])


# The up axis of a dataset (also the physics plot's and the metrics').
vertical_axis = common.vertical_axis


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
  followed by the rollout. A rollout that runs past the data keeps the
  ground truth at its last frame and says so in the header. `update` only moves the scatter offsets and the
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
    self.num_frames = self.trajectories[1].shape[0]
    self.num_truth_frames = self.trajectories[0].shape[0]
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
        ax.view_init(vertical_axis="xyz"[vertical_axis(rollout["metadata"],
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
      positions = trajectory[min(frame, len(trajectory) - 1)]
      scatter.set_offsets(positions[:, :2])
      if self.dim == 3:
        scatter.set_3d_properties(positions[:, 2], "z", axlim_clip=True)
    text = f"step {frame}/{self.num_frames - 1}"
    if frame >= self.num_truth_frames:
      text += f" (past the data: ground truth at {self.num_truth_frames - 1})"
    self.counter.set_text(text)
    return [*self.scatters, self.counter]
