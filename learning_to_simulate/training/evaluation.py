"""One-step evaluation and rollout evaluation from a trained checkpoint.

`evaluate` reports the original's `loss_mse` and `one_step_position_mse`;
`evaluate_rollouts` writes `rollout_{split}_{i}.pkl` files with the
original's keys and shapes, reports the original's `rollout_error_mse`
(Sanchez-Gonzalez et al. 2020, Sec. 5) and scores every rollout and the
physics-free baselines with the metrics of `metrics` (`metrics.json`, which
also holds each trajectory's kinetic-energy and centre-of-mass curves,
`metrics.physics_curves`, under `curves`).

With several workers (`distribution.Workers`, `--distribution=multi_worker`)
each evaluates its share of the trajectories (record `i` on worker `i mod
W`) on one device and the metrics are gathered on every worker; the chief
writes `metrics.json`. Rollout pickles keep their global index and are
identical to those of a single process.
"""

import json
import os
import pickle
import signal
import threading
import time
from typing import (Any, Callable, Dict, Iterable, List, Mapping, Optional,
                    Sequence)

from absl import logging
import numpy as np
import tqdm

from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer
from learning_to_simulate import reading_utils
from learning_to_simulate.training import baselines
from learning_to_simulate.model import build
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import distribution
from learning_to_simulate.training import metrics as metrics_lib
from learning_to_simulate.training import one_step
from learning_to_simulate.training import rollout as rollout_lib


def load_model(data_path: str, model_path: str,
               model_config: config_lib.ModelConfig,
               mixed_precision: Optional[str] = None,
               jit_compile: bool = False, checkpoint: str = "latest"):
  """Metadata and the simulator restored from a checkpoint.

  Args:
    data_path: dataset directory (for the metadata).
    model_path: model directory.
    model_config: the model's hyperparameters.
    mixed_precision, jit_compile: see `build.build_simulator`.
    checkpoint: "latest", "best" or a path (see `checkpoints.resolve`).
  """
  metadata = reading_utils.read_metadata(data_path)
  _warn_if_other_statistics(metadata, data_path, model_path)
  model_config.validate()
  simulator = build.build_simulator(metadata, model_config, mixed_precision,
                                    jit_compile)
  if checkpoint == "latest":
    manager = checkpoints.make_manager(model_path, simulator,
                                       max_to_keep=None)
    path = checkpoints.restore_latest(manager, require=True, model_only=True)
  else:
    path = checkpoints.resolve(model_path, checkpoint)
    checkpoints.restore_model(simulator, path)
  logging.info("Restored %s.", path)
  return metadata, simulator


# The metadata the model's inputs and outputs are scaled with.
NORMALIZING_KEYS = ("dim", "bounds", "default_connectivity_radius",
                    "vel_mean", "vel_std", "acc_mean", "acc_std")


def _warn_if_other_statistics(metadata: Mapping[str, Any], data_path: str,
                              model_path: str) -> None:
  """One warning line when `data_path`'s metadata normalizes otherwise than
  the dataset the model was trained on (its copy in `model_path`; models
  trained before the copy existed have none)."""
  if not model_path:  # A checkpoint path alone (`checkpoint=`).
    return
  saved_path = os.path.join(model_path, reading_utils.METADATA_FILENAME)
  if (os.path.realpath(model_path) == os.path.realpath(data_path) or
      not os.path.exists(saved_path)):
    return
  with open(saved_path) as f:
    trained = json.load(f)
  def same(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=0)

  differ = [key for key in NORMALIZING_KEYS if key in trained and
            key in metadata and not same(trained[key], metadata[key])]
  if differ:
    logging.warning(
        "%s/metadata.json differs from the metadata the model in %s was "
        "trained with in %s: the model is run with this dataset's, as the "
        "original does (its inputs and outputs are scaled otherwise than in "
        "training).", data_path, model_path, ", ".join(differ))


