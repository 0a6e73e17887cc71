"""Checks of trajectories read from other formats, before conversion.

`check_trajectory` turns one `formats.RawTrajectory` into the DeepMind dtypes
(float32 positions, int64 particle types 0..8, float32 step context) or
raises a one-line `ValueError` naming the file and the trajectory;
`LayoutChecker` also holds every trajectory of a dataset to the first one's
frame count, dim and context size (the metadata has one `sequence_length`).
"""

from typing import Mapping, Optional

import numpy as np

from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer
from learning_to_simulate.data import formats


def _check_integer_types(values: np.ndarray, where: str,
                         num_particles: int) -> np.ndarray:
  if not np.issubdtype(values.dtype, np.integer):
    raise ValueError(f"{where}: particle_type must hold integers, got "
                     f"{values.dtype}")
  if values.ndim == 0:  # gns allows one type for the whole trajectory.
    values = np.full([num_particles], values)
  if values.shape != (num_particles,):
    raise ValueError(f"{where}: particle_type has shape {values.shape} but "
                     f"positions have {num_particles} particles (expected "
                     f"[{num_particles}])")
  return values.astype(np.int64)


def _map_types(types: np.ndarray, type_map: Mapping[int, int]) -> np.ndarray:
  mapped = types.copy()
  for source, target in type_map.items():
    mapped[types == source] = target
  return mapped


def _step_context(raw: formats.RawTrajectory, where: str, num_frames: int,
                  num_particles: int) -> Optional[np.ndarray]:
  """`[num_frames, context_size]` float32 from a step context or a property."""
  if raw.step_context is not None:
    context = np.asarray(raw.step_context)
    if (not np.issubdtype(context.dtype, np.number) or context.ndim != 2 or
        context.shape[0] != num_frames or context.shape[1] < 1):
      raise ValueError(f"{where}: step_context must be numeric [{num_frames},"
                       f" context_size], got {context.dtype} shape "
                       f"{context.shape}")
    context = context.astype(np.float32)
  elif raw.material_property is not None:
    value = np.asarray(raw.material_property)
    if not np.issubdtype(value.dtype, np.number):
      raise ValueError(f"{where}: material_property must be numeric, got "
                       f"{value.dtype}")
    if value.ndim == 0:
      row = value.reshape([1])
    elif value.ndim in (1, 2) and value.shape[0] == num_particles:
      rows = value.reshape([num_particles, -1])
      if not np.all(rows == rows[:1]):
        raise ValueError(f"{where}: material_property differs between "
                         "particles; the DeepMind format holds one global "
                         "context per trajectory")
      row = rows[0]
    else:
      raise ValueError(f"{where}: material_property must be a scalar or one "
                       f"value per particle ([{num_particles}] or "
                       f"[{num_particles}, k]), got shape {value.shape}")
    context = np.tile(row.astype(np.float32), (num_frames, 1))
  else:
    return None
  if not np.all(np.isfinite(context)):
    raise ValueError(f"{where}: the step context holds NaN or infinite "
                     "values")
  return context


def check_trajectory(raw: formats.RawTrajectory,
                     type_map: Mapping[int, int]
                     ) -> dataset_writer.Trajectory:
  """Checks one trajectory as read and returns it in the DeepMind dtypes.

  Args:
    raw: the trajectory as read.
    type_map: input particle type -> DeepMind type (others are kept).

  Returns:
    float32 positions `[num_frames, num_particles, dim]`, int64 particle
    types `[num_particles]` and the float32 step context `[num_frames,
    context_size]` or None.

  Raises:
    ValueError: one line naming the file and the trajectory, for positions
      that are not `[num_frames, num_particles, 2 or 3]` numbers, fewer than
      `WINDOW_LENGTH` frames, NaN or infinite positions, particle types that
      do not match the particles or lie outside 0..8 after `type_map`, or a
      malformed context.
  """
  where = f"{raw.source}: trajectory {raw.name}"
  positions = np.asarray(raw.positions)
  if (not np.issubdtype(positions.dtype, np.number) or positions.ndim != 3 or
      positions.shape[-1] not in (2, 3)):
    raise ValueError(f"{where}: positions must be numeric [num_frames, "
                     "num_particles, dim] with dim 2 or 3, got "
                     f"{positions.dtype} shape {positions.shape}")
  num_frames, num_particles, _ = positions.shape
  if num_particles == 0:
    raise ValueError(f"{where}: no particles")
  if num_frames < common.WINDOW_LENGTH:
    raise ValueError(f"{where}: {num_frames} frames, fewer than the "
                     f"{common.WINDOW_LENGTH} a training example needs "
                     f"({common.INPUT_SEQUENCE_LENGTH} input positions and "
                     "a target)")
  positions = positions.astype(np.float32, copy=False)
  if not np.all(np.isfinite(positions)):
    bad = np.argwhere(~np.isfinite(positions))
    frame, particle, _ = bad[0]
    raise ValueError(f"{where}: positions hold {len(bad)} NaN or infinite "
                     f"value(s), the first at frame {frame}, particle "
                     f"{particle}")
  types = _check_integer_types(np.asarray(raw.particle_types), where,
                               num_particles)
  types = _map_types(types, type_map)
  unknown = sorted(set(np.unique(types).tolist()) -
                   set(range(common.NUM_PARTICLE_TYPES)))
  if unknown:
    raise ValueError(f"{where}: particle types {unknown} are outside 0.."
                     f"{common.NUM_PARTICLE_TYPES - 1} (map them with "
                     "--particle_type_map)")
  context = _step_context(raw, where, num_frames, num_particles)
  return dataset_writer.Trajectory(positions, types, context)


class LayoutChecker:
  """`check_trajectory`, plus the same frames, dim and context for all."""

  def __init__(self, type_map: Mapping[int, int]):
    self._type_map = type_map
    self._first = None

  @property
  def num_frames(self) -> int:
    """Frames of every trajectory checked so far."""
    return self._first[1][0]

  def __call__(self, raw: formats.RawTrajectory) -> dataset_writer.Trajectory:
    trajectory = check_trajectory(raw, self._type_map)
    num_frames, _, dim = trajectory.positions.shape
    context = trajectory.step_context
    layout = (num_frames, dim, None if context is None else context.shape[1])
    if self._first is None:
      self._first = (f"{raw.source}: trajectory {raw.name}", layout)
      return trajectory
    first, expected = self._first
    if layout != expected:
      names = ("frames", "dims", "step context size")
      field = next(i for i in range(3) if layout[i] != expected[i])
      raise ValueError(
          f"{raw.source}: trajectory {raw.name}: {layout[field]} "
          f"{names[field]}, but {first} has {expected[field]}: every "
          "trajectory of a dataset needs the same number of frames "
          "(sequence_length + 1), dims and context size")
    return trajectory
