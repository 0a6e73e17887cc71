"""Random-walk input noise (Sanchez-Gonzalez et al. 2020, Sec. 4.1).

Training inputs are corrupted with a random walk on the velocities so the
model learns to correct the drift of its own rollouts.
"""

from typing import Optional

import tensorflow as tf



def get_random_walk_noise_for_position_sequence(
    position_sequence: tf.Tensor, noise_std_last_step: float,
    seed: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Random-walk noise on velocities, integrated to positions.

  Each of the `T - 1` velocities gets independent Gaussian steps of std
  `noise_std_last_step / sqrt(T - 1)`, summed cumulatively over time, so the
  last velocity's noise has std `noise_std_last_step`. Integrating with
  dt = 1 gives the position noise; the first position gets none (it only
  serves to compute the first velocity).

  Args:
    position_sequence: `[num_particles, T, dim]` positions.
    noise_std_last_step: std of the noise of the last velocity.
    seed: a `[2]` integer seed for a stateless draw (the same seed, the same
      noise); None: the original's stateful `tf.random.normal`.

  Returns:
    `[num_particles, T, dim]` noise to add to `position_sequence`.
  """
  sequence_length = position_sequence.shape[1]
  if sequence_length is None:
    raise ValueError("position_sequence needs a static sequence length")
  num_velocities = sequence_length - 1
  stddev = noise_std_last_step / num_velocities ** 0.5
  # The shape of the velocity sequence, `[num_particles, T - 1, dim]`.
  shape = tf.shape(position_sequence) - tf.constant([0, 1, 0])
  if seed is None:
    steps = tf.random.normal(shape, stddev=stddev,
                             dtype=position_sequence.dtype)
  else:
    steps = tf.random.stateless_normal(shape, seed, stddev=stddev,
                                       dtype=position_sequence.dtype)
  velocity_noise = tf.cumsum(steps, axis=1)  # Random walk.
  position_noise = tf.cumsum(velocity_noise, axis=1)  # dt = 1
  return tf.concat([tf.zeros_like(position_noise[:, :1]), position_noise],
                   axis=1)
