"""Checkpoint layout of a model directory (`--model_path`), and its repair.

`ckpt-N.*` files written by `tf.train.CheckpointManager` (the `checkpoint`
state file is replaced atomically after the data files are complete, so a
crash mid-save leaves the previous checkpoint as the latest),
`config.json` with the hyperparameters (see `config`), and the best model by
validation in `best/` (see `resolve`).

A checkpoint is *usable* when every tensor in it reads back (the bundle's
checksums pass) and every float is finite. Restoring takes the newest usable
`ckpt-N` on disk, whatever the state file says, so a corrupt state file, a
truncated `.index`/`.data` file or a diverged (NaN) checkpoint costs at most
the steps since the previous checkpoint, with a warning naming it; training
never restarts from step 0 over existing checkpoints.
"""

import glob
import json
import os
import re
import shutil
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from learning_to_simulate.data import dataset_writer

CHECKPOINT_NAME = "ckpt"
STATE_FILENAME = "checkpoint"
# Suffix of the files of a damaged checkpoint that training moved aside.
DAMAGED_SUFFIX = ".damaged"
# Saves cut short leave `ckpt-N_temp/` (sharded data) and state-file temps.
_TEMP_PATTERNS = (f"{CHECKPOINT_NAME}-*_temp*", f"{STATE_FILENAME}.tmp*",
                  f".{STATE_FILENAME}.*.tmp")
_INDEX = re.compile(rf"^{CHECKPOINT_NAME}-(\d+)\.index$")


class CheckpointError(ValueError):
  """A model directory has no usable checkpoint, or a save failed."""


class CheckpointReadError(CheckpointError):
  """A checkpoint could not be read, for a reason other than damage."""


# The keys of the training input's position (a `tf.data` iterator's state:
# its shuffle buffer, the trajectory being read) in a training checkpoint,
# and of what it is a position in (`input_description`'s JSON).
INPUT_KEY = "input"
INPUT_DESCRIPTION_KEY = "input_description"
_DESCRIPTION_TENSOR = f"{INPUT_DESCRIPTION_KEY}/.ATTRIBUTES/VARIABLE_VALUE"


def input_description(train_file: str, **pipeline: Any) -> str:
  """What an input position is a position in: the file and the pipeline.

  Args:
    train_file: the training split's file (its real path, size and
      modification time: a position is not carried over to other data).
    **pipeline: JSON-able settings that shape the stream (batch size,
      window length, shuffle buffer, shard, ...).
  """
  stat = os.stat(train_file)
  return json.dumps(dict(train_file=os.path.realpath(train_file),
                         size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                         **pipeline), sort_keys=True)


def make_manager(model_path: str, simulator: Optional[tf.Module],
                 optimizer: Optional[tf.Module] = None,
                 max_to_keep: Optional[int] = 5,
                 input_iterator: Optional[Any] = None,
                 description: str = ""
                 ) -> tf.train.CheckpointManager:
  """A manager for `simulator` (and `optimizer`, when training; and the
  training input's position, `input_iterator`, with its `description`
  from `input_description`, when it is saved)."""
  objects = {}
  if simulator is not None:
    objects["simulator"] = simulator
  if optimizer is not None:
    objects["optimizer"] = optimizer
  if input_iterator is not None:
    objects[INPUT_KEY] = input_iterator
    objects[INPUT_DESCRIPTION_KEY] = tf.Variable(description,
                                                 trainable=False)
  checkpoint = tf.train.Checkpoint(**objects)
  return tf.train.CheckpointManager(checkpoint, model_path,
                                    max_to_keep=max_to_keep,
                                    checkpoint_name=CHECKPOINT_NAME)


def checkpoint_path(model_path: str, number: int) -> str:
  return os.path.join(model_path, f"{CHECKPOINT_NAME}-{number}")


def number(path: str) -> int:
  """N of a `ckpt-N` prefix."""
  return int(os.path.basename(path).rsplit("-", 1)[1])


def input_directory(model_path: str, worker: int) -> str:
  """Where worker `worker` (not the chief) of a multi-worker job keeps its
  input position, apart from the chief's checkpoints."""
  return os.path.join(model_path, f"input-worker-{worker}")


