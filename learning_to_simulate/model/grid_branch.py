"""A global view for the particle model: latents on a grid, a small CNN, back.

Message passing sees `message_passing_steps` connectivity radii around a
particle; a splash across the box needs more. The grid branch gives every
particle a view of the whole scene at once, as the grid stage of hybrid
particle-grid models (NeuralMPM; the "global" branch of multi-scale GNNs):

1. `scatter`: each particle's values go to the `2^dim` grid nodes around it
   with linear (tent) weights, the MPM particle-to-grid transfer, summed per
   node: a total is kept exactly (`sum(grid) == sum(values)`).
2. A small multi-resolution CNN (`GridCNN`, 2-3 levels of a U-Net: convolve,
   average-pool, convolve, upsample, add the skip) on each example's grid.
3. `gather`: the CNN's output is read back at the particles with the same
   weights, the grid-to-particle transfer; it is the adjoint of `scatter`
   (`<scatter(u), v> == <u, gather(v)>`).

`GridBranch` chains the three on particle latents and returns a per-particle
update to add to them before decoding. Everything is differentiable and
in-graph, batches of examples with different particle counts share one call
(each example gets its own grid), and the shapes have no particle-count
dimension fixed, so a `tf.function` does not retrace when it changes.

Shapes: `positions [num_particles, dim]`, `values [num_particles, channels]`,
grids `[num_examples, resolution, ..., resolution, channels]` (`dim` spatial
axes).
"""

from typing import Optional, Sequence, Tuple

import numpy as np
import sonnet as snt
import tensorflow as tf


def _corners(dim: int) -> np.ndarray:
  """`[2^dim, dim]` 0/1 offsets of a cell's corners."""
  return np.array(np.meshgrid(*[[0, 1]] * dim, indexing="ij")
                  ).reshape(dim, -1).T.astype(np.int32)


def transfer_weights(positions: tf.Tensor, bounds: tf.Tensor,
                     resolution: int, drop_outside: bool = False
                     ) -> Tuple[tf.Tensor, tf.Tensor]:
  """Grid nodes around each particle and their linear weights.

  Node `i` along an axis sits at `lo + i * (hi - lo) / (resolution - 1)`;
  particles outside the bounds are moved onto them first, or, with
  `drop_outside`, take no part (all their weights are 0).

  Args:
    positions: `[num_particles, dim]`.
    bounds: `[dim, 2]` lower and upper bounds.
    resolution: grid nodes per axis (>= 2).
    drop_outside: whether particles outside `bounds` get zero weights.

  Returns:
    `node_index [num_particles, 2^dim, dim]` int32 and `weights
    [num_particles, 2^dim]` float32, which sum to 1 per particle (0 for a
    dropped one).
  """
  dim = positions.shape[-1]
  bounds = tf.cast(bounds, tf.float32)
  lo, hi = bounds[:, 0], bounds[:, 1]
  u = (tf.cast(positions, tf.float32) - lo) / (hi - lo) * (resolution - 1)
  if drop_outside:
    inside = tf.reduce_all((u >= 0.0) & (u <= float(resolution - 1)),
                           axis=-1)
  u = tf.clip_by_value(u, 0.0, float(resolution - 1))
  base = tf.minimum(tf.floor(u), float(resolution - 2))
  fraction = u - base  # In [0, 1].
  corners = tf.constant(_corners(dim))  # [2^dim, dim]
  node_index = tf.cast(base, tf.int32)[:, None, :] + corners[None]
  per_axis = tf.where(tf.cast(corners[None], tf.bool), fraction[:, None, :],
                      1.0 - fraction[:, None, :])
  weights = tf.reduce_prod(per_axis, axis=-1)
  if drop_outside:
    weights = weights * tf.cast(inside, tf.float32)[:, None]
  return node_index, weights


def _flat_index(node_index: tf.Tensor, example: tf.Tensor,
                resolution: int) -> tf.Tensor:
  """`[num_particles, 2^dim]` row of each node in the flattened grids."""
  dim = node_index.shape[-1]
  strides = tf.constant([resolution**(dim - 1 - d) for d in range(dim)],
                        tf.int32)
  cell = tf.reduce_sum(node_index * strides, axis=-1)
  return example[:, None] * resolution**dim + cell


