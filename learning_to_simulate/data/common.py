"""Small shared definitions: particle types, sequence constants, statistics.

A leaf module: it imports nothing else from the package, so the pure modules
(reading, connectivity, noise) and the simulator can all depend on it.
"""

import enum
from typing import Any, Mapping, NamedTuple

import numpy as np
import tensorflow as tf

# Six input positions give the five most recent velocities (paper, Sec. 3).
INPUT_SEQUENCE_LENGTH = 6
# A training window is the six inputs plus the target position.
WINDOW_LENGTH = INPUT_SEQUENCE_LENGTH + 1
# Shortest useful trajectory: the 6 input frames plus at least two targets
# (so that a rollout has a step after the first).
MIN_NUM_FRAMES = INPUT_SEQUENCE_LENGTH + 2
# A dataset's splits, each in `{split}.tfrecord`.
SPLITS = ("train", "valid", "test")
NUM_PARTICLE_TYPES = 9
PARTICLE_TYPE_EMBEDDING_SIZE = 16
# Optional metadata key beyond the original's: the known external
# acceleration (gravity) `[dim]` in positions per frame squared, written by
# this package's generator, read by `model.external_force`.
EXTERNAL_ACCELERATION_KEY = "external_acceleration"
# Floor for the global-context std: some datasets carry all-zero contexts.
STD_EPSILON = 1e-8


class ParticleType(enum.IntEnum):
  """Particle types used by the DeepMind datasets (9 ids in total)."""
  RIGID = 0
  KINEMATIC = 3  # Boundaries and obstacles: prescribed, never predicted.
  WATER = 5
  SAND = 6
  GOOP = 7


class Stats(NamedTuple):
  """Normalization statistics, broadcastable against `[..., dim]`."""
  mean: np.ndarray
  std: np.ndarray


def kinematic_mask(particle_types: tf.Tensor) -> tf.Tensor:
  """`[num_particles]` bool, true for kinematic (obstacle) particles."""
  return tf.equal(particle_types,
                  tf.cast(ParticleType.KINEMATIC, particle_types.dtype))


def time_diff(sequence: tf.Tensor) -> tf.Tensor:
  """Finite difference along axis 1: `[N, T, ...]` -> `[N, T - 1, ...]`."""
  return sequence[:, 1:] - sequence[:, :-1]


def vertical_axis(metadata: Mapping[str, Any], dim: int) -> int:
  """The up axis of a dataset, from what its metadata says.

  Gravity's axis when the metadata has the external acceleration (the
  generator writes it); else the axis of the train split's mean motion
  (`vel_mean`: where things fall, it points down); else 1 (y, vertical in the
  2D datasets). The mean acceleration is not used: in trajectories that start
  and end at rest it is about zero on every axis (the bundled sample's:
  -2.7e-6 in x, 2.0e-6 in y), so its largest component is noise.
  """
  for key in (EXTERNAL_ACCELERATION_KEY, "vel_mean"):
    direction = np.asarray(metadata.get(key, ()), dtype=np.float64)
    if direction.shape == (dim,) and np.any(direction):
      return int(np.argmax(np.abs(direction)))
  return 1
