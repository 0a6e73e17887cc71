"""The pretrained model shipped with the package: intact, loadable, physical."""

import json
import os

import numpy as np
import tensorflow as tf

from learning_to_simulate.apps import package_model
from learning_to_simulate.data import synthetic
from learning_to_simulate import reading_utils
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import rollout as rollout_lib
from learning_to_simulate.training import trainer
from learning_to_simulate.training import validation


class PretrainedModelTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.model_path = checkpoints.pretrained_model_path()

  def test_files_match_their_checksums(self):
    package_model.verify_checksums(self.model_path)
    for name in ("PROVENANCE.md", "metrics.json", "config.json"):
      self.assertTrue(os.path.exists(os.path.join(self.model_path, name)))
    # Weights only: a few MB at most.
    size = sum(os.path.getsize(os.path.join(self.model_path, name))
               for name in package_model.checksummed_files(self.model_path))
    self.assertLess(size, 5e6)

  def test_rollout_stays_in_the_box_and_beats_the_baselines(self):
    data_path = reading_utils.bundled_dataset_path()
    saved = config_lib.load(self.model_path)
    model_config = config_lib.ModelConfig(**saved["model"])
    metadata, simulator = evaluation.load_model(data_path, self.model_path,
                                                model_config)
    features = next(iter(reading_utils.get_rollout_dataset(
        data_path, "test", metadata)))
    inputs = {k: v for k, v in features.items() if k != "key"}
    num_steps = metadata["sequence_length"] - 6
    rollout = {k: v.numpy() for k, v in rollout_lib.make_rollout_fn(
        simulator, metadata)(inputs, num_steps).items()}
    rollout["metadata"] = metadata
    scores = evaluation.score_rollout(rollout)
    model = scores["model"]
    self.assertEqual(model["out_of_domain"], 0.0)
    bounds = np.asarray(metadata["bounds"])
    self.assertTrue(np.all((rollout["predicted_rollout"] >= bounds[:, 0]) &
                           (rollout["predicted_rollout"] <= bounds[:, 1])))
    better = min(scores["constant_velocity"]["mse_full"],
                 scores["frozen"]["mse_full"])
    self.assertLess(model["mse_full"], 0.5 * better)
    # The same figure as recorded in the model's metrics.json.
    self.assertAllClose(
        model["mse_full"],
        package_metrics(self.model_path)["model"]["per_trajectory"][0][
            "mse_full"], rtol=1e-3)


def package_metrics(model_path):
  with open(os.path.join(model_path, "metrics.json")) as f:
    return json.load(f)


class PackageModelTest(tf.test.TestCase):

  def test_package_a_trained_model(self):
    root = self.create_tempdir().full_path
    data_path = os.path.join(root, "data")
    synthetic.write_tiny_dataset(data_path, num_frames=12)
    model_path = os.path.join(root, "model")
    small = config_lib.ModelConfig(latent_size=8, hidden_size=8,
                                   message_passing_steps=2,
                                   clamp_to_bounds=True)
    trainer.train(data_path, model_path, small, config_lib.OptimizerConfig(),
                  trainer.TrainOptions(num_steps=3, seed=0),
                  validation.ValidationOptions(every_steps=0))
    output = os.path.join(root, "shipped")
    metrics = package_model.package(model_path, "latest", output, data_path,
                                    "python -m learning_to_simulate.train X",
                                    12.0)
    self.assertEqual(metrics["step"], 3)
    package_model.verify_checksums(output)
    self.assertCountEqual(
        os.listdir(output),
        ["checkpoint", "ckpt-3.index", "ckpt-3.data-00000-of-00001",
         "config.json", "metrics.json", "PROVENANCE.md", "SHA256SUMS"])
    with open(os.path.join(output, "PROVENANCE.md")) as f:
      provenance = f.read()
    self.assertIn("python -m learning_to_simulate.train X", provenance)
    self.assertIn("Steps: 3.", provenance)
    # Weights only: no optimizer state, and it loads as a model directory.
    names = tf.train.load_checkpoint(os.path.join(
        output, "ckpt-3")).get_variable_to_dtype_map()
    self.assertFalse(any(name.startswith("optimizer") for name in names))
    _, simulator = evaluation.load_model(data_path, output, small)
    self.assertNotEmpty(simulator.trainable_variables)
    # A damaged file fails the check, naming it.
    with open(os.path.join(output, "config.json"), "a") as f:
      f.write(" ")
    with self.assertRaisesRegex(ValueError, "config.json does not match"):
      package_model.verify_checksums(output)


if __name__ == "__main__":
  tf.test.main()
