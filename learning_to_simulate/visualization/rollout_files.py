"""Rollout pickles: validation, reading, finding, and their per-step error.

The pickles are those written by `train --mode=eval_rollout` (see
../shared/FORMAT.md). Pickles can run arbitrary code when loaded: only read
rollouts you trust.
"""

import collections.abc
import os
import pickle
import re
from typing import Any, Dict, Iterator, List, Mapping, Sequence

import numpy as np

from learning_to_simulate.data import common

# A rollout pickle, as written by `train --mode=eval_rollout`.
Rollout = Dict[str, Any]

REQUIRED_KEYS = ("initial_positions", "predicted_rollout",
                 "ground_truth_rollout", "particle_types", "metadata")
_ROLLOUT_FILE_RE = re.compile(r"^rollout_.*\.pkl$")


# ---------------------------------------------------------------------------
# Reading.


def check_rollout(rollout: Mapping[str, Any],
                  source: str = "rollout") -> Rollout:
  """Validates a rollout dict and returns a copy holding numpy arrays.

  Args:
    rollout: a dict with `initial_positions` `[num_initial, num_particles,
      dim]`, `predicted_rollout` and `ground_truth_rollout` `[num_steps,
      num_particles, dim]`, `particle_types` `[num_particles]` and `metadata`
      (with `bounds` `[dim, 2]`); other keys are kept as they are.
    source: what to call the rollout in error messages (e.g. its path).

  Returns:
    The rollout with float positions, int64 particle types and the bounds as
    a float64 `[dim, 2]` array under `metadata["bounds"]`.

  Raises:
    ValueError: if a key is missing or a shape, type id or bound is invalid.
  """
  if not isinstance(rollout, collections.abc.Mapping):
    raise ValueError(f"{source} holds a {type(rollout).__name__}, not a "
                     "rollout dict")
  missing = [key for key in REQUIRED_KEYS if key not in rollout]
  if missing:
    raise ValueError(f"{source} is missing rollout keys {missing} (it has "
                     f"{sorted(map(str, rollout))})")
  checked = dict(rollout)
  initial = np.asarray(rollout["initial_positions"])
  if initial.ndim != 3 or initial.shape[-1] not in (2, 3):
    raise ValueError(f"{source}: initial_positions must be [num_initial, "
                     f"num_particles, dim] with dim 2 or 3, got shape "
                     f"{initial.shape}")
  num_particles, dim = initial.shape[1:]
  for key in ("initial_positions", "predicted_rollout",
              "ground_truth_rollout"):
    positions = np.asarray(rollout[key])
    if (positions.ndim != 3 or positions.shape[1:] != (num_particles, dim)
        or not np.issubdtype(positions.dtype, np.number)):
      raise ValueError(f"{source}: {key} must be numeric [num_frames, "
                       f"{num_particles}, {dim}], got {positions.dtype} "
                       f"shape {positions.shape}")
    checked[key] = positions
  # A rollout may run past the data (`--rollout_steps` beyond it), not end
  # before it.
  if (len(checked["predicted_rollout"]) <
      len(checked["ground_truth_rollout"])):
    raise ValueError(
        f"{source}: predicted_rollout {checked['predicted_rollout'].shape} "
        "is shorter than ground_truth_rollout "
        f"{checked['ground_truth_rollout'].shape}")
  particle_types = np.asarray(rollout["particle_types"])
  if (particle_types.shape != (num_particles,) or
      not np.issubdtype(particle_types.dtype, np.integer)):
    raise ValueError(f"{source}: particle_types must be integer "
                     f"[{num_particles}], got {particle_types.dtype} shape "
                     f"{particle_types.shape}")
  unknown = sorted(set(particle_types.tolist()) -
                   set(range(common.NUM_PARTICLE_TYPES)))
  if unknown:
    raise ValueError(f"{source}: unknown particle types {unknown}; ids run "
                     f"from 0 to {common.NUM_PARTICLE_TYPES - 1}")
  checked["particle_types"] = particle_types.astype(np.int64)
  metadata = rollout["metadata"]
  if not isinstance(metadata, collections.abc.Mapping) or (
      "bounds" not in metadata):
    raise ValueError(f"{source}: metadata must be a dict with 'bounds'")
  try:
    bounds = np.asarray(metadata["bounds"], dtype=np.float64)
  except (TypeError, ValueError):
    bounds = np.zeros(0)
  if bounds.shape != (dim, 2) or not np.all(bounds[:, 0] < bounds[:, 1]):
    raise ValueError(f"{source}: metadata bounds must be [[lo, hi]] * {dim} "
                     f"with lo < hi, got {metadata['bounds']!r}")
  checked["metadata"] = dict(metadata, bounds=bounds)
  return checked


