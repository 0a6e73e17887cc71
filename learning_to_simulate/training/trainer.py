"""The training loop: input pipeline, logging, summaries, checkpoints, resume.

Trains the one-step model (Sanchez-Gonzalez et al. 2020, Sec. 4) until the
optimizer has taken `num_steps` steps in total, resuming from the latest
checkpoint in the model directory (weights, optimizer state, step and the
input's position), so that a resumed run goes on as if it had not stopped:
with the same seed, it draws what an uninterrupted one draws
(`random_streams`).
"""

import dataclasses
import os
import time
from typing import Optional

from absl import logging
import keras
import tensorflow as tf

from learning_to_simulate.data import dataset_writer
from learning_to_simulate import reading_utils
from learning_to_simulate.model import build
from learning_to_simulate.model.options import option
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import distribution
from learning_to_simulate.training import divergence
from learning_to_simulate.training import one_step
from learning_to_simulate.training import optimizers
from learning_to_simulate.training import pushforward
from learning_to_simulate.training import random_streams
from learning_to_simulate.training import train_step as train_step_lib
from learning_to_simulate.training import validation


@dataclasses.dataclass(frozen=True)
class TrainOptions:
  """How long to train and how often to log and save."""
  # The original's flags: --num_steps and --batch_size.
  num_steps: int = option(
      int(2e7), "Number of steps of training (total, counting steps of a "
      "resumed run).")
  batch_size: int = option(2, "The batch size.")
  seed: Optional[int] = option(
      None, "Random seed of every draw of a run: initial weights, input "
      "noise, shuffle, pushforward unrolls, validation noise (default: "
      "unseeded).")
  log_every_steps: int = option(
      100, "Log loss, steps/s and ETA every N steps.")
  checkpoint_every_steps: int = option(
      10000, "Save a checkpoint every N steps.")
  checkpoint_every_secs: float = option(
      600.0, "Also save a checkpoint every N seconds (0: off).")
  keep_checkpoints: int = option(5, "How many recent checkpoints to keep.")
  shuffle_buffer_size: int = option(512,
                                    "Shuffle buffer of training windows.")
  # GPU speed-ups, off by default so the default is the paper's model.
  mixed_precision: Optional[str] = option(
      None, "Matmuls of the graph network in this dtype; variables, "
      "LayerNorm, loss and outputs stay float32 (float16 adds dynamic loss "
      "scaling).", choices=("bfloat16", "float16"))
  jit_compile: bool = option(
      False, "Compile the graph network with XLA, on inputs padded to "
      "bucketed sizes (for GPUs; slower on CPU).")
  recompute_grad: bool = option(
      False, "Keep only each message-passing step's inputs for the backward "
      "pass and recompute the rest there: about 1/3 more compute, a "
      "fraction of the training memory (for graphs that do not fit "
      "otherwise).")
  skip_corrupt_records: bool = option(
      False, "Skip damaged dataset records with a warning instead of "
      "stopping: records that fail a check (NaN position, particle type, "
      "shape) one by one; a failed checksum ends the reading of the file "
      "there.")
  save_input_position: bool = option(
      True, "Save the input's position (its shuffle buffer) in "
      "checkpoints, so that a resumed run goes on with the batches it "
      "would have had; off: smaller checkpoints, and a resumed run starts a "
      "new shuffle.")
  warm_start: Optional[str] = option(
      None, "train: a model directory without checkpoints starts from "
      "these weights (a ckpt-N prefix or a directory of them, e.g. a "
      "packaged model) at step N of the learning-rate and pushforward "
      "schedules, with a fresh optimizer state; ignored when --model_path "
      "has checkpoints (it resumes from them).")

  def validate(self) -> None:
    if self.num_steps < 0:
      raise ValueError(f"--num_steps must be >= 0, got {self.num_steps}")
    if self.batch_size < 1:
      raise ValueError(f"--batch_size must be >= 1, got {self.batch_size}")
    if self.log_every_steps < 1:
      raise ValueError(f"--log_every_steps must be >= 1, got "
                       f"{self.log_every_steps}")
    if self.keep_checkpoints < 1:
      raise ValueError(f"--keep_checkpoints must be >= 1, got "
                       f"{self.keep_checkpoints}")
    if self.checkpoint_every_steps < 1:
      raise ValueError(f"--checkpoint_every_steps must be >= 1, got "
                       f"{self.checkpoint_every_steps}")
    if self.checkpoint_every_secs < 0:
      raise ValueError(f"--checkpoint_every_secs must be >= 0, got "
                       f"{self.checkpoint_every_secs}")
    if self.shuffle_buffer_size < 1:
      raise ValueError(f"--shuffle_buffer_size must be >= 1, got "
                       f"{self.shuffle_buffer_size}")


