"""Pushforward training: learning the next step from the model's own rollout.

Opt-in (`TrainingConfig.pushforward_max_unroll > 0`); the paper trains on
ground-truth inputs with random-walk noise only. Brandstetter et al. 2022
("Message passing neural PDE solvers", Sec. 2.3) train on the model's own
predictions instead, rolled forward without gradient ("pushforward"), so
that it learns to correct the errors it makes in a rollout; LagrangeBench
(Toshev et al. 2023) uses it by default for GNS.

One step, from a window of `INPUT_SEQUENCE_LENGTH + 1 + max_unroll` frames:
1. the first `INPUT_SEQUENCE_LENGTH` frames get the paper's random-walk
   noise;
2. the model rolls forward `k` steps from them without gradient (kinematic
   particles on their ground truth);
3. the difference between these rolled-out inputs and the ground-truth
   frames they stand for is treated exactly as the paper treats its noise:
   the target acceleration takes the last input to the true next position
   shifted by the last input's error, so the predicted velocity is the true
   one (`LearnedSimulator.get_predicted_and_target_normalized_accelerations`).
With `k = 0` this is the paper's training step. With
`TrainingConfig.pushforward_relaxation` (opt-in), each of the `k` steps is
relaxed as a rollout with the model's density relaxation relaxes it, so the
model learns from the inputs it will meet.

Multi-step loss (opt-in, `TrainingConfig.multistep_loss_steps = K > 1`):
after the trained step the model goes on from its own prediction, with
gradient, for `K - 1` more steps, each scored as in 3. against the ground
truth, and the loss is the mean over the `K` steps. It is the "short
multi-step loss" of the better-model issue: gradient through a few unrolled
steps, as in training on the model's rollout error.
"""

from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate import learned_simulator
from learning_to_simulate.model import relaxation as relaxation_lib
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import one_step
from learning_to_simulate.training import random_streams

Window = Dict[str, tf.Tensor]


def window_length(training: config_lib.TrainingConfig) -> int:
  """Frames per training window: the inputs, the unroll and the targets."""
  return (common.WINDOW_LENGTH + training.pushforward_max_unroll +
          training.multistep_loss_steps - 1)


