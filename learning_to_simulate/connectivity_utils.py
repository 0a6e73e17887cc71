"""Radius-graph connectivity for batches of particle systems.

Edges join every pair of particles of the same example whose distance is at
most the connectivity radius (inclusive, self edges included); the query
particle is the sender (Sanchez-Gonzalez et al. 2020, Sec. 3; the original
used a KD-tree on the host).

Two implementations that give the same edge set:
- `compute_connectivity_for_batch` (numpy + scipy KD-tree), the reference;
- `compute_connectivity_for_batch_tf` (TensorFlow ops, a cell list: O(N)
  expected time and memory), used inside the model so a train step or a
  whole rollout runs with no host round trip.
"""

import itertools
from typing import Tuple

import numpy as np
from scipy import spatial
import tensorflow as tf


def compute_connectivity(positions: np.ndarray, radius: float,
                         add_self_edges: bool = True
                         ) -> Tuple[np.ndarray, np.ndarray]:
  """Radius graph of one example (KD-tree reference).

  Args:
    positions: `[num_particles, dim]` positions.
    radius: connectivity radius; pairs at distance `<= radius` are connected.
    add_self_edges: whether to keep the edge from each particle to itself.

  Returns:
    senders, receivers: `[num_edges]` int32 indices, sorted by sender then
    receiver.
  """
  positions = np.asarray(positions, dtype=np.float32).astype(np.float64)
  num_particles = positions.shape[0]
  if num_particles == 0:
    empty = np.zeros([0], np.int32)
    return empty, empty
  tree = spatial.cKDTree(positions)
  neighbours = tree.query_ball_point(positions, r=radius, p=2.0,
                                     return_sorted=True)
  counts = [len(n) for n in neighbours]
  senders = np.repeat(np.arange(num_particles), counts)
  receivers = np.concatenate([np.asarray(n, dtype=np.int64)
                              for n in neighbours])
  if not add_self_edges:
    keep = senders != receivers
    senders, receivers = senders[keep], receivers[keep]
  return senders.astype(np.int32), receivers.astype(np.int32)


