"""Still pictures of a rollout: ground truth above prediction at a few steps.

For TensorBoard (validation during training) and reports: a grid with one
column per chosen step and two rows, drawn headless like `scene`, returned as
a figure or as RGB pixels.
"""

from typing import Any, Mapping, Sequence, Tuple

from matplotlib import colors as mpl_colors
from matplotlib import figure as mpl_figure
import numpy as np

from learning_to_simulate.data import common
from learning_to_simulate.visualization import rollout_files
from learning_to_simulate.visualization import scene as scene_lib

# Inches per panel; markers a little larger than the animation's.
PANEL_SIZE = 2.4
MARKER_SIZE = 3.0


def snapshot_steps(num_steps: int, num_columns: int) -> np.ndarray:
  """Rollout steps shown: evenly spaced from 0 (the last input) to the end."""
  return np.unique(np.linspace(0, num_steps, num_columns).round().astype(int))


def snapshot_figure(rollout: Mapping[str, Any], num_columns: int = 4,
                    dpi: float = 64) -> mpl_figure.Figure:
  """Ground truth (top row) and prediction (bottom row) at a few steps.

  Args:
    rollout: a rollout dict (see `rollout_files.check_rollout`); 2D rollouts
      are drawn as they are, 3D ones projected on their first two axes.
    num_columns: number of steps shown, from the last input frame (step 0)
      to the last predicted step.
    dpi: pixels per inch.
  """
  return comparison_figure([("Prediction", rollout)], num_columns, dpi)


def comparison_figure(rollouts: Sequence[Tuple[str, Mapping[str, Any]]],
                      num_columns: int = 4,
                      dpi: float = 64) -> mpl_figure.Figure:
  """The first rollout's ground truth (top row), then each rollout's
  prediction (a row each, labelled with its name), at the same steps.

  For models rolled out from the same trajectory (say two recipes, or one
  model with and without walls), so that their motion can be compared by
  eye; a rollout whose scene has more particles (static wall particles)
  shows them too.

  Args:
    rollouts: `(name, rollout dict)` pairs (see
      `rollout_files.check_rollout`); the steps are the first one's.
    num_columns, dpi: as `snapshot_figure`.
  """
  if not rollouts:
    raise ValueError("no rollout to draw")
  checked = [(name, rollout_files.check_rollout(rollout))
             for name, rollout in rollouts]
  first = checked[0][1]
  bounds = first["metadata"]["bounds"]
  num_steps = len(first["predicted_rollout"])

  def with_input(rollout, key):
    return np.concatenate([rollout["initial_positions"][-1:], rollout[key]])

  rows = [("Ground truth", first, with_input(first, "ground_truth_rollout"))]
  rows += [(name, rollout, with_input(rollout, "predicted_rollout"))
           for name, rollout in checked]
  palette = mpl_colors.to_rgba_array(
      [scene_lib.TYPE_COLORS[t] for t in range(common.NUM_PARTICLE_TYPES)])
  steps = snapshot_steps(num_steps, num_columns)
  fig = scene_lib.new_figure(dpi, size=(PANEL_SIZE * len(steps),
                                        PANEL_SIZE * len(rows) + 0.3))
  axes = fig.subplots(len(rows), len(steps), squeeze=False)
  for row, (name, rollout, trajectory) in enumerate(rows):
    colors = palette[rollout["particle_types"]]
    for column, step in enumerate(steps):
      ax = axes[row, column]
      frame = trajectory[min(step, len(trajectory) - 1)]
      ax.scatter(frame[:, 0], frame[:, 1], s=MARKER_SIZE, c=colors,
                 linewidths=0)
      ax.set_xlim(*bounds[0])
      ax.set_ylim(*bounds[1])
      ax.set_aspect("equal")
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        ax.set_title(f"step {step}", fontsize="small")
      if column == 0:
        ax.set_ylabel(name, fontsize="small")
  fig.subplots_adjust(left=0.04, right=0.99, bottom=0.01,
                      top=1 - 0.3 / (PANEL_SIZE * len(rows) + 0.3),
                      wspace=0.05, hspace=0.05)
  return fig


def write_comparison(rollouts: Sequence[Tuple[str, Mapping[str, Any]]],
                     path: str, num_columns: int = 4,
                     dpi: float = 64) -> None:
  """`comparison_figure` to a `.png`, `.pdf` or `.svg` file, atomically."""
  extension = scene_lib.output_extension(path, scene_lib.FIGURE_EXTENSIONS,
                                         "snapshots")
  scene_lib.save_figure(comparison_figure(rollouts, num_columns, dpi), path,
                        extension)


def figure_pixels(fig: mpl_figure.Figure) -> np.ndarray:
  """`[height, width, 3]` uint8 RGB of a figure drawn on its Agg canvas."""
  fig.canvas.draw()
  return np.array(fig.canvas.buffer_rgba())[..., :3]

