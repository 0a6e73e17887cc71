"""Stopping a diverged training run before it overwrites the good checkpoints.

With too high a learning rate the loss turns NaN within a few steps and
every later update spreads NaN to the weights; saving them would push the
good checkpoints out of the rotation. The train step records, on the device,
the first step whose loss is not finite (no host round trip per step). The
loop reads that record only where it waits for the device anyway (when it
logs) and before every save, where one reduction, read back once, also
checks that every variable is finite. So at most `log_every_steps` steps run
after the first non-finite loss, and no checkpoint with a non-finite value
is ever written.
"""

import os
from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf

ADVICE = "lower --lr or check the data"


class DivergedError(ValueError):
  """The loss or a variable is not finite: training cannot go on."""


def _kept(kept: Optional[str]) -> str:
  return f"kept {os.path.basename(kept)}" if kept else (
      "no checkpoint was saved")


def _describe(value: float) -> str:
  if np.isnan(value):
    return "NaN"
  return "inf" if value > 0 else "-inf"


class Monitor:
  """Remembers the first non-finite loss on the device; checks on demand.

  Attributes:
    first_step: int64 variable, the first step (counted like the trainer's
      step, 1 for the first step of a fresh run) whose loss was not finite,
      or -1.
  """

  def __init__(self, variables: Sequence[Any], step: int):
    """Watches a run at `step` whose state is `variables`.

    Args:
      variables: every variable a checkpoint saves (model and optimizer);
        the floating-point ones are checked before each save.
      step: the step training starts (or resumes) from.
    """
    self._variables = [v for v in variables
                       if tf.as_dtype(v.dtype).is_floating]
    self._step = tf.Variable(step, dtype=tf.int64, trainable=False,
                             name="monitored_step")
    self.first_step = tf.Variable(-1, dtype=tf.int64, trainable=False,
                                  name="first_nonfinite_step")
    self._first_loss = tf.Variable(0.0, dtype=tf.float32, trainable=False,
                                   name="first_nonfinite_loss")

  def _variables_finite(self) -> bool:
    # Eager: a few ms per save, where a tf.function would cost a trace of
    # one op per variable at the first save.
    return bool(tf.reduce_all(tf.stack([
        tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v)))
        for v in self._variables])))

  def record(self, loss: tf.Tensor) -> None:
    """Counts a step and records it if `loss` is the first non-finite one.

    The train step's `on_loss` (`train_step.make_train_step`): a few scalar ops
    inside its graph; nothing is read back.
    """
    step = self._step.assign_add(1)
    first = tf.logical_and(self.first_step < 0,
                           tf.logical_not(tf.math.is_finite(loss)))
    self.first_step.assign(tf.where(first, step, self.first_step))
    self._first_loss.assign(
        tf.where(first, tf.cast(loss, tf.float32), self._first_loss))

  def check_loss(self, kept: Optional[str]) -> None:
    """Raises `DivergedError` if a loss was not finite (one scalar read).

    Args:
      kept: the latest checkpoint on disk (named in the error), or None.
    """
    first = int(self.first_step.numpy())
    if first >= 0:
      raise DivergedError(
          f"loss is {_describe(float(self._first_loss.numpy()))} at step "
          f"{first}; {_kept(kept)}; {ADVICE}")

  def check(self, step: int, kept: Optional[str]) -> None:
    """Before a save: the losses so far, then every variable (one read).

    Raises:
      DivergedError: naming the first non-finite loss, or `step` if only
        the variables are not finite; the message names `kept`.
    """
    self.check_loss(kept)
    if self._variables and not self._variables_finite():
      raise DivergedError(f"a variable is not finite after step {step}; "
                          f"{_kept(kept)}; {ADVICE}")