def example_index(n_particles_per_example: tf.Tensor) -> tf.Tensor:
  """`[num_particles]` int32: the example of each particle of a batch."""
  counts = tf.cast(n_particles_per_example, tf.int32)
  return tf.repeat(tf.range(tf.shape(counts)[0]), counts)


def _transfer(positions: tf.Tensor, n_particles_per_example: tf.Tensor,
              bounds: tf.Tensor, resolution: int, drop_outside: bool = False
              ) -> Tuple[tf.Tensor, tf.Tensor]:
  """`transfer_weights` with each node's row in the flattened grids:
  `rows [num_particles, 2^dim]` int32 and `weights [num_particles, 2^dim]`."""
  node_index, weights = transfer_weights(positions, bounds, resolution,
                                         drop_outside)
  rows = _flat_index(node_index, example_index(n_particles_per_example),
                     resolution)
  return rows, weights


def _scatter_rows(values: tf.Tensor, rows: tf.Tensor, weights: tf.Tensor,
                  num_examples: tf.Tensor, resolution: int,
                  dim: int) -> tf.Tensor:
  channels = values.shape[-1]
  contributions = weights[..., None] * values[:, None]
  flat = tf.math.unsorted_segment_sum(
      tf.reshape(contributions, [-1, channels]), tf.reshape(rows, [-1]),
      num_examples * resolution**dim)
  return tf.reshape(flat, tf.concat(
      [[num_examples], [resolution] * dim, [channels]], axis=0))


def _gather_rows(grid: tf.Tensor, rows: tf.Tensor,
                 weights: tf.Tensor) -> tf.Tensor:
  at_nodes = tf.gather(tf.reshape(grid, [-1, grid.shape[-1]]), rows)
  return tf.reduce_sum(weights[..., None] * at_nodes, axis=1)


def scatter(values: tf.Tensor, positions: tf.Tensor,
            n_particles_per_example: tf.Tensor, bounds: tf.Tensor,
            resolution: int, drop_outside: bool = False) -> tf.Tensor:
  """Particle values onto each example's grid (linear weights, summed).

  Args:
    values: `[num_particles, channels]`.
    positions: `[num_particles, dim]`.
    n_particles_per_example: `[num_examples]`, in the order of the particles.
    bounds: `[dim, 2]`.
    resolution: nodes per axis.
    drop_outside: see `transfer_weights`.

  Returns:
    `[num_examples, resolution, ..., resolution, channels]`.
  """
  positions = tf.convert_to_tensor(positions, tf.float32)
  rows, weights = _transfer(positions, n_particles_per_example, bounds,
                            resolution, drop_outside)
  return _scatter_rows(tf.convert_to_tensor(values, tf.float32), rows,
                       weights, tf.shape(n_particles_per_example)[0],
                       resolution, positions.shape[-1])


def gather(grid: tf.Tensor, positions: tf.Tensor,
           n_particles_per_example: tf.Tensor, bounds: tf.Tensor,
           drop_outside: bool = False) -> tf.Tensor:
  """Each example's grid read at its particles (linear weights).

  The adjoint of `scatter`. Args as `scatter`, with `grid` of shape
  `[num_examples, resolution, ..., resolution, channels]`.

  Returns:
    `[num_particles, channels]` (0 for a particle `drop_outside` drops).
  """
  grid = tf.convert_to_tensor(grid, tf.float32)
  rows, weights = _transfer(tf.convert_to_tensor(positions, tf.float32),
                            n_particles_per_example, bounds, grid.shape[1],
                            drop_outside)
  return _gather_rows(grid, rows, weights)


def _pool(x: tf.Tensor, dim: int) -> tf.Tensor:
  return tf.nn.avg_pool(x, ksize=2, strides=2, padding="VALID",
                        data_format="NHWC" if dim == 2 else "NDHWC")


def _upsample(x: tf.Tensor, dim: int) -> tf.Tensor:
  for axis in range(1, dim + 1):
    x = tf.repeat(x, 2, axis=axis)
  return x


