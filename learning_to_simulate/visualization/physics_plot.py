"""Does it fall at the right speed, keep its volume, splash? Physics plots.

Four panels for one rollout, prediction (dashed) against ground truth
(solid): the height of each moving material's centre of mass over time, the
kinetic energy of the moving particles, how packed they are (neighbours
within the connectivity radius per particle: a fluid that compacts rises
above the truth), and how high they stand at each side wall (a splash up a
wall, or water that hangs on it). The curves are those of
`training.metrics.physics_curves` (the series behind `centre_of_mass_error`,
`kinetic_energy_ratio`, `density_ratio` and `wall_height_error`, also in
`metrics.json`), computed by the caller: this stage draws, it does not score.
Curves of a `metrics.json` of before the density or the wall heights get the
panels they have.
"""

from typing import Any, Dict, Mapping

import matplotlib
from matplotlib import figure as mpl_figure
import numpy as np

from learning_to_simulate.visualization import scene as scene_lib


def plotted_series(curves: Mapping[str, Any],
                   up_axis: int) -> Dict[str, np.ndarray]:
  """The plotted lines of `physics_figure`, each `[num_steps]` at rollout
  steps 1..num_steps.

  Args:
    curves: `metrics.physics_curves` of a rollout.
    up_axis: the vertical coordinate (`scene.vertical_axis`).

  Returns:
    `{material} height, predicted` / `..., ground truth` per moving material
    (the `up_axis` coordinate of its centre of mass), then `kinetic energy,
    predicted` / `..., ground truth`, then, when the curves have them,
    `density, predicted` / `..., ground truth`: those are at the steps
    `curves["density"]["steps"]` only; then, when the curves have them,
    `{wall} wall, predicted` / `..., ground truth` per side wall (`x low`,
    ...): the height above the floor at that wall.
  """
  series = {}
  for name, centre in curves["centre_of_mass"].items():
    for which in ("predicted", "ground_truth"):
      series[f"{name} height, {which.replace('_', ' ')}"] = np.asarray(
          centre[which], np.float64)[:, up_axis]
  for which in ("predicted", "ground_truth"):
    series[f"kinetic energy, {which.replace('_', ' ')}"] = np.asarray(
        curves["kinetic_energy"][which], np.float64)
  if "density" in curves:
    for which in ("predicted", "ground_truth"):
      series[f"density, {which.replace('_', ' ')}"] = np.asarray(
          curves["density"][which], np.float64)
  if "wall_heights" in curves:
    walls = curves["wall_heights"]
    for index, wall in enumerate(walls["walls"]):
      for which in ("predicted", "ground_truth"):
        series[f"{wall} wall, {which.replace('_', ' ')}"] = np.asarray(
            walls[which], np.float64).reshape(-1, len(walls["walls"]))[
                :, index]
  return series


def physics_figure(curves: Mapping[str, Any], up_axis: int,
                   title: str = "") -> mpl_figure.Figure:
  """Centre-of-mass height, kinetic energy, density and the heights at the
  walls over time (the panels the curves have)."""
  names = ["height", "kinetic energy"] + [
      name for name, key in (("density", "density"), ("walls", "wall_heights"))
      if key in curves]
  fig = scene_lib.new_figure(scene_lib.DEFAULT_DPI,
                             size=(5.0 * len(names), 4.0))
  panels = dict(zip(names, fig.subplots(1, len(names))))
  # A quantity's prediction and truth share a colour (dashed and solid).
  palette = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
  colours = {}
  for name, values in plotted_series(curves, up_axis).items():
    panel = ("kinetic energy" if name.startswith("kinetic energy") else
             "density" if name.startswith("density") else
             "walls" if " wall, " in name else "height")
    steps = (np.asarray(curves["density"]["steps"]) if panel == "density"
             else np.arange(1, values.size + 1))
    quantity = name.rsplit(", ", 1)[0]
    in_panel = sum(key[0] == panel for key in colours)
    colour = colours.setdefault((panel, quantity),
                                palette[in_panel % len(palette)])
    panels[panel].plot(steps, values, label=name, color=colour,
                       linestyle="--" if name.endswith("predicted") else "-",
                       linewidth=1.2)
  panels["height"].set_ylabel("centre-of-mass height (position units)")
  panels["kinetic energy"].set_ylabel(
      "kinetic energy 0.5 mean |v|^2 (per frame^2)")
  if "density" in panels:
    panels["density"].set_ylabel("neighbours per particle (within R)")
  if "walls" in panels:
    panels["walls"].set_ylabel("height above the floor at each side wall")
  for ax in panels.values():
    ax.set_xlabel("rollout step (after the initial positions)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
  fig.suptitle(title or "Centre of mass, kinetic energy, density and the "
               "heights at the walls: prediction (dashed) against ground "
               "truth")
  fig.tight_layout()
  return fig


def check_path(output_path: str) -> str:
  """The extension of a physics plot path; ValueError if unsupported."""
  return scene_lib.output_extension(output_path, scene_lib.FIGURE_EXTENSIONS,
                                    "physics plot")


def plot_physics(curves: Mapping[str, Any], metadata: Mapping[str, Any],
                 output_path: str, title: str = "") -> Dict[str, np.ndarray]:
  """Writes `physics_figure` to a `.png`, `.pdf` or `.svg` file, once
  complete, with the rollout's `metadata` deciding which axis is up
  (`scene.vertical_axis`).

  Returns:
    `plotted_series(curves, up_axis)`.

  Raises:
    ValueError: for an unsupported extension.
  """
  extension = check_path(output_path)
  up_axis = scene_lib.vertical_axis(metadata, len(metadata["bounds"]))
  fig = physics_figure(curves, up_axis, title)
  scene_lib.save_figure(fig, output_path, extension)
  return plotted_series(curves, up_axis)