def numbers_on_disk(model_path: str) -> List[int]:
  """Numbers N of the `ckpt-N.index` files in `model_path`, ascending."""
  if not os.path.isdir(model_path):
    return []
  return sorted(int(match.group(1)) for match in map(
      _INDEX.match, os.listdir(model_path)) if match)


def damage(path: str) -> Optional[str]:
  """Why the checkpoint at `path` (a `ckpt-N` prefix) is unusable, or None.

  Reads every tensor, so a truncated or corrupted `.data` file fails its
  checksum here rather than halfway through a restore.
  Only evidence of damage makes it unusable: a missing or truncated file, a
  failed checksum, an index that is not one, a non-finite tensor. Any other
  failure to read it (out of memory, permission denied, a transient I/O
  error) raises, so that nobody moves a good checkpoint aside for it.

  Raises:
    CheckpointReadError: reading failed without evidence of damage.
  """
  if not os.path.exists(path + ".index"):
    return "its .index file is missing"
  try:
    reader = tf.train.load_checkpoint(path)
    for name, dtype in sorted(reader.get_variable_to_dtype_map().items()):
      if dtype == tf.variant:  # The input's position: its checksum only.
        tf.raw_ops.RestoreV2(prefix=path, tensor_names=[name],
                             shape_and_slices=[""], dtypes=[dtype])
        continue
      value = reader.get_tensor(name)
      if dtype.is_floating and not np.all(np.isfinite(value)):
        variable = name.split("/.ATTRIBUTES")[0]
        return f"{variable} is not finite: training diverged"
  except Exception as error:  # pylint: disable=broad-except
    if not is_damage(error):
      raise CheckpointReadError(
          f"could not read checkpoint {path}: {type(error).__name__}: "
          f"{_first_line(error)} (no sign of damage: it is left as it is; "
          "fix the cause and run again)") from error
    return f"unreadable: {_first_line(error)}"
  return None


# What TensorFlow's checkpoint reader says of damaged files: a failed
# checksum, a missing .data file, an .index file that is not an SSTable.
_DAMAGE_MESSAGE = re.compile(
    r"checksum does not match|no such file or directory|not an sstable|"
    r"too short to be an sstable|data loss|truncated|corrupt", re.IGNORECASE)


def is_damage(error: BaseException) -> bool:
  """Whether an error raised while reading a checkpoint shows damage.

  The reader raises IndexError ("Read less bytes than requested") for a
  truncated .data file and a plain `tf.errors.OpError` for the rest, so
  the message decides; DataLossError and NotFoundError always do.
  """
  if isinstance(error, (tf.errors.DataLossError, tf.errors.NotFoundError)):
    return True
  if isinstance(error, IndexError):
    return "read less bytes" in str(error).lower()
  if isinstance(error, tf.errors.OpError):
    return bool(_DAMAGE_MESSAGE.search(error.message or ""))
  return False


def _first_line(error: BaseException) -> str:
  message = getattr(error, "message", None) or str(error)
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  return lines[0] if lines else type(error).__name__


def _state(model_path: str) -> Tuple[bool, Optional[str]]:
  """Whether the state file exists, and the latest checkpoint it names.

  The name is None when the file is missing or unreadable.
  """
  if not os.path.exists(os.path.join(model_path, STATE_FILENAME)):
    return False, None
  try:
    state = tf.train.get_checkpoint_state(model_path)
  except (tf.errors.OpError, ValueError):
    state = None
  if state is None or not state.model_checkpoint_path:
    return True, None
  return True, state.model_checkpoint_path


def _basename(path: Optional[str]) -> str:
  return os.path.basename(path) if path else "none"


