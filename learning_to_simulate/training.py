"""One-step training: simulator construction, loss, optimizer, train step.

Sanchez-Gonzalez et al. 2020 (arXiv:2002.09405), Sec. 4: inputs corrupted
with random-walk noise, an L2 loss on the normalized acceleration of the
non-kinematic particles, Adam with an exponentially decaying learning rate.
"""

import functools
from typing import Any, Dict, Mapping, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from learning_to_simulate import common
from learning_to_simulate import config as config_lib
from learning_to_simulate import learned_simulator
from learning_to_simulate import noise_utils

Batch = Tuple[Dict[str, tf.Tensor], tf.Tensor]


def _combine_std(std_x, std_y):
  return np.sqrt(std_x**2 + std_y**2)


def get_normalization_stats(metadata: Mapping[str, Any],
                            noise_std: float) -> Dict[str, common.Stats]:
  """Velocity/acceleration stats with the noise folded into the std.

  `std_eff = sqrt(std**2 + noise_std**2)` (metadata taken as float32 first);
  the context stats, when present, are not combined with the noise.
  """
  cast = lambda v: np.asarray(v, dtype=np.float32)
  stats = {
      "acceleration": common.Stats(
          cast(metadata["acc_mean"]),
          _combine_std(cast(metadata["acc_std"]), noise_std)),
      "velocity": common.Stats(
          cast(metadata["vel_mean"]),
          _combine_std(cast(metadata["vel_std"]), noise_std)),
  }
  if "context_mean" in metadata:
    stats["context"] = common.Stats(cast(metadata["context_mean"]),
                                    cast(metadata["context_std"]))
  return stats


def build_simulator(metadata: Mapping[str, Any],
                    model_config: config_lib.ModelConfig,
                    mixed_precision: Optional[str] = None,
                    jit_compile: bool = False,
                    recompute_grad: bool = False
                    ) -> learned_simulator.LearnedSimulator:
  """The simulator for a dataset, with its variables created.

  Args:
    metadata: dataset metadata.
    model_config: hyperparameters.
    mixed_precision: None (float32), "bfloat16" or "float16": the dtype of
      the graph network's matrix products.
    jit_compile: compile the graph network with XLA.
    recompute_grad: recompute activations in the backward pass (memory).
  """
  simulator = learned_simulator.LearnedSimulator(
      num_dimensions=metadata["dim"],
      connectivity_radius=metadata["default_connectivity_radius"],
      graph_network_kwargs=model_config.graph_network_kwargs(),
      boundaries=metadata["bounds"],
      normalization_stats=get_normalization_stats(metadata,
                                                  model_config.noise_std),
      num_particle_types=common.NUM_PARTICLE_TYPES,
      particle_type_embedding_size=common.PARTICLE_TYPE_EMBEDDING_SIZE,
      compute_dtype=mixed_precision or tf.float32,
      jit_compile=jit_compile,
      recompute_grad=recompute_grad)
  # Sonnet creates variables on the first call: make them now, on one
  # particle, so checkpoints can be restored and optimizers built.
  dim = metadata["dim"]
  context = None
  if "context_mean" in metadata:
    context = tf.zeros([1, len(metadata["context_mean"])])
  simulator(tf.zeros([1, common.INPUT_SEQUENCE_LENGTH, dim]),
            n_particles_per_example=tf.constant([1]),
            global_context=context,
            particle_types=tf.zeros([1], tf.int64))
  return simulator


class DecayedLearningRate(keras.optimizers.schedules.LearningRateSchedule):
  """`(lr - min_lr) * decay_rate ** (step / decay_steps) + min_lr`."""

  def __init__(self, lr: float, min_lr: float, decay_steps: int,
               decay_rate: float):
    self.lr = lr
    self.min_lr = min_lr
    self.decay_steps = decay_steps
    self.decay_rate = decay_rate

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    return ((self.lr - self.min_lr) *
            tf.pow(self.decay_rate, step / self.decay_steps) + self.min_lr)

  def get_config(self):
    return dict(lr=self.lr, min_lr=self.min_lr, decay_steps=self.decay_steps,
                decay_rate=self.decay_rate)


def make_optimizer(optimizer_config: config_lib.OptimizerConfig,
                   simulator: tf.Module,
                   loss_scaling: bool = False) -> keras.optimizers.Optimizer:
  """The optimizer, built for the simulator's variables (for restoring).

  Args:
    optimizer_config: optimizer name and learning-rate schedule.
    simulator: the model whose trainable variables it updates.
    loss_scaling: wrap it in a dynamic `LossScaleOptimizer` (float16 mixed
      precision, where small gradients would otherwise underflow).
  """
  optimizer_config.validate()
  schedule = DecayedLearningRate(
      optimizer_config.lr, optimizer_config.min_lr,
      optimizer_config.lr_decay_steps, optimizer_config.lr_decay_rate)
  name = optimizer_config.optimizer
  if name == "adam":
    # epsilon 1e-8 as tf.compat.v1.train.AdamOptimizer, which the paper used.
    optimizer = keras.optimizers.Adam(learning_rate=schedule, epsilon=1e-8)
  elif name == "rmsprop":
    optimizer = keras.optimizers.RMSprop(learning_rate=schedule)
  elif name == "sgd":
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
  elif name == "adadelta":
    optimizer = keras.optimizers.Adadelta(learning_rate=schedule)
  else:
    raise ValueError(f"unknown optimizer {name!r}")
  if loss_scaling:
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  optimizer.build(simulator.trainable_variables)
  return optimizer


