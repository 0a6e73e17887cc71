"""Validation during training, and the best model by a validation metric.

Every `every_steps` training steps (and at the last one) `Validator` measures
on the `valid` split, with the weights being trained:
- the one-step `loss_mse` and `one_step_position_mse` of `evaluation.evaluate`
  over the first `num_batches` batches;
- rollouts of the first `num_rollouts` trajectories (`rollout_steps` steps,
  default the whole trajectory), scored with `metrics.rollout_metrics`
  against the constant-velocity and frozen baselines.
It logs one line, writes TensorBoard scalars under `valid/` (the baselines
under `valid_constant_velocity/` and `valid_frozen/`) and two images (the
first rollout at a few steps, and the per-step error of the model and the
baselines), and keeps the best model by `best_metric` (lower is better) in
`{model_path}/best/` (see `checkpoints.resolve`).
"""

import dataclasses
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer
from learning_to_simulate import reading_utils
from learning_to_simulate.model.options import option
from learning_to_simulate.training import baselines
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import metrics as metrics_lib
from learning_to_simulate.training import one_step
from learning_to_simulate.training import random_streams
from learning_to_simulate.training import rollout as rollout_lib
from learning_to_simulate.visualization import error_plot
from learning_to_simulate.visualization import snapshots

ONE_STEP_METRICS = ("loss_mse", "one_step_position_mse")
ROLLOUT_METRICS = tuple(f"mse_{h}" for h in metrics_lib.HORIZONS) + (
    "mse_full", "emd", "kinetic_energy_mse", "out_of_domain",
    "rollout_error_mse")
BEST_METRICS = ONE_STEP_METRICS + ROLLOUT_METRICS


@dataclasses.dataclass(frozen=True)
class ValidationOptions:
  """When and what to validate.

  The defaults cost about 1.5% of training time on the bundled sample
  (1.51% measured by `benchmarks.validation_cost`, BENCHMARKS.md section 4);
  `every_steps=0` turns validation off.
  """
  every_steps: int = option(
      10000, "Validate every N training steps and at the last one: one-step "
      "losses and rollouts on the valid split, TensorBoard scalars and "
      "images under valid/, the best model kept in {model_path}/best (0: "
      "off).", flag="eval_every_steps")
  num_batches: int = option(100, "One-step batches per validation.",
                            flag="eval_num_batches")
  num_rollouts: int = option(
      2, "Valid trajectories rolled out per validation.",
      flag="eval_num_rollouts")
  rollout_steps: Optional[int] = option(
      None, "Steps of each validation rollout (default: the whole "
      "trajectory).", flag="eval_rollout_steps")
  best_metric: str = option(
      "mse_full", "Validation metric (lower is better) that picks the best "
      "model.", choices=BEST_METRICS)
  split: str = "valid"

  def validate(self) -> None:
    if self.every_steps < 0:
      raise ValueError(f"--eval_every_steps must be >= 0 (0: no validation),"
                       f" got {self.every_steps}")
    for name in ("num_batches", "num_rollouts"):
      if getattr(self, name) < 1:
        raise ValueError(f"--eval_{name} must be >= 1, got "
                         f"{getattr(self, name)}")
    if self.rollout_steps is not None and self.rollout_steps < 1:
      raise ValueError(f"--eval_rollout_steps must be >= 1, got "
                       f"{self.rollout_steps}")
    if self.best_metric not in BEST_METRICS:
      raise ValueError(f"--best_metric must be one of {', '.join(BEST_METRICS)}"
                       f", got {self.best_metric!r}")

  @property
  def enabled(self) -> bool:
    return self.every_steps > 0


