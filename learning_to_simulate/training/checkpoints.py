"""Checkpoint layout of a model directory (`--model_path`).

`ckpt-N.*` files written by `tf.train.CheckpointManager` (the `checkpoint`
index file is replaced atomically after the data files are complete, so a
crash mid-save leaves the previous checkpoint as the latest), and
`config.json` with the hyperparameters (see `config`).
"""

from typing import Optional

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
