"""The Python API: the same rollouts, scores and plots as the command lines."""

import os
import pickle

import numpy as np
import tensorflow as tf

from learning_to_simulate import api
from learning_to_simulate import reading_utils
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import evaluation


class ApiTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.trajectories = api.load_trajectories(split="test")
    cls.simulator = api.load_simulator(pretrained=True)

  def test_trajectories_of_the_bundled_sample(self):
    metadata = reading_utils.read_metadata(
        reading_utils.bundled_dataset_path())
    self.assertLen(self.trajectories, 2)
    for trajectory in self.trajectories:
      frames, particles, dim = trajectory.positions.shape
      self.assertEqual((frames, dim), (metadata["sequence_length"] + 1, 2))
      self.assertEqual(trajectory.particle_types.shape, (particles,))
    self.assertLen(api.load_trajectories(split="test", limit=1), 1)

  def test_rollout_is_eval_rollouts(self):
    rollout = self.simulator.rollout(self.trajectories[0], num_steps=12)
    output_path = self.create_tempdir().full_path
    saved = config_lib.load(checkpoints.pretrained_model_path())
    evaluation.evaluate_rollouts(
        reading_utils.bundled_dataset_path(),
        checkpoints.pretrained_model_path(), output_path,
        config_lib.ModelConfig(**saved["model"]), num_rollouts=1,
        rollout_steps=12)
    with open(os.path.join(output_path, "rollout_test_0.pkl"), "rb") as f:
      expected = pickle.load(f)
    self.assertCountEqual(rollout, expected)
    for key in ("initial_positions", "predicted_rollout",
                "ground_truth_rollout", "particle_types"):
      self.assertAllClose(rollout[key], expected[key], atol=1e-6)
    # From 6 frames of raw positions: the same prediction.
    again = self.simulator.rollout(
        self.trajectories[0].positions[:6], num_steps=12,
        particle_types=self.trajectories[0].particle_types)
    self.assertAllClose(again["predicted_rollout"],
                        rollout["predicted_rollout"], atol=1e-6)
    self.assertEqual(again["ground_truth_rollout"].shape[0], 0)
    # Scores as eval_rollout's, and plots.
    scores = api.score(rollout)
    self.assertCountEqual(scores, ["model", "constant_velocity", "frozen"])
    self.assertAllClose(
        scores["model"]["mse_full"],
        np.mean((rollout["predicted_rollout"] -
                 rollout["ground_truth_rollout"])**2), rtol=1e-5)
    plot = os.path.join(output_path, "physics.png")
    series = api.plot_physics(rollout, plot)
    self.assertLen(series["kinetic energy, predicted"], 12)
    gif = os.path.join(output_path, "rollout.gif")
    self.assertEqual(api.render(rollout, gif, step_stride=4), 5)
    for path in (plot, gif):
      self.assertGreater(os.path.getsize(path), 0)

  def test_evaluation_options_and_errors(self):
    bare = api.load_simulator(pretrained=True, clamp_to_bounds=False)
    self.assertFalse(bare.model_config.clamp_to_bounds)
    with self.assertRaisesRegex(ValueError, "either model_path or "
                                "pretrained"):
      api.load_simulator()
    with self.assertRaisesRegex(ValueError, "unknown evaluation option"):
      api.load_simulator(pretrained=True, latent_size=8)
    with self.assertRaisesRegex(ValueError, "--pretrained must be one of "
                                "water_drop, multi_material .* got 'lava'"):
      api.load_simulator(pretrained="lava")
    with self.assertRaisesRegex(ValueError, r"positions must be \[num_frames "
                                r">= 6, num_particles, 2\], got \[3, 4, 2\]"):
      self.simulator.rollout(np.zeros([3, 4, 2]), particle_types=np.zeros(4))
    with self.assertRaisesRegex(ValueError, "particle_types is required"):
      self.simulator.rollout(np.zeros([6, 4, 2]), num_steps=2)


if __name__ == "__main__":
  tf.test.main()
