"""Models written by earlier versions still load, roll out the same and
resume training (`tests/data/model_438b2de`, written at commit 438b2de)."""

import os
import shutil

import numpy as np
import tensorflow as tf

from learning_to_simulate import api
from learning_to_simulate.training import checkpoints

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                       "model_438b2de")
# What the fixture was trained with (its config.json says the same).
MODEL = api.ModelConfig(latent_size=8, hidden_size=8, hidden_layers=1,
                        message_passing_steps=2, clamp_to_bounds=True)


class ModelOf438b2deTest(tf.test.TestCase):

  def test_rolls_out_as_the_code_that_wrote_it(self):
    simulator = api.load_simulator(FIXTURE)
    self.assertEqual(simulator.model_config, MODEL)
    rollout = simulator.rollout(api.load_trajectories(split="test")[0],
                                num_steps=5)
    expected = np.load(os.path.join(FIXTURE, "expected_rollout.npz"))
    self.assertEqual(expected["predicted_rollout"].shape[0], 5)
    self.assertAllClose(rollout["predicted_rollout"],
                        expected["predicted_rollout"], rtol=0, atol=1e-6)

  def test_training_resumes_from_it(self):
    model_path = os.path.join(self.get_temp_dir(), "model")
    shutil.copytree(FIXTURE, model_path)
    before = [v.numpy() for v in
              api.load_simulator(model_path).network.trainable_variables]
    api.train(api.bundled_dataset_path(), model_path, num_steps=6,
              model=MODEL, optimizer=api.OptimizerConfig(lr=1e-3), seed=0,
              checkpoint_every_steps=6, log_every_steps=1,
              shuffle_buffer_size=1,
              validation_options=api.ValidationOptions(every_steps=0))
    self.assertEqual(checkpoints.number(
        tf.train.latest_checkpoint(model_path)), 6)
    after = api.load_simulator(model_path).network.trainable_variables
    self.assertLen(after, len(before))
    moved = [not np.array_equal(new.numpy(), old)
             for new, old in zip(after, before)]
    self.assertTrue(all(moved), moved)


if __name__ == "__main__":
  tf.test.main()
