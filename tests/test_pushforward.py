"""Pushforward training and the multi-step loss: the schedule, the unroll,
the loss by hand, and k = 0 with one step is the paper."""

import dataclasses
import os
from unittest import mock

import numpy as np
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate.data import synthetic
from learning_to_simulate import reading_utils
from learning_to_simulate.model import build
from learning_to_simulate.model import relaxation
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import one_step
from learning_to_simulate.training import pushforward
from learning_to_simulate.training import train_step as train_step_lib
from learning_to_simulate.training import trainer
from learning_to_simulate.training import validation

SMALL = config_lib.ModelConfig(latent_size=8, hidden_size=8, hidden_layers=1,
                               message_passing_steps=2)
RECIPE = config_lib.TrainingConfig(pushforward_max_unroll=3,
                                   pushforward_phase_steps=100,
                                   pushforward_probability=0.5)


class ScheduleTest(tf.test.TestCase):

  def test_unrolls_phase_in(self):
    self.assertEqual(pushforward.window_length(RECIPE), 10)
    self.assertEqual([pushforward.available_unroll(s, RECIPE)
                      for s in (0, 99, 100, 250, 300, 10**6)],
                     [0, 0, 1, 2, 3, 3])
    rng = np.random.default_rng(0)
    self.assertEqual({pushforward.sample_unroll(50, RECIPE, rng)
                      for _ in range(100)}, {0})
    draws = np.array([pushforward.sample_unroll(10**6, RECIPE, rng)
                      for _ in range(4000)])
    # Half the steps unroll, their lengths uniform over 1..3.
    self.assertAllClose(np.mean(draws == 0), 0.5, atol=0.03)
    for k in (1, 2, 3):
      self.assertAllClose(np.mean(draws == k), 0.5 / 3, atol=0.03)

  def test_multistep_windows(self):
    self.assertEqual(pushforward.window_length(
        config_lib.TrainingConfig(multistep_loss_steps=3)),
                     common.WINDOW_LENGTH + 2)
    self.assertEqual(pushforward.window_length(
        config_lib.TrainingConfig(pushforward_max_unroll=2,
                                  multistep_loss_steps=2)),
                     common.WINDOW_LENGTH + 3)
    self.assertFalse(config_lib.TrainingConfig().windowed)
    self.assertTrue(config_lib.TrainingConfig(multistep_loss_steps=2).windowed)
    self.assertTrue(
        config_lib.TrainingConfig(pushforward_max_unroll=1).windowed)

  def test_validation(self):
    for recipe, message in (
        (config_lib.TrainingConfig(multistep_loss_steps=0),
         "--multistep_loss_steps must be >= 1"),
        (config_lib.TrainingConfig(pushforward_max_unroll=-1),
         "--pushforward_max_unroll must be >= 0"),
        (config_lib.TrainingConfig(pushforward_probability=1.5),
         r"--pushforward_probability must be in \[0, 1\]"),
        (config_lib.TrainingConfig(pushforward_relaxation=True),
         "give --pushforward_max_unroll > 0")):
      with self.assertRaisesRegex(ValueError, message):
        recipe.validate()


class UnrollTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    tf.random.set_seed(0)
    self.data_path = self.create_tempdir().full_path
    self.metadata = synthetic.write_tiny_dataset(
        self.data_path, num_particles=20, num_kinematic=4, num_frames=14,
        context_size=2, seed=1)
    self.simulator = build.build_simulator(self.metadata, SMALL)
    rng = np.random.default_rng(0)
    for v in self.simulator.trainable_variables:  # Non-trivial outputs.
      v.assign(v + rng.normal(0, 0.1, v.shape).astype(np.float32))
    self.window = next(iter(reading_utils.get_window_dataset(
        self.data_path, "train", 2, self.metadata, window_length=10,
        seed=0)))

  def test_window_batches(self):
    self.assertEqual(self.window["position"].shape, (48, 10, 2))
    self.assertEqual(self.window["step_context"].shape, (2, 10, 2))
    self.assertAllEqual(self.window["n_particles_per_example"], [24, 24])

  def test_without_unroll_it_is_the_paper_step(self):
    window = self.window
    features = {"position": window["position"][:, :6],
                "particle_type": window["particle_type"],
                "n_particles_per_example": window["n_particles_per_example"],
                "step_context": window["step_context"][:, 5]}
    batch = (features, window["position"][:, 6])
    tf.random.set_seed(7)
    paper = one_step.masked_loss(
        *one_step.predicted_and_target_accelerations(self.simulator, batch,
                                                     6.7e-4),
        window["particle_type"])
    tf.random.set_seed(7)
    zero = tf.constant(0)
    inputs = pushforward.unrolled_inputs(self.simulator, window, zero,
                                         6.7e-4)
    ours = pushforward.pushforward_loss(self.simulator, window, inputs, zero)
    self.assertAllClose(ours, paper, rtol=1e-5)

  def test_unroll_feeds_predictions_back_without_gradient(self):
    window = self.window
    kinematic = common.kinematic_mask(window["particle_type"]).numpy()
    with tf.GradientTape() as tape:
      inputs = pushforward.unrolled_inputs(self.simulator, window,
                                           tf.constant(2), noise_std=0.0)
    self.assertIsNone(tape.gradient(tf.reduce_sum(inputs),
                                    self.simulator.trainable_variables[0]))
    # By hand: two steps of the model from the clean first six frames.
    position = window["position"].numpy()
    current = position[:, :6]
    for step in range(2):
      predicted = self.simulator(
          current, window["n_particles_per_example"],
          global_context=window["step_context"][:, 5 + step],
          particle_types=window["particle_type"]).numpy()
      predicted[kinematic] = position[kinematic, 6 + step]
      current = np.concatenate([current[:, 1:], predicted[:, None]], axis=1)
    self.assertAllClose(inputs, current, atol=1e-6)
    # The first four stand for frames 2..5, which are ground truth.
    self.assertAllClose(inputs[:, :4], position[:, 2:6])

  def test_unroll_relaxes_each_step_as_a_rollout_does(self):
    window = self.window
    relaxing = build.build_simulator(
        self.metadata, dataclasses.replace(SMALL, relaxation_steps=2,
                                           relaxation_step_size=0.3))
    pushforward.unrolled_inputs(relaxing, window, tf.constant(0), 0.0)
    for mine, theirs in zip(relaxing.trainable_variables,
                            self.simulator.trainable_variables):
      mine.assign(theirs)
    plain = pushforward.unrolled_inputs(self.simulator, window,
                                        tf.constant(2), noise_std=0.0)
    # Off (the default), a relaxing model unrolls as the plain one.
    self.assertAllClose(pushforward.unrolled_inputs(
        relaxing, window, tf.constant(2), noise_std=0.0), plain, atol=1e-6)
    relaxed = pushforward.unrolled_inputs(relaxing, window, tf.constant(2),
                                          noise_std=0.0, relax=True)
    # By hand: each step predicted, then relaxed, each example alone with
    # the rest density of its last true input frame; kinematic particles
    # on their ground truth.
    position = window["position"].numpy()
    kinematic = common.kinematic_mask(window["particle_type"]).numpy()
    counts = window["n_particles_per_example"].numpy()
    first = slice(0, counts[0])
    second = slice(counts[0], counts[0] + counts[1])
    current = position[:, :6]
    for step in range(2):
      predicted = relaxing(
          current, window["n_particles_per_example"],
          global_context=window["step_context"][:, 5 + step],
          particle_types=window["particle_type"]).numpy()
      predicted[kinematic] = position[kinematic, 6 + step]
      for part in (first, second):
        movable = ~kinematic[part]
        rest = relaxation.rest_density(position[part, 5], movable,
                                       relaxing.connectivity_radius)
        predicted[part] = relaxation.relax(
            predicted[part], movable, relaxing.connectivity_radius, rest, 2,
            0.3).numpy()
      predicted[kinematic] = position[kinematic, 6 + step]
      current = np.concatenate([current[:, 1:], predicted[:, None]], axis=1)
    self.assertAllClose(relaxed, current, atol=1e-6)
    self.assertGreater(np.abs(relaxed - plain).max(), 1e-6)

  def _two_steps_by_hand(self, detach: bool):
    """The two-step loss and its gradients, in positions: the paper's loss
    on a step is the squared error of the predicted velocity over the
    acceleration std; the second step starts from the first's prediction
    (with gradient through it unless `detach`)."""
    window = self.window
    position = window["position"]
    kinematic = common.kinematic_mask(window["particle_type"])
    moving = tf.cast(tf.logical_not(kinematic), tf.float32)[:, tf.newaxis]
    std = self.simulator._normalization_stats["acceleration"].std  # pylint: disable=protected-access
    with tf.GradientTape() as tape:
      current = position[:, :6]
      step_losses = []
      for step in range(2):
        predicted = self.simulator(
            current, window["n_particles_per_example"],
            global_context=window["step_context"][:, 5 + step],
            particle_types=window["particle_type"])
        velocity_error = ((predicted - current[:, -1]) -
                          (position[:, 6 + step] - position[:, 5 + step]))
        # Summed over dims, averaged over moving particles (the paper's).
        step_losses.append(
            tf.reduce_sum(moving * (velocity_error / std)**2) /
            tf.reduce_sum(moving))
        predicted = tf.where(kinematic[:, tf.newaxis],
                             position[:, 6 + step], predicted)
        if detach:
          predicted = tf.stop_gradient(predicted)
        current = tf.concat([current[:, 1:], predicted[:, tf.newaxis]], 1)
      loss = (step_losses[0] + step_losses[1]) / 2
    self.assertGreater(float(step_losses[1]), 0.0)
    return loss, [tf.convert_to_tensor(g) for g in tape.gradient(
        loss, self.simulator.trainable_variables)]

  def test_multistep_loss_is_the_mean_velocity_error_of_the_rollout(self):
    zero = tf.constant(0)
    with tf.GradientTape() as tape:
      inputs = pushforward.unrolled_inputs(self.simulator, self.window, zero,
                                           noise_std=0.0)
      ours = pushforward.pushforward_loss(self.simulator, self.window,
                                          inputs, zero, loss_steps=2)
    our_gradients = [tf.convert_to_tensor(g) for g in tape.gradient(
        ours, self.simulator.trainable_variables)]
    by_hand, hand_gradients = self._two_steps_by_hand(detach=False)
    self.assertAllClose(ours, by_hand, rtol=1e-4)
    for got, want in zip(our_gradients, hand_gradients):
      self.assertAllClose(got, want, rtol=1e-3, atol=1e-6)
    # The gradient goes through the first prediction: cut there, the loss
    # is the same and its gradient is not.
    detached, detached_gradients = self._two_steps_by_hand(detach=True)
    self.assertAllClose(detached, by_hand, rtol=1e-6)
    self.assertGreater(
        max(float(tf.reduce_max(tf.abs(a - b)))
            for a, b in zip(detached_gradients, hand_gradients)), 1e-3)

  def _train(self, recipe: config_lib.TrainingConfig, num_steps: int):
    """Trains `num_steps` with `recipe`.

    Returns:
      The saved training config, the `(window length, num_unroll,
      loss_steps)` of each step the trainer ran, and the log.
    """
    model_path = self.create_tempdir().full_path
    calls = []
    make_step = train_step_lib.make_train_step

    def recording_step(simulator, optimizer, recipe, *args, **kwargs):
      step = make_step(simulator, optimizer, recipe, *args, **kwargs)

      def run(window, stop, num_unroll):
        calls.append((int(window["position"].shape[1]), int(num_unroll),
                      recipe.loss_steps))
        return step(window, stop, num_unroll)

      return run

    with mock.patch.object(train_step_lib, "make_train_step",
                           recording_step), self.assertLogs() as logs:
      loss = trainer.train(
          self.data_path, model_path, SMALL, config_lib.OptimizerConfig(),
          trainer.TrainOptions(num_steps=num_steps, log_every_steps=2,
                               seed=0),
          validation.ValidationOptions(every_steps=0), recipe)
    self.assertTrue(np.isfinite(loss))
    self.assertIn(f"ckpt-{num_steps}.index", os.listdir(model_path))
    return (config_lib.load(model_path)["training"], calls,
            "\n".join(logs.output))

  def test_training_with_multistep_loss(self):
    saved, calls, _ = self._train(
        config_lib.TrainingConfig(multistep_loss_steps=3), 3)
    self.assertEqual(saved["multistep_loss_steps"], 3)
    # Windows of the inputs and 3 targets; no unroll; a 3-step loss.
    self.assertEqual(calls, [(9, 0, 3)] * 3)

  def test_relaxed_pushforward_needs_a_relaxing_model(self):
    recipe = config_lib.TrainingConfig(pushforward_max_unroll=1,
                                       pushforward_relaxation=True)
    with self.assertRaisesRegex(ValueError, "give --relaxation_steps > 0"):
      trainer.train(
          self.data_path, self.create_tempdir().full_path, SMALL,
          config_lib.OptimizerConfig(), trainer.TrainOptions(num_steps=1),
          validation.ValidationOptions(every_steps=0), recipe)
    # With one, the compiled step trains and the recipe is saved.
    model_path = self.create_tempdir().full_path
    recipe = dataclasses.replace(recipe, pushforward_phase_steps=0,
                                 pushforward_probability=1.0)
    with self.assertLogs() as logs:
      loss = trainer.train(
          self.data_path, model_path,
          dataclasses.replace(SMALL, relaxation_steps=1),
          config_lib.OptimizerConfig(),
          trainer.TrainOptions(num_steps=2, log_every_steps=1, seed=0),
          validation.ValidationOptions(every_steps=0), recipe)
    self.assertTrue(np.isfinite(loss))
    self.assertTrue(config_lib.load(model_path)["training"][
        "pushforward_relaxation"])
    self.assertIn("the unrolled steps relaxed", "\n".join(logs.output))

  def test_training_with_pushforward(self):
    recipe = config_lib.TrainingConfig(
        pushforward_max_unroll=2, pushforward_phase_steps=3,
        pushforward_probability=1.0)
    saved, calls, log = self._train(recipe, 8)
    self.assertEqual(saved["pushforward_max_unroll"], 2)
    unrolls = [num_unroll for _, num_unroll, _ in calls]
    # Phased in: none before step 3, one step from 3, up to two from 6.
    self.assertEqual(unrolls[:3], [0, 0, 0])
    self.assertEqual(unrolls[3:6], [1, 1, 1])
    self.assertContainsSubset(set(unrolls[6:]), {1, 2})
    self.assertEqual({length for length, _, _ in calls}, {9})
    # The log's mean unroll of each interval of 2 steps is what ran.
    for last in (2, 4, 6, 8):
      self.assertIn(f"step {last}/8", log)
      mean = np.mean(unrolls[last - 2:last])
      self.assertRegex(log, rf"step {last}/8  .*  unroll {mean:.2f}")


if __name__ == "__main__":
  tf.test.main()