def one_step_totals(eval_step, dataset: Iterable[Any]) -> Dict[str, float]:
  """Sums of `one_step.eval_step` over batches, and `num_batches`.

  Args:
    eval_step: from `one_step.make_eval_step`.
    dataset: batches from `reading_utils.get_one_step_dataset`.
  """
  totals = {"acc_sse": 0.0, "acc_count": 0.0, "pos_sse": 0.0,
            "pos_count": 0.0, "moving_sse": 0.0, "moving_count": 0.0}
  num_batches = 0
  for batch in dataset:
    for key, value in eval_step(batch).items():
      totals[key] += float(value)
    num_batches += 1
  return dict(totals, num_batches=num_batches)


def metrics_from_totals(totals: Mapping[str, float]) -> Dict[str, float]:
  """`loss_mse`, `one_step_position_mse` (all particles, the original's),
  `one_step_position_mse_moving` (non-kinematic particles alone; absent
  when there are none) and `num_batches` from `one_step_totals` (only
  `num_batches` when it is 0)."""
  if not totals["num_batches"]:
    return {"num_batches": 0}
  metrics = {
      "loss_mse": totals["acc_sse"] / totals["acc_count"],
      "one_step_position_mse": totals["pos_sse"] / totals["pos_count"],
      "num_batches": totals["num_batches"],
  }
  if totals.get("moving_count"):
    metrics["one_step_position_mse_moving"] = (totals["moving_sse"] /
                                               totals["moving_count"])
  return metrics


def one_step_metrics(eval_step, dataset: Iterable[Any]) -> Dict[str, float]:
  """`loss_mse`, `one_step_position_mse` and `num_batches` over batches.

  Args:
    eval_step: from `one_step.make_eval_step`.
    dataset: batches from `reading_utils.get_one_step_dataset`.
  """
  return metrics_from_totals(one_step_totals(eval_step, dataset))


class RolloutsInterrupted(KeyboardInterrupt):
  """Ctrl-C during `evaluate_rollouts`; the message says what was written.

  Attributes:
    files: the complete rollout pickles written before the interrupt.
  """

  def __init__(self, message: str, files: List[str]):
    super().__init__(message)
    self.files = files


class RememberedInterrupt:
  """Ctrl-C raises `KeyboardInterrupt` as usual, and is also remembered.

  TensorFlow's native code can swallow the `KeyboardInterrupt` that
  Python's SIGINT handler raises inside it (seen in about 1 of 5 runs of
  `test_ctrl_c_during_eval_rollout`: the handler ran, the loop went on).
  `check()` raises it again between rollouts. Only on the main thread, and
  only where SIGINT has Python's default handler.
  """

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self) -> "RememberedInterrupt":
    if (threading.current_thread() is threading.main_thread() and
        signal.getsignal(signal.SIGINT) is signal.default_int_handler):
      self._previous = signal.signal(signal.SIGINT, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGINT, self._previous)
      self._previous = None

  def _handle(self, signum, frame):
    self.requested = True
    signal.default_int_handler(signum, frame)

  def check(self) -> None:
    if self.requested:
      raise KeyboardInterrupt


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
             checkpoint: str = "latest",
             skip_corrupt_records: bool = False,
             workers: Optional[distribution.Workers] = None
             ) -> Dict[str, float]:
  """One-step metrics over a split (or its first `num_eval_steps` batches).

  Args:
    checkpoint: "latest", "best" or a path (see `checkpoints.resolve`).
    skip_corrupt_records: see `reading_utils.load_trajectories`.
    workers: with several workers, each evaluates its shard of the
      trajectories, at most its share of `num_eval_steps` batches, and the
      sums are gathered (every worker returns the metrics of the whole).

  Returns:
    `loss_mse` (normalized acceleration, inputs with training noise, as in
    the original) and `one_step_position_mse` (next position, clean inputs),
    each a mean over all particles and dimensions, and `num_batches`.
  """
  if num_eval_steps is not None and num_eval_steps < 1:
    raise ValueError(f"--num_eval_steps must be >= 1, got {num_eval_steps}")
  workers = distribution.resolve(workers)
  reading_utils.check_split(data_path, split, skip_corrupt_records)
  metadata, simulator = load_model(data_path, model_path, model_config,
                                   mixed_precision, jit_compile, checkpoint)
  dataset = reading_utils.get_one_step_dataset(
      data_path, split, batch_size, metadata, is_training=False,
      skip_corrupt_records=skip_corrupt_records,
      shard=distribution.shard(workers))
  if num_eval_steps is not None:
    dataset = dataset.take(len(distribution.own_indices(num_eval_steps,
                                                        workers)))
  eval_step = one_step.make_eval_step(simulator, model_config.noise_std,
                                      metadata)
  start = time.time()
  totals = one_step_totals(eval_step, reading_utils.iterate(
      dataset, reading_utils.split_file(data_path, split)))
  if distribution.shard(workers) is not None:
    with distribution.failures(workers, "evaluation starts over"):
      everyone = distribution.gather(workers, totals)
    totals = {key: sum(worker[key] for worker in everyone) for key in totals}
  metrics = metrics_from_totals(totals)
  num_batches = metrics["num_batches"]
  if not num_batches:
    raise ValueError(f"the {split} split of {data_path} has no windows of "
                     f"{common.WINDOW_LENGTH} frames")
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


