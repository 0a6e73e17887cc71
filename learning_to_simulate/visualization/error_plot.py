"""The per-step rollout error plot: one line per rollout, log scale."""

from typing import Any, Dict, Mapping

from matplotlib import figure as mpl_figure
import numpy as np

from learning_to_simulate.visualization import rollout_files
from learning_to_simulate.visualization import scene as scene_lib

def error_figure(curves: Mapping[str, np.ndarray],
                 ylabel: str = "position MSE (mean over particles and dims)",
                 title: str = "Rollout error") -> mpl_figure.Figure:
  """A figure of per-step error curves.

  Args:
    curves: name -> `[num_steps]` values at rollout steps 1..num_steps, in
      legend order.
    ylabel, title: axis label and title.
  """
  fig = scene_lib.new_figure(scene_lib.DEFAULT_DPI, size=(8.0, 5.0))
  ax = fig.add_subplot()
  for name, values in curves.items():
    values = np.asarray(values)
    ax.plot(np.arange(1, values.size + 1), values, label=name, linewidth=1)
  ax.set_yscale("log")
  ax.set_xlabel("rollout step (after the initial positions)")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize="small", ncol=1 + (len(curves) - 1) // 12)
  return fig


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
  extension = scene_lib.output_extension(output_path,
                                         scene_lib.FIGURE_EXTENSIONS,
                                         "error plot")
  if not rollouts:
    raise ValueError("plot_error needs at least one rollout")
  plotted = {name: rollout_files.rollout_mse_per_step(rollout)
             for name, rollout in rollouts.items()}
  fig = error_figure(plotted)
  scene_lib.save_figure(fig, output_path, extension)
  return plotted