def compute_connectivity_for_batch(
    positions: np.ndarray, n_node: np.ndarray, radius: float,
    add_self_edges: bool = True
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """`compute_connectivity` for examples concatenated on the particle axis.

  Args:
    positions: `[num_particles_in_batch, dim]` positions.
    n_node: `[batch_size]` particles per example.
    radius: connectivity radius.
    add_self_edges: whether to keep self edges.

  Returns:
    senders, receivers: `[num_edges]` int32 batch-level indices (no edges
      across examples); n_edge: `[batch_size]` int32 edges per example.
  """
  n_node = np.asarray(n_node)
  senders, receivers, n_edge = [], [], []
  offset = 0
  for count in n_node:
    s, r = compute_connectivity(positions[offset:offset + count], radius,
                                add_self_edges)
    senders.append(s + offset)
    receivers.append(r + offset)
    n_edge.append(len(s))
    offset += count
  return (np.concatenate(senders).astype(np.int32),
          np.concatenate(receivers).astype(np.int32),
          np.asarray(n_edge, dtype=np.int32))


def _neighbour_offsets(dim: int) -> np.ndarray:
  """`[3**dim, dim]` cell offsets in {-1, 0, 1}."""
  return np.array(list(itertools.product([-1, 0, 1], repeat=dim)),
                  dtype=np.int64)


def compute_connectivity_for_batch_tf(
    positions: tf.Tensor, n_node: tf.Tensor, radius: float,
    add_self_edges: bool = True
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Radius graph of a batch with TensorFlow ops (cell list).

  Particles are binned in cubic cells of side `radius`, keyed by
  (example, cell) and sorted; each particle looks up the `3**dim` cells around
  its own with a binary search for its senders (the relation is symmetric,
  so this finds every edge once), and the candidate pairs are filtered by exact
  distance, computed in float64 from the float32 positions like the KD-tree
  reference. Cell coordinates are clipped to a range that fits an int64 key;
  clipping only merges far-away cells, which adds candidates but never loses
  a neighbour, so the result stays exact for any input.

  Args:
    positions: `[num_particles_in_batch, dim]` float positions; `dim` static.
    n_node: `[batch_size]` int particles per example.
    radius: connectivity radius (Python float).
    add_self_edges: whether to keep self edges.

  Returns:
    senders, receivers: `[num_edges]` int32, sorted by receiver (each
      particle's incoming edges are contiguous, which lets the network sum
      messages with a sorted segment sum);
    n_edge: `[batch_size]` int32.
  """
  dim = positions.shape[-1]
  if dim is None:
    raise ValueError("positions must have a static last dimension")
  n_node = tf.cast(n_node, tf.int64)
  batch_size = tf.shape(n_node, out_type=tf.int64)[0]
  num_particles = tf.shape(positions, out_type=tf.int64)[0]
  graph_index = tf.repeat(tf.range(batch_size), n_node)

  positions = tf.cast(positions, tf.float64)
  cells = tf.floor(positions / radius)
  cells = tf.where(tf.math.is_finite(cells), cells, tf.zeros_like(cells))
  # Centre on the median cell and clip to [0, extent) with an extent that
  # keeps `batch_size * extent**dim` below 2**62. Outliers (a diverging
  # rollout) land in the border cells, away from the bulk of the particles.
  half = tf.floor(tf.pow(
      2.0**62 / tf.cast(tf.maximum(batch_size, 1), tf.float64), 1.0 / dim) / 2)
  half = tf.minimum(half - 1, 2.0**30)
  median = tf.gather(tf.sort(cells, axis=0), num_particles // 2)
  median = tf.cond(num_particles > 0, lambda: median,
                   lambda: tf.zeros([dim], tf.float64))
  cells = tf.cast(tf.clip_by_value(cells - median, -half, half) + half,
                  tf.int64)
  extent = tf.cast(2 * half + 1, tf.int64)
  # Row-major strides of the cell grid; one example occupies `cells_per_graph`.
  strides = tf.pow(extent, tf.range(dim - 1, -1, -1, dtype=tf.int64))
  cells_per_graph = extent**dim

  keys = graph_index * cells_per_graph + tf.reduce_sum(cells * strides, -1)
  order = tf.cast(tf.argsort(keys, stable=True), tf.int64)
  sorted_keys = tf.gather(keys, order)

  offsets = tf.constant(_neighbour_offsets(dim))  # [K, dim]
  num_offsets = offsets.shape[0]
  neighbour_cells = cells[:, tf.newaxis, :] + offsets  # [N, K, dim]
  inside = tf.reduce_all(
      (neighbour_cells >= 0) & (neighbour_cells < extent), axis=-1)
  neighbour_keys = (graph_index[:, tf.newaxis] * cells_per_graph +
                    tf.reduce_sum(neighbour_cells * strides, -1))  # [N, K]
  flat_keys = tf.reshape(neighbour_keys, [1, -1])
  start = tf.searchsorted(sorted_keys[tf.newaxis], flat_keys, side="left",
                          out_type=tf.int64)[0]
  end = tf.searchsorted(sorted_keys[tf.newaxis], flat_keys, side="right",
                        out_type=tf.int64)[0]
  counts = tf.where(tf.reshape(inside, [-1]), end - start,
                    tf.zeros_like(start))

  # Expand every (particle, neighbour cell) query into its candidate pairs.
  query = tf.repeat(tf.range(num_particles * num_offsets), counts)
  first = tf.cumsum(counts, exclusive=True)
  rank_in_cell = (tf.range(tf.reduce_sum(counts), dtype=tf.int64) -
                  tf.gather(first, query))
  receivers = query // num_offsets
  senders = tf.gather(order, tf.gather(start, query) + rank_in_cell)

  distance = tf.norm(tf.gather(positions, senders) -
                     tf.gather(positions, receivers), axis=-1)
  keep = distance <= radius
  if not add_self_edges:
    keep &= senders != receivers
  senders = tf.boolean_mask(senders, keep)
  receivers = tf.boolean_mask(receivers, keep)
  n_edge = tf.math.unsorted_segment_sum(
      tf.ones_like(receivers), tf.gather(graph_index, receivers), batch_size)
  return (tf.cast(senders, tf.int32), tf.cast(receivers, tf.int32),
          tf.cast(n_edge, tf.int32))


def drop_pairs(senders: tf.Tensor, receivers: tf.Tensor, n_node: tf.Tensor,
               mask: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """The edges without those between two distinct particles of `mask`.

  Args:
    senders, receivers: `[num_edges]` int32, as
      `compute_connectivity_for_batch_tf` returns them (their order, sorted
      by receiver, is kept).
    n_node: `[batch_size]` int particles per example.
    mask: `[num_particles_in_batch]` bool, e.g. the kinematic particles.

  Returns:
    senders, receivers: `[num_kept_edges]` int32; n_edge: `[batch_size]`
    int32 kept edges per example. Self-edges are kept.
  """
  keep = ((senders == receivers) |
          ~(tf.gather(mask, senders) & tf.gather(mask, receivers)))
  senders = tf.boolean_mask(senders, keep)
  receivers = tf.boolean_mask(receivers, keep)
  n_node = tf.cast(n_node, tf.int32)
  batch_size = tf.shape(n_node)[0]
  graph_index = tf.repeat(tf.range(batch_size), n_node)
  n_edge = tf.math.unsorted_segment_sum(
      tf.ones_like(receivers), tf.gather(graph_index, receivers), batch_size)
  return senders, receivers, n_edge