def latest_usable(model_path: str
                  ) -> Tuple[Optional[str], List[Tuple[str, str]]]:
  """The newest usable checkpoint on disk, and the newer damaged ones.

  Logs a warning for a state file that is unreadable or names a missing
  checkpoint, and for each damaged checkpoint passed over.

  Returns:
    `(path, damaged)`: `path` is None when `model_path` has no checkpoint;
    `damaged` lists `(path, reason)` of the newer, unusable ones.

  Raises:
    CheckpointError: there are checkpoints but none is usable.
  """
  if os.path.exists(model_path) and not os.path.isdir(model_path):
    raise CheckpointError(f"--model_path {model_path!r} is an existing file, "
                          "not a directory")
  has_state, state_latest = _state(model_path)
  numbers = numbers_on_disk(model_path)
  if has_state and state_latest is None and numbers:
    logging.warning("The checkpoint state file %s is unreadable; looking for "
                    "the newest readable %s-N on disk.",
                    os.path.join(model_path, STATE_FILENAME), CHECKPOINT_NAME)
  elif state_latest and not os.path.exists(state_latest + ".index"):
    logging.warning("The checkpoint state file names %s, which is missing; "
                    "looking for the newest readable %s-N on disk.",
                    state_latest, CHECKPOINT_NAME)
  damaged = []
  for number in reversed(numbers):
    path = checkpoint_path(model_path, number)
    reason = damage(path)
    if reason is None:
      for bad, why in damaged:
        logging.warning("Checkpoint %s is damaged (%s); using %s instead.",
                        bad, why, _basename(path))
      return path, damaged
    damaged.append((path, reason))
  if damaged:
    raise CheckpointError(
        f"--model_path {model_path!r} has no usable checkpoint: " +
        "; ".join(f"{_basename(p)} {why}" for p, why in damaged))
  return None, []


def restore_latest(manager: tf.train.CheckpointManager, require: bool,
                   model_only: bool = False) -> Optional[str]:
  """Restores the newest usable checkpoint of `manager`'s directory.

  Args:
    manager: from `make_manager`.
    require: raise if there is none (evaluation) instead of returning None
      (a fresh training run).
    model_only: the manager tracks the simulator alone (evaluation), so the
      optimizer state in the checkpoint is left unread.

  Returns:
    The restored checkpoint path, or None.

  Raises:
    CheckpointError: no checkpoint (with `require`), or none usable.
  """
  path, _ = latest_usable(manager.directory)
  if path is None:
    if require:
      raise CheckpointError(
          f"--model_path {manager.directory!r} has no checkpoint (expected "
          f"{CHECKPOINT_NAME}-N files written by --mode=train)")
    return None
  status = manager.checkpoint.restore(path)
  status.assert_existing_objects_matched()
  # The optimizer (with `model_only`) and the input's position stay unread.
  status.expect_partial()
  return path


def restore_input(path: str, iterator: Any,
                  description: str) -> Optional[str]:
  """Restores the training input's position saved in checkpoint `path`.

  Args:
    path: a `ckpt-N` prefix.
    iterator: a new iterator over the input pipeline.
    description: that pipeline's (`input_description`): the saved position
      is restored only into the pipeline it was saved from.

  Returns:
    None once restored; else why not, for a warning (the checkpoint was
    saved without it, or for other data or another pipeline, or it does not
    restore). The iterator may then be unusable: make a new one.
  """
  reader = tf.train.load_checkpoint(path)
  names = reader.get_variable_to_dtype_map()
  if _DESCRIPTION_TENSOR not in names or not any(
      name.startswith(INPUT_KEY + "/") for name in names):
    return "it was saved without it"
  saved = reader.get_tensor(_DESCRIPTION_TENSOR).decode()
  if saved != description:
    return f"it was saved for another input: {_changes(saved, description)}"
  try:
    status = tf.train.Checkpoint(**{INPUT_KEY: iterator}).read(path)
    status.assert_existing_objects_matched()
    status.expect_partial()
  except (tf.errors.OpError, AssertionError, ValueError) as error:
    return f"it could not be restored: {_first_line(error)}"
  return None


def _changes(saved: str, current: str) -> str:
  """The settings in which two `input_description`s differ, in words."""
  try:
    before, after = json.loads(saved), json.loads(current)
  except json.JSONDecodeError:
    return "its description does not read"
  keys = sorted(set(before) | set(after))
  return ", ".join(f"{key} {before.get(key)!r} then, {after.get(key)!r} now"
                   for key in keys if before.get(key) != after.get(key))