METRICS_FILENAME = "metrics.json"


def rollout_filename(split: str, index: int) -> str:
  return f"rollout_{split}_{index}.pkl"


def score_rollout(rollout: Mapping[str, Any]) -> Dict[str, Dict[str, float]]:
  """`metrics.rollout_metrics` of the model and of each baseline.

  Returns:
    `{"model": ..., "constant_velocity": ..., "frozen": ...}`, each a dict
    of metric name -> value.
  """
  scores = {"model": metrics_lib.rollout_metrics(rollout)}
  for name, predicted in baselines.baseline_rollouts(rollout).items():
    scores[name] = metrics_lib.rollout_metrics(
        dict(rollout, predicted_rollout=predicted))
  return scores


# The key of the model's `metrics.physics_curves` in the scores of
# `evaluate_rollouts` and in `metrics.json` (not a predictor).
CURVES = "curves"


def summarize_scores(scores: Sequence[Mapping[str, Any]]
                     ) -> Dict[str, Any]:
  """Per-trajectory `score_rollout`s -> per predictor `mean` and list, and
  the per-trajectory `CURVES` where the scores have them."""
  summary = {
      name: {"mean": metrics_lib.mean_metrics([s[name] for s in scores]),
             "per_trajectory": [dict(s[name]) for s in scores]}
      for name in scores[0] if name != CURVES}
  if CURVES in scores[0]:
    summary[CURVES] = [s[CURVES] for s in scores]
  return summary


def format_scores(summary: Mapping[str, Mapping[str, Any]]) -> str:
  """A table: one row per metric, the model and each baseline in columns."""
  names = ["model", *baselines.ROLLOUT_BASELINES]
  metric_names = list(summary["model"]["mean"])
  width = max(len(name) for name in metric_names)
  lines = [" " * width + "".join(f"  {name:>17}" for name in names)]
  for metric in metric_names:
    lines.append(f"{metric:<{width}}" + "".join(
        f"  {summary[name]['mean'].get(metric, float('nan')):>17.4e}"
        for name in names))
  return "\n".join(lines)


