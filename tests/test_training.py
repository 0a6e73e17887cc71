"""Noise, loss, learning-rate schedule, normalization and the train step."""

import dataclasses
import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate import noise_utils
from learning_to_simulate.data import synthetic
from learning_to_simulate.model import build
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import one_step
from learning_to_simulate.training import optimizers
from learning_to_simulate.training import train_step as train_step_lib
from learning_to_simulate.training import trainer
from learning_to_simulate.training import validation

METADATA = {
    "dim": 2, "bounds": [[0.0, 1.0], [0.0, 1.0]],
    "default_connectivity_radius": 0.1, "sequence_length": 10,
    "vel_mean": [0.0, 0.0], "vel_std": [3e-3, 4e-3],
    "acc_mean": [0.0, -1e-4], "acc_std": [1e-4, 2e-4],
}
KINEMATIC = common.ParticleType.KINEMATIC
WATER = common.ParticleType.WATER


class NoiseTest(tf.test.TestCase):

  def test_random_walk_statistics(self):
    tf.random.set_seed(1)
    positions = tf.zeros([20000, common.INPUT_SEQUENCE_LENGTH, 3])
    noise = noise_utils.get_random_walk_noise_for_position_sequence(
        positions, noise_std_last_step=0.5).numpy()
    self.assertAllEqual(noise[:, 0], np.zeros([20000, 3]))
    velocity_noise = np.diff(noise, axis=1)
    steps = np.diff(velocity_noise, axis=1, prepend=0.0)
    # Independent steps of std 0.5 / sqrt(5); the last velocity has std 0.5.
    self.assertAllClose(steps.std(axis=(0, 2)), [0.5 / 5**0.5] * 5,
                        rtol=0.03)
    self.assertAllClose(velocity_noise.std(axis=(0, 2)),
                        0.5 * np.sqrt(np.arange(1, 6) / 5), rtol=0.03)
    self.assertAllClose(velocity_noise.mean(), 0.0, atol=0.01)
    self.assertLess(abs(np.corrcoef(steps[:, 0, 0], steps[:, 1, 0])[0, 1]),
                    0.03)

  def test_kinematic_particles_get_no_noise(self):
    types = tf.constant([WATER, KINEMATIC, WATER, KINEMATIC], tf.int64)
    noise = one_step.sample_noise(
        tf.zeros([4, common.INPUT_SEQUENCE_LENGTH, 2]), types, 0.1).numpy()
    self.assertAllEqual(noise[1], np.zeros_like(noise[1]))
    self.assertAllEqual(noise[3], np.zeros_like(noise[3]))
    self.assertGreater(np.abs(noise[0, 1:]).min(), 0.0)

  def test_kinematic_mask(self):
    self.assertAllEqual(
        common.kinematic_mask(tf.constant([0, 3, 5, 3, 8])),
        [False, True, False, True, False])


class LossAndScheduleTest(tf.test.TestCase, parameterized.TestCase):

  def test_loss_sums_dims_and_averages_non_kinematic_particles(self):
    predicted = tf.constant([[1.0, 2.0], [5.0, 5.0], [0.0, 0.0]])
    target = tf.constant([[0.0, 0.0], [0.0, 0.0], [3.0, 0.0]])
    types = tf.constant([WATER, KINEMATIC, WATER], tf.int64)
    # (1 + 4) + (9 + 0) over the two non-kinematic particles.
    self.assertAllClose(one_step.masked_loss(predicted, target, types), 7.0)

  def test_loss_is_zero_without_moving_particles(self):
    self.assertAllClose(one_step.masked_loss(
        tf.ones([2, 2]), tf.zeros([2, 2]),
        tf.constant([KINEMATIC, KINEMATIC], tf.int64)), 0.0)

  @parameterized.parameters((0, 1e-4), (5e6, 1.09e-5), (1e7, 1.99e-6),
                            (2.5e6, 9.9e-5 * 0.1**0.5 + 1e-6))
  def test_learning_rate_schedule(self, step, expected):
    schedule = optimizers.DecayedLearningRate(1e-4, 1e-6, int(5e6), 0.1)
    self.assertAllClose(schedule(step), expected, rtol=1e-5)

  def test_optimizer_uses_schedule_and_step(self):
    simulator = build.build_simulator(
        METADATA, config_lib.ModelConfig(latent_size=4, hidden_size=4,
                                         message_passing_steps=1))
    optimizer = optimizers.make_optimizer(config_lib.OptimizerConfig(),
                                          simulator)
    self.assertAllClose(optimizer.learning_rate, 1e-4)
    optimizer.iterations.assign(int(1e7))
    self.assertAllClose(optimizer.learning_rate, 1.99e-6, rtol=1e-5)
    self.assertAllClose(optimizer.epsilon, 1e-8)

  def test_normalization_stats_fold_in_noise(self):
    stats = build.get_normalization_stats(
        dict(METADATA, context_mean=[1.0], context_std=[0.5]), 6.7e-4)
    self.assertAllClose(stats["velocity"].std,
                        np.sqrt(np.array([3e-3, 4e-3])**2 + 6.7e-4**2))
    self.assertAllClose(stats["acceleration"].std,
                        np.sqrt(np.array([1e-4, 2e-4])**2 + 6.7e-4**2))
    self.assertAllClose(stats["acceleration"].mean, [0.0, -1e-4])
    self.assertAllClose(stats["context"].std, [0.5])  # No noise folded in.