def remove_stale_temp_files(model_path: str) -> List[str]:
  """Removes what saves cut short by a kill left behind; returns the paths.

  Only call this while holding the training lock (`model_lock`): a live
  trainer's save in progress looks the same.
  """
  removed = []
  for pattern in _TEMP_PATTERNS:
    for path in sorted(glob.glob(os.path.join(model_path, pattern))):
      if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
      else:
        os.remove(path)
      removed.append(path)
  if removed:
    logging.warning("Removed what interrupted saves left behind: %s.",
                    ", ".join(os.path.basename(p) for p in removed))
  return removed


def _move_aside(path: str) -> List[str]:
  """Renames the files of checkpoint `path` to `*.damaged`; returns them."""
  moved = []
  for name in sorted(glob.glob(glob.escape(path) + ".*")):
    if not name.endswith(DAMAGED_SUFFIX):
      os.replace(name, name + DAMAGED_SUFFIX)
      moved.append(name + DAMAGED_SUFFIX)
  return moved


def recover(model_path: str) -> Optional[str]:
  """Makes a model directory consistent before training resumes in it.

  Removes stale temporary files, moves the files of damaged checkpoints
  newer than the newest usable one aside (`ckpt-N.index.damaged`, ...), so
  that no save overwrites them, and rewrites the state file when it is
  unreadable or does not name that checkpoint, so that the manager resumes
  from it and rotates the older ones as usual. Call it while holding the
  training lock, before `make_manager`.

  Returns:
    The newest usable checkpoint, or None for a directory without any.

  Raises:
    CheckpointError: there are checkpoints but none is usable.
  """
  remove_stale_temp_files(model_path)
  path, damaged = latest_usable(model_path)
  for bad, _ in damaged:
    logging.warning("Moved the damaged checkpoint aside: %s.",
                    ", ".join(_move_aside(bad)))
  if path is None:
    return None
  _, state_latest = _state(model_path)
  if state_latest is None or (os.path.abspath(state_latest) !=
                               os.path.abspath(path)):
    names = [_basename(checkpoint_path(model_path, n))
             for n in numbers_on_disk(model_path)]
    _write_state(model_path, _basename(path), names)
    logging.warning("Rewrote the checkpoint state file %s: latest %s, "
                    "tracking %s.", os.path.join(model_path, STATE_FILENAME),
                    _basename(path), ", ".join(names))
  return path


def _write_state(model_path: str, latest: str, names: List[str]) -> None:
  """Writes the state file (a `CheckpointState` text proto) atomically.

  Each checkpoint's time is its `.index` file's; all are newer than the
  last preserved time, so the manager rotates them as usual.
  """
  times = [os.path.getmtime(os.path.join(model_path, name + ".index"))
           for name in names]
  lines = [f'model_checkpoint_path: "{latest}"']
  lines += [f'all_model_checkpoint_paths: "{name}"' for name in names]
  lines += [f"all_model_checkpoint_timestamps: {t!r}" for t in times]
  lines.append(f"last_preserved_timestamp: {min(times) - 1.0!r}")
  with dataset_writer.atomic_file(
      os.path.join(model_path, STATE_FILENAME)) as tmp_path:
    with open(tmp_path, "w") as f:
      f.write("\n".join(lines) + "\n")


def save(manager: tf.train.CheckpointManager, step: int,
         kept: Optional[str]) -> str:
  """Saves `ckpt-{step}`; a failed write is one clear error.

  Args:
    manager: from `make_manager`.
    step: the checkpoint number.
    kept: the latest complete checkpoint (named in the error), or None.

  Raises:
    CheckpointError: the write failed (a full disk: `OSError` ENOSPC or a
      TensorFlow `ResourceExhaustedError`; no permission; ...). The state
      file is replaced only after a complete write, so `kept` is intact.
  """
  try:
    return manager.save(checkpoint_number=step)
  except (OSError, tf.errors.OpError) as error:
    reason = (error.strerror if isinstance(error, OSError) and error.strerror
              else _first_line(error))
    for path in glob.glob(checkpoint_path(manager.directory, step) +
                          "_temp*"):
      shutil.rmtree(path, ignore_errors=True)
    intact = (f"the latest complete checkpoint, {_basename(kept)}, is intact"
              if kept else "no earlier checkpoint exists")
    raise CheckpointError(
        f"could not save {CHECKPOINT_NAME}-{step} in {manager.directory}: "
        f"{reason}; {intact}") from None


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


