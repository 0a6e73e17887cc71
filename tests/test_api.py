"""The Python API: the same rollouts, scores and plots as the command lines."""

import json
import os
import pickle

import numpy as np
import tensorflow as tf

from learning_to_simulate import api
from learning_to_simulate import reading_utils
from learning_to_simulate.data import synthetic
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import trainer


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
    frames = os.path.join(output_path, "frames.png")
    api.snapshots([("pretrained", rollout), ("again", again)], frames,
                  num_columns=3)
    for path in (plot, gif, frames):
      self.assertGreater(os.path.getsize(path), 0)
    with self.assertRaisesRegex(ValueError, r"Unsupported snapshots "
                                r"extension '\.jpg'"):
      api.snapshots(rollout, os.path.join(output_path, "frames.jpg"))

  def test_evaluation_options_and_errors(self):
    bare = api.load_simulator(pretrained=True, clamp_to_bounds=False)
    self.assertFalse(bare.model_config.clamp_to_bounds)
    with self.assertRaisesRegex(ValueError, "either model_path or "
                                "pretrained"):
      api.load_simulator()
    with self.assertRaisesRegex(ValueError, "unknown evaluation option"):
      api.load_simulator(pretrained=True, latent_size=8)
    with self.assertRaisesRegex(ValueError, "--pretrained must be one of "
                                "water_drop, multi_material, water_walls .* "
                                "got 'lava'"):
      api.load_simulator(pretrained="lava")
    with self.assertRaisesRegex(ValueError, r"positions must be \[num_frames "
                                r">= 6, num_particles, 2\], got \[3, 4, 2\]"):
      self.simulator.rollout(np.zeros([3, 4, 2]), particle_types=np.zeros(4))
    with self.assertRaisesRegex(ValueError, "particle_types is required"):
      self.simulator.rollout(np.zeros([6, 4, 2]), num_steps=2)


class ApiTrainTest(tf.test.TestCase):

  def test_train_is_the_trainer_and_loads(self):
    root = self.create_tempdir().full_path
    data_path = os.path.join(root, "data")
    synthetic.write_tiny_dataset(data_path, dim=2, num_particles=12,
                                 num_kinematic=2, num_frames=10,
                                 context_size=0, seed=4)
    small = api.ModelConfig(latent_size=8, hidden_size=8,
                            message_passing_steps=1)
    quiet = api.ValidationOptions(every_steps=0)
    model_path = api.train(data_path, os.path.join(root, "api"), 3,
                           model=small, validation_options=quiet, seed=7,
                           log_every_steps=1)
    self.assertEqual(model_path, os.path.join(root, "api"))
    # The same run through the trainer directly: the same weights.
    tf.random.set_seed(7)
    direct = os.path.join(root, "direct")
    trainer.train(data_path, direct, small, api.OptimizerConfig(),
                  trainer.TrainOptions(num_steps=3, seed=7,
                                       log_every_steps=1),
                  quiet, api.TrainingConfig())
    # Training keeps the dataset's metadata with the model: no data_path.
    simulator = api.load_simulator(model_path)
    self.assertEqual(simulator.metadata,
                     reading_utils.read_metadata(data_path))
    self.assertEqual(simulator.model_config, small)
    _, reference = evaluation.load_model(data_path, direct, small)
    for mine, theirs in zip(simulator.network.trainable_variables,
                            reference.trainable_variables):
      self.assertAllEqual(mine, theirs)
    rollout = simulator.rollout(
        api.load_trajectories(data_path, split="test")[0], num_steps=2)
    self.assertEqual(rollout["predicted_rollout"].shape, (2, 14, 2))
    # Evaluated with a dataset that normalizes otherwise: one warning line.
    with open(os.path.join(model_path, "metadata.json")) as f:
      trained = json.load(f)
    with open(os.path.join(model_path, "metadata.json"), "w") as f:
      json.dump(dict(trained, vel_std=[2 * v for v in trained["vel_std"]]), f)
    with self.assertLogs("absl", "WARNING") as logs:
      api.load_simulator(model_path, data_path=data_path)
    self.assertRegex("\n".join(logs.output), r"data/metadata.json differs "
                     r"from the metadata the model in .*api was trained with "
                     r"in vel_std: the model is run with this dataset's")
    os.remove(os.path.join(model_path, "metadata.json"))
    with self.assertRaisesRegex(ValueError, r"api has no metadata.json .* "
                                "give data_path"):
      api.load_simulator(model_path)
    with self.assertRaisesRegex(ValueError, r"unknown training option\(s\) "
                                "batchsize; known: batch_size"):
      api.train(data_path, os.path.join(root, "bad"), 1, batchsize=4)


if __name__ == "__main__":
  tf.test.main()
