"""One-step training and evaluation: input noise, loss, eval step.

Sanchez-Gonzalez et al. 2020 (arXiv:2002.09405), Sec. 4: inputs corrupted
with random-walk noise and an L2 loss on the normalized acceleration of the
non-kinematic particles. The trainer's step is `train_step.make_train_step`
(its `OneStep` recipe); `train_step` here is the same step written plainly,
without a strategy, as the reference the tests hold it to. The eval step is
a `tf.function` whose input signature leaves particle counts open, so new
graph sizes do not retrace.
"""

import functools
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import keras
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate import learned_simulator
from learning_to_simulate import noise_utils
from learning_to_simulate.training import random_streams

Batch = Tuple[Dict[str, tf.Tensor], tf.Tensor]


def sample_noise(position_sequence: tf.Tensor, particle_types: tf.Tensor,
                 noise_std: float,
                 seed: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Random-walk noise on the inputs; none on kinematic particles.

  `seed`: a `[2]` seed for a stateless draw (`random_streams`), or None.
  """
  noise = noise_utils.get_random_walk_noise_for_position_sequence(
      position_sequence, noise_std_last_step=noise_std, seed=seed)
  moving = tf.logical_not(common.kinematic_mask(particle_types))
  return noise * tf.cast(moving, noise.dtype)[:, tf.newaxis, tf.newaxis]


def masked_squared_error(predicted: tf.Tensor, target: tf.Tensor,
                         particle_types: tf.Tensor
                         ) -> Tuple[tf.Tensor, tf.Tensor]:
  """The two sums of `masked_loss`: squared error and moving particles.

  Args:
    predicted, target: `[num_particles, dim]` normalized accelerations.
    particle_types: `[num_particles]`.

  Returns:
    `(sum_squared_error, num_moving)`: scalars, the squared error summed over
    the non-kinematic particles and dims, and their number (as a float).
  """
  moving = tf.logical_not(common.kinematic_mask(particle_types))
  squared_error = tf.where(moving[:, tf.newaxis], (predicted - target)**2,
                           tf.zeros_like(predicted))
  num_moving = tf.reduce_sum(tf.cast(moving, predicted.dtype))
  return tf.reduce_sum(squared_error), num_moving


def masked_loss(predicted: tf.Tensor, target: tf.Tensor,
                particle_types: tf.Tensor) -> tf.Tensor:
  """Squared error summed over dims, averaged over non-kinematic particles.

  Args:
    predicted, target: `[num_particles, dim]` normalized accelerations.
    particle_types: `[num_particles]`.

  Returns:
    Scalar loss (0 when every particle is kinematic).
  """
  sum_squared_error, num_moving = masked_squared_error(predicted, target,
                                                       particle_types)
  return tf.math.divide_no_nan(sum_squared_error, num_moving)


def predicted_and_target_accelerations(
    simulator: learned_simulator.LearnedSimulator, batch: Batch,
    noise_std: float, noise: Optional[tf.Tensor] = None,
    noise_seed: Optional[tf.Tensor] = None) -> Tuple[tf.Tensor, tf.Tensor]:
  """Normalized accelerations predicted from noisy inputs, and the targets.

  `noise` (`[num_particles, INPUT_SEQUENCE_LENGTH, dim]`) replaces the
  random-walk noise of `noise_std` when given (tests compare runs on it);
  else `noise_seed` (`[2]`, or None: stateful) seeds its draw.
  """
  features, target_position = batch
  if noise is None:
    noise = sample_noise(features["position"], features["particle_type"],
                         noise_std, noise_seed)
  return simulator.get_predicted_and_target_normalized_accelerations(
      next_position=target_position,
      position_sequence_noise=noise,
      position_sequence=features["position"],
      n_particles_per_example=features["n_particles_per_example"],
      particle_types=features["particle_type"],
      global_context=features.get("step_context"))


def minimize(simulator: tf.Module, optimizer: keras.optimizers.Optimizer,
             loss_fn: Callable[[], tf.Tensor]) -> tf.Tensor:
  """One optimizer step on `loss_fn()`; returns the loss before the update."""
  with tf.GradientTape() as tape:
    loss = loss_fn()
    # Identity unless the optimizer scales the loss (float16 training).
    scaled_loss = optimizer.scale_loss(loss)
  variables = simulator.trainable_variables
  gradients = tape.gradient(scaled_loss, variables)
  optimizer.apply_gradients(zip(gradients, variables))
  return loss


def step_noise_seed(seed: Optional[int], optimizer: keras.optimizers.Optimizer
                    ) -> Optional[tf.Tensor]:
  """The stateless noise seed of the step `optimizer` is about to take on
  this replica (`random_streams.noise_seed`), or None for an unseeded draw.
  """
  if seed is None:
    return None
  return random_streams.replica_noise_seed(seed, optimizer.iterations)


def train_step(simulator: learned_simulator.LearnedSimulator,
               optimizer: keras.optimizers.Optimizer, batch: Batch,
               noise_std: float, seed: Optional[int] = None) -> tf.Tensor:
  """One optimizer step on a batch; returns the loss before the update.

  `seed`: the run seed, from which the step's noise is drawn
  (`random_streams`); None: TensorFlow's stateful draw, as the original.
  """
  noise_seed = step_noise_seed(seed, optimizer)

  def loss_fn():
    predicted, target = predicted_and_target_accelerations(
        simulator, batch, noise_std, noise_seed=noise_seed)
    return masked_loss(predicted, target, batch[0]["particle_type"])

  return minimize(simulator, optimizer, loss_fn)


def batch_signature(metadata: Mapping[str, Any],
                    num_frames: Optional[int] = common.INPUT_SEQUENCE_LENGTH
                    ) -> Tuple[Any, tf.TensorSpec]:
  """Specs of a batch with unknown particle and batch sizes (no retracing).

  `num_frames` is the length of `position`'s time axis (None: any, as the
  whole trajectories of a rollout).
  """
  dim = metadata["dim"]
  features = {
      "position": tf.TensorSpec([None, num_frames, dim], tf.float32),
      "particle_type": tf.TensorSpec([None], tf.int64),
      "n_particles_per_example": tf.TensorSpec([None], tf.int32),
  }
  if "context_mean" in metadata:
    features["step_context"] = tf.TensorSpec(
        [None, len(metadata["context_mean"])], tf.float32)
  return features, tf.TensorSpec([None, dim], tf.float32)


def eval_step(simulator: learned_simulator.LearnedSimulator, batch: Batch,
              noise_std: float,
              generator: Optional[tf.random.Generator] = None
              ) -> Dict[str, tf.Tensor]:
  """Sums of squared errors for the one-step metrics.

  As in the original, `loss_mse` compares accelerations predicted from
  noisy inputs (the training noise), and `one_step_position_mse` compares the
  next position predicted from the clean inputs. The noise comes from
  `generator` when given (validation: seeded by `random_streams.validation_seed`),
  else from TensorFlow's stateful draw.

  Returns:
    Dict of scalar sums and element counts: `acc_sse`, `acc_count`,
    `pos_sse`, `pos_count` (all particles, as the original), and
    `moving_sse`, `moving_count` (the non-kinematic particles alone: the
    kinematic ones follow prescribed paths the loss never trains).
  """
  features, target_position = batch
  noise_seed = None if generator is None else generator.make_seeds(1)[:, 0]
  predicted, target = predicted_and_target_accelerations(
      simulator, batch, noise_std, noise_seed=noise_seed)
  next_position = simulator(
      features["position"],
      n_particles_per_example=features["n_particles_per_example"],
      particle_types=features["particle_type"],
      global_context=features.get("step_context"))
  squared = (next_position - target_position)**2
  moving = tf.logical_not(common.kinematic_mask(features["particle_type"]))
  moving_squared = tf.boolean_mask(squared, moving)
  return {
      "acc_sse": tf.reduce_sum((predicted - target)**2),
      "acc_count": tf.cast(tf.size(predicted), tf.float32),
      "pos_sse": tf.reduce_sum(squared),
      "pos_count": tf.cast(tf.size(next_position), tf.float32),
      "moving_sse": tf.reduce_sum(moving_squared),
      "moving_count": tf.cast(tf.size(moving_squared), tf.float32),
  }


def make_eval_step(simulator, noise_std: float, metadata: Mapping[str, Any],
                   generator: Optional[tf.random.Generator] = None):
  """`eval_step` as a `tf.function` that never retraces."""
  step = functools.partial(eval_step, simulator, noise_std=noise_std,
                           generator=generator)
  return tf.function(lambda batch: step(batch),
                     input_signature=[batch_signature(metadata)])