def load_rollout(path: str) -> Rollout:
  """Reads and validates one rollout pickle.

  Args:
    path: a `rollout_{split}_{index}.pkl` file.

  Returns:
    The rollout (see `check_rollout`).

  Raises:
    FileNotFoundError: if there is no file at `path`.
    ValueError: if the file is not a readable rollout pickle, lacks keys or
      holds arrays of inconsistent shapes.
  """
  if not os.path.isfile(path):
    what = "is a directory" if os.path.isdir(path) else "does not exist"
    raise FileNotFoundError(f"Rollout pickle {path} {what}")
  try:
    with open(path, "rb") as f:
      rollout = pickle.load(f)
  except (pickle.UnpicklingError, EOFError, AttributeError, ImportError,
          IndexError, TypeError, ValueError) as e:
    raise ValueError(f"{path} is not a readable rollout pickle: {e}") from e
  return check_rollout(rollout, source=path)


def _natural_key(name: str) -> List[Any]:
  # "rollout_test_10" after "rollout_test_9": digit runs compare as numbers.
  return [(0, int(part)) if part.isdigit() else (1, part)
          for part in re.split(r"(\d+)", name)]


def find_rollouts(path: str) -> List[str]:
  """The rollout pickles at `path`: the file itself, or a directory's.

  Args:
    path: a rollout pickle, or a directory holding `rollout_*.pkl` files.

  Returns:
    The pickle paths, a directory's sorted naturally (`rollout_test_2`
    before `rollout_test_10`).

  Raises:
    FileNotFoundError: if nothing exists at `path`.
    ValueError: if `path` is a directory without `rollout_*.pkl` files.
  """
  if os.path.isdir(path):
    names = sorted((name for name in os.listdir(path)
                    if _ROLLOUT_FILE_RE.match(name) and
                    os.path.isfile(os.path.join(path, name))),
                   key=_natural_key)
    if not names:
      raise ValueError(f"No rollout_*.pkl files in directory {path}")
    return [os.path.join(path, name) for name in names]
  if not os.path.exists(path):
    raise FileNotFoundError(f"Rollout pickle {path} does not exist")
  return [path]


def _rollout_name(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


class LazyRollouts(collections.abc.Mapping):
  """Name -> rollout over pickle files, each read only when looked up.

  Lets `plot_error` walk a directory of large rollouts holding one at a time.
  """

  def __init__(self, paths: Sequence[str]):
    self._paths = {_rollout_name(path): path for path in paths}

  def __getitem__(self, name: str) -> Rollout:
    return load_rollout(self._paths[name])

  def __iter__(self) -> Iterator[str]:
    return iter(self._paths)

  def __len__(self) -> int:
    return len(self._paths)


# ---------------------------------------------------------------------------
# Errors.


def rollout_mse_per_step(rollout: Mapping[str, Any]) -> np.ndarray:
  """Position MSE of a rollout at each step that has a ground truth.

  Averages over every particle and dimension, as the `rollout_error_mse` of
  evaluation does; kinematic particles follow ground truth and add zeros.

  Args:
    rollout: a dict with `predicted_rollout` `[num_predicted, num_particles,
      dim]` and `ground_truth_rollout` `[num_steps, num_particles, dim]`,
      `num_predicted >= num_steps` (a rollout may run past the data).

  Returns:
    `[num_steps]` float64, `mean((predicted - ground_truth) ** 2)` per step.

  Raises:
    ValueError: if a key is missing or the shapes do not fit or are not 3-D.
  """
  missing = [key for key in ("predicted_rollout", "ground_truth_rollout")
             if key not in rollout]
  if missing:
    raise ValueError(f"rollout is missing keys {missing}")
  predicted = np.asarray(rollout["predicted_rollout"], dtype=np.float64)
  ground_truth = np.asarray(rollout["ground_truth_rollout"], dtype=np.float64)
  if (predicted.ndim != 3 or predicted.shape[1:] != ground_truth.shape[1:] or
      len(predicted) < len(ground_truth)):
    raise ValueError("predicted_rollout and ground_truth_rollout must be "
                     "[num_steps, num_particles, dim] (the prediction at least "
                     f"as long), got {predicted.shape} and "
                     f"{ground_truth.shape}")
  predicted = predicted[:len(ground_truth)]
  return np.mean((predicted - ground_truth) ** 2, axis=(1, 2))