def resolve(model_path: str, which: str = "latest",
            flag: str = "--checkpoint") -> str:
  """The checkpoint prefix that `--checkpoint=which` names.

  Args:
    model_path: the model directory.
    which: "latest" (the newest usable `ckpt-N` of the training run, see
      `latest_usable`), "best" (the best model by validation, see
      `read_best`), or a path: a checkpoint prefix such as
      `/models/x/ckpt-5000`, or a directory holding `ckpt-N` files.
    flag: the flag that named it, for the errors.

  Raises:
    CheckpointError: when there is no such checkpoint.
  """
  if which == "latest":
    path, _ = latest_usable(model_path)
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
      raise CheckpointError(f"{flag}={which}: the directory has no "
                            f"{CHECKPOINT_NAME}-N checkpoint")
  else:
    path = which
  if not tf.io.gfile.exists(path + ".index"):
    raise CheckpointError(f"{flag}: no checkpoint at {path} (expected "
                          f"{path}.index); use latest, best, a "
                          f"{CHECKPOINT_NAME}-N prefix or a directory of them")
  return path


def restore_model(simulator: tf.Module, path: str,
                  flag: str = "--checkpoint") -> None:
  """Restores the simulator's variables from a usable checkpoint prefix.

  Raises:
    CheckpointError: the checkpoint is unreadable or not finite.
  """
  reason = damage(path)
  if reason is not None:
    raise CheckpointError(f"{flag}: {path} is {reason}"
                          if reason.startswith("unreadable") else
                          f"{flag}: in {path}, {reason}")
  status = tf.train.Checkpoint(simulator=simulator).restore(path)
  status.assert_existing_objects_matched()
  status.expect_partial()  # The optimizer state, if saved, stays unread.


# Models trained with this package and shipped inside it: `--pretrained`'s
# names. Each was trained on data like the bundled dataset of the same name
# (`reading_utils.bundled_dataset_path(name)`), whose test split scores it.
PRETRAINED_DIRECTORY = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained")
PRETRAINED_MODELS = ("water_drop", "multi_material", "water_walls")
DEFAULT_PRETRAINED = "water_drop"


def pretrained_name(name: str) -> str:
  """`name` (or its directory's name, `{name}_sample`) checked against
  `PRETRAINED_MODELS`.

  Raises:
    CheckpointError: no shipped model has that name.
  """
  short = name[:-len("_sample")] if name.endswith("_sample") else name
  if short not in PRETRAINED_MODELS:
    raise CheckpointError(f"--pretrained must be one of "
                          f"{', '.join(PRETRAINED_MODELS)} (bare: "
                          f"{DEFAULT_PRETRAINED}), got {name!r}")
  return short


def parse_pretrained(value: Any) -> Optional[str]:
  """`--pretrained`'s value: a bare flag or `true` is `DEFAULT_PRETRAINED`,
  `false` (`--nopretrained`) or nothing is None, else a name
  (`pretrained_name`, which raises for an unknown one)."""
  if value is None or isinstance(value, bool):
    return DEFAULT_PRETRAINED if value else None
  text = str(value).strip()
  if text.lower() in ("true", "1", "yes"):
    return DEFAULT_PRETRAINED
  if text.lower() in ("false", "0", "no", ""):
    return None
  return pretrained_name(text)


def pretrained_model_path(name: str = DEFAULT_PRETRAINED) -> str:
  """The model directory of a shipped pretrained model (see its PROVENANCE).

  Raises:
    CheckpointError: there is no such pretrained model.
  """
  path = _pretrained_directory(pretrained_name(name))
  if not os.path.isdir(path):
    raise CheckpointError(f"the pretrained model {name!r} is not installed: "
                          f"no directory {path}")
  return path


def installed_pretrained() -> List[str]:
  """The names in `PRETRAINED_MODELS` whose directory is installed."""
  return [name for name in PRETRAINED_MODELS
          if os.path.isdir(_pretrained_directory(name))]


def _pretrained_directory(name: str) -> str:
  return os.path.join(PRETRAINED_DIRECTORY, f"{name}_sample")