def _format_duration(seconds: float) -> str:
  seconds = int(seconds)
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else (
      f"{minutes}m{seconds:02d}s")


def _save(manager: tf.train.CheckpointManager, monitor: divergence.Monitor,
          step: int, kept: Optional[str],
          input_manager: Optional[tf.train.CheckpointManager]) -> str:
  """Saves `ckpt-{step}` if the losses and variables are finite (and this
  worker's input position, where it is kept apart: `_input_manager`)."""
  monitor.check(step, kept)
  path = checkpoints.save(manager, step, kept)
  if input_manager is not None:
    checkpoints.save(input_manager, step, None)
  return path


def _input_description(data_path: str, options: TrainOptions,
                       training_config: config_lib.TrainingConfig,
                       workers: distribution.Workers) -> str:
  """What this worker's input position is a position in."""
  shard = distribution.shard(workers)
  return checkpoints.input_description(
      reading_utils.split_file(data_path, "train"),
      batch_size=options.batch_size, distribution=workers.name,
      local_replicas=workers.local_replicas,
      shard=None if shard is None else list(shard),
      shuffle_buffer_size=options.shuffle_buffer_size,
      skip_corrupt_records=options.skip_corrupt_records,
      window_length=(pushforward.window_length(training_config)
                     if training_config.windowed else None))


def _input_iterator(dataset, restored: Optional[str], step: int,
                    options: TrainOptions, model_path: str, description: str,
                    workers: distribution.Workers):
  """The training input's iterator, where `restored` left it if it can be.

  The chief's input position is saved in its checkpoints; another worker's
  in its own `checkpoints.input_directory`. Where none can be restored (a
  checkpoint saved without it, for other data, `--nosave_input_position`),
  the input starts the new shuffle the dataset was made with (seeded by the
  run seed, the step and the worker: `random_streams.shuffle_seed`), so
  that it does not see the start of its stream again.
  """
  iterator = iter(dataset)
  if not restored:
    return iterator
  if not options.save_input_position:
    logging.info("The input starts a new shuffle at step %d "
                 "(--nosave_input_position).", step)
    return iterator
  source = restored
  if not distribution.is_chief(workers):
    source = checkpoints.checkpoint_path(
        checkpoints.input_directory(model_path, workers.index),
        checkpoints.number(restored))
  why_not = "it is missing"
  if os.path.exists(source + ".index"):
    why_not = checkpoints.restore_input(source, iterator, description)
  if why_not is None:
    logging.info("The input goes on where %s left it.", source)
    return iterator
  logging.warning("No input position to go on from in %s (%s): the input "
                  "starts a new shuffle at step %d.", source, why_not, step)
  return iter(dataset)


def _input_manager(iterator, model_path: str, options: TrainOptions,
                   description: str, workers: distribution.Workers
                   ) -> Optional[tf.train.CheckpointManager]:
  """The manager of another worker's own input directory (its checkpoints
  go to a temporary one); None on the chief, whose checkpoints hold it, and
  with `--nosave_input_position`."""
  if not options.save_input_position or distribution.is_chief(workers):
    return None
  return checkpoints.make_manager(
      checkpoints.input_directory(model_path, workers.index), None,
      max_to_keep=options.keep_checkpoints, input_iterator=iterator,
      description=description)


