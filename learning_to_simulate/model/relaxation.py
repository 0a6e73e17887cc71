"""Density relaxation at inference: push particles out of over-dense regions.

Beyond the paper, opt-in, an evaluation option (no retraining). After each
predicted rollout step, `num_steps` position corrections in the spirit of
SPH's pressure term (Toshev et al. 2024, "Neural SPH", Sec. 4.2, who apply a
few such steps after each GNS step):

  s_ij   = |x_i - x_j| / h                      (h: the connectivity radius)
  W(s)   = (1 - s^2)^3 for s < 1, else 0        (W(0) = 1: self included)
  rho_i  = sum_j W(s_ij)
  p_i    = max(rho_i / rho_0 - 1, 0)            (movable particles; else 0)
  dx_i   = step_size * h * sum_{j != i} (p_i + p_j) / 2 * G(s_ij) e_ij

with `G(s) = -dW/ds = 6 s (1 - s^2)^2` and `e_ij = (x_i - x_j) / |x_i - x_j|`
the unit vector from j to i. The pair terms are antisymmetric (momentum is
conserved between movable particles), and where no particle is denser than
`rho_0` every `p` is 0, so nothing moves. Kinematic particles (obstacles)
count in the density and push, but do not move.

Their pressure is 0 by default, so a wall pushes a compressed particle with
half its own pressure. With `mirror_walls` (opt-in), a pair of a movable and
a kinematic particle takes the movable one's pressure in full,
`(p_i + p_j) / 2 -> max(p_i, p_j)`, as if the wall particle held the
pressure of the fluid it faces (the per-pair form of the pressure
extrapolation of SPH wall boundaries, Adami et al. 2012): a wall made of
particles pushes back as hard as the fluid is pressed into it.

`rho_0`, the rest density, is by default the 90th percentile of the movable
particles' densities in the rollout's last ground-truth input frame (the
interior of the fluid at rest; the surface particles, with fewer neighbours,
lie below it).
"""

import dataclasses
from typing import Optional, Tuple

import tensorflow as tf

from learning_to_simulate import connectivity_utils

# The rest density's default: this quantile of the last input frame's
# densities.
REST_DENSITY_QUANTILE = 0.9


@dataclasses.dataclass(frozen=True)
class Relaxation:
  """Settings of the relaxation (see the module docstring)."""
  num_steps: int
  step_size: float
  rest_density: Optional[float] = None  # None: from the last input frame.
  mirror_walls: bool = False  # Kinematic particles mirror the pressure.

  def validate(self) -> None:
    if self.num_steps < 0:
      raise ValueError(f"--relaxation_steps must be >= 0, got "
                       f"{self.num_steps}")
    if self.step_size <= 0:
      raise ValueError(f"--relaxation_step_size must be > 0, got "
                       f"{self.step_size}")
    if self.rest_density is not None and self.rest_density <= 0:
      raise ValueError(f"--relaxation_rest_density must be > 0, got "
                       f"{self.rest_density}")


def _pairs(positions: tf.Tensor, senders: tf.Tensor, receivers: tf.Tensor,
           radius: float) -> Tuple[tf.Tensor, tf.Tensor]:
  """`[num_edges, dim]` x_receiver - x_sender in radii and `[num_edges]`
  their lengths s."""
  offsets = (tf.gather(positions, receivers) -
             tf.gather(positions, senders)) / radius
  return offsets, tf.norm(offsets, axis=-1)


def kernel_density(positions: tf.Tensor, senders: tf.Tensor,
                   receivers: tf.Tensor, radius: float) -> tf.Tensor:
  """`[num_particles]` rho_i = sum_j W(s_ij) over the edges into i.

  Args:
    positions: `[num_particles, dim]`.
    senders, receivers: `[num_edges]` the radius graph, self edges included.
    radius: the kernel's support h.
  """
  _, distance = _pairs(positions, senders, receivers, radius)
  weight = tf.nn.relu(1. - tf.square(distance)) ** 3
  return tf.math.unsorted_segment_sum(weight, receivers,
                                      tf.shape(positions)[0])


def rest_density(positions: tf.Tensor, movable: tf.Tensor,
                 radius: float) -> tf.Tensor:
  """Scalar: the `REST_DENSITY_QUANTILE` of the movable particles' densities.

  Args:
    positions: `[num_particles, dim]` one frame of one trajectory.
    movable: `[num_particles]` bool, the particles that are not kinematic.
    radius: the kernel's support h.
  """
  return rest_densities(positions, movable, radius,
                        tf.shape(positions)[:1])[0]


