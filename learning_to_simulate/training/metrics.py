"""Rollout metrics: how close, how physical, and against which yardstick.

All functions are pure numpy on one rollout: `initial_positions`
`[INPUT_SEQUENCE_LENGTH, num_particles, dim]`, `predicted_rollout`
`[num_predicted, num_particles, dim]`, `ground_truth_rollout`
`[num_steps, num_particles, dim]` and `particle_types` `[num_particles]`, as
in the pickles of `eval_rollout`. A prediction may run past the ground truth
(`--rollout_steps` beyond the data): the metrics that compare with the ground
truth then cover the overlap, `min(num_predicted, num_steps)` steps.

Except the original's `rollout_error_mse`, every metric is computed over the
moving (non-kinematic) particles only: kinematic particles follow their
ground truth in a rollout and would only dilute the errors.

- `rollout_error_mse`: the original's figure, the mean squared error over all
  particles (kinematic ones included), dimensions and steps.
- `mse_{h}` for h in `HORIZONS`: the position MSE over the first h steps
  (mean over those steps, moving particles and dimensions; LagrangeBench's
  "MSE@h" convention); `mse_full` over all overlapping steps; `mse_at_{h}`
  the position MSE at step h itself.
- `emd`: the earth mover's distance with squared-Euclidean cost between the
  predicted and the true cloud of moving particles (W2^2, the mean squared
  distance of the best one-to-one matching, exact, by scipy's
  `linear_sum_assignment`), averaged over up to `EMD_STEPS` evenly spaced
  steps (the last included), on at most `EMD_PARTICLES` particles. It ignores
  which particle is which: a rigid shift by `d` gives `|d|^2`, and a
  permutation of identical particles gives 0.
- `kinetic_energy_mse`: per step, `E = 0.5 * mean |v|^2` over the moving
  particles (unit mass, `v` in position units per frame); the MSE between the
  predicted and true series.
- `out_of_domain`: the share of moving particle-steps (all predicted steps)
  with a coordinate outside the bounds widened by `tolerance`.
- `kinetic_energy_ratio`: the predicted kinetic energy summed over the steps
  over the true one (1: the motion keeps its energy; < 1: damped); left out
  when the ground truth does not move.
- `centre_of_mass_error`: the largest coordinate distance between the
  predicted and true centres of mass of the moving particles at the last
  step, as a share of the box's largest side; `centre_of_mass_error_mean`
  the same averaged over the steps (does it fall at the right speed?).
  With more than one moving material, also `centre_of_mass_error_{name}`
  per material (`material_name`), at the last step.
- `density_ratio`: how packed the predicted fluid is against the truth: the
  number of other moving particles within the dataset's connectivity radius
  of each moving particle, averaged over the particles and over up to
  `DENSITY_STEPS` evenly spaced steps, predicted over true (1: the fluid
  keeps its volume; above 1 it compacts, below 1 it spreads or sprays);
  left out when no true particle has a neighbour.
- `wall_height_error`: does the fluid rise up the walls when the truth does
  (a splash), or hang on them when the truth slides down? Per step and side
  wall (the box's walls along each horizontal axis; up is
  `common.vertical_axis`), the height above the floor below which
  `WALL_HEIGHT_PERCENTILE`% of the moving particles within `WALL_BAND` of the
  box's width of that wall lie (`wall_heights`, 0 with none there); the mean
  absolute difference between prediction and truth, over steps and walls, as
  a share of the box's largest side.

`physics_curves` gives the series behind the physics summary: per step the
kinetic energy, each material's centre of mass and the height at each side
wall, and at the density's steps the neighbours per particle, predicted and
true.
"""

from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
from scipy import optimize
from scipy import spatial

from learning_to_simulate.data import common

# Horizons of the position MSE, in steps after the initial positions.
HORIZONS = (1, 5, 10, 20, 50, 100)
# The EMD is averaged over at most this many evenly spaced steps, on at most
# this many particles (the same random subset in both clouds): an exact
# assignment costs O(n^3), 0.2 s for 2000 particles.
EMD_STEPS = 20
EMD_PARTICLES = 2000
# `density_ratio` counts neighbours at this many evenly spaced steps at most.
DENSITY_STEPS = 50
# `wall_heights`: a particle is at a side wall within this share of the
# box's width along the wall's axis, and the height there is this percentile
# of theirs (the top of the fluid, not a stray drop).
WALL_BAND = 0.1
WALL_HEIGHT_PERCENTILE = 98
# A particle counts as out of the domain beyond the bounds plus this
# fraction of the connectivity radius.
OUT_OF_DOMAIN_TOLERANCE_RADII = 0.1