def train(data_path: str, model_path: str,
          model_config: config_lib.ModelConfig,
          optimizer_config: config_lib.OptimizerConfig,
          options: TrainOptions,
          validation_options: validation.ValidationOptions = (
              validation.ValidationOptions()),
          training_config: config_lib.TrainingConfig = (
              config_lib.TrainingConfig()),
          workers: Optional[distribution.Workers] = None) -> Optional[float]:
  """Trains (or resumes training) a model on a dataset.

  Holds the directory's training lock (`model_lock`) throughout and resumes
  from its newest usable checkpoint (`checkpoints.recover`). Under a
  strategy (`workers`), only the chief holds the lock, repairs and writes
  the directory; the others read from it (it must be shared) and write
  their copies into a temporary directory (see `distribution`), but for
  their input positions (`checkpoints.input_directory`).

  Args:
    data_path: dataset directory.
    model_path: checkpoint directory; created if needed.
    model_config, optimizer_config: hyperparameters; saved to
      `{model_path}/config.json`.
    options: steps, batch size, logging and checkpoint cadence.
    validation_options: validation during training and the best model
      (`every_steps=0`: none).
    training_config: the opt-in training recipe beyond the paper
      (pushforward); saved to `config.json` too.
    workers: a `tf.distribute` strategy (`train_step`: the batch
      is the global batch); None: one device (`Workers.local()`).

  Returns:
    The mean loss of the last logging interval (None if no step ran).

  Raises:
    ValueError: bad options, data or model directory, one line each:
      `reading_utils.DatasetError`, `checkpoints.CheckpointError` (also
      for a failed save), `model_lock.LockedError`, and
      `divergence.DivergedError` when a loss or variable is not finite (no
      checkpoint is saved then); `distribution.WorkerFailedError` when a
      worker of a multi-worker job fails.
  """
  model_config.validate()
  optimizer_config.validate()
  options.validate()
  validation_options.validate()
  training_config.validate()
  if training_config.pushforward_relaxation and not (
      model_config.relaxation_steps):
    raise ValueError("--pushforward_relaxation relaxes as a rollout does: "
                     "give --relaxation_steps > 0")
  workers = distribution.resolve(workers)
  distribution.per_replica_batch_size(workers, options.batch_size)
  metadata = reading_utils.read_metadata(data_path)
  reading_utils.check_split(data_path, "train", options.skip_corrupt_records)
  if distribution.is_chief(workers):  # Always so on one device.
    dataset_writer.make_directory(model_path, "--model_path")
  # On one device: `model_lock.hold(model_path)`, writing into `model_path`.
  with distribution.training_lock(workers, model_path), (
      distribution.write_directory(workers, model_path)) as write_path, (
          distribution.failures(workers, "training resumes from the latest "
                                f"checkpoint in {model_path}")):
    return _train(data_path, model_path, write_path, model_config,
                  optimizer_config, options, metadata, validation_options,
                  training_config, workers)


def _warm_start(simulator, optimizer, warm_start: str) -> None:
  """Restores the simulator's weights and the step (schedules) of a checkpoint.

  The learning-rate and pushforward schedules continue from the checkpoint's
  step `N` (`ckpt-N`); the optimizer's moments start from zero, as they are
  not kept in a packaged model.
  """
  path = checkpoints.resolve(warm_start, warm_start, flag="--warm_start")
  checkpoints.restore_model(simulator, path, flag="--warm_start")
  optimizer.iterations.assign(checkpoints.number(path))
  logging.info("Warm start from %s: its weights, a fresh optimizer state, the "
               "schedules at step %d.", path, checkpoints.number(path))