def sample_noise(position_sequence: tf.Tensor, particle_types: tf.Tensor,
                 noise_std: float) -> tf.Tensor:
  """Random-walk noise on the inputs; none on kinematic particles."""
  noise = noise_utils.get_random_walk_noise_for_position_sequence(
      position_sequence, noise_std_last_step=noise_std)
  moving = tf.logical_not(common.kinematic_mask(particle_types))
  return noise * tf.cast(moving, noise.dtype)[:, tf.newaxis, tf.newaxis]


def masked_loss(predicted: tf.Tensor, target: tf.Tensor,
                particle_types: tf.Tensor) -> tf.Tensor:
  """Squared error summed over dims, averaged over non-kinematic particles.

  Args:
    predicted, target: `[num_particles, dim]` normalized accelerations.
    particle_types: `[num_particles]`.

  Returns:
    Scalar loss (0 when every particle is kinematic).
  """
  moving = tf.logical_not(common.kinematic_mask(particle_types))
  squared_error = tf.where(moving[:, tf.newaxis], (predicted - target)**2,
                           tf.zeros_like(predicted))
  num_moving = tf.reduce_sum(tf.cast(moving, predicted.dtype))
  return tf.math.divide_no_nan(tf.reduce_sum(squared_error), num_moving)


def predicted_and_target_accelerations(
    simulator: learned_simulator.LearnedSimulator, batch: Batch,
    noise_std: float) -> Tuple[tf.Tensor, tf.Tensor]:
  """Normalized accelerations predicted from noisy inputs, and the targets."""
  features, target_position = batch
  noise = sample_noise(features["position"], features["particle_type"],
                       noise_std)
  return simulator.get_predicted_and_target_normalized_accelerations(
      next_position=target_position,
      position_sequence_noise=noise,
      position_sequence=features["position"],
      n_particles_per_example=features["n_particles_per_example"],
      particle_types=features["particle_type"],
      global_context=features.get("step_context"))


def train_step(simulator: learned_simulator.LearnedSimulator,
               optimizer: keras.optimizers.Optimizer, batch: Batch,
               noise_std: float) -> tf.Tensor:
  """One optimizer step on a batch; returns the loss before the update."""
  with tf.GradientTape() as tape:
    predicted, target = predicted_and_target_accelerations(
        simulator, batch, noise_std)
    loss = masked_loss(predicted, target, batch[0]["particle_type"])
    # Identity unless the optimizer scales the loss (float16 training).
    scaled_loss = optimizer.scale_loss(loss)
  variables = simulator.trainable_variables
  gradients = tape.gradient(scaled_loss, variables)
  optimizer.apply_gradients(zip(gradients, variables))
  return loss


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


def make_train_step(simulator, optimizer, noise_std: float,
                    metadata: Mapping[str, Any]):
  """`train_step` bound to its model, as a `tf.function` that never retraces."""
  step = functools.partial(train_step, simulator, optimizer,
                           noise_std=noise_std)
  return tf.function(lambda batch: step(batch),
                     input_signature=[batch_signature(metadata)])


def eval_step(simulator: learned_simulator.LearnedSimulator, batch: Batch,
              noise_std: float) -> Dict[str, tf.Tensor]:
  """Sums of squared errors for the one-step metrics.

  As in the original, `loss_mse` compares accelerations predicted from
  noisy inputs (the training noise), and `one_step_position_mse` compares the
  next position predicted from the clean inputs.

  Returns:
    Dict of scalar sums and element counts: `acc_sse`, `acc_count`,
    `pos_sse`, `pos_count`.
  """
  features, target_position = batch
  predicted, target = predicted_and_target_accelerations(simulator, batch,
                                                         noise_std)
  next_position = simulator(
      features["position"],
      n_particles_per_example=features["n_particles_per_example"],
      particle_types=features["particle_type"],
      global_context=features.get("step_context"))
  return {
      "acc_sse": tf.reduce_sum((predicted - target)**2),
      "acc_count": tf.cast(tf.size(predicted), tf.float32),
      "pos_sse": tf.reduce_sum((next_position - target_position)**2),
      "pos_count": tf.cast(tf.size(next_position), tf.float32),
  }


def make_eval_step(simulator, noise_std: float, metadata: Mapping[str, Any]):
  step = functools.partial(eval_step, simulator, noise_std=noise_std)
  return tf.function(lambda batch: step(batch),
                     input_signature=[batch_signature(metadata)])