Rollout = Mapping[str, Any]


def moving_mask(particle_types: np.ndarray) -> np.ndarray:
  """`[num_particles]` bool: true for the particles the model predicts."""
  return np.asarray(particle_types) != common.ParticleType.KINEMATIC


def position_mse(predicted: np.ndarray, ground_truth: np.ndarray,
                 moving: np.ndarray) -> np.ndarray:
  """`[num_steps]` position MSE per step over moving particles and dims."""
  error = (np.asarray(predicted, np.float64)[:, moving] -
           np.asarray(ground_truth, np.float64)[:, moving])**2
  if not error.size:
    return np.zeros(len(predicted))
  return error.mean(axis=(1, 2))


def velocities(initial_positions: np.ndarray,
               positions: np.ndarray) -> np.ndarray:
  """`[num_steps, num_particles, dim]` per-frame velocities of a rollout."""
  trajectory = np.concatenate([np.asarray(initial_positions[-1:], np.float64),
                               np.asarray(positions, np.float64)])
  return trajectory[1:] - trajectory[:-1]


def kinetic_energy(initial_positions: np.ndarray, positions: np.ndarray,
                   moving: np.ndarray) -> np.ndarray:
  """`[num_steps]`: `0.5 * mean |v|^2` over the moving particles per step."""
  v = velocities(initial_positions, positions)[:, moving]
  if not v.size:
    return np.zeros(len(positions))
  return 0.5 * np.mean(np.sum(v**2, axis=-1), axis=1)


def material_name(particle_type: int) -> str:
  """"water", "sand", ... for a known particle type, else "type_{id}"."""
  try:
    return common.ParticleType(int(particle_type)).name.lower()
  except ValueError:
    return f"type_{int(particle_type)}"


def materials(particle_types: np.ndarray) -> Dict[str, np.ndarray]:
  """Material name -> `[num_particles]` bool mask, for each moving particle
  type present, in id order."""
  types = np.asarray(particle_types)
  moving = moving_mask(types)
  return {material_name(t): moving & (types == t)
          for t in np.unique(types[moving])}


