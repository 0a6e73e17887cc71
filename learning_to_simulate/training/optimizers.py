"""Optimizers and the paper's learning-rate schedule.

Sanchez-Gonzalez et al. 2020 (arXiv:2002.09405), Sec. 4: Adam with the
learning rate decaying exponentially from 1e-4 to 1e-6.
"""

import keras
import tensorflow as tf

from learning_to_simulate.training import config as config_lib


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
