"""One-step evaluation and rollout evaluation from a trained checkpoint.

`evaluate` reports the original's `loss_mse` and `one_step_position_mse`;
`evaluate_rollouts` writes `rollout_{split}_{i}.pkl` files with the
original's keys and shapes and reports `rollout_error_mse`
(Sanchez-Gonzalez et al. 2020, Sec. 5).
"""

import os
import pickle
import time
from typing import Any, Callable, Dict, Iterable, List, Optional

from absl import logging
import numpy as np
import tqdm

from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer
from learning_to_simulate import reading_utils
from learning_to_simulate.training import build
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import one_step
from learning_to_simulate.training import rollout as rollout_lib


def load_model(data_path: str, model_path: str,
               model_config: config_lib.ModelConfig,
               mixed_precision: Optional[str] = None,
               jit_compile: bool = False):
  """Metadata and the simulator restored from the latest checkpoint."""
  metadata = reading_utils.read_metadata(data_path)
  model_config.validate()
  simulator = build.build_simulator(metadata, model_config,
                                       mixed_precision, jit_compile)
  manager = checkpoints.make_manager(model_path, simulator, max_to_keep=None)
  path = checkpoints.restore_latest(manager, require=True, model_only=True)
  logging.info("Restored %s.", path)
  return metadata, simulator


class RolloutsInterrupted(KeyboardInterrupt):
  """Ctrl-C during `evaluate_rollouts`; the message says what was written.

  Attributes:
    files: the complete rollout pickles written before the interrupt.
  """

  def __init__(self, message: str, files: List[str]):
    super().__init__(message)
    self.files = files


def _interrupted(files: List[str], total: int, output_path: str
                 ) -> RolloutsInterrupted:
  if not files:
    return RolloutsInterrupted("interrupted before the first rollout was "
                               f"written to {output_path}", files)
  names = os.path.basename(files[0])
  if len(files) > 1:
    names += f" .. {os.path.basename(files[-1])}"
  return RolloutsInterrupted(
      f"interrupted: wrote {len(files)} of {total} rollouts ({names}) to "
      f"{output_path}; none is partial", files)


def _check_finite(values: Dict[str, float], what: str) -> None:
  bad = [name for name, value in values.items() if not np.isfinite(value)]
  if bad:
    raise ValueError(f"{', '.join(bad)} is not finite on {what}: the model's "
                     "predictions overflow")


def evaluate(data_path: str, model_path: str,
             model_config: config_lib.ModelConfig, split: str = "test",
             batch_size: int = 2,
             num_eval_steps: Optional[int] = None,
             mixed_precision: Optional[str] = None,
             jit_compile: bool = False,
             skip_corrupt_records: bool = False) -> Dict[str, float]:
  """One-step metrics over a split (or its first `num_eval_steps` batches).

  Returns:
    `loss_mse` (normalized acceleration, inputs with training noise, as in
    the original) and `one_step_position_mse` (next position, clean inputs),
    each a mean over all particles and dimensions, and `num_batches`.

  Raises:
    ValueError: bad arguments or data (`reading_utils.DatasetError`), no
      usable checkpoint (`checkpoints.CheckpointError`), or a metric that is
      not finite.
  """
  if num_eval_steps is not None and num_eval_steps < 1:
    raise ValueError(f"--num_eval_steps must be >= 1, got {num_eval_steps}")
  reading_utils.check_split(data_path, split, skip_corrupt_records)
  metadata, simulator = load_model(data_path, model_path, model_config,
                                   mixed_precision, jit_compile)
  dataset = reading_utils.get_one_step_dataset(
      data_path, split, batch_size, metadata, is_training=False,
      skip_corrupt_records=skip_corrupt_records)
  if num_eval_steps is not None:
    dataset = dataset.take(num_eval_steps)
  eval_step = one_step.make_eval_step(simulator, model_config.noise_std,
                                      metadata)
  totals = {"acc_sse": 0.0, "acc_count": 0.0, "pos_sse": 0.0,
            "pos_count": 0.0}
  num_batches = 0
  start = time.time()
  for batch in reading_utils.iterate(
      dataset, reading_utils.split_file(data_path, split)):
    for key, value in eval_step(batch).items():
      totals[key] += float(value)
    num_batches += 1
  if not num_batches:
    raise ValueError(f"the {split} split of {data_path} has no windows of "
                     f"{common.WINDOW_LENGTH} frames")
  metrics = {
      "loss_mse": totals["acc_sse"] / totals["acc_count"],
      "one_step_position_mse": totals["pos_sse"] / totals["pos_count"],
      "num_batches": num_batches,
  }
  _check_finite({k: metrics[k] for k in ("loss_mse", "one_step_position_mse")},
                f"the {split} split")
  logging.info("Evaluated %d batches of %s in %.1fs.", num_batches, split,
               time.time() - start)
  return metrics


def _write_pickle(path: str, value: Any, written: int) -> None:
  """Pickles `value` to `path` atomically (temporary file, then rename).

  Raises:
    ValueError: the write failed (a full disk, ...); the message says that
      the `written` rollouts before it are complete.
  """
  try:
    with dataset_writer.atomic_file(path) as tmp_path:
      with open(tmp_path, "wb") as f:
        pickle.dump(value, f)
  except OSError as error:
    raise ValueError(f"could not write {path}: {error.strerror or error}; "
                     f"the {written} rollouts written before it are "
                     "complete") from None


