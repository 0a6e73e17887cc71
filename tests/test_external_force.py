"""The external-force option: gravity outside the network (issue 22 item 1)."""

import dataclasses
import json
import os
import tempfile

import numpy as np
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate.model import external_force
from learning_to_simulate.model import build
from learning_to_simulate.training import config as config_lib

GRAVITY = (0.0, -6.125e-5)  # 9.8 m/s^2 at 2.5 ms per frame.
METADATA = {
    "dim": 2, "bounds": [[0.0, 1.0], [0.0, 1.0]],
    "default_connectivity_radius": 0.05, "sequence_length": 10,
    "vel_mean": [0.0, -1e-3], "vel_std": [2e-3, 2e-3],
    "acc_mean": [1e-6, 2e-6], "acc_std": [1.5e-4, 1.6e-4],
    external_force.METADATA_KEY: list(GRAVITY),
}
SMALL = config_lib.ModelConfig(latent_size=8, hidden_size=8, hidden_layers=1,
                               message_passing_steps=2)


def falling_block(num_frames=common.INPUT_SEQUENCE_LENGTH + 1):
  """`[16, num_frames, 2]` a 4 x 4 block in free fall (spacing 0.01, closer
  than the radius: the particles interact), exact in float64."""
  grid = np.stack(np.meshgrid(np.arange(4), np.arange(4)), -1).reshape(-1, 2)
  start = 0.4 + 0.01 * grid
  t = np.arange(num_frames, dtype=np.float64)[None, :, None]
  velocity = np.array([2e-4, -1e-3])
  return start[:, None] + velocity * t + 0.5 * np.array(GRAVITY) * t * (t - 1)


def zero_network(simulator):
  """Every variable 0: the decoder's last layer outputs exactly 0."""
  for variable in simulator.trainable_variables:
    variable.assign(tf.zeros_like(variable))


class ExternalForceTest(tf.test.TestCase):

  def test_a_zero_network_predicts_free_fall_exactly(self):
    trajectory = falling_block()
    inputs = tf.constant(trajectory[:, :-1], tf.float32)
    kwargs = dict(n_particles_per_example=tf.constant([16]),
                  particle_types=tf.zeros([16], tf.int64))
    with_force = build.build_simulator(
        METADATA, dataclasses.replace(SMALL, external_acceleration=GRAVITY))
    zero_network(with_force)
    self.assertAllClose(with_force(inputs, **kwargs), trajectory[:, -1],
                        atol=1e-7, rtol=0)
    # The paper's target: the same network's zero is the mean acceleration,
    # 2e-6 upwards, and the block misses the fall.
    paper = build.build_simulator(METADATA, SMALL)
    zero_network(paper)
    miss = paper(inputs, **kwargs)[:, 1] - trajectory[:, -1, 1]
    self.assertAllClose(miss, np.full(16, 2e-6 - GRAVITY[1]), atol=1e-7,
                        rtol=0)

  def test_the_target_is_the_acceleration_minus_the_force(self):
    trajectory = tf.constant(falling_block(), tf.float32)
    simulator = build.build_simulator(
        METADATA, dataclasses.replace(SMALL, external_acceleration=GRAVITY))
    _, target = simulator.get_predicted_and_target_normalized_accelerations(
        trajectory[:, -1], tf.zeros_like(trajectory[:, :-1]),
        trajectory[:, :-1], tf.constant([16]),
        particle_types=tf.zeros([16], tf.int64))
    self.assertAllClose(target, np.zeros([16, 2]), atol=2e-3, rtol=0)

  def test_the_default_is_the_papers_target(self):
    simulator = build.build_simulator(METADATA, SMALL)
    trajectory = tf.constant(falling_block(), tf.float32)
    _, target = simulator.get_predicted_and_target_normalized_accelerations(
        trajectory[:, -1], tf.zeros_like(trajectory[:, :-1]),
        trajectory[:, :-1], tf.constant([16]),
        particle_types=tf.zeros([16], tf.int64))
    std = np.sqrt(np.float32(METADATA["acc_std"])**2 + SMALL.noise_std**2)
    expected = (np.array(GRAVITY) - METADATA["acc_mean"]) / std
    self.assertAllClose(target, np.tile(expected, [16, 1]), atol=2e-3,
                        rtol=0)  # float32 positions near 0.4.
    self.assertAllClose(
        -external_force.normalized_shift(METADATA, GRAVITY),
        (np.array(GRAVITY) - METADATA["acc_mean"]) /
        np.array(METADATA["acc_std"]))

  def test_resolve(self):
    self.assertIsNone(external_force.resolve(None, METADATA))
    self.assertEqual(external_force.resolve(["auto"], METADATA), GRAVITY)
    self.assertEqual(external_force.resolve(["0", "-1e-4"], METADATA),
                     (0.0, -1e-4))
    no_key = {k: v for k, v in METADATA.items()
              if k != external_force.METADATA_KEY}
    with self.assertRaisesRegex(ValueError, "/data/metadata.json has no"):
      external_force.resolve(["auto"], no_key, "/data/metadata.json")
    with self.assertRaisesRegex(ValueError, "expected 2 finite numbers"):
      external_force.resolve(["0"], METADATA)
    with self.assertRaisesRegex(ValueError, "expected 2 numbers or 'auto'"):
      external_force.resolve(["0", "down"], METADATA)

  def test_config_json_round_trip(self):
    model_path = tempfile.mkdtemp()
    model = dataclasses.replace(SMALL, external_acceleration=[0.0, -1e-4])
    self.assertEqual(model.external_acceleration, (0.0, -1e-4))
    config_lib.save(model_path, model, config_lib.OptimizerConfig())
    saved = config_lib.load(model_path)
    self.assertEqual(saved["model"]["external_acceleration"], [0.0, -1e-4])
    # The same value again is no change; another one is refused.
    resolved = config_lib.resolve(
        saved, "model", config_lib.ModelConfig,
        {"external_acceleration": (0.0, -1e-4)}, model_path)
    self.assertEqual(resolved, model)
    with self.assertRaisesRegex(ValueError, "external_acceleration"):
      config_lib.resolve(saved, "model", config_lib.ModelConfig,
                         {"external_acceleration": (0.0, -2e-4)},
                         model_path)
    # A config.json written before the option reads as the paper's target.
    with open(os.path.join(model_path, "config.json")) as f:
      old = json.load(f)
    del old["model"]["external_acceleration"]
    self.assertIsNone(config_lib.resolve(old, "model", config_lib.ModelConfig,
                                         {}, model_path).external_acceleration)


if __name__ == "__main__":
  tf.test.main()