class Validator:
  """Validates the simulator being trained and keeps its best version."""

  def __init__(self, data_path: str, model_path: str,
               metadata: Mapping[str, Any], simulator: tf.Module,
               noise_std: float, options: ValidationOptions,
               batch_size: int = 2,
               before_save: Optional[Callable[[int], None]] = None,
               seed: Optional[int] = None):
    """Prepares the steps and the best-model checkpoint.

    Args:
      data_path, model_path: the dataset and the model directory.
      metadata: the dataset's metadata.
      simulator: the simulator being trained.
      noise_std: its input noise (for `loss_mse`, as `evaluate` does).
      options: what to validate and how often.
      batch_size: examples per batch of the one-step metrics.
      before_save: called with the step before a best model is saved; it
        raises to prevent the save (the trainer checks that the variables
        are finite).
      seed: the run seed: every validation then draws the same input noise
        (`random_streams.validation_seed`), so two validations differ by
        the model only; None: stateful draws.

    Raises:
      ValueError: for bad options, or a dataset without the split.
    """
    options.validate()
    reading_utils.split_file(data_path, options.split)
    self._model_path = model_path
    self._metadata = dict(metadata)
    self._options = options
    self._before_save = before_save
    self._noise_seed = None
    generator = None
    if seed is not None:
      self._noise_seed = random_streams.validation_seed(seed)
      generator = tf.random.Generator.from_seed(self._noise_seed)
    self._generator = generator
    self._eval_step = one_step.make_eval_step(simulator, noise_std, metadata,
                                              generator)
    self._rollout_fn = rollout_lib.make_rollout_fn(simulator, metadata)
    data_steps = metadata["sequence_length"] - common.INPUT_SEQUENCE_LENGTH
    self._num_steps = options.rollout_steps or data_steps
    # Built and traced now, when training starts, and only iterated by each
    # validation: autograph reads the source files of what it converts when
    # it traces, so a file edited during a long run would otherwise break the
    # first validation, hours in.
    self._one_step_dataset = reading_utils.get_one_step_dataset(
        data_path, options.split, batch_size, self._metadata,
        is_training=False).take(options.num_batches)
    self._rollout_dataset = reading_utils.get_rollout_dataset(
        data_path, options.split, self._metadata).take(options.num_rollouts)
    if options.enabled:
      self._eval_step.get_concrete_function()
      self._rollout_fn.get_concrete_function()
    self._best_manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(simulator=simulator),
        checkpoints.best_directory(model_path), max_to_keep=1,
        checkpoint_name=checkpoints.CHECKPOINT_NAME)
    best = checkpoints.read_best(model_path)
    self.best_value = None
    if best is not None and best["metric"] == options.best_metric:
      self.best_value = best["metrics"][options.best_metric]
    elif best is not None:
      logging.warning("The best model in %s was chosen by %s; from now on it "
                      "is chosen by --best_metric=%s.",
                      checkpoints.best_directory(model_path), best["metric"],
                      options.best_metric)

  def due(self, step: int, last_step: int) -> bool:
    """Whether to validate after `step` (every N steps and at the end)."""
    return self._options.enabled and (
        step % self._options.every_steps == 0 or step == last_step)

  def _rollouts(self):
    """The scored validation rollouts: `(rollout dicts, scores)`."""
    rollouts, scores = [], []
    for features in self._rollout_dataset:
      inputs = {k: v for k, v in features.items() if k != "key"}
      output = {k: v.numpy()
                for k, v in self._rollout_fn(inputs, self._num_steps).items()}
      output["metadata"] = self._metadata
      rollouts.append(output)
      scores.append(evaluation.score_rollout(output))
    return rollouts, scores

  def __call__(self, step: int) -> Dict[str, float]:
    """Validates, logs, writes summaries (to the default writer) and keeps
    the best model.

    Returns:
      The model's metrics (one-step and rollout means) and `seconds`.
    """
    start = time.time()
    if self._generator is not None:
      self._generator.reset_from_seed(self._noise_seed)
    results = evaluation.one_step_metrics(self._eval_step,
                                          self._one_step_dataset)
    rollouts, scores = self._rollouts()
    summary = evaluation.summarize_scores(scores) if scores else {}
    if summary:
      results.update(summary["model"]["mean"])
    results["seconds"] = time.time() - start

    improved = self._keep_if_best(step, results)
    self._write_summaries(step, results, summary, rollouts)
    shown = [name for name in ("loss_mse", "one_step_position_mse",
                               "one_step_position_mse_moving", "mse_20",
                               "mse_full", "emd", "out_of_domain",
                               "kinetic_energy_ratio", "density_ratio",
                               "wall_height_error")
             if name in results]
    if (results.get("one_step_position_mse_moving") ==
        results.get("one_step_position_mse")):
      # No kinematic particles: the two are one number.
      shown.remove("one_step_position_mse_moving")
    logging.info(
        "validation at step %d (%s, %d rollouts, %.1fs): %s%s", step,
        self._options.split, len(rollouts), results["seconds"],
        "  ".join(f"{name} {results[name]:.4g}" for name in shown),
        f"  (best {self._options.best_metric}: saved)" if improved else "")
    return results

  def _keep_if_best(self, step: int, results: Mapping[str, float]) -> bool:
    """Saves the model as the best one if `best_metric` improved."""
    value = results.get(self._options.best_metric)
    if value is None or not np.isfinite(value):
      return False
    if self.best_value is not None and value >= self.best_value:
      return False
    if self._before_save is not None:
      self._before_save(step)
    try:
      path = self._best_manager.save(checkpoint_number=step)
    except (OSError, tf.errors.OpError) as error:
      # Training goes on; its own checkpoints report a full disk in one line.
      logging.warning("Could not save the best model in %s: %s; keeping the "
                      "previous one.", checkpoints.best_directory(
                          self._model_path), getattr(error, "strerror", None)
                      or error)
      return False
    dataset_writer.write_json(
        os.path.join(checkpoints.best_directory(self._model_path),
                     checkpoints.BEST_JSON),
        {"step": step, "checkpoint": os.path.basename(path),
         "metric": self._options.best_metric,
         "metrics": {k: float(v) for k, v in results.items()}})
    self.best_value = value
    return True

  def _write_summaries(self, step, results, summary, rollouts) -> None:
    for name, value in results.items():
      tf.summary.scalar(f"valid/{name}", value, step=step)
    for baseline in baselines.ROLLOUT_BASELINES:
      for name, value in summary.get(baseline, {}).get("mean", {}).items():
        tf.summary.scalar(f"valid_{baseline}/{name}", value, step=step)
    if not rollouts:
      return
    picture = snapshots.figure_pixels(snapshots.snapshot_figure(rollouts[0]))
    tf.summary.image("valid/rollout_0", picture[np.newaxis], step=step)
    curves = {"model": _mean_curve(rollouts, None)}
    for baseline in baselines.ROLLOUT_BASELINES:
      curves[baseline.replace("_", " ")] = _mean_curve(rollouts, baseline)
    errors = snapshots.figure_pixels(error_plot.error_figure(
        curves, ylabel="position MSE (moving particles)",
        title=f"Validation rollout error, step {step}"))
    tf.summary.image("valid/rollout_error", errors[np.newaxis], step=step)


def _mean_curve(rollouts, baseline: Optional[str]) -> np.ndarray:
  """Per-step MSE over moving particles, averaged over the rollouts."""
  curves = []
  for rollout in rollouts:
    truth = rollout["ground_truth_rollout"]
    predicted = (rollout["predicted_rollout"][:len(truth)] if baseline is None
                 else baselines.ROLLOUT_BASELINES[baseline](rollout))
    curves.append(metrics_lib.position_mse(
        predicted, truth, metrics_lib.moving_mask(rollout["particle_types"])))
  length = min(len(curve) for curve in curves)
  return np.mean([curve[:length] for curve in curves], axis=0)