def available_unroll(step: int, training: config_lib.TrainingConfig) -> int:
  """Longest unroll allowed at a training step (phased in)."""
  if training.pushforward_phase_steps == 0:
    return training.pushforward_max_unroll
  return min(training.pushforward_max_unroll,
             step // training.pushforward_phase_steps)


def sample_unroll(step: int, training: config_lib.TrainingConfig,
                  rng: np.random.Generator) -> int:
  """Unroll length of one training step (0: the paper's step)."""
  available = available_unroll(step, training)
  if available == 0 or rng.random() >= training.pushforward_probability:
    return 0
  return int(rng.integers(1, available + 1))


def step_unroll(step: int, training: config_lib.TrainingConfig,
                seed: int) -> int:
  """The unroll length of training step `step` of a run seeded `seed`.

  A function of the seed and the step alone (`random_streams`): a resumed
  run unrolls as the uninterrupted one would.
  """
  return sample_unroll(step, training, random_streams.unroll_rng(seed, step))


def mean_unroll(first: int, last: int, training: config_lib.TrainingConfig,
                seed: int) -> float:
  """The mean unroll length of steps `first .. last - 1` (for the log)."""
  return float(np.mean([step_unroll(step, training, seed)
                        for step in range(first, max(last, first + 1))]))


def _frames(position: tf.Tensor, start: tf.Tensor, count: int) -> tf.Tensor:
  """`[N, count, dim]`: frames `start .. start + count - 1` of a window."""
  return tf.gather(position, tf.range(start, start + count), axis=1)


def _context(window: Window, frame: tf.Tensor):
  """The context of one frame of the window, `[batch_size, context_size]`."""
  if "step_context" not in window:
    return None
  return tf.gather(window["step_context"], frame, axis=1)


def unrolled_inputs(simulator: learned_simulator.LearnedSimulator,
                    window: Window, num_unroll: tf.Tensor,
                    noise_std: float,
                    noise_seed: Optional[tf.Tensor] = None,
                    relax: bool = False) -> tf.Tensor:
  """Noisy inputs rolled forward `num_unroll` steps, without gradient.

  Args:
    simulator: the model.
    window: `position` `[N, window_length, dim]`, `particle_type` `[N]`,
      `n_particles_per_example` `[batch_size]`, optional `step_context`
      `[batch_size, window_length, context_size]`.
    num_unroll: scalar int32, at most `window_length - WINDOW_LENGTH`.
    noise_std: std of the random-walk noise on the initial inputs.
    noise_seed: `[2]` seed of its stateless draw (None: stateful).
    relax: each unrolled step is relaxed as a rollout relaxes it (the
      simulator's `relaxation`, each example on its own, its rest density
      from its last ground-truth input frame unless the relaxation fixes
      one), so that the model learns from the inputs it meets in a relaxed
      rollout.

  Returns:
    `[N, INPUT_SEQUENCE_LENGTH, dim]` inputs standing for frames
    `num_unroll .. num_unroll + INPUT_SEQUENCE_LENGTH - 1` of the window.
  """
  length = common.INPUT_SEQUENCE_LENGTH
  position = window["position"]
  particle_types = window["particle_type"]
  n_particles = window["n_particles_per_example"]
  kinematic = common.kinematic_mask(particle_types)[:, tf.newaxis]
  initial = _frames(position, tf.constant(0), length)
  inputs = initial + one_step.sample_noise(initial, particle_types, noise_std,
                                           noise_seed)
  relaxation = simulator.relaxation if relax else None
  if relaxation is not None and relaxation.num_steps > 0:
    movable = tf.logical_not(kinematic[:, 0])
    radius = simulator.connectivity_radius
    rest = (tf.constant(relaxation.rest_density, tf.float32)
            if relaxation.rest_density is not None else
            relaxation_lib.rest_densities(initial[:, -1], movable, radius,
                                          n_particles))
  else:
    relaxation = None

  def body(step, inputs):
    true_next = tf.gather(position, length + step, axis=1)
    next_position = simulator(
        inputs, n_particles_per_example=n_particles,
        global_context=_context(window, step + length - 1),
        particle_types=particle_types)
    next_position = tf.where(kinematic, true_next, next_position)
    if relaxation is not None:  # As `rollout.rollout` relaxes a step.
      next_position = tf.where(
          kinematic, true_next,
          simulator.constrain(relaxation_lib.relax(
              next_position, movable, radius, rest, relaxation.num_steps,
              relaxation.step_size, n_particles_per_example=n_particles,
              mirror_walls=relaxation.mirror_walls)))
    return step + 1, tf.concat([inputs[:, 1:], next_position[:, tf.newaxis]],
                               axis=1)

  _, inputs = tf.while_loop(lambda step, _: step < num_unroll, body,
                            (tf.constant(0), inputs),
                            parallel_iterations=1)
  return tf.stop_gradient(inputs)


def pushforward_accelerations(simulator: learned_simulator.LearnedSimulator,
                              window: Window, inputs: tf.Tensor,
                              num_unroll: tf.Tensor, loss_steps: int = 1
                              ) -> Tuple[tf.Tensor, tf.Tensor]:
  """Predicted and target normalized accelerations of the `loss_steps` steps
  after `inputs` (from `unrolled_inputs`).

  Step `k > 0` starts from the model's own predictions of the steps before,
  with gradient (kinematic particles on their ground truth).

  Returns:
    predicted, target: `[loss_steps * N, dim]` each, step by step.
  """
  length = common.INPUT_SEQUENCE_LENGTH
  position = window["position"]
  kinematic = common.kinematic_mask(window["particle_type"])[:, tf.newaxis]
  predicted, target = [], []
  for k in range(loss_steps):
    start = num_unroll + k
    truth = _frames(position, start, length)
    true_next = tf.gather(position, start + length, axis=1)
    step_predicted, step_target = (
        simulator.get_predicted_and_target_normalized_accelerations(
            next_position=true_next,
            position_sequence_noise=inputs - truth,
            position_sequence=truth,
            n_particles_per_example=window["n_particles_per_example"],
            particle_types=window["particle_type"],
            global_context=_context(window, start + length - 1)))
    predicted.append(step_predicted)
    target.append(step_target)
    if k + 1 < loss_steps:
      next_position = tf.where(
          kinematic, true_next, simulator.next_position(step_predicted,
                                                        inputs))
      inputs = tf.concat([inputs[:, 1:], next_position[:, tf.newaxis]],
                         axis=1)
  if loss_steps == 1:
    return predicted[0], target[0]
  return tf.concat(predicted, axis=0), tf.concat(target, axis=0)


def loss_particle_types(window: Window, loss_steps: int) -> tf.Tensor:
  """`[loss_steps * N]`: the particle types of `pushforward_accelerations`'
  rows."""
  if loss_steps == 1:
    return window["particle_type"]
  return tf.tile(window["particle_type"], [loss_steps])


def pushforward_loss(simulator: learned_simulator.LearnedSimulator,
                     window: Window, inputs: tf.Tensor,
                     num_unroll: tf.Tensor, loss_steps: int = 1) -> tf.Tensor:
  """The paper's loss on the step after `inputs` (from `unrolled_inputs`),
  or its mean over `loss_steps` steps."""
  predicted, target = pushforward_accelerations(simulator, window, inputs,
                                                num_unroll, loss_steps)
  return one_step.masked_loss(predicted, target,
                              loss_particle_types(window, loss_steps))


def pushforward_train_step(simulator: learned_simulator.LearnedSimulator,
                           optimizer: keras.optimizers.Optimizer,
                           window: Window, num_unroll: tf.Tensor,
                           noise_std: float, loss_steps: int = 1,
                           seed: Optional[int] = None,
                           relax: bool = False) -> tf.Tensor:
  """One optimizer step after a `num_unroll`-step pushforward; the loss.

  The plain form, without a strategy, of `train_step.make_train_step`'s
  step with the `Windows` recipe (the tests' reference).

  `seed`: the run seed of the noise, as in `one_step.train_step`; `relax`:
  as in `unrolled_inputs`.
  """
  inputs = unrolled_inputs(simulator, window, num_unroll, noise_std,
                           one_step.step_noise_seed(seed, optimizer), relax)
  return one_step.minimize(
      simulator, optimizer,
      lambda: pushforward_loss(simulator, window, inputs, num_unroll,
                               loss_steps))


def window_signature(metadata: Mapping[str, Any]) -> Dict[str, tf.TensorSpec]:
  """Specs of a window batch with open particle, batch and window sizes."""
  dim = metadata["dim"]
  signature = {
      "position": tf.TensorSpec([None, None, dim], tf.float32),
      "particle_type": tf.TensorSpec([None], tf.int64),
      "n_particles_per_example": tf.TensorSpec([None], tf.int32),
  }
  if "context_mean" in metadata:
    signature["step_context"] = tf.TensorSpec(
        [None, None, len(metadata["context_mean"])], tf.float32)
  return signature
