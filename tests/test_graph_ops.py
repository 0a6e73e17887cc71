"""graph_ops: LayerNorm with its own gradient, sorted sums and gathers."""

from absl.testing import parameterized
import numpy as np
import sonnet as snt
import tensorflow as tf

from learning_to_simulate.model import graph_ops

EPSILON = 1e-5


class LayerNormTest(tf.test.TestCase, parameterized.TestCase):

  def test_small_exact_case(self):
    # Row [1, 2, 3, 4]: mean 2.5, biased variance 1.25.
    x = tf.constant([[1.0, 2.0, 3.0, 4.0]])
    scale = tf.constant([1.0, 2.0, 1.0, 1.0])
    offset = tf.constant([0.0, 0.0, 0.0, 10.0])
    inverse_std = 1.0 / np.sqrt(1.25 + EPSILON)
    expected = [[-1.5 * inverse_std, -1.0 * inverse_std, 0.5 * inverse_std,
                 1.5 * inverse_std + 10.0]]
    self.assertAllClose(graph_ops.layer_norm(x, scale, offset, EPSILON),
                        expected, rtol=1e-6)

  @parameterized.parameters(False, True)
  def test_matches_sonnet_layer_norm_and_its_gradients(self, use_tf_function):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(0.5, 3.0, [7, 16]).astype(np.float32))
    upstream = tf.constant(rng.normal(size=[7, 16]).astype(np.float32))
    module = snt.LayerNorm(axis=-1, create_scale=True, create_offset=True,
                           eps=EPSILON)
    module(x)
    module.scale.assign(rng.uniform(0.5, 2.0, [16]).astype(np.float32))
    module.offset.assign(rng.normal(size=[16]).astype(np.float32))

    def with_gradients(forward):
      def run(x):
        with tf.GradientTape() as tape:
          tape.watch(x)
          y = forward(x)
          loss = tf.reduce_sum(tf.sin(y) * upstream)
        return (y,) + tuple(tape.gradient(
            loss, [x, module.scale, module.offset]))
      return tf.function(run) if use_tf_function else run

    fast = with_gradients(lambda x: graph_ops.layer_norm(
        x, module.scale, module.offset, EPSILON))(x)
    reference = with_gradients(module)(x)
    for name, got, want in zip(["y", "dx", "dscale", "doffset"], fast,
                               reference):
      self.assertAllClose(got, want, rtol=1e-5, atol=1e-5, msg=name)

  def test_constant_row_maps_to_offset(self):
    x = tf.fill([2, 8], 3.0)
    offset = tf.range(8, dtype=tf.float32)
    self.assertAllClose(
        graph_ops.layer_norm(x, tf.ones([8]), offset, EPSILON),
        tf.stack([offset, offset]))


class SortedSumTest(tf.test.TestCase, parameterized.TestCase):

  def test_is_sorted(self):
    self.assertTrue(graph_ops.is_sorted(tf.constant([0, 0, 2, 5])))
    self.assertFalse(graph_ops.is_sorted(tf.constant([0, 2, 1])))
    self.assertTrue(graph_ops.is_sorted(tf.constant([3])))
    self.assertTrue(graph_ops.is_sorted(tf.zeros([0], tf.int32)))

  @parameterized.product(
      # Node 0 and the last nodes receive nothing; node 3 receives 3 edges.
      case=[([1, 1, 3, 3, 3, 4], 7), ([3, 1, 4, 3, 1, 3], 7), ([], 3)],
      use_tf_function=[False, True])
  def test_sum_and_gather_match_unsorted_ops(self, case, use_tf_function):
    receivers, num_nodes = case
    rng = np.random.default_rng(1)
    receivers = tf.constant(receivers, tf.int32)
    num_edges = int(receivers.shape[0])
    data = tf.constant(rng.normal(size=[num_edges, 3]).astype(np.float32))
    params = tf.constant(rng.normal(size=[num_nodes, 3]).astype(np.float32))
    upstream = tf.constant(rng.normal(size=[num_edges, 3]).astype(np.float32))

    def fast(data, params):
      receivers_sorted = graph_ops.is_sorted(receivers)
      with tf.GradientTape() as tape:
        tape.watch([data, params])
        summed = graph_ops.sum_onto_receivers(data, receivers, num_nodes,
                                              receivers_sorted)
        gathered = graph_ops.gather_receivers(params, receivers,
                                              receivers_sorted)
        loss = (tf.reduce_sum(summed**2) +
                tf.reduce_sum(gathered * upstream))
      return (summed, gathered) + tuple(tape.gradient(loss, [data, params]))

    def reference(data, params):
      with tf.GradientTape() as tape:
        tape.watch([data, params])
        summed = tf.math.unsorted_segment_sum(data, receivers, num_nodes)
        gathered = tf.gather(params, receivers)
        loss = (tf.reduce_sum(summed**2) +
                tf.reduce_sum(gathered * upstream))
      return (summed, gathered) + tuple(
          tf.convert_to_tensor(g) for g in tape.gradient(loss,
                                                         [data, params]))

    if use_tf_function:
      fast = tf.function(fast)
    for got, want in zip(fast(data, params), reference(data, params)):
      self.assertAllClose(got, want, rtol=1e-6, atol=1e-6)

  def test_sorted_sum_small_exact_case(self):
    data = tf.constant([[1.0], [2.0], [4.0]])
    summed = graph_ops.sum_onto_receivers(
        data, tf.constant([1, 1, 2]), 4, tf.constant(True))
    self.assertAllEqual(summed, [[0.0], [3.0], [4.0], [0.0]])

  def test_none_means_unsorted_ops(self):
    data = tf.constant([[1.0], [2.0], [4.0]])
    receivers = tf.constant([2, 0, 2])
    self.assertAllEqual(
        graph_ops.sum_onto_receivers(data, receivers, 3, None),
        [[2.0], [0.0], [5.0]])
    self.assertAllEqual(
        graph_ops.gather_receivers(data, receivers, None),
        [[4.0], [1.0], [4.0]])


if __name__ == "__main__":
  tf.test.main()