def centre_of_mass(positions: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """`[num_steps, dim]` mean position of the particles in `mask` per step
  (unit masses)."""
  return np.asarray(positions, np.float64)[:, mask].mean(axis=1)


def _overlap(rollout: Rollout):
  """`(initial, predicted, truth, moving)` over the overlapping steps."""
  predicted = np.asarray(rollout["predicted_rollout"])
  truth = np.asarray(rollout["ground_truth_rollout"])
  overlap = min(len(predicted), len(truth))
  return (np.asarray(rollout["initial_positions"]), predicted[:overlap],
          truth[:overlap], moving_mask(rollout["particle_types"]))


def _box_size(rollout: Rollout) -> float:
  bounds = np.asarray(rollout["metadata"]["bounds"], np.float64)
  return float(np.max(bounds[:, 1] - bounds[:, 0]))


def centre_of_mass_errors(predicted: np.ndarray, truth: np.ndarray,
                          mask: np.ndarray, box_size: float) -> np.ndarray:
  """`[num_steps]` largest coordinate distance between the predicted and true
  centres of mass of the particles in `mask`, over `box_size` (0 for an
  empty mask)."""
  if not mask.any():
    return np.zeros(len(predicted))
  offset = np.abs(centre_of_mass(predicted, mask) -
                  centre_of_mass(truth, mask))
  return offset.max(axis=-1) / box_size


def neighbour_counts(positions: np.ndarray, mask: np.ndarray,
                     radius: float) -> np.ndarray:
  """`[num_steps]` mean number of other particles of `mask` within
  `radius` of each particle of `mask`, per step of `positions`
  `[num_steps, num_particles, dim]` (0 for fewer than two particles)."""
  counts = np.zeros(len(positions))
  if mask.sum() < 2:
    return counts
  for step, frame in enumerate(np.asarray(positions, np.float64)[:, mask]):
    tree = spatial.cKDTree(frame)
    # Ordered pairs, each particle with itself too: one less.
    counts[step] = tree.count_neighbors(tree, radius) / len(frame) - 1.0
  return counts


def density_curves(predicted: np.ndarray, truth: np.ndarray,
                   mask: np.ndarray, radius: float,
                   max_steps: int = DENSITY_STEPS
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`neighbour_counts` of the prediction and the truth at up to `max_steps`
  evenly spaced steps (the last included).

  Returns:
    `steps` (rollout steps counted from 1), `predicted` and `truth`, each
    `[num_sampled_steps]`.
  """
  index = emd_steps(len(truth), max_steps)
  return (index + 1, neighbour_counts(predicted[index], mask, radius),
          neighbour_counts(truth[index], mask, radius))


def density_ratio(predicted: np.ndarray, truth: np.ndarray,
                  mask: np.ndarray, radius: float,
                  max_steps: int = DENSITY_STEPS) -> float:
  """The module docstring's `density_ratio` (NaN when the truth's particles
  have no neighbours)."""
  _, predicted_counts, true_counts = density_curves(predicted, truth, mask,
                                                    radius, max_steps)
  if true_counts.sum() == 0:
    return float("nan")
  return float(predicted_counts.sum() / true_counts.sum())


def side_walls(dim: int, up_axis: int) -> List[Tuple[int, int]]:
  """The box's side walls, `(axis, side)` with side 0 the low one and 1 the
  high one, horizontal axes in order: the columns of `wall_heights`."""
  return [(axis, side) for axis in range(dim) if axis != up_axis
          for side in (0, 1)]


def wall_heights(positions: np.ndarray, mask: np.ndarray, bounds: np.ndarray,
                 up_axis: int, band: float = WALL_BAND) -> np.ndarray:
  """How high the particles of `mask` stand at each side wall.

  Args:
    positions: `[num_steps, num_particles, dim]`.
    mask: `[num_particles]` the particles to count (the moving ones).
    bounds: `[dim, 2]` the box.
    up_axis: the vertical coordinate.
    band: the particles within `band` of the box's width along a wall's
      axis of that wall count for it.

  Returns:
    `[num_steps, len(side_walls(dim, up_axis))]`: per step and wall, the
    `WALL_HEIGHT_PERCENTILE` percentile of the heights above the floor
    (`up_axis` coordinate minus its lower bound) of the particles at the
    wall; 0 where none is.
  """
  positions = np.asarray(positions, np.float64)[:, mask]
  bounds = np.asarray(bounds, np.float64)
  heights = positions[..., up_axis] - bounds[up_axis, 0]
  walls = side_walls(bounds.shape[0], up_axis)
  at_walls = np.zeros((len(positions), len(walls)))
  for column, (axis, side) in enumerate(walls):
    width = band * (bounds[axis, 1] - bounds[axis, 0])
    near = (positions[..., axis] < bounds[axis, 0] + width if side == 0 else
            positions[..., axis] > bounds[axis, 1] - width)
    for step in np.flatnonzero(near.any(axis=1)):
      at_walls[step, column] = np.percentile(heights[step][near[step]],
                                             WALL_HEIGHT_PERCENTILE)
  return at_walls


def _wall_heights_of(rollout: Rollout, predicted: np.ndarray,
                     truth: np.ndarray, moving: np.ndarray
                     ) -> Tuple[np.ndarray, np.ndarray, int]:
  """`wall_heights` of the prediction and the truth, and the up axis."""
  metadata = rollout["metadata"]
  bounds = np.asarray(metadata["bounds"], np.float64)
  up_axis = common.vertical_axis(metadata, bounds.shape[0])
  return (wall_heights(predicted, moving, bounds, up_axis),
          wall_heights(truth, moving, bounds, up_axis), up_axis)


def physics_summary(rollout: Rollout) -> Dict[str, float]:
  """How a rollout moves as a whole, against its ground truth.

  Returns:
    The module docstring's `kinetic_energy_ratio`, `centre_of_mass_error`,
    `centre_of_mass_error_mean`, `density_ratio`, `wall_height_error` (with
    side walls: in 2D and 3D) and, with several moving materials, the
    per-material `centre_of_mass_error_{name}`.
  """
  initial, predicted, truth, moving = _overlap(rollout)
  true_energy = kinetic_energy(initial, truth, moving).sum()
  energy = kinetic_energy(initial, predicted, moving).sum()
  box = _box_size(rollout)
  errors = centre_of_mass_errors(predicted, truth, moving, box)
  summary = {"kinetic_energy_ratio": float(energy / true_energy)
                                     if true_energy > 0 else float("nan"),
             "centre_of_mass_error": float(errors[-1]),
             "centre_of_mass_error_mean": float(errors.mean()),
             "density_ratio": density_ratio(
                 predicted, truth, moving,
                 float(rollout["metadata"]["default_connectivity_radius"]))}
  predicted_walls, true_walls, _ = _wall_heights_of(rollout, predicted, truth,
                                                    moving)
  if true_walls.size:
    summary["wall_height_error"] = float(
        np.mean(np.abs(predicted_walls - true_walls)) / box)
  parts = materials(rollout["particle_types"])
  if len(parts) > 1:
    for name, mask in parts.items():
      summary[f"centre_of_mass_error_{name}"] = float(
          centre_of_mass_errors(predicted[-1:], truth[-1:], mask, box)[0])
  return summary


def _rounded(values: np.ndarray) -> Any:
  """Nested lists of floats with 6 significant digits (compact JSON)."""
  values = np.asarray(values, np.float64)
  if values.ndim == 0:
    return float(f"{values:.6g}")
  return [_rounded(v) for v in values]


def physics_curves(rollout: Rollout) -> Dict[str, Any]:
  """The per-step series behind `physics_summary`, JSON-ready.

  Returns:
    `kinetic_energy`: `{"predicted", "ground_truth"}`, each `[num_steps]`
    (`kinetic_energy` of the moving particles); `centre_of_mass`: material
    name -> `{"predicted", "ground_truth"}`, each `[num_steps, dim]`, for
    each moving material; `density`: `{"steps", "predicted",
    "ground_truth"}`, the neighbours per moving particle behind
    `density_ratio` at up to `DENSITY_STEPS` rollout steps (`density_curves`);
    `wall_heights`: `{"walls", "predicted", "ground_truth"}`, the walls'
    names (`"x low"`, `"x high"`, ...) and each `[num_steps, num_walls]`
    (`wall_heights`). Over the steps that have a ground truth.
  """
  initial, predicted, truth, moving = _overlap(rollout)
  predicted_walls, true_walls, up_axis = _wall_heights_of(rollout, predicted,
                                                          truth, moving)
  steps, predicted_density, true_density = density_curves(
      predicted, truth, moving,
      float(rollout["metadata"]["default_connectivity_radius"]))
  return {
      "kinetic_energy": {
          "predicted": _rounded(kinetic_energy(initial, predicted, moving)),
          "ground_truth": _rounded(kinetic_energy(initial, truth, moving))},
      "centre_of_mass": {
          name: {"predicted": _rounded(centre_of_mass(predicted, mask)),
                 "ground_truth": _rounded(centre_of_mass(truth, mask))}
          for name, mask in materials(rollout["particle_types"]).items()},
      "density": {"steps": [int(step) for step in steps],
                  "predicted": _rounded(predicted_density),
                  "ground_truth": _rounded(true_density)},
      "wall_heights": {
          "walls": [f"{'xyz'[axis]} {('low', 'high')[side]}"
                    for axis, side in side_walls(predicted.shape[-1],
                                                 up_axis)],
          "predicted": _rounded(predicted_walls),
          "ground_truth": _rounded(true_walls)},
  }


def emd(predicted: np.ndarray, ground_truth: np.ndarray) -> float:
  """Exact W2^2 between two equal-size clouds `[num_particles, dim]`."""
  cost = spatial.distance.cdist(np.asarray(predicted, np.float64),
                                np.asarray(ground_truth, np.float64),
                                "sqeuclidean")
  rows, cols = optimize.linear_sum_assignment(cost)
  return float(cost[rows, cols].mean())


def emd_steps(num_steps: int, max_steps: int = EMD_STEPS) -> np.ndarray:
  """Indices of the evenly spaced steps the EMD is averaged over."""
  return np.unique(np.linspace(0, num_steps - 1,
                               min(num_steps, max_steps)).round().astype(int))


def mean_emd(predicted: np.ndarray, ground_truth: np.ndarray,
             moving: np.ndarray, max_steps: int = EMD_STEPS,
             max_particles: int = EMD_PARTICLES, seed: int = 0) -> float:
  """`emd` of the moving particles averaged over evenly spaced steps."""
  index = np.flatnonzero(moving)
  if not index.size:
    return 0.0
  if index.size > max_particles:
    index = np.sort(np.random.default_rng(seed).choice(
        index, max_particles, replace=False))
  return float(np.mean([emd(predicted[t, index], ground_truth[t, index])
                        for t in emd_steps(len(ground_truth), max_steps)]))


def out_of_domain_fraction(positions: np.ndarray, moving: np.ndarray,
                           bounds: Sequence[Sequence[float]],
                           tolerance: float) -> float:
  """Share of moving particle-steps outside `bounds` widened by `tolerance`.

  Args:
    positions: `[num_steps, num_particles, dim]`.
    moving: `[num_particles]` bool.
    bounds: `[dim, 2]` lower and upper bounds.
    tolerance: allowed excursion beyond the bounds, in position units.
  """
  positions = np.asarray(positions)[:, moving]
  if not positions.size:
    return 0.0
  bounds = np.asarray(bounds, np.float64)
  outside = np.any((positions < bounds[:, 0] - tolerance) |
                   (positions > bounds[:, 1] + tolerance), axis=-1)
  return float(outside.mean())


def out_of_domain_tolerance(metadata: Mapping[str, Any]) -> float:
  """The tolerance of `out_of_domain`, in position units."""
  return (OUT_OF_DOMAIN_TOLERANCE_RADII *
          float(metadata["default_connectivity_radius"]))


def rollout_metrics(rollout: Rollout,
                    horizons: Sequence[int] = HORIZONS) -> Dict[str, float]:
  """Every metric of the module docstring for one rollout.

  Args:
    rollout: a rollout dict, with `metadata` holding `bounds` and
      `default_connectivity_radius`.
    horizons: the horizons of `mse_{h}`; those longer than the overlap with
      the ground truth are left out.

  Returns:
    Metric name -> value.
  """
  predicted = np.asarray(rollout["predicted_rollout"])
  initial, compared, truth, moving = _overlap(rollout)
  overlap = len(truth)
  metrics = {
      # Exactly as `eval_rollout` has always computed it (float32 mean).
      "rollout_error_mse": float(np.mean((compared - truth)**2)),
  }
  per_step = position_mse(compared, truth, moving)
  for horizon in horizons:
    if horizon <= overlap:
      metrics[f"mse_{horizon}"] = float(per_step[:horizon].mean())
      metrics[f"mse_at_{horizon}"] = float(per_step[horizon - 1])
  metrics["mse_full"] = float(per_step.mean())
  metrics["emd"] = mean_emd(compared, truth, moving)
  metrics["kinetic_energy_mse"] = float(np.mean(
      (kinetic_energy(initial, compared, moving) -
       kinetic_energy(initial, truth, moving))**2))
  metrics["out_of_domain"] = out_of_domain_fraction(
      predicted, moving, rollout["metadata"]["bounds"],
      out_of_domain_tolerance(rollout["metadata"]))
  # A ground truth at rest leaves the energy ratio undefined: no entry.
  metrics.update((name, value) for name, value in
                 physics_summary(rollout).items() if np.isfinite(value))
  return metrics


def mean_metrics(per_trajectory: Sequence[Mapping[str, float]]
                 ) -> Dict[str, float]:
  """Mean of each metric over trajectories (over those that have it)."""
  names = []
  for metrics in per_trajectory:
    names += [name for name in metrics if name not in names]
  return {name: float(np.mean([m[name] for m in per_trajectory
                               if name in m])) for name in names}