class GridCNN(snt.Module):
  """A small U-Net on `[num_examples, R, ..., R, channels]` grids.

  Level `k` works at resolution `R / 2^k`: two 3^dim convolutions (ReLU)
  going down, average pooling between levels, nearest upsampling and a
  skip connection (added) going up. `R` must be divisible by
  `2^(levels - 1)`.
  """

  def __init__(self, dim: int, channels: int, levels: int,
               name: str = "GridCNN"):
    super().__init__(name=name)
    if dim not in (2, 3):
      raise ValueError(f"the grid branch is for 2D and 3D, got dim {dim}")
    if levels < 1:
      raise ValueError(f"--grid_levels must be >= 1, got {levels}")
    self._dim = dim
    self._levels = levels
    conv = snt.Conv2D if dim == 2 else snt.Conv3D
    self._down = [conv(channels, 3, name=f"down_{k}") for k in range(levels)]
    self._up = [conv(channels, 3, name=f"up_{k}") for k in range(levels - 1)]

  def __call__(self, grid: tf.Tensor) -> tf.Tensor:
    skips = []
    x = grid
    for level, layer in enumerate(self._down):
      x = tf.nn.relu(layer(x))
      if level < self._levels - 1:
        skips.append(x)
        x = _pool(x, self._dim)
    for layer, skip in zip(reversed(self._up), reversed(skips)):
      x = tf.nn.relu(layer(_upsample(x, self._dim) + skip))
    return x


class GridBranch(snt.Module):
  """Particle latents -> grid -> CNN -> a per-particle latent update.

  The latents are projected to `channels`, scattered with a count channel
  (the particles' summed weights, a density), run through `GridCNN`,
  gathered back and projected to the latent size. The output projection
  starts at zero, so a new branch leaves the model it joins unchanged.

  Where the grid lies: with `margin` None it spans `bounds`, and a particle
  outside them (a wall particle, or one that left the box) is moved onto
  the grid's edge, where it adds to the edge's count and reads the edge's
  value however far out it is. With a `margin` (position units) the grid
  spans `bounds` widened by it on every side, and a particle outside that
  takes no part: it adds nothing and reads 0 (its update is the output
  projection's bias alone).
  """

  def __init__(self, dim: int, latent_size: int, resolution: int,
               channels: int, levels: int,
               bounds: Sequence[Sequence[float]],
               margin: Optional[float] = None, name: str = "GridBranch"):
    super().__init__(name=name)
    if resolution % 2**(levels - 1) or resolution < 2**levels:
      raise ValueError(
          f"--grid_resolution must be a multiple of 2^(levels - 1) = "
          f"{2**(levels - 1)} and at least {2**levels}, got {resolution}")
    if margin is not None and not margin >= 0:
      raise ValueError(f"the grid's margin must be >= 0, got {margin}")
    self._resolution = resolution
    bounds = np.asarray(bounds, np.float32)
    if margin is not None:
      bounds = bounds + np.float32(margin) * np.array([-1, 1], np.float32)
    self._bounds = tf.constant(bounds)
    self._drop_outside = margin is not None
    self._project_in = snt.Linear(channels, name="project_in")
    self._cnn = GridCNN(dim, channels, levels)
    self._project_out = snt.Linear(latent_size, w_init=tf.zeros_initializer(),
                                   name="project_out")

  def __call__(self, latents: tf.Tensor, positions: tf.Tensor,
               n_particles_per_example: tf.Tensor) -> tf.Tensor:
    """`[num_particles, latent_size]` update for `latents` (same shape)."""
    values = self._project_in(tf.cast(latents, tf.float32))
    values = tf.concat([values, tf.ones_like(values[:, :1])], axis=-1)
    positions = tf.convert_to_tensor(positions, tf.float32)
    # One transfer for both ways: the scatter and its adjoint gather.
    rows, weights = _transfer(positions, n_particles_per_example,
                              self._bounds, self._resolution,
                              self._drop_outside)
    grid = _scatter_rows(values, rows, weights,
                         tf.shape(n_particles_per_example)[0],
                         self._resolution, positions.shape[-1])
    return self._project_out(_gather_rows(self._cnn(grid), rows, weights))
