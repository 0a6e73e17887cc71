"""Physics-free baselines that a learned simulator has to beat.

- One step: zero acceleration, `x_next = x + (x - x_prev)`.
- Rollouts, kinematic particles on their ground truth in both:
  - constant velocity: extrapolation from the last input frame,
    `x_t = x_last + t * v_last`;
  - frozen: every particle stays at its last known position, `x_t = x_last`.
"""

from typing import Any, Dict, Mapping, Optional

import numpy as np

from learning_to_simulate.data import common
from learning_to_simulate import reading_utils


def zero_acceleration_position_mse(data_path: str, split: str,
                                   metadata: Mapping[str, Any],
                                   batch_size: int = 2,
                                   num_batches: Optional[int] = None,
                                   moving_only: bool = False) -> float:
  """One-step position MSE of the zero-acceleration prediction.

  Uses the same windows and batches as `evaluation.evaluate`, so the two
  numbers are comparable (mean over particles and dimensions): over every
  particle as `one_step_position_mse`, or with `moving_only` over the
  non-kinematic ones as `one_step_position_mse_moving` (static kinematic
  particles, such as walls, cost the prediction nothing).
  """
  dataset = reading_utils.get_one_step_dataset(
      data_path, split, batch_size, dict(metadata), is_training=False)
  if num_batches is not None:
    dataset = dataset.take(num_batches)
  sse, count = 0.0, 0
  for features, target in dataset:
    position = features["position"].numpy().astype(np.float64)
    error = (2 * position[:, -1] - position[:, -2]) - target.numpy()
    if moving_only:
      error = error[~common.kinematic_mask(features["particle_type"]).numpy()]
    sse += float(np.sum(error**2))
    count += error.size
  return sse / count


def constant_velocity_rollout(rollout: Mapping[str, np.ndarray]
                              ) -> np.ndarray:
  """`[T, N, dim]` constant-velocity extrapolation of a rollout pickle."""
  initial = np.asarray(rollout["initial_positions"], np.float64)
  ground_truth = np.asarray(rollout["ground_truth_rollout"])
  steps = np.arange(1, ground_truth.shape[0] + 1)[:, None, None]
  predicted = initial[-1] + steps * (initial[-1] - initial[-2])  # dt = 1
  return _kinematic_on_truth(predicted, rollout)


def frozen_rollout(rollout: Mapping[str, np.ndarray]) -> np.ndarray:
  """`[T, N, dim]`: every particle at its last known position."""
  initial = np.asarray(rollout["initial_positions"], np.float64)
  ground_truth = np.asarray(rollout["ground_truth_rollout"])
  predicted = np.repeat(initial[-1:], ground_truth.shape[0], axis=0)
  return _kinematic_on_truth(predicted, rollout)


def _kinematic_on_truth(predicted: np.ndarray,
                        rollout: Mapping[str, np.ndarray]) -> np.ndarray:
  ground_truth = np.asarray(rollout["ground_truth_rollout"])
  kinematic = (np.asarray(rollout["particle_types"]) ==
               common.ParticleType.KINEMATIC)
  predicted[:, kinematic] = ground_truth[:, kinematic]
  return predicted.astype(np.float32)


# The rollout baselines by name, in report order.
ROLLOUT_BASELINES = {"constant_velocity": constant_velocity_rollout,
                     "frozen": frozen_rollout}


def baseline_rollouts(rollout: Mapping[str, np.ndarray]
                      ) -> Dict[str, np.ndarray]:
  """Name -> `[T, N, dim]` rollout of each baseline over the ground truth."""
  return {name: baseline(rollout)
          for name, baseline in ROLLOUT_BASELINES.items()}


def rollout_mse(predicted: np.ndarray, ground_truth: np.ndarray,
                num_steps: Optional[int] = None) -> float:
  """MSE over the first `num_steps` steps (all by default)."""
  predicted = np.asarray(predicted, np.float64)[:num_steps]
  return float(np.mean((predicted - np.asarray(ground_truth)[:num_steps])**2))
