"""Checkpoint layout of a model directory (`--model_path`).

`ckpt-N.*` files written by `tf.train.CheckpointManager` (the `checkpoint`
index file is replaced atomically after the data files are complete, so a
crash mid-save leaves the previous checkpoint as the latest), and
`config.json` with the hyperparameters (see `config`), and the best model by
validation in `best/` (see `resolve`).
"""

import json
import os
from typing import Any, Dict, Optional

import tensorflow as tf

CHECKPOINT_NAME = "ckpt"


class CheckpointError(ValueError):
  """A model directory has no usable checkpoint."""


def make_manager(model_path: str, simulator: tf.Module,
                 optimizer: Optional[tf.Module] = None,
                 max_to_keep: Optional[int] = 5
                 ) -> tf.train.CheckpointManager:
  """A manager for `simulator` (and `optimizer`, when training)."""
  objects = {"simulator": simulator}
  if optimizer is not None:
    objects["optimizer"] = optimizer
  checkpoint = tf.train.Checkpoint(**objects)
  return tf.train.CheckpointManager(checkpoint, model_path,
                                    max_to_keep=max_to_keep,
                                    checkpoint_name=CHECKPOINT_NAME)


def restore_latest(manager: tf.train.CheckpointManager, require: bool,
                   model_only: bool = False) -> Optional[str]:
  """Restores the latest checkpoint of `manager`'s directory.

  Args:
    manager: from `make_manager`.
    require: raise if there is none (evaluation) instead of returning None
      (a fresh training run).
    model_only: the manager tracks the simulator alone (evaluation), so the
      optimizer state in the checkpoint is left unread.

  Returns:
    The restored checkpoint path, or None.
  """
  path = manager.latest_checkpoint
  if path is None:
    if require:
      raise CheckpointError(
          f"--model_path {manager.directory!r} has no checkpoint (expected "
          f"{CHECKPOINT_NAME}-N files written by --mode=train)")
    return None
  status = manager.checkpoint.restore(path)
  status.assert_existing_objects_matched()
  if model_only:
    status.expect_partial()
  return path


# The best model by a validation metric (see `training.validation`):
# `{model_path}/best/ckpt-N.*` with the simulator only, and `best.json`
# beside them with the step and the metrics it had.
BEST_DIRECTORY = "best"
BEST_JSON = "best.json"


def best_directory(model_path: str) -> str:
  return os.path.join(model_path, BEST_DIRECTORY)


def read_best(model_path: str) -> Optional[Dict[str, Any]]:
  """`best.json` of a model directory, or None when there is no best model."""
  path = os.path.join(best_directory(model_path), BEST_JSON)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      best = json.load(f)
  except json.JSONDecodeError as e:
    raise CheckpointError(f"{path} is not valid JSON: {e}") from None
  missing = [key for key in ("checkpoint", "step", "metric", "metrics")
             if not isinstance(best, dict) or key not in best]
  if missing:
    raise CheckpointError(f"{path} is not a best-model record: missing "
                          f"{', '.join(missing)}")
  return best


def resolve(model_path: str, which: str = "latest") -> str:
  """The checkpoint prefix that `--checkpoint=which` names.

  Args:
    model_path: the model directory.
    which: "latest" (the newest `ckpt-N` of the training run), "best" (the
      best model by validation, see `read_best`), or a path: a checkpoint
      prefix such as `/models/x/ckpt-5000`, or a directory holding `ckpt-N`
      files.

  Raises:
    CheckpointError: when there is no such checkpoint.
  """
  if which == "latest":
    path = tf.train.latest_checkpoint(model_path)
    if path is None:
      raise CheckpointError(
          f"--model_path {model_path!r} has no checkpoint (expected "
          f"{CHECKPOINT_NAME}-N files written by --mode=train)")
    return path
  if which == "best":
    best = read_best(model_path)
    if best is None:
      raise CheckpointError(
          f"--checkpoint=best: {model_path!r} has no best model (it is kept "
          "by validation during training, --eval_every_steps > 0)")
    path = os.path.join(best_directory(model_path), best["checkpoint"])
  elif os.path.isdir(which):
    path = tf.train.latest_checkpoint(which)
    if path is None:
      raise CheckpointError(f"--checkpoint={which}: the directory has no "
                            f"{CHECKPOINT_NAME}-N checkpoint")
  else:
    path = which
  if not tf.io.gfile.exists(path + ".index"):
    raise CheckpointError(f"--checkpoint: no checkpoint at {path} (expected "
                          f"{path}.index); use latest, best, a {CHECKPOINT_NAME}"
                          "-N prefix or a directory of them")
  return path


def restore_model(simulator: tf.Module, path: str) -> None:
  """Restores the simulator's variables from a checkpoint prefix."""
  status = tf.train.Checkpoint(simulator=simulator).restore(path)
  status.assert_existing_objects_matched()
  status.expect_partial()  # The optimizer state, if saved, stays unread.
