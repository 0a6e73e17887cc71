"""--mixed_precision, --jit_compile and --recompute_grad against the default.

The first two are GPU speed-ups, the last saves memory; these tests run them
on the CPU and check they compute the same model within stated tolerances.
"""

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from learning_to_simulate.data import synthetic
from learning_to_simulate import graph_network
from learning_to_simulate.model import build
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import one_step
from learning_to_simulate.training import optimizers
from learning_to_simulate.training import train_step as train_step_lib

METADATA = {
    "dim": 2, "bounds": [[0.0, 1.0], [0.0, 1.0]],
    "default_connectivity_radius": 0.05, "sequence_length": 10,
    "vel_mean": [0.0, 0.0], "vel_std": [2e-3, 2e-3],
    "acc_mean": [0.0, -1e-4], "acc_std": [2e-4, 2e-4],
}


def make_batch(seed=0):
  rng = np.random.default_rng(seed)
  positions = np.concatenate([
      synthetic.jittered_lattice(70, 2, 0.02, rng, origin=0.3),
      synthetic.jittered_lattice(50, 2, 0.02, rng, origin=0.4)])
  walk = np.cumsum(rng.normal(0, 1e-3, [120, 7, 2]), axis=1)
  sequence = (positions[:, None] + walk).astype(np.float32)
  features = {
      "position": tf.constant(sequence[:, :-1]),
      "particle_type": tf.constant(rng.integers(0, 9, [120]), tf.int64),
      "n_particles_per_example": tf.constant([70, 50], tf.int32),
  }
  return features, tf.constant(sequence[:, -1])


# The mixed-precision test's model: float16 matmuls are emulated on CPUs,
# and the paper's size made that test take 2 minutes.
SMALL = config_lib.ModelConfig(latent_size=32, hidden_size=32,
                               message_passing_steps=4)


def perturbed_simulator(model_config=config_lib.ModelConfig()):
  """A seeded simulator with perturbed weights (non-trivial LayerNorms)."""
  tf.random.set_seed(0)
  simulator = build.build_simulator(METADATA, model_config)
  rng = np.random.default_rng(1)
  for v in simulator.trainable_variables:
    v.assign(v + rng.normal(0, 0.05, v.shape).astype(np.float32))
  return simulator


def twin(reference, model_config=config_lib.ModelConfig(), **kwargs):
  """A simulator with `reference`'s weights and other runtime options."""
  simulator = build.build_simulator(METADATA, model_config, **kwargs)
  for target, source in zip(simulator.trainable_variables,
                            reference.trainable_variables):
    target.assign(source)
  return simulator


class GpuOptionsTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.reference = perturbed_simulator()
    self.features, self.target = make_batch()

  def _accelerations(self, simulator):
    predicted, _ = simulator.get_predicted_and_target_normalized_accelerations(
        self.target, tf.zeros_like(self.features["position"]),
        self.features["position"], self.features["n_particles_per_example"],
        particle_types=self.features["particle_type"])
    return predicted

  def test_jit_compile_matches_float32(self):
    # Tolerance: float32 round-off of a different op order, 1e-4.
    simulator = twin(self.reference, jit_compile=True)
    self.assertAllClose(self._accelerations(simulator),
                        self._accelerations(self.reference),
                        rtol=1e-4, atol=1e-4)
    loss = {}
    for name, model in (("xla", simulator), ("default", self.reference)):
      optimizer = optimizers.make_optimizer(config_lib.OptimizerConfig(), model)
      step = train_step_lib.loss_of(train_step_lib.make_train_step(
          model, optimizer, train_step_lib.OneStep(0.0), METADATA))
      loss[name] = float(step((self.features, self.target)))
    self.assertAllClose(loss["xla"], loss["default"], rtol=1e-4)

  @parameterized.parameters(False, True)
  def test_recompute_grad_gives_the_same_gradients(self, use_tf_function):
    # Recomputation reruns the same float32 ops: equal up to round-off.
    simulator = twin(self.reference, recompute_grad=True)
    gradients = {}
    for name, model in (("recompute", simulator),
                        ("default", self.reference)):
      def loss_and_gradients(model=model):
        with tf.GradientTape() as tape:
          predicted, target = one_step.predicted_and_target_accelerations(
              model, (self.features, self.target), noise_std=0.0)
          loss = one_step.masked_loss(predicted, target,
                                      self.features["particle_type"])
        return loss, tape.gradient(loss, model.trainable_variables)
      if use_tf_function:
        loss_and_gradients = tf.function(loss_and_gradients)
      gradients[name] = loss_and_gradients()
    self.assertAllClose(gradients["recompute"][0], gradients["default"][0],
                        rtol=1e-6)
    for variable, got, want in zip(self.reference.trainable_variables,
                                   gradients["recompute"][1],
                                   gradients["default"][1]):
      self.assertIsNotNone(got, variable.name)
      # The type embedding's gradient comes as IndexedSlices. Summation
      # order differs, so the tolerance scales with the gradient's size.
      got, want = tf.convert_to_tensor(got), tf.convert_to_tensor(want)
      scale = float(tf.reduce_max(tf.abs(want)))
      self.assertAllClose(got, want, rtol=1e-5, atol=1e-5 * scale,
                          msg=variable.name)

  @parameterized.parameters("bfloat16", "float16")
  def test_mixed_precision_matches_float32(self, dtype):
    # Tolerance: bfloat16 keeps 8 significant bits (float16: 11), so the
    # normalized accelerations (order 1) agree to ~0.1 absolute after the
    # message-passing steps; positions agree far closer because the
    # acceleration is scaled by acc_std (2e-4).
    small = perturbed_simulator(SMALL)
    simulator = twin(small, SMALL, mixed_precision=dtype)
    predicted = self._accelerations(simulator)
    self.assertEqual(predicted.dtype, tf.float32)
    reference = self._accelerations(small)
    self.assertAllClose(predicted, reference, atol=0.1, rtol=0.05)
    self.assertGreater(np.corrcoef(predicted.numpy().ravel(),
                                   reference.numpy().ravel())[0, 1], 0.99)
    optimizer = optimizers.make_optimizer(
        config_lib.OptimizerConfig(), simulator,
        loss_scaling=dtype == "float16")
    step = train_step_lib.loss_of(train_step_lib.make_train_step(
        simulator, optimizer, train_step_lib.OneStep(0.0), METADATA))
    losses = [float(step((self.features, self.target))) for _ in range(3)]
    self.assertTrue(np.all(np.isfinite(losses)))
    for variable in simulator.trainable_variables:
      self.assertEqual(variable.dtype, tf.float32)

  def test_bucket_sizes(self):
    sizes = [int(graph_network.bucket_size(n)) for n in
             [1, 64, 65, 1000, 10000, 20001]]
    self.assertEqual(sizes[:3], [64, 64, 128])
    for n, size in zip([1, 64, 65, 1000, 10000, 20001], sizes):
      self.assertGreaterEqual(size, n)
      self.assertEqual(size % 64, 0)
      self.assertLessEqual(size, 1.19 * n + 64)
    distinct = {int(graph_network.bucket_size(n))
                for n in range(1000, 100001, 97)}
    self.assertLess(len(distinct), 30)


if __name__ == "__main__":
  tf.test.main()