def rollout_filename(split: str, index: int) -> str:
  return f"rollout_{split}_{index}.pkl"


def evaluate_rollouts(data_path: str, model_path: str, output_path: str,
                      model_config: config_lib.ModelConfig,
                      split: str = "test",
                      num_rollouts: Optional[int] = None,
                      rollout_steps: Optional[int] = None,
                      mixed_precision: Optional[str] = None,
                      jit_compile: bool = False,
                      skip_corrupt_records: bool = False) -> Dict[str, Any]:
  """Rolls out trajectories of a split and saves them as pickles.

  Args:
    data_path, model_path, model_config: the dataset and trained model.
    output_path: directory for `rollout_{split}_{i}.pkl` (created).
    split: dataset split.
    num_rollouts: number of trajectories (default all).
    rollout_steps: cap on predicted steps per trajectory (default the full
      `sequence_length - INPUT_SEQUENCE_LENGTH`).
    mixed_precision, jit_compile: see `build.build_simulator`.
    skip_corrupt_records: see `reading_utils.load_trajectories` (rollouts
      are numbered in reading order, skipped records leave no gap).

  Returns:
    `rollout_error_mse` (mean over trajectories), `per_trajectory` (list),
    `files` (written paths).

  Raises:
    ValueError: bad arguments, data, model or output directory, a failed
      write, or a rollout error that is not finite (after writing them all).
    RolloutsInterrupted: on Ctrl-C, naming the complete pickles.
  """
  if num_rollouts is not None and num_rollouts < 1:
    raise ValueError(f"--num_rollouts must be >= 1, got {num_rollouts}")
  if rollout_steps is not None and rollout_steps < 1:
    raise ValueError(f"--rollout_steps must be >= 1, got {rollout_steps}")
  total = reading_utils.check_split(data_path, split, skip_corrupt_records)
  metadata, simulator = load_model(data_path, model_path, model_config,
                                   mixed_precision, jit_compile)
  num_steps = metadata["sequence_length"] - common.INPUT_SEQUENCE_LENGTH
  if rollout_steps is not None:
    num_steps = min(num_steps, rollout_steps)
  if num_steps < 1:
    raise ValueError(f"sequence_length {metadata['sequence_length']} leaves "
                     "no step to roll out")
  dataset_writer.make_directory(output_path, "--output_path")
  dataset = reading_utils.get_rollout_dataset(data_path, split, metadata,
                                              skip_corrupt_records)
  if num_rollouts is not None:
    dataset = dataset.take(num_rollouts)
  rollout_fn = rollout_lib.make_rollout_fn(simulator, metadata)
  if num_rollouts is not None:
    total = min(total, num_rollouts)

  errors, files = [], []
  try:
    _write_rollouts(dataset, reading_utils.split_file(data_path, split),
                    rollout_fn, num_steps, metadata, output_path, split, total,
                    errors, files)
  except KeyboardInterrupt:
    raise _interrupted(files, total, output_path) from None
  if not errors:
    raise ValueError(f"the {split} split of {data_path} has no trajectories")
  _check_finite({f"rollout_error_mse[{i}]": e for i, e in enumerate(errors)},
                f"the {split} split (rollouts written to {output_path})")
  return {"rollout_error_mse": float(np.mean(errors)),
          "per_trajectory": errors, "files": files}


def _write_rollouts(dataset: Iterable[Any], path: str,
                    rollout_fn: Callable[..., Dict[str, Any]], num_steps: int,
                    metadata: Dict[str, Any], output_path: str, split: str,
                    total: int, errors: List[float], files: List[str]
                    ) -> None:
  """The loop of `evaluate_rollouts`, reading `dataset` from `path`.

  Appends each rollout's error and pickle path to `errors` and `files` as
  soon as the pickle is complete, so an interrupt knows what was written.
  """
  # A bar on a terminal (tqdm turns itself off elsewhere); logs say the rest.
  for index, features in enumerate(tqdm.tqdm(
      reading_utils.iterate(dataset, path), total=total, unit="rollout",
      disable=None, leave=False, desc=f"eval_rollout ({split})")):
    inputs = {k: v for k, v in features.items() if k != "key"}
    start = time.time()
    output = {k: v.numpy() for k, v in rollout_fn(inputs, num_steps).items()}
    seconds = time.time() - start
    output["metadata"] = dict(metadata)
    error = float(np.mean((output["predicted_rollout"] -
                           output["ground_truth_rollout"])**2))
    rollout_path = os.path.join(output_path, rollout_filename(split, index))
    _write_pickle(rollout_path, output, len(files))
    errors.append(error)
    files.append(rollout_path)
    num_particles = output["particle_types"].shape[0]
    logging.info("Rollout %d: %d steps x %d particles in %.1fs (%.1f steps/s)"
                 "  rollout_error_mse %.6g  -> %s", index, num_steps,
                 num_particles, seconds, num_steps / max(seconds, 1e-9),
                 error, rollout_path)


