"""The simulator against a numpy reference of the paper's model."""

import dataclasses
import functools
import tempfile

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate import learned_simulator
from learning_to_simulate.model import build
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import one_step
import reference_network

RADIUS = 0.5
# Three particles (2D) of types water, sand and kinematic; six frames each.
# Particle 0 and 1 are 0.3 apart at the last frame, particle 2 is isolated.
THREE_PARTICLES = np.array([
    [[0.10, 0.20], [0.11, 0.20], [0.13, 0.21], [0.16, 0.23], [0.20, 0.26],
     [0.25, 0.30]],
    [[0.50, 0.30], [0.51, 0.30], [0.52, 0.30], [0.53, 0.30], [0.54, 0.30],
     [0.55, 0.30]],
    [[2.00, 2.00]] * 6,
], np.float32)
THREE_TYPES = np.array([common.ParticleType.WATER, common.ParticleType.SAND,
                        common.ParticleType.KINEMATIC], np.int64)
METADATA = {
    "dim": 2, "bounds": [[0.0, 1.0], [0.0, 2.0]],
    "default_connectivity_radius": RADIUS, "sequence_length": 10,
    "vel_mean": [0.01, -0.02], "vel_std": [0.5, 0.25],
    "acc_mean": [0.001, -0.003], "acc_std": [0.02, 0.04],
}
SMALL_MODEL = config_lib.ModelConfig(latent_size=8, hidden_size=6,
                                     hidden_layers=2, message_passing_steps=2,
                                     noise_std=0.1)


def randomize_variables(module, rng):
  for v in module.trainable_variables:
    v.assign(rng.normal(0.0, 0.5, v.shape).astype(np.float32))


def checkpoint_values(simulator):
  """Variables by checkpoint key (the layout checkpoints depend on)."""
  path = tf.train.Checkpoint(simulator=simulator).save(
      tempfile.mkdtemp() + "/ckpt")
  reader = tf.train.load_checkpoint(path)
  suffix = "/.ATTRIBUTES/VARIABLE_VALUE"
  return {k[:-len(suffix)]: reader.get_tensor(k)
          for k in reader.get_variable_to_shape_map() if k.endswith(suffix)}


def numpy_simulator(values, position_sequence, particle_types, metadata,
                    model):
  """The paper's one-step model written out in numpy (float64)."""
  x = position_sequence.astype(np.float64)
  n_layers = model.hidden_layers + 1
  def mlp(h, prefix):
    for i in range(n_layers):
      h = h @ values[f"{prefix}/{i}/w"] + values[f"{prefix}/{i}/b"]
      if i < n_layers - 1:
        h = np.maximum(h, 0.0)
    return h
  def mlp_ln(h, prefix):
    h = mlp(h, prefix + "/_layers/0/_layers")
    mean = h.mean(-1, keepdims=True)
    var = ((h - mean)**2).mean(-1, keepdims=True)  # Biased variance.
    return ((h - mean) / np.sqrt(var + 1e-5) * values[prefix + "/_layers/1/scale"]
            + values[prefix + "/_layers/1/offset"])

  noise = model.noise_std
  vel_std = np.sqrt(np.float32(metadata["vel_std"])**2 + noise**2)
  acc_std = np.sqrt(np.float32(metadata["acc_std"])**2 + noise**2)
  radius = metadata["default_connectivity_radius"]
  bounds = np.array(metadata["bounds"])
  last = x[:, -1]
  velocities = (np.diff(x, axis=1) - metadata["vel_mean"]) / vel_std
  nodes = np.concatenate([
      velocities.reshape(len(x), -1),
      np.clip((last - bounds[:, 0]) / radius, -1, 1),
      np.clip((bounds[:, 1] - last) / radius, -1, 1),
      values["simulator/_particle_type_embedding"][particle_types],
  ], axis=-1)
  distance = np.linalg.norm(last[:, None] - last[None], axis=-1)
  senders, receivers = np.nonzero(distance <= radius)
  displacement = (last[senders] - last[receivers]) / radius
  edges = np.concatenate(
      [displacement, np.linalg.norm(displacement, axis=-1, keepdims=True)], -1)

  gn = "simulator/_graph_network"
  nodes = mlp_ln(nodes, f"{gn}/_encoder_network/_node_model/_model")
  edges = mlp_ln(edges, f"{gn}/_encoder_network/_edge_model/_model")
  for k in range(model.message_passing_steps):
    p = f"{gn}/_processor_networks/{k}"
    new_edges = mlp_ln(
        np.concatenate([edges, nodes[receivers], nodes[senders]], -1),
        f"{p}/_edge_block/_edge_model")
    aggregated = np.zeros([len(nodes), new_edges.shape[-1]])
    np.add.at(aggregated, receivers, new_edges)
    new_nodes = mlp_ln(np.concatenate([aggregated, nodes], -1),
                       f"{p}/_node_block/_node_model")
    nodes, edges = nodes + new_nodes, edges + new_edges
  acceleration = (mlp(nodes, f"{gn}/_decoder_network/_layers") * acc_std +
                  metadata["acc_mean"])
  velocity = x[:, -1] - x[:, -2] + acceleration  # dt = 1
  return x[:, -1] + velocity