def evaluate_rollouts(data_path: str, model_path: str, output_path: str,
                      model_config: config_lib.ModelConfig,
                      split: str = "test",
                      num_rollouts: Optional[int] = None,
                      rollout_steps: Optional[int] = None,
                      mixed_precision: Optional[str] = None,
                      jit_compile: bool = False,
                      checkpoint: str = "latest",
                      skip_corrupt_records: bool = False,
                      workers: Optional[distribution.Workers] = None
                      ) -> Dict[str, Any]:
  """Rolls out trajectories of a split, saves them and scores them.

  Writes `rollout_{split}_{i}.pkl` (the original's keys) and `metrics.json`
  (see `metrics`: the model's and the baselines' metrics per trajectory and
  their means) into `output_path`.

  Args:
    data_path, model_path, model_config: the dataset and trained model.
    output_path: directory for the pickles and `metrics.json` (created).
    split: dataset split.
    num_rollouts: number of trajectories (default all).
    rollout_steps: predicted steps per trajectory (default the data's
      `sequence_length - INPUT_SEQUENCE_LENGTH`); more than the data has
      extrapolates, and the metrics then cover the steps with data.
    mixed_precision, jit_compile: see `build.build_simulator`.
    checkpoint: "latest", "best" or a path (see `checkpoints.resolve`).
    skip_corrupt_records: see `reading_utils.load_trajectories` (rollouts
      are numbered in reading order, skipped records leave no gap).
    workers: with several workers, each rolls out and writes its shard of
      the trajectories (`output_path` must be shared); the scores are
      gathered on every worker and the chief writes `metrics.json`.

  Returns:
    `rollout_error_mse` (the original's figure, mean over trajectories),
    `per_trajectory` (its list), `files` (written pickles), `metrics` (the
    content of `metrics.json`) and `metrics_path`.

  Raises:
    ValueError: bad arguments, data, model or output directory, a failed
      write, or a rollout error that is not finite (after writing them all).
    RolloutsInterrupted: on Ctrl-C, naming the complete pickles.
  """
  if num_rollouts is not None and num_rollouts < 1:
    raise ValueError(f"--num_rollouts must be >= 1, got {num_rollouts}")
  if rollout_steps is not None and rollout_steps < 1:
    raise ValueError(f"--rollout_steps must be >= 1, got {rollout_steps}")
  workers = distribution.resolve(workers)
  shard = distribution.shard(workers)
  if shard is not None and skip_corrupt_records:
    raise ValueError("--skip_corrupt_records cannot number the rollouts of "
                     f"--distribution={workers.name} (each worker skips "
                     "its own records): evaluate on one worker")
  total = reading_utils.check_split(data_path, split, skip_corrupt_records)
  metadata, simulator = load_model(data_path, model_path, model_config,
                                   mixed_precision, jit_compile, checkpoint)
  data_steps = metadata["sequence_length"] - common.INPUT_SEQUENCE_LENGTH
  num_steps = rollout_steps or data_steps
  if num_steps < 1:
    raise ValueError(f"sequence_length {metadata['sequence_length']} leaves "
                     "no step to roll out")
  if num_steps > data_steps:
    logging.info("Rolling out %d steps: the last %d extrapolate past the data"
                 " (metrics cover the first %d).", num_steps,
                 num_steps - data_steps, data_steps)
  dataset_writer.make_directory(output_path, "--output_path")
  dataset = reading_utils.get_rollout_dataset(data_path, split, metadata,
                                              skip_corrupt_records, shard)
  if num_rollouts is not None:
    total = min(total, num_rollouts)
  # The global index of each trajectory this worker rolls out.
  indices = distribution.own_indices(total, workers)
  if num_rollouts is not None or shard is not None:
    dataset = dataset.take(len(indices))
  rollout_fn = rollout_lib.make_rollout_fn(simulator, metadata)

  files, scores = [], []
  interrupt = RememberedInterrupt()
  try:
    with interrupt:
      _write_rollouts(dataset, reading_utils.split_file(data_path, split),
                      rollout_fn, num_steps, metadata, output_path, split,
                      indices, scores, files, interrupt.check)
  except KeyboardInterrupt:
    raise _interrupted(files, total, output_path) from None
  except Exception:  # pylint: disable=broad-except
    # An error from the interrupt's way through native code is the
    # interrupt; any other error is itself.
    if interrupt.requested:
      raise _interrupted(files, total, output_path) from None
    raise
  if shard is not None:
    with distribution.failures(workers, "the rollouts written are "
                               "complete"):
      scores, files = _gather_rollouts(workers, indices, scores, files)
  if not files:
    raise ValueError(f"the {split} split of {data_path} has no trajectories")
  errors = [s["model"]["rollout_error_mse"] for s in scores]
  _check_finite({f"rollout_error_mse[{i}]": e for i, e in enumerate(errors)},
                f"the {split} split (rollouts written to {output_path})")
  summary = {
      "split": split,
      "checkpoint": checkpoint,
      "num_steps": num_steps,
      "steps_with_ground_truth": min(num_steps, data_steps),
      "out_of_domain_tolerance": metrics_lib.out_of_domain_tolerance(
          metadata),
      "files": [os.path.basename(path) for path in files],
      **summarize_scores(scores),
  }
  metrics_path = os.path.join(output_path, METRICS_FILENAME)
  if distribution.is_chief(workers):
    dataset_writer.write_json(metrics_path, summary)
  return {"rollout_error_mse": float(np.mean(errors)),
          "per_trajectory": errors, "files": files, "metrics": summary,
          "metrics_path": metrics_path}


