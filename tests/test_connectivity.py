"""Connectivity: the TF cell list and the KD-tree against brute force."""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from learning_to_simulate import connectivity_utils


def brute_force_edges(positions, n_node, radius, add_self_edges=True):
  """Set of (sender, receiver) pairs with float64 distance <= radius."""
  positions = np.asarray(positions, np.float32).astype(np.float64)
  edges = set()
  offset = 0
  for count in n_node:
    block = positions[offset:offset + count]
    distance = np.linalg.norm(block[:, None] - block[None], axis=-1)
    for s, r in zip(*np.nonzero(distance <= radius)):
      if add_self_edges or s != r:
        edges.add((int(s) + offset, int(r) + offset))
    offset += count
  return edges


# Three particles on a line, spacing exactly 0.5 (representable), radius 0.5:
# the boundary pairs are connected (inclusive test), 0 and 2 are not.
LINE = np.array([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0]], np.float32)
LINE_EDGES = {(0, 0), (1, 1), (2, 2), (0, 1), (1, 0), (1, 2), (2, 1)}


class ConnectivityTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.rng = np.random.default_rng(42)

  def _tf_edges(self, positions, n_node, radius, add_self_edges=True,
                use_tf_function=False):
    fn = connectivity_utils.compute_connectivity_for_batch_tf
    if use_tf_function:
      fn = tf.function(fn, reduce_retracing=True)
    senders, receivers, n_edge = fn(
        tf.constant(positions, tf.float32), tf.constant(n_node, tf.int32),
        radius, add_self_edges)
    pairs = list(zip(senders.numpy().tolist(), receivers.numpy().tolist()))
    self.assertLen(set(pairs), len(pairs))  # No duplicate edges.
    return set(pairs), n_edge.numpy()

  def test_radius_boundary_is_inclusive(self):
    edges, n_edge = self._tf_edges(LINE, [3], 0.5)
    self.assertEqual(edges, LINE_EDGES)
    self.assertAllEqual(n_edge, [7])
    s, r = connectivity_utils.compute_connectivity(LINE, 0.5)
    self.assertEqual(set(zip(s.tolist(), r.tolist())), LINE_EDGES)

  def test_self_edges_can_be_dropped(self):
    edges, _ = self._tf_edges(LINE, [3], 0.5, add_self_edges=False)
    self.assertEqual(edges, {e for e in LINE_EDGES if e[0] != e[1]})

  def test_isolated_particle_has_only_its_self_edge(self):
    positions = np.array([[0.1, 0.1], [0.12, 0.1], [0.9, 0.9]], np.float32)
    edges, _ = self._tf_edges(positions, [3], 0.05)
    self.assertEqual({e for e in edges if 2 in e}, {(2, 2)})

  def test_no_edges_across_examples(self):
    # Two examples with identical positions: a batch-blind search would
    # connect particle i of the first to particle i of the second.
    positions = np.concatenate([LINE, LINE])
    edges, n_edge = self._tf_edges(positions, [3, 3], 0.5)
    expected = LINE_EDGES | {(s + 3, r + 3) for s, r in LINE_EDGES}
    self.assertEqual(edges, expected)
    self.assertAllEqual(n_edge, [7, 7])

  def test_empty_examples(self):
    edges, n_edge = self._tf_edges(np.zeros([2, 2], np.float32), [0, 2, 0],
                                   0.1)
    self.assertEqual(edges, {(0, 0), (1, 1), (0, 1), (1, 0)})
    self.assertAllEqual(n_edge, [0, 4, 0])

  @parameterized.product(dim=[2, 3], use_tf_function=[False, True])
  def test_random_batches_match_brute_force_and_kd_tree(self, dim,
                                                        use_tf_function):
    n_node = [150, 1, 90]
    positions = self.rng.uniform(-1.0, 1.0, [sum(n_node), dim])
    radius = 0.3
    expected = brute_force_edges(positions, n_node, radius)
    edges, n_edge = self._tf_edges(positions, n_node, radius,
                                   use_tf_function=use_tf_function)
    self.assertEqual(edges, expected)
    s, r, kd_n_edge = connectivity_utils.compute_connectivity_for_batch(
        positions.astype(np.float32), np.array(n_node), radius)
    self.assertEqual(set(zip(s.tolist(), r.tolist())), expected)
    self.assertAllEqual(n_edge, kd_n_edge)

  def test_far_outliers_do_not_break_the_search(self):
    positions = self.rng.uniform(0.0, 1.0, [200, 2]).astype(np.float32)
    positions[3] = [1e30, -1e30]
    positions[4] = [-1e25, 0.5]
    edges, _ = self._tf_edges(positions, [200], 0.1)
    self.assertEqual(edges, brute_force_edges(positions, [200], 0.1))



class DropPairsTest(tf.test.TestCase):

  def test_drops_pairs_inside_the_mask_and_keeps_self_edges(self):
    # Two examples: particles 0-2 (0 and 1 masked) and 3-4 (both masked).
    senders = tf.constant([0, 1, 2, 0, 1, 1, 2, 3, 4, 4, 3], tf.int32)
    receivers = tf.constant([0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4], tf.int32)
    mask = tf.constant([True, True, False, True, True])
    kept_senders, kept_receivers, n_edge = connectivity_utils.drop_pairs(
        senders, receivers, tf.constant([3, 2]), mask)
    self.assertAllEqual(kept_senders, [0, 2, 1, 1, 2, 3, 4])
    self.assertAllEqual(kept_receivers, [0, 0, 1, 2, 2, 3, 4])
    self.assertAllEqual(n_edge, [5, 2])
    # Nothing masked: nothing dropped.
    _, _, n_edge = connectivity_utils.drop_pairs(
        senders, receivers, tf.constant([3, 2]), tf.zeros([5], tf.bool))
    self.assertAllEqual(n_edge, [7, 4])

if __name__ == "__main__":
  tf.test.main()