class EdgeNormTest(tf.test.TestCase):

  def test_values_of_tf_norm_and_a_finite_gradient_at_zero(self):
    vectors = tf.constant([[3., 4.], [0., 0.], [1e-3, -2e-3], [0., 0.5]])
    with tf.GradientTape() as tape:
      tape.watch(vectors)
      norms = learned_simulator._norm(vectors)  # pylint: disable=protected-access
    self.assertAllEqual(norms, tf.norm(vectors, axis=-1, keepdims=True))
    self.assertAllClose(tape.gradient(norms, vectors),
                        [[0.6, 0.8], [0., 0.], [0.4472136, -0.8944272],
                         [0., 1.]])


class LearnedSimulatorTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.rng = np.random.default_rng(0)
    tf.random.set_seed(0)
    self.simulator = build.build_simulator(METADATA, SMALL_MODEL)
    randomize_variables(self.simulator, self.rng)

  def _call(self, position_sequence, use_tf_function=False):
    fn = self.simulator
    if use_tf_function:
      fn = tf.function(fn)
    return fn(tf.constant(position_sequence),
              n_particles_per_example=tf.constant([len(position_sequence)]),
              particle_types=tf.constant(THREE_TYPES))

  @parameterized.parameters(False, True)
  def test_matches_numpy_reference(self, use_tf_function):
    expected = numpy_simulator(checkpoint_values(self.simulator),
                               THREE_PARTICLES, THREE_TYPES, METADATA,
                               SMALL_MODEL)
    self.assertAllClose(self._call(THREE_PARTICLES, use_tf_function),
                        expected, rtol=1e-4, atol=1e-5)

  def test_node_and_edge_features_of_three_particles(self):
    graph = self.simulator._encoder_preprocessor(
        tf.constant(THREE_PARTICLES), tf.constant([3]), None,
        tf.constant(THREE_TYPES))
    noise = SMALL_MODEL.noise_std
    vel_std = np.sqrt(np.array([0.5, 0.25])**2 + noise**2)
    # Particle 1 moves by (0.01, 0) every frame: 5 identical velocities.
    velocity_1 = (np.array([0.01, 0.0]) - [0.01, -0.02]) / vel_std
    self.assertAllClose(graph.nodes[1, :10], np.tile(velocity_1, 5),
                        atol=1e-5)
    # Last positions (0.25, 0.3), (0.55, 0.3), (2, 2); bounds x [0, 1],
    # y [0, 2], radius 0.5; clipped to [-1, 1].
    self.assertAllClose(graph.nodes[:, 10:14], [
        [0.5, 0.6, 1.0, 1.0],
        [1.0, 0.6, 0.9, 1.0],
        [1.0, 1.0, -1.0, 0.0],
    ], atol=1e-6)
    embedding = self.simulator._particle_type_embedding.numpy()
    self.assertAllClose(graph.nodes[:, 14:], embedding[THREE_TYPES])
    edges = {(int(s), int(r)): e for s, r, e in zip(
        graph.senders.numpy(), graph.receivers.numpy(), graph.edges.numpy())}
    self.assertEqual(set(edges), {(0, 0), (1, 1), (2, 2), (0, 1), (1, 0)})
    self.assertAllClose(edges[(0, 1)], [-0.6, 0.0, 0.6], atol=1e-6)
    self.assertAllClose(edges[(1, 0)], [0.6, 0.0, 0.6], atol=1e-6)
    self.assertAllClose(edges[(2, 2)], [0.0, 0.0, 0.0])

  def test_global_context_is_normalized_and_appended_to_nodes(self):
    metadata = dict(METADATA, context_mean=[1.0, 2.0], context_std=[2.0, 0.0])
    simulator = build.build_simulator(metadata, SMALL_MODEL)
    graph = simulator._encoder_preprocessor(
        tf.constant(THREE_PARTICLES), tf.constant([3]),
        tf.constant([[3.0, 2.0]]), tf.constant(THREE_TYPES))
    # (3 - 1) / 2 = 1; (2 - 2) / max(0, 1e-8) = 0.
    self.assertAllClose(graph.globals, [[1.0, 0.0]])
    # Node encoder input: 10 velocities + 4 bounds + 16 embedding + 2 context.
    values = checkpoint_values(simulator)
    self.assertEqual(values["simulator/_graph_network/_encoder_network/"
                            "_node_model/_model/_layers/0/_layers/0/w"].shape,
                     (32, SMALL_MODEL.hidden_size))

  def test_inverse_decoder_round_trip(self):
    acceleration = self.rng.normal(size=[3, 2]).astype(np.float32)
    sequence = tf.constant(THREE_PARTICLES)
    position = self.simulator._decoder_postprocessor(
        tf.constant(acceleration), sequence)
    self.assertAllClose(
        self.simulator._inverse_decoder_postprocessor(position, sequence),
        acceleration, atol=1e-3)

  def test_clamp_to_bounds_is_opt_in(self):
    clamped = build.build_simulator(
        METADATA, dataclasses.replace(SMALL_MODEL, clamp_to_bounds=True))
    for target, source in zip(clamped.trainable_variables,
                              self.simulator.trainable_variables):
      target.assign(source)
    # Large normalized accelerations throw particles past the walls.
    acceleration = tf.constant([[50.0, -50.0], [0.0, 0.0], [-50.0, 80.0]])
    sequence = tf.constant(THREE_PARTICLES)
    free = self.simulator._decoder_postprocessor(acceleration, sequence)
    walled = clamped._decoder_postprocessor(acceleration, sequence)
    bounds = np.asarray(METADATA["bounds"], np.float32)
    self.assertTrue(np.any((free < bounds[:, 0]) | (free > bounds[:, 1])))
    self.assertAllEqual(walled, np.clip(free, bounds[:, 0], bounds[:, 1]))
    # The whole model: the paper's prediction, clipped to the walls.
    self.assertAllClose(
        clamped(sequence, tf.constant([3]),
                particle_types=tf.constant(THREE_TYPES)),
        np.clip(self._call(THREE_PARTICLES), bounds[:, 0], bounds[:, 1]))

  def test_kinematic_pair_edges_are_opt_out(self):
    skipping = build.build_simulator(
        METADATA, dataclasses.replace(SMALL_MODEL,
                                      kinematic_pair_edges=False))
    for target, source in zip(skipping.trainable_variables,
                              self.simulator.trainable_variables):
      target.assign(source)
    kinematic = common.ParticleType.KINEMATIC

    def edges(simulator, types):
      graph = simulator._encoder_preprocessor(
          tf.constant(THREE_PARTICLES), tf.constant([3]), None,
          tf.constant(types, tf.int64))
      self.assertEqual(int(graph.n_edge[0]), len(graph.senders))
      return set(zip(graph.senders.numpy().tolist(),
                     graph.receivers.numpy().tolist()))

    # Particles 0 and 1 are neighbours; both kinematic, their pair goes.
    both = [kinematic, kinematic, kinematic]
    self.assertEqual(edges(self.simulator, both),
                     {(0, 0), (1, 1), (2, 2), (0, 1), (1, 0)})
    self.assertEqual(edges(skipping, both), {(0, 0), (1, 1), (2, 2)})
    # One of them moving: the pair stays, and so does the model's output.
    self.assertEqual(edges(skipping, THREE_TYPES),
                     edges(self.simulator, THREE_TYPES))
    self.assertAllEqual(
        skipping(tf.constant(THREE_PARTICLES), tf.constant([3]),
                 particle_types=tf.constant(THREE_TYPES)),
        self._call(THREE_PARTICLES))

  def test_target_corrects_velocity_noise_not_position_noise(self):
    next_position = self.rng.uniform(size=[3, 2]).astype(np.float32)
    noise = self.rng.normal(0.0, 0.01, THREE_PARTICLES.shape).astype(
        np.float32)
    _, target = (
        self.simulator.get_predicted_and_target_normalized_accelerations(
            tf.constant(next_position), tf.constant(noise),
            tf.constant(THREE_PARTICLES), tf.constant([3]),
            particle_types=tf.constant(THREE_TYPES)))
    # Integrating the target from the noisy inputs lands on the true next
    # position shifted by the last input's noise: the next velocity is the
    # true next velocity.
    noisy = THREE_PARTICLES + noise
    landed = self.simulator._decoder_postprocessor(target, tf.constant(noisy))
    self.assertAllClose(landed, next_position + noise[:, -1], atol=1e-5)
    self.assertAllClose(landed - noisy[:, -1],
                        next_position - THREE_PARTICLES[:, -1], atol=1e-5)

  def test_gradients_reach_every_variable(self):
    features = {
        "position": tf.constant(THREE_PARTICLES),
        "particle_type": tf.constant(THREE_TYPES),
        "n_particles_per_example": tf.constant([3]),
    }
    batch = (features, tf.constant(THREE_PARTICLES[:, -1] + 0.01))
    with tf.GradientTape() as tape:
      predicted, target = one_step.predicted_and_target_accelerations(
          self.simulator, batch, noise_std=0.0)
      loss = one_step.masked_loss(predicted, target, features["particle_type"])
    gradients = tape.gradient(loss, self.simulator.trainable_variables)
    for variable, gradient in zip(self.simulator.trainable_variables,
                                  gradients):
      self.assertIsNotNone(gradient, variable.name)
      self.assertGreater(float(tf.reduce_sum(tf.abs(gradient))), 0.0,
                         variable.name)

  @parameterized.named_parameters(("receiver_sorted_edges", False),
                                  ("shuffled_edges", True))
  def test_forward_pass_matches_the_graph_nets_formulation(self, shuffle):
    rng = np.random.default_rng(5)
    positions = rng.uniform(0.0, 1.0, [40, 6, 2]).astype(np.float32)
    graph = self.simulator._encoder_preprocessor(
        tf.constant(positions), tf.constant([25, 15]), None,
        tf.constant(rng.integers(0, 9, [40])))
    receivers_sorted = bool(np.all(np.diff(graph.receivers.numpy()) >= 0))
    self.assertTrue(receivers_sorted)  # The connectivity's order.
    if shuffle:  # The forward pass falls back to unsorted sums.
      order = rng.permutation(int(tf.shape(graph.receivers)[0]))
      graph = graph.replace(edges=tf.gather(graph.edges, order),
                            senders=tf.gather(graph.senders, order),
                            receivers=tf.gather(graph.receivers, order))
    network = self.simulator._graph_network
    variables = network.trainable_variables
    outputs, gradients = [], []
    for forward in (network, functools.partial(
        reference_network.graph_nets_forward, network)):
      with tf.GradientTape() as tape:
        output = forward(graph)
        loss = tf.reduce_sum(output**2)
      outputs.append(output)
      gradients.append(tape.gradient(loss, variables))
    self.assertGreater(int(graph.n_edge[0]), 40)
    self.assertAllClose(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    for variable, fast, reference in zip(variables, *gradients):
      self.assertAllClose(fast, reference, rtol=1e-4, atol=1e-5,
                          msg=variable.name)

  def test_checkpoint_layout(self):
    values = checkpoint_values(
        build.build_simulator(METADATA, config_lib.ModelConfig()))
    shapes = {k: v.shape for k, v in values.items()}
    self.assertEqual(shapes["simulator/_particle_type_embedding"], (9, 16))
    gn = "simulator/_graph_network"
    self.assertEqual(
        shapes[f"{gn}/_encoder_network/_node_model/_model/_layers/0/_layers/0/w"],
        (30, 128))
    self.assertEqual(
        shapes[f"{gn}/_processor_networks/9/_edge_block/_edge_model/_layers/0/_layers/0/w"],
        (384, 128))
    self.assertEqual(
        shapes[f"{gn}/_processor_networks/9/_node_block/_node_model/_layers/0/_layers/0/w"],
        (256, 128))
    self.assertEqual(shapes[f"{gn}/_decoder_network/_layers/2/w"], (128, 2))
    self.assertLen([k for k in shapes if k.startswith("simulator/")], 183)


if __name__ == "__main__":
  tf.test.main()