def rest_densities(positions: tf.Tensor, movable: tf.Tensor, radius: float,
                   n_particles_per_example: tf.Tensor) -> tf.Tensor:
  """`[num_examples]`: `rest_density` of each example of a batch.

  Args:
    positions: `[num_particles, dim]` one frame of each example, in order.
    movable: `[num_particles]` bool, the particles that are not kinematic.
    radius: the kernel's support h.
    n_particles_per_example: `[num_examples]` particles of each example.
  """
  counts = tf.cast(n_particles_per_example, tf.int32)
  senders, receivers, _ = connectivity_utils.compute_connectivity_for_batch_tf(
      positions, counts, radius)
  density = kernel_density(positions, senders, receivers, radius)
  # Per example, the movable particles' densities in ascending order: sorted
  # by density, then (stably) by example.
  example = tf.boolean_mask(tf.repeat(tf.range(tf.shape(counts)[0]), counts),
                            movable)
  density = tf.boolean_mask(density, movable)
  by_density = tf.argsort(density, stable=True)
  order = tf.gather(by_density, tf.argsort(tf.gather(example, by_density),
                                           stable=True))
  density = tf.gather(density, order)
  moving_counts = tf.math.bincount(example, minlength=tf.shape(counts)[0],
                                   maxlength=tf.shape(counts)[0])
  starts = tf.cumsum(moving_counts, exclusive=True)
  index = tf.cast(tf.round(REST_DENSITY_QUANTILE * tf.cast(
      tf.maximum(moving_counts - 1, 0), tf.float32)), tf.int32)
  # Padded, so that an example without movable particles reads something.
  picked = tf.gather(tf.concat([density, [1.]], axis=0),
                     tf.minimum(starts + index, tf.shape(density)[0]))
  # No movable particle: 1, the density of a particle alone (nothing moves).
  return tf.where(moving_counts > 0, picked, tf.ones_like(picked))


def relax(positions: tf.Tensor, movable: tf.Tensor, radius: float,
          rest: tf.Tensor, num_steps: int, step_size: float,
          n_particles_per_example: Optional[tf.Tensor] = None,
          mirror_walls: bool = False) -> tf.Tensor:
  """Positions after `num_steps` relaxation steps.

  The radius graph is built once, at the given positions (each correction
  is a small fraction of h); distances are recomputed every step.

  Args:
    positions: `[num_particles, dim]` one frame of one trajectory, or of
      each example of a batch (`n_particles_per_example`).
    movable: `[num_particles]` bool: the particles that may move.
    radius: the connectivity radius h.
    rest: rest density rho_0 (`rest_density`), a scalar, or with a batch
      `[num_examples]` (`rest_densities`).
    num_steps: relaxation steps K (0: `positions` unchanged).
    step_size: the correction's scale, in h per unit pressure.
    n_particles_per_example: `[num_examples]` for a batch, whose examples
      do not push each other (None: one trajectory).
    mirror_walls: a movable-kinematic pair pushes with the movable
      particle's pressure in full (module docstring); False: with half.

  Returns:
    `[num_particles, dim]` relaxed positions.
  """
  if num_steps == 0:
    return positions
  if n_particles_per_example is None:
    n_particles_per_example = tf.shape(positions)[:1]
  else:
    counts = tf.cast(n_particles_per_example, tf.int32)
    rest = tf.repeat(tf.broadcast_to(rest, tf.shape(counts)), counts)
  senders, receivers, _ = connectivity_utils.compute_connectivity_for_batch_tf(
      positions, n_particles_per_example, radius)
  num_particles = tf.shape(positions)[0]
  movable = tf.cast(movable, positions.dtype)
  for _ in range(num_steps):
    offsets, distance = _pairs(positions, senders, receivers, radius)
    weight = tf.nn.relu(1. - tf.square(distance))
    density = tf.math.unsorted_segment_sum(weight ** 3, receivers,
                                           num_particles)
    pressure = tf.nn.relu(density / rest - 1.) * movable
    pair = 0.5 * (tf.gather(pressure, receivers) +
                  tf.gather(pressure, senders))
    if mirror_walls:
      # Only a movable particle has pressure: where one of the two is
      # kinematic, the sum is the movable one's.
      both = tf.gather(movable, receivers) * tf.gather(movable, senders)
      pair = pair * (2. - both)
    # G(s) e_ij = 6 s (1 - s^2)^2 offset / s: no division, 0 on self edges.
    push = (6. * step_size * radius) * (pair * tf.square(weight))[:, None] * (
        offsets)
    correction = tf.math.unsorted_segment_sum(push, receivers, num_particles)
    positions = positions + correction * movable[:, None]
  return positions
