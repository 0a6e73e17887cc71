"""Validation during training: summaries, images and the best model."""

import inspect
import json
import os
from unittest import mock

import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from learning_to_simulate.data import synthetic
from learning_to_simulate.model import build
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import validation

SMALL = config_lib.ModelConfig(latent_size=8, hidden_size=8, hidden_layers=1,
                               message_passing_steps=2)
OPTIONS = validation.ValidationOptions(every_steps=5, num_batches=2,
                                       num_rollouts=1, rollout_steps=4)


class ValidationTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    tf.random.set_seed(0)
    root = self.create_tempdir().full_path
    self.data_path = os.path.join(root, "data")
    self.model_path = os.path.join(root, "model")
    self.metadata = synthetic.write_tiny_dataset(
        self.data_path, num_particles=16, num_kinematic=3, num_frames=12,
        seed=2)
    self.simulator = build.build_simulator(self.metadata, SMALL)
    self.good = [v.numpy() for v in self.simulator.trainable_variables]

  def _validator(self, options=OPTIONS):
    return validation.Validator(self.data_path, self.model_path,
                                self.metadata, self.simulator,
                                SMALL.noise_std, options)

  def _set_weights(self, scale):
    # Scaling the decoder's output layer scales the predicted accelerations.
    for variable, value in zip(self.simulator.trainable_variables,
                               self.good):
      if value.shape == (SMALL.hidden_size, 2):  # The decoder's last weights.
        value = value * scale
      variable.assign(value)

  def test_traced_when_made_not_when_it_validates(self):
    # Autograph reads source files when it traces: everything validation
    # runs is traced when training starts, so a file edited during a long
    # run cannot break a validation hours later.
    validator = self._validator()
    read = []
    findsource = inspect.findsource  # What autograph reads source with.

    def recording_findsource(obj):
      read.append(getattr(obj, "__qualname__", repr(obj)))
      return findsource(obj)

    with mock.patch("inspect.findsource", recording_findsource):
      first = validator(5)
      second = validator(10)
    self.assertEqual(read, [])
    self.assertEqual(first["mse_full"], second["mse_full"])

  def test_writes_scalars_and_images(self):
    logdir = self.create_tempdir().full_path
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default(), self.assertLogs("absl", "INFO") as logs:
      results = self._validator()(5)
    writer.flush()
    self.assertRegex("\n".join(logs.output),
                     r"validation at step 5 \(valid, 1 rollouts, [0-9.]+s\): "
                     r"loss_mse [0-9.e+-]+  one_step_position_mse "
                     r"[0-9.e+-]+  one_step_position_mse_moving [0-9.e+-]+ ")
    # With kinematic particles the two one-step errors differ, and both
    # are shown: the original's counts the kinematic particles, which the
    # loss never trains.
    self.assertNotEqual(results["one_step_position_mse"],
                        results["one_step_position_mse_moving"])
    # How the rollouts move as a whole: energy and density against truth.
    self.assertRegex("\n".join(logs.output),
                     r"  kinetic_energy_ratio [0-9.e+-]+  density_ratio "
                     r"[0-9.e+-]+  wall_height_error [0-9.e+-]+")
    self.assertEqual(results["num_batches"], 2)
    for name in ("loss_mse", "one_step_position_mse", "mse_1", "mse_full",
                 "emd", "kinetic_energy_mse", "out_of_domain", "seconds"):
      self.assertIn(name, results)
    events = event_accumulator.EventAccumulator(
        logdir, size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    tags = events.Tags()["tensors"]
    for tag in ("valid/loss_mse", "valid/mse_full", "valid/emd",
                "valid/out_of_domain", "valid_frozen/mse_full",
                "valid_constant_velocity/mse_full", "valid/rollout_0",
                "valid/rollout_error"):
      self.assertIn(tag, tags)
    mse_full = events.Tensors("valid/mse_full")[0]
    self.assertEqual(mse_full.step, 5)
    self.assertAllClose(tf.make_ndarray(mse_full.tensor_proto),
                        results["mse_full"])
    # Images are stored as [width, height, PNG bytes].
    image = tf.make_ndarray(events.Tensors("valid/rollout_0")[0].tensor_proto)
    pixels = tf.io.decode_png(image[2]).numpy()
    self.assertEqual(pixels.shape[-1], 3)
    self.assertEqual((int(image[0]), int(image[1])),
                     (pixels.shape[1], pixels.shape[0]))
    self.assertGreater(pixels.std(), 10)  # Not a blank picture.

  def test_best_model_changes_only_when_the_metric_improves(self):
    validator = self._validator()
    self._set_weights(50.0)  # A poor model first: it is the best so far.
    first = validator(5)["mse_full"]
    self.assertEqual(checkpoints.read_best(self.model_path)["step"], 5)
    self._set_weights(1.0)  # Better: kept.
    second = validator(10)["mse_full"]
    self.assertLess(second, first)
    best = checkpoints.read_best(self.model_path)
    self.assertEqual(best["step"], 10)
    self.assertEqual(best["metric"], "mse_full")
    self.assertAllClose(best["metrics"]["mse_full"], second)
    self._set_weights(50.0)  # Worse again: not kept.
    validator(15)
    self.assertEqual(checkpoints.read_best(self.model_path)["step"], 10)
    self.assertIn("ckpt-10.index",
                  os.listdir(checkpoints.best_directory(self.model_path)))
    self.assertNotIn("ckpt-5.index",
                     os.listdir(checkpoints.best_directory(self.model_path)))

    # A resumed run knows the best value so far.
    self.assertAllClose(self._validator().best_value, second)

    # --checkpoint=best restores the kept weights, latest/a path as named.
    config_lib.save(self.model_path, SMALL, config_lib.OptimizerConfig())
    _, restored = evaluation.load_model(self.data_path, self.model_path,
                                        SMALL, checkpoint="best")
    for variable, value in zip(restored.trainable_variables, self.good):
      self.assertAllEqual(variable, value)
    with self.assertRaisesRegex(checkpoints.CheckpointError,
                                "has no checkpoint"):
      evaluation.load_model(self.data_path, self.model_path, SMALL,
                            checkpoint="latest")
    with self.assertRaisesRegex(checkpoints.CheckpointError,
                                r"--checkpoint: no checkpoint at .*nope"):
      evaluation.load_model(self.data_path, self.model_path, SMALL,
                            checkpoint=os.path.join(self.model_path, "nope"))

  def test_non_finite_metric_is_never_the_best(self):
    validator = self._validator()
    self.assertFalse(validator._keep_if_best(5, {"mse_full": float("nan")}))
    self.assertIsNone(checkpoints.read_best(self.model_path))

  def test_a_failed_best_save_keeps_the_previous_best(self):
    validator = self._validator()
    validator(5)
    with mock.patch.object(validator._best_manager, "save",
                           side_effect=OSError(28, "No space left")):
      with self.assertLogs("absl", "WARNING") as logs:
        self.assertFalse(validator._keep_if_best(10, {"mse_full": 0.0}))
    self.assertRegex(logs.output[0], "Could not save the best model .*No "
                     "space left; keeping the previous one")
    self.assertEqual(checkpoints.read_best(self.model_path)["step"], 5)

  def test_due(self):
    validator = self._validator()
    self.assertEqual([s for s in range(1, 13) if validator.due(s, 12)],
                     [5, 10, 12])
    off = validation.ValidationOptions(every_steps=0)
    self.assertFalse(off.enabled)

  def test_bad_options(self):
    for options, message in (
        (validation.ValidationOptions(every_steps=-1), "--eval_every_steps"),
        (validation.ValidationOptions(num_rollouts=0), "--eval_num_rollouts"),
        (validation.ValidationOptions(best_metric="accuracy"),
         "--best_metric must be one of loss_mse, .*mse_full")):
      with self.assertRaisesRegex(ValueError, message):
        options.validate()

  def test_best_json_is_checked(self):
    os.makedirs(checkpoints.best_directory(self.model_path))
    with open(os.path.join(checkpoints.best_directory(self.model_path),
                           checkpoints.BEST_JSON), "w") as f:
      json.dump({"step": 3}, f)
    with self.assertRaisesRegex(checkpoints.CheckpointError,
                                "missing checkpoint, metric, metrics"):
      checkpoints.read_best(self.model_path)


if __name__ == "__main__":
  tf.test.main()
