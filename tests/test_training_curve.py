"""A run's curves read back from its TensorBoard summaries."""

import os

import numpy as np
import tensorflow as tf

from learning_to_simulate.benchmarks import training_curve


def write(summary_dir, scalars, image_step=None):
  """One writer's event file: `scalars` is `{tag: {step: value}}`."""
  writer = tf.summary.create_file_writer(summary_dir)
  with writer.as_default():
    for tag, values in scalars.items():
      for step, value in values.items():
        tf.summary.scalar(tag, value, step=step)
    if image_step is not None:
      tf.summary.image("valid/rollout_0", np.zeros([1, 4, 4, 3], np.float32),
                       step=image_step)
  writer.close()


class TrainingCurveTest(tf.test.TestCase):

  def test_a_resumed_run_keeps_the_last_value_of_each_step(self):
    model_path = self.create_tempdir().full_path
    summary_dir = os.path.join(model_path, "train")
    write(summary_dir, {"loss": {1: 3.0, 2: 2.0, 3: 1.5},
                        "valid/mse_full": {2: 0.5}}, image_step=2)
    # Resumed from a checkpoint at step 1: steps 2 and 3 are trained again.
    write(summary_dir, {"loss": {2: 2.5, 3: 1.25, 4: 1.0},
                        "learning_rate": {4: 1e-4},
                        "valid/mse_full": {2: 0.75, 4: 0.25},
                        "valid/emd": {4: 0.125}})
    self.assertLen(os.listdir(summary_dir), 2)
    curve = training_curve.training_curve(model_path)
    self.assertEqual(curve["train"], [
        {"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5},
        {"step": 3, "loss": 1.25},
        {"step": 4, "loss": 1.0, "learning_rate": float(np.float32(1e-4))}])
    self.assertEqual(curve["valid"], [
        {"step": 2, "mse_full": 0.75},
        {"step": 4, "mse_full": 0.25, "emd": 0.125}])
    self.assertIsNone(curve["best"])

  def test_no_summaries(self):
    model_path = self.create_tempdir().full_path
    with self.assertRaisesRegex(ValueError, "^--model_path: no training "
                                "summaries in .*train"):
      training_curve.training_curve(model_path)


if __name__ == "__main__":
  tf.test.main()