def _train(data_path: str, model_path: str, write_path: str,
           model_config: config_lib.ModelConfig,
           optimizer_config: config_lib.OptimizerConfig,
           options: TrainOptions,
           metadata: reading_utils.Metadata,
           validation_options: validation.ValidationOptions,
           training_config: config_lib.TrainingConfig,
           workers: distribution.Workers) -> Optional[float]:
  """`train`, once the directory is locked.

  `write_path`: where this worker saves checkpoints and the best model,
  `model_path` but on the other workers of a strategy (see
  `distribution.write_directory`).
  """
  chief = distribution.is_chief(workers)
  if chief:
    run = {"batch_size": options.batch_size, "seed": options.seed,
           "mixed_precision": options.mixed_precision,
           "jit_compile": options.jit_compile,
           "num_workers": workers.num_workers}
    for change in config_lib.run_changes(config_lib.load(model_path), run):
      logging.warning("Resuming %s: %s.", model_path, change)
    saved = config_lib.save(model_path, model_config, optimizer_config,
                            training_config, run)
    for line in config_lib.describe(saved):
      logging.info("Configuration (config.json) %s", line)
    if os.path.realpath(model_path) != os.path.realpath(data_path):
      # The normalization statistics the model learns with travel with it
      # (`api.load_simulator` reads them when no dataset is given).
      dataset_writer.write_json(
          os.path.join(model_path, reading_utils.METADATA_FILENAME),
          dict(metadata))
  if options.seed is not None:
    # The initializers' draws too: Keras seeds them from Python's `random`.
    keras.utils.set_random_seed(
        distribution.worker_seed(options.seed, workers))
  with distribution.scope(workers):  # Variables for every replica.
    simulator = build.build_simulator(metadata, model_config,
                                      options.mixed_precision,
                                      options.jit_compile,
                                      options.recompute_grad)
    optimizer = optimizers.make_optimizer(
        optimizer_config, simulator,
        loss_scaling=options.mixed_precision == "float16")
  if chief:
    checkpoints.recover(model_path)
  distribution.barrier(workers)  # The others read what the chief repaired.
  manager = checkpoints.make_manager(model_path, simulator, optimizer,
                                     options.keep_checkpoints)
  restored = checkpoints.restore_latest(manager, require=False)
  if restored is None and options.warm_start:
    _warm_start(simulator, optimizer, options.warm_start)
  elif options.warm_start:
    logging.info("%s has checkpoints: resuming from them, not from "
                 "--warm_start=%s.", model_path, options.warm_start)
  step = int(optimizer.iterations.numpy())
  seed = random_streams.run_seed(options.seed)
  # One unroll length per step for the whole global batch: every worker
  # draws it from the same seed (the chief's, if unseeded).
  seed = distribution.gather(workers, seed)[0]
  distribution.check_agree(workers, {
      "restored step": step, "model config": repr(model_config),
      "optimizer config": repr(optimizer_config),
      "training config": repr(training_config),
      "--batch_size": options.batch_size,
      "--num_steps": options.num_steps})
  if restored:
    logging.info("Resumed from %s at step %d.", restored, step)
  if step >= options.num_steps:
    logging.info("Already trained for %d >= --num_steps=%d steps.", step,
                 options.num_steps)
    return None

  monitor = divergence.Monitor([*simulator.variables, *optimizer.variables],
                               step)
  stop = train_step_lib.StopRequest()
  shuffle_seed = random_streams.shuffle_seed(seed, step, workers.index)
  train_step, dataset = train_step_lib.train_step_and_dataset(
      workers, data_path, metadata, simulator, optimizer,
      model_config.noise_std, training_config, options, monitor.record,
      stop, seed, shuffle_seed)
  description = _input_description(data_path, options, training_config,
                                   workers)
  iterator = _input_iterator(dataset, restored, step, options, model_path,
                             description, workers)
  input_manager = _input_manager(iterator, model_path, options, description,
                                 workers)
  manager = checkpoints.make_manager(
      write_path, simulator, optimizer,
      options.keep_checkpoints if chief else 1,
      input_iterator=iterator if options.save_input_position else None,
      description=description)
  kept = restored  # The latest checkpoint on disk, named in errors.
  validator = None
  if validation_options.enabled and not os.path.exists(
      os.path.join(data_path, f"{validation_options.split}.tfrecord")):
    logging.warning("%s has no %s split: training without validation.",
                    data_path, validation_options.split)
  elif validation_options.enabled:
    validator = validation.Validator(
        data_path, write_path, metadata, simulator, model_config.noise_std,
        validation_options, options.batch_size,
        # The best model is never a non-finite one.
        before_save=lambda step: monitor.check(step, kept), seed=seed)
  train_file = reading_utils.split_file(data_path, "train")
  # Summaries from the chief only (any writer on one device).
  writer = distribution.summary_writer(workers,
                                       os.path.join(model_path, "train"))
  logging.info("Training on %s for steps %d..%d; checkpoints in %s.",
               data_path, step, options.num_steps, model_path)

  last_save_time = time.time()
  interval_start, interval_step = time.time(), step
  interval_loss, interval_count = 0.0, 0
  mean_loss = None
  with stop, writer.as_default():
    for batch in reading_utils.iterate(iterator, train_file):
      # The loss stays a tensor until it is logged, so the loop does not wait
      # for each step to finish before dispatching the next one.
      loss = train_step(batch, step)
      step += 1
      interval_loss += loss
      interval_count += 1
      if step % options.log_every_steps == 0 or step == options.num_steps:
        now = time.time()
        steps_per_sec = (step - interval_step) / max(now - interval_start,
                                                     1e-9)
        mean_loss = float(interval_loss) / interval_count
        monitor.check_loss(kept)
        eta = (options.num_steps - step) / max(steps_per_sec, 1e-9)
        learning_rate = float(optimizer.learning_rate)
        unroll = ""
        if training_config.pushforward_max_unroll:
          mean_unroll = pushforward.mean_unroll(interval_step, step,
                                                training_config, seed)
          tf.summary.scalar("pushforward_unroll", mean_unroll, step=step)
          unroll = f"  unroll {mean_unroll:.2f}"
        logging.info("step %d/%d  loss %.6g  lr %.3g  %.2f steps/s  ETA %s%s",
                     step, options.num_steps, mean_loss, learning_rate,
                     steps_per_sec, _format_duration(eta), unroll)
        tf.summary.scalar("loss", mean_loss, step=step)
        tf.summary.scalar("learning_rate", learning_rate, step=step)
        tf.summary.scalar("steps_per_sec", steps_per_sec, step=step)
        interval_start, interval_step = now, step
        interval_loss, interval_count = 0.0, 0
      if validator and not stop.signal_name and validator.due(
          step, options.num_steps):
        # Validation time stays out of the steps/s figure.
        interval_start += validator(step)["seconds"]
      if step >= options.num_steps or stop.signal_name:
        break
      if (step % options.checkpoint_every_steps == 0 or
          (options.checkpoint_every_secs > 0 and
           time.time() - last_save_time >= options.checkpoint_every_secs)):
        kept = _save(manager, monitor, step, kept, input_manager)
        logging.info("Saved %s.", kept)
        last_save_time = time.time()
    if step < options.num_steps and not stop.signal_name:
      raise reading_utils.DatasetError(
          f"{train_file} gave no training windows (every record was skipped "
          "as damaged)")
    path = _save(manager, monitor, step, kept, input_manager)
    writer.flush()
  if stop.signal_name:
    logging.info("Stopped by %s at step %d; saved %s.", stop.signal_name,
                 step, path)
  else:
    logging.info("Finished at step %d; saved %s.", step, path)
  if mean_loss is None and interval_count:
    mean_loss = float(interval_loss) / interval_count
  return mean_loss
