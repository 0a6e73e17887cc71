"""The grid branch: particle-grid transfers and the CNN on them."""

import dataclasses

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate.model import grid_branch
from learning_to_simulate.model import build
from learning_to_simulate.training import config as config_lib
import reference_network

BOUNDS = np.array([[0.1, 0.9], [0.1, 0.9], [0.1, 0.9]], np.float32)


def batch(rng, dim, counts):
  """Random positions (some outside the box) and values of a batch."""
  n = sum(counts)
  positions = rng.uniform(0.05, 0.95, [n, dim]).astype(np.float32)
  values = rng.normal(size=[n, 3]).astype(np.float32)
  return positions, values, tf.constant(counts, tf.int32)


class TransferTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(2, 3)
  def test_scatter_keeps_each_examples_total(self, dim):
    positions, values, counts = batch(np.random.default_rng(0), dim, [5, 9])
    grid = grid_branch.scatter(values, positions, counts, BOUNDS[:dim], 8)
    self.assertEqual(grid.shape, [2] + [8] * dim + [3])
    self.assertAllClose(tf.reduce_sum(grid, axis=range(1, dim + 1)),
                        [values[:5].sum(0), values[5:].sum(0)], atol=1e-5)

  @parameterized.parameters(2, 3)
  def test_gather_is_the_adjoint_of_scatter(self, dim):
    rng = np.random.default_rng(1)
    positions, u, counts = batch(rng, dim, [7, 4, 6])
    v = rng.normal(size=[3] + [4] * dim + [3]).astype(np.float32)
    left = tf.reduce_sum(grid_branch.scatter(u, positions, counts,
                                             BOUNDS[:dim], 4) * v)
    right = tf.reduce_sum(u * grid_branch.gather(v, positions, counts,
                                                 BOUNDS[:dim]))
    self.assertAllClose(left, right, rtol=1e-5)

  def test_by_hand(self):
    # Nodes at 0.1, 0.5, 0.9; a particle at (0.2, 0.5): a quarter of the way
    # from node 0 to node 1 in x, on node 1 in y.
    grid = grid_branch.scatter([[4.0]], [[0.2, 0.5]], tf.constant([1]),
                               BOUNDS[:2], 3)
    expected = np.zeros([1, 3, 3, 1])
    expected[0, 0, 1, 0], expected[0, 1, 1, 0] = 3.0, 1.0
    self.assertAllClose(grid, expected)
    # A linear field is read back exactly.
    nodes = np.linspace(0.1, 0.9, 3)
    field = (2 * nodes[:, None] - nodes[None, :])[None, ..., None]
    self.assertAllClose(
        grid_branch.gather(tf.constant(field, tf.float32),
                           [[0.2, 0.5], [0.75, 0.3]], tf.constant([2]),
                           BOUNDS[:2]),
        [[2 * 0.2 - 0.5], [2 * 0.75 - 0.3]], atol=1e-6)

  def test_a_shift_by_one_cell_shifts_the_field(self):
    rng = np.random.default_rng(2)
    cell = 0.8 / 7  # 8 nodes over the box.
    positions = rng.uniform(0.1, 0.9 - cell, [20, 2]).astype(np.float32)
    values = rng.normal(size=[20, 2]).astype(np.float32)
    counts = tf.constant([20])
    before = grid_branch.scatter(values, positions, counts, BOUNDS[:2], 8)
    after = grid_branch.scatter(values, positions + [cell, 0.0], counts,
                                BOUNDS[:2], 8)
    self.assertAllClose(after[:, 1:], before[:, :-1], atol=1e-5)
    self.assertAllClose(after[:, 0], tf.zeros_like(after[:, 0]), atol=1e-5)

  def test_dropped_particles_take_no_part(self):
    # Nodes at 0.1, 0.5, 0.9; (0.95, 0.5) is outside the bounds.
    positions = [[0.2, 0.5], [0.95, 0.5]]
    counts = tf.constant([2])
    clamped = grid_branch.scatter([[4.0], [1.0]], positions, counts,
                                  BOUNDS[:2], 3)
    dropped = grid_branch.scatter([[4.0], [1.0]], positions, counts,
                                  BOUNDS[:2], 3, drop_outside=True)
    expected = np.zeros([1, 3, 3, 1])
    expected[0, 0, 1, 0], expected[0, 1, 1, 0] = 3.0, 1.0
    self.assertAllClose(dropped, expected)
    # Without dropping, the outside particle is moved onto the edge node.
    expected[0, 2, 1, 0] = 1.0
    self.assertAllClose(clamped, expected)
    field = tf.ones([1, 3, 3, 1])
    self.assertAllClose(grid_branch.gather(field, positions, counts,
                                           BOUNDS[:2], drop_outside=True),
                        [[1.0], [0.0]])
    # Still the adjoint of its scatter.
    rng = np.random.default_rng(8)
    positions, u, counts = batch(rng, 2, [7, 4])
    v = rng.normal(size=[2, 4, 4, 3]).astype(np.float32)
    left = tf.reduce_sum(grid_branch.scatter(
        u, positions, counts, BOUNDS[:2], 4, drop_outside=True) * v)
    right = tf.reduce_sum(u * grid_branch.gather(
        v, positions, counts, BOUNDS[:2], drop_outside=True))
    self.assertAllClose(left, right, rtol=1e-5)


class GridBranchTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((2, 2), (3, 2), (2, 3))
  def test_gradients_reach_the_cnn_and_shapes_hold(self, dim, levels):
    rng = np.random.default_rng(3)
    positions, _, counts = batch(rng, dim, [6, 10])
    latents = tf.constant(rng.normal(size=[16, 5]), tf.float32)
    branch = grid_branch.GridBranch(dim, latent_size=5, resolution=8,
                                    channels=4, levels=levels,
                                    bounds=BOUNDS[:dim])
    update = branch(latents, positions, counts)
    self.assertEqual(update.shape, [16, 5])
    # A new branch adds nothing: its output projection starts at zero.
    self.assertAllEqual(update, tf.zeros_like(update))
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(branch(latents, positions, counts)**2 +
                           branch(latents, positions, counts))
    gradients = tape.gradient(loss, branch.trainable_variables)
    named = {v.name: g for v, g in zip(branch.trainable_variables, gradients)}
    self.assertTrue(all(g is not None for g in gradients))
    self.assertGreater(tf.reduce_max(tf.abs(named[
        "GridBranch/project_out/w:0"])), 0.0)
    # Gradients reach the CNN's and the input projection's weights once the
    # output projection is not zero.
    for v in branch.trainable_variables:
      v.assign(tf.random.stateless_normal(v.shape, [4, 5]) * 0.3)
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(branch(latents, positions, counts)**2)
    gradients = tape.gradient(loss, branch.trainable_variables)
    for variable, gradient in zip(branch.trainable_variables, gradients):
      self.assertGreater(tf.reduce_max(tf.abs(gradient)), 0.0, variable.name)

  def test_examples_do_not_see_each_other(self):
    rng = np.random.default_rng(5)
    positions, _, counts = batch(rng, 2, [6, 8])
    latents = tf.constant(rng.normal(size=[14, 4]), tf.float32)
    branch = grid_branch.GridBranch(2, 4, 8, 4, 2, BOUNDS[:2])
    branch(latents, positions, counts)  # Makes the variables.
    for v in branch.trainable_variables:
      v.assign(tf.random.stateless_normal(v.shape, [1, 2]) * 0.3)
    together = branch(latents, positions, counts)
    alone = branch(latents[:6], positions[:6], tf.constant([6]))
    self.assertAllClose(together[:6], alone, atol=1e-5)

  def test_no_retrace_across_particle_counts(self):
    branch = grid_branch.GridBranch(2, 4, 8, 4, 2, BOUNDS[:2])
    # Variables are made eagerly first, as `build.build_simulator` does.
    branch(tf.zeros([1, 4]), tf.zeros([1, 2]), tf.constant([1]))
    traces = []

    @tf.function(input_signature=[
        tf.TensorSpec([None, 4], tf.float32),
        tf.TensorSpec([None, 2], tf.float32),
        tf.TensorSpec([None], tf.int32)])
    def call(latents, positions, counts):
      traces.append(1)
      return branch(latents, positions, counts)

    rng = np.random.default_rng(6)
    for counts in ([3], [5, 9], [30, 1, 2]):
      positions, _, counts = batch(rng, 2, counts)
      latents = rng.normal(size=[len(positions), 4]).astype(np.float32)
      self.assertEqual(call(latents, positions, counts).shape,
                       [len(positions), 4])
    self.assertLen(traces, 1)

  def test_a_margin_widens_the_grid_and_leaves_out_what_is_beyond(self):
    branch = grid_branch.GridBranch(2, 4, 4, 4, 2, BOUNDS[:2], margin=0.1)
    branch(tf.ones([1, 4]), tf.zeros([1, 2]), tf.constant([1]))
    for v in branch.trainable_variables:
      v.assign(tf.random.stateless_normal(v.shape, [3, 4]) * 0.3)
    # A wall particle 0.05 outside the box is inside the widened grid; a
    # particle 0.15 or 3 outside is not, and is not moved onto its edge.
    positions = tf.constant([[0.5, 0.5], [0.05, 0.5], [0.5, -0.05],
                             [0.5, -3.0]])
    latents = tf.constant(np.random.default_rng(9).normal(size=[4, 4]),
                          tf.float32)
    update = branch(latents, positions, tf.constant([4]))
    # What they read from the grid is 0: their update is the output
    # projection's bias, whatever their latents.
    nothing = branch._project_out(tf.zeros([2, 4]))
    self.assertAllClose(update[2:], nothing)
    self.assertGreater(tf.reduce_max(tf.abs(update[1] - nothing[0])), 0.0)
    # The particles it leaves out change nothing for the others.
    alone = branch(latents[:2], positions[:2], tf.constant([2]))
    self.assertAllClose(update[:2], alone, atol=1e-6)
    # Without a margin they are moved onto the edge: the far particle reads
    # what the near one does.
    clamped = grid_branch.GridBranch(2, 4, 4, 4, 2, BOUNDS[:2])
    clamped(tf.ones([1, 4]), tf.zeros([1, 2]), tf.constant([1]))
    for mine, theirs in zip(clamped.trainable_variables,
                            branch.trainable_variables):
      mine.assign(theirs)
    update = clamped(tf.ones([4, 4]), positions, tf.constant([4]))
    self.assertAllClose(update[2], update[3])
    self.assertGreater(tf.reduce_max(tf.abs(update[3] - nothing[0])), 0.0)
    with self.assertRaisesRegex(ValueError, "margin must be >= 0, got -1"):
      grid_branch.GridBranch(2, 4, 4, 4, 2, BOUNDS[:2], margin=-1)

  def test_bad_settings(self):
    with self.assertRaisesRegex(ValueError, "--grid_resolution must be a "
                                "multiple of 2\\^\\(levels - 1\\) = 4"):
      grid_branch.GridBranch(2, 4, 10, 4, 3, BOUNDS[:2])
    with self.assertRaisesRegex(ValueError, "for 2D and 3D, got dim 1"):
      grid_branch.GridCNN(1, 4, 2)