def _gather_rollouts(workers: distribution.Workers, indices: Sequence[int],
                     scores: List[Dict[str, Any]], files: List[str]):
  """Every worker's `(scores, files)`, in the order of the global index."""
  mine = [[index, score, path]
          for index, score, path in zip(indices, scores, files)]
  everyone = sorted((entry for worker in distribution.gather(workers, mine)
                     for entry in worker), key=lambda entry: entry[0])
  return ([score for _, score, _ in everyone],
          [path for _, _, path in everyone])


def _write_rollouts(dataset: Iterable[Any], path: str,
                    rollout_fn: Callable[..., Dict[str, Any]], num_steps: int,
                    metadata: Dict[str, Any], output_path: str, split: str,
                    indices: Sequence[int], scores: List[Dict[str, Any]],
                    files: List[str],
                    check_interrupt: Callable[[], None] = lambda: None
                    ) -> None:
  """The loop of `evaluate_rollouts`, reading `dataset` from `path`.

  `indices` numbers the trajectories of `dataset` (`rollout_{split}_{i}`).
  Appends each rollout's `score_rollout` and pickle path to `scores` and
  `files` as soon as the pickle is complete, so an interrupt knows what was
  written. `check_interrupt` runs after each rollout (it raises
  `KeyboardInterrupt` for one that was asked for).
  """
  # A bar on a terminal (tqdm turns itself off elsewhere); logs say the rest.
  for index, features in zip(indices, tqdm.tqdm(
      reading_utils.iterate(dataset, path), total=len(indices),
      unit="rollout", disable=None, leave=False,
      desc=f"eval_rollout ({split})")):
    inputs = {k: v for k, v in features.items() if k != "key"}
    start = time.time()
    output = {k: v.numpy() for k, v in rollout_fn(inputs, num_steps).items()}
    seconds = time.time() - start
    output["metadata"] = dict(metadata)
    rollout_path = os.path.join(output_path, rollout_filename(split, index))
    _write_pickle(rollout_path, output, len(files))
    scores.append(dict(score_rollout(output),
                       **{CURVES: metrics_lib.physics_curves(output)}))
    files.append(rollout_path)
    model = scores[-1]["model"]
    num_particles = output["particle_types"].shape[0]
    logging.info("Rollout %d: %d steps x %d particles in %.1fs (%.1f steps/s)"
                 "  rollout_error_mse %.6g  mse_full %.6g  out_of_domain %.3g"
                 "  -> %s", index, num_steps, num_particles, seconds,
                 num_steps / max(seconds, 1e-9), model["rollout_error_mse"],
                 model["mse_full"], model["out_of_domain"], rollout_path)
    check_interrupt()