class ConnectivityRadiusTest(tf.test.TestCase):

  def test_override_builds_the_graph_with_it(self):
    model = config_lib.ModelConfig(latent_size=4, hidden_size=4,
                                   message_passing_steps=1)
    # Three particles on a line, 0.08 apart: within the metadata's 0.1 of
    # their neighbours only; within 0.2 of each other.
    positions = tf.tile(tf.constant([[[0.3, 0.5]], [[0.38, 0.5]],
                                     [[0.46, 0.5]]]),
                        [1, common.INPUT_SEQUENCE_LENGTH, 1])
    edges = {}
    for radius in (None, 0.2):
      simulator = build.build_simulator(
          METADATA, dataclasses.replace(model, connectivity_radius=radius))
      self.assertEqual(simulator.connectivity_radius, radius or 0.1)
      graph = simulator._encoder_preprocessor(
          positions, tf.constant([3]), None, tf.fill([3], WATER))
      edges[radius] = int(graph.n_edge[0])
    # Self-edges included: 3 + 4 at 0.1, 3 + 6 at 0.2.
    self.assertEqual(edges, {None: 7, 0.2: 9})

  def test_saved_with_the_model(self):
    for bad in (0.0, -0.1):
      with self.assertRaisesRegex(ValueError,
                                  "--connectivity_radius must be > 0"):
        config_lib.ModelConfig(connectivity_radius=bad).validate()
    # A config.json written before the option reads as the metadata's.
    saved = {"model": {"latent_size": 8}}
    self.assertIsNone(config_lib.resolve(saved, "model", config_lib.ModelConfig,
                                         {}, "/m").connectivity_radius)
    # It is what the model learned on: evaluation may not change it.
    with self.assertRaisesRegex(ValueError, "--connectivity_radius=0.05 "
                                "differs from the value None"):
      config_lib.resolve(saved, "model", config_lib.ModelConfig,
                         {"connectivity_radius": 0.05}, "/m", evaluating=True)


class RunRecordTest(tf.test.TestCase):

  def test_config_json_records_the_run_and_a_resume_that_changes_it(self):
    root = self.create_tempdir().full_path
    data_path = os.path.join(root, "data")
    synthetic.write_tiny_dataset(data_path, num_particles=10, num_frames=9,
                                 num_kinematic=2)
    model_path = os.path.join(root, "model")
    small = config_lib.ModelConfig(latent_size=4, hidden_size=4,
                                   message_passing_steps=1)
    quiet = validation.ValidationOptions(every_steps=0)

    def run(num_steps, **options):
      trainer.train(data_path, model_path, small, config_lib.OptimizerConfig(),
                    trainer.TrainOptions(num_steps=num_steps, **options),
                    quiet)
      return config_lib.load(model_path)[config_lib.RUN_SECTION]

    self.assertEqual(run(1, batch_size=2, seed=3),
                     {"batch_size": 2, "seed": 3, "mixed_precision": None,
                      "jit_compile": False, "num_workers": 1})
    with self.assertLogs("absl", "INFO") as logs:
      record = run(2, batch_size=1, seed=3)
    self.assertEqual(record["batch_size"], 1)
    (line,) = [line for line in logs.output if "Resuming" in line]
    self.assertIn("batch_size is 1 in this run, 2 in the run so far", line)
    # The start prints what decides the run, changes from the paper's alone.
    printed = [line.split("Configuration (config.json) ")[1]
               for line in logs.output if "Configuration" in line]
    self.assertEqual(printed, [
        "model: hidden_size=4, latent_size=4, message_passing_steps=1",
        "optimizer: the paper's", "training: the paper's",
        "run: batch_size=1, jit_compile=False, mixed_precision=None, "
        "num_workers=1, seed=3"])
    # A config.json written before the run section: nothing to compare.
    self.assertEqual(config_lib.run_changes({"model": {}}, record), [])


def make_batch(rng, n_particles_per_example):
  n = sum(n_particles_per_example)
  start = rng.uniform(0.2, 0.8, [n, 1, 2])
  velocity = rng.normal(0, 3e-3, [n, 1, 2])
  t = np.arange(common.WINDOW_LENGTH)[None, :, None]
  positions = (start + velocity * t + 0.5 * np.array([0, -1e-4]) * t**2)
  features = {
      "position": tf.constant(positions[:, :-1], tf.float32),
      "particle_type": tf.constant(
          np.where(rng.uniform(size=n) < 0.2, KINEMATIC, WATER), tf.int64),
      "n_particles_per_example": tf.constant(n_particles_per_example,
                                             tf.int32),
  }
  return features, tf.constant(positions[:, -1], tf.float32)


class TrainStepTest(tf.test.TestCase):

  def test_train_step_overfits_a_batch_without_retracing(self):
    tf.random.set_seed(0)
    rng = np.random.default_rng(0)
    model = config_lib.ModelConfig(latent_size=16, hidden_size=16,
                                   message_passing_steps=2)
    simulator = build.build_simulator(METADATA, model)
    optimizer = optimizers.make_optimizer(
        config_lib.OptimizerConfig(lr=1e-3, min_lr=1e-3), simulator)
    step_fn = train_step_lib.make_train_step(
        simulator, optimizer, train_step_lib.OneStep(0.0), METADATA)
    train_step = train_step_lib.loss_of(step_fn)
    batch = make_batch(rng, [30, 20])
    first = float(train_step(batch))
    for _ in range(150):
      last = float(train_step(batch))
    self.assertLess(last, 0.1 * first)
    self.assertEqual(int(optimizer.iterations), 151)
    train_step(make_batch(rng, [7, 3, 12]))  # Other sizes, same graph.
    self.assertEqual(step_fn.experimental_get_tracing_count(), 1)


if __name__ == "__main__":
  tf.test.main()