class SimulatorWithGridTest(tf.test.TestCase):

  METADATA = {
      "dim": 2, "bounds": [[0.1, 0.9], [0.1, 0.9]],
      "default_connectivity_radius": 0.1, "sequence_length": 10,
      "vel_mean": [0.0, 0.0], "vel_std": [3e-3, 4e-3],
      "acc_mean": [0.0, -1e-4], "acc_std": [1e-4, 2e-4],
  }
  SMALL = config_lib.ModelConfig(latent_size=8, hidden_size=8,
                                 message_passing_steps=2)

  def inputs(self):
    rng = np.random.default_rng(7)
    positions = rng.uniform(0.2, 0.8, [30, 1, 2]) + np.linspace(
        0, 0.01, common.INPUT_SEQUENCE_LENGTH)[None, :, None]
    return (tf.constant(positions, tf.float32), tf.constant([12, 18]),
            tf.fill([30], tf.constant(common.ParticleType.WATER, tf.int64)))

  def test_forward_pass_matches_the_graph_nets_formulation(self):
    simulator = build.build_simulator(
        self.METADATA, dataclasses.replace(self.SMALL, grid_resolution=8,
                                           grid_channels=4, grid_levels=2))
    names = [v.name for v in simulator.trainable_variables]
    self.assertTrue(any("GridBranch" in name for name in names))
    for v in simulator.trainable_variables:
      if "GridBranch" in v.name:
        v.assign(tf.random.stateless_normal(v.shape, [2, 3]) * 0.3)
    sequence, counts, types = self.inputs()
    graph = simulator._encoder_preprocessor(sequence, counts, None, types)
    network = simulator._graph_network
    fast = network(graph, positions=sequence[:, -1])
    reference = reference_network.graph_nets_forward(network, graph,
                                                     sequence[:, -1])
    self.assertAllClose(fast, reference, atol=1e-5)
    # The branch changes the output, and reads the positions.
    shifted = network(graph, positions=sequence[:, -1] + 0.2)
    self.assertGreater(tf.reduce_max(tf.abs(fast - shifted)), 1e-4)
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(simulator(sequence, counts,
                                     particle_types=types)**2)
    gradients = tape.gradient(loss, simulator.trainable_variables)
    for variable, gradient in zip(simulator.trainable_variables, gradients):
      if "GridBranch" in variable.name:
        self.assertGreater(tf.reduce_max(tf.abs(gradient)), 0.0,
                           variable.name)

  def test_the_margin_is_in_connectivity_radii(self):
    config = dataclasses.replace(self.SMALL, grid_resolution=8,
                                 grid_channels=4, grid_levels=2,
                                 grid_margin=0.5)
    config.validate()
    simulator = build.build_simulator(self.METADATA, config)
    branch = simulator._graph_network._grid_branch
    # 0.5 radii of 0.1 around [0.1, 0.9].
    self.assertAllClose(branch._bounds, [[0.05, 0.95], [0.05, 0.95]])
    for bad, message in ((dict(grid_resolution=0), "--grid_margin needs the "
                          r"grid branch \(--grid_resolution\)"),
                         (dict(grid_margin=-0.5),
                          "--grid_margin must be >= 0, got -0.5")):
      with self.assertRaisesRegex(ValueError, message):
        dataclasses.replace(config, **bad).validate()

  def test_off_by_default(self):
    simulator = build.build_simulator(self.METADATA, self.SMALL)
    self.assertFalse(any("GridBranch" in v.name
                         for v in simulator.trainable_variables))
    self.assertIsNone(self.SMALL.grid())
    with self.assertRaisesRegex(ValueError, "--grid_resolution must be 0 "
                                r"\(off\) or a multiple of "
                                r"2\^\(grid_levels - 1\) = 4"):
      dataclasses.replace(self.SMALL, grid_resolution=6).validate()
    with self.assertRaisesRegex(ValueError, "--jit_compile does not support "
                                "the grid branch"):
      build.build_simulator(
          self.METADATA, dataclasses.replace(self.SMALL, grid_resolution=8),
          jit_compile=True)


if __name__ == "__main__":
  tf.test.main()
