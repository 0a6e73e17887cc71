"""The train step: one function for every way of training and every strategy.

A recipe says what a step trains on and how it predicts (`OneStep`: the
paper's one-step batches with random-walk noise; `Windows`: windows of the
model's own rollout, pushforward and the multi-step loss); `make_train_step`
turns any recipe into the step on any strategy, one device included (it
runs under TensorFlow's default strategy, one replica); `make_dataset` gives
the input it steps on.

The global batch. `--batch_size` examples per step in all, `batch_size /
num_replicas` on each replica, concatenated on the particle axis there as on
one device. The radius graph is built per example, so splitting examples
over replicas changes no example's graph. The loss is the paper's
(Sanchez-Gonzalez et al. 2020, Sec. 4) on the concatenated global batch:

    loss = sum over replicas of SSE_r / sum over replicas of M_r

with `SSE_r` a replica's squared acceleration error summed over its
non-kinematic particles and dims, and `M_r` their number. Each replica
all-reduces the counts `M_r` first, then differentiates its share
`SSE_r / M`; the optimizer sums the replicas' gradients, which is then the
gradient of the global loss, as on one device (where the all-reduces are
identities and the step is the paper's). Each replica draws its own input
noise.

Input: each worker reads its own shard of the training trajectories
(record `i` goes to worker `i mod W`), one trajectory at a time as on one
device, so its memory does not grow with the dataset. Under a strategy its
pipeline is a plain `tf.data` one whose elements hold one batch per local
replica, handed to the replicas by
`experimental_distribute_values_from_function`: unlike `tf.distribute`'s
distributed iterators, its iterator can be checkpointed, so a resumed job
goes on with the batches it would have had (each worker its own, see
`trainer`). On one device the elements are the batches themselves, as the
original's.

Stopping: SIGTERM or SIGINT to any worker stops every worker after the same
step (a flag travels in the step's first all-reduce), so that all save the
same checkpoint (`StopRequest`, the one mechanism for one process and many).
"""

import signal
from typing import Any, Callable, Mapping, Optional, Tuple

from absl import logging
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate import reading_utils
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import distribution
from learning_to_simulate.training import one_step
from learning_to_simulate.training import pushforward

NoiseFn = Callable[[Mapping[str, tf.Tensor]], tf.Tensor]


class OneStep:
  """The paper's recipe: one-step batches `(features, target_position)`,
  inputs with random-walk noise (or `noise_fn(features)`, tests)."""

  window_length = None

  def __init__(self, noise_std: float, noise_fn: Optional[NoiseFn] = None):
    self.noise_std = noise_std
    self.noise_fn = noise_fn

  def signature(self, metadata: Mapping[str, Any]):
    return one_step.batch_signature(metadata)

  def particle_types(self, batch) -> tf.Tensor:
    """`[num_particles]`: the types of `predict`'s rows."""
    return batch[0]["particle_type"]

  def predict(self, simulator, batch, num_unroll: tf.Tensor,
              noise_seed: Optional[tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
    """Predicted and target normalized accelerations, `[num_particles,
    dim]` each (`num_unroll` unused)."""
    del num_unroll
    noise = None if self.noise_fn is None else self.noise_fn(batch[0])
    return one_step.predicted_and_target_accelerations(
        simulator, batch, self.noise_std, noise=noise, noise_seed=noise_seed)

  def unroll(self, step: int, seed: Optional[int]) -> int:
    del step, seed
    return 0

  def describe(self) -> Optional[str]:
    return None


class Windows:
  """Pushforward and the multi-step loss (`pushforward`): windows of
  `pushforward.window_length` frames, a `num_unroll`-step rollout without
  gradient, then `loss_steps` scored steps."""

  def __init__(self, training: config_lib.TrainingConfig, noise_std: float):
    self.training = training
    self.noise_std = noise_std
    self.window_length = pushforward.window_length(training)
    self.loss_steps = training.multistep_loss_steps

  def signature(self, metadata: Mapping[str, Any]):
    return pushforward.window_signature(metadata)

  def particle_types(self, window) -> tf.Tensor:
    """`[loss_steps * num_particles]`: the types of `predict`'s rows."""
    return pushforward.loss_particle_types(window, self.loss_steps)

  def predict(self, simulator, window, num_unroll: tf.Tensor,
              noise_seed: Optional[tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
    inputs = pushforward.unrolled_inputs(
        simulator, window, num_unroll, self.noise_std, noise_seed,
        relax=self.training.pushforward_relaxation)
    return pushforward.pushforward_accelerations(simulator, window, inputs,
                                                 num_unroll, self.loss_steps)

  def unroll(self, step: int, seed: Optional[int]) -> int:
    """The unroll length of training step `step` (`pushforward.step_unroll`)."""
    return pushforward.step_unroll(step, self.training, seed)

  def describe(self) -> Optional[str]:
    lines = []
    if self.training.pushforward_max_unroll:
      lines.append(
          f"Pushforward training: unroll lengths 1.."
          f"{self.training.pushforward_max_unroll} phased in every "
          f"{self.training.pushforward_phase_steps} steps, each step unrolled "
          f"with probability {self.training.pushforward_probability:g}" +
          (", the unrolled steps relaxed." if
           self.training.pushforward_relaxation else "."))
    if self.loss_steps > 1:
      lines.append(f"Multi-step loss: the mean over {self.loss_steps} steps of"
                   " the model's own rollout, with gradient through them.")
    return " ".join(lines) or None


def recipe(training: config_lib.TrainingConfig, noise_std: float):
  """The recipe of a training configuration."""
  if training.windowed:
    return Windows(training, noise_std)
  return OneStep(noise_std)


def replica_loss_and_gradients(simulator, optimizer,
                               predict: Callable[[], Tuple[tf.Tensor,
                                                           tf.Tensor]],
                               particle_types: tf.Tensor, stop: tf.Tensor):
  """One replica's part of a step on the global batch (in replica context).

  Args:
    simulator, optimizer: the model and its optimizer (made in the scope).
    predict: gives this replica's predicted and target normalized
      accelerations, `[num_particles, dim]` each.
    particle_types: `[num_particles]` of this replica's examples.
    stop: float32 scalar, 1 if this worker was asked to stop.

  Returns:
    `(loss, stops, gradients)`: the global loss (the same on every
    replica), the number of replicas asked to stop, and this replica's
    gradients of its share `SSE_r / M` (scaled like the loss for float16),
    whose sum over replicas is the global loss's gradient.
  """
  context = tf.distribute.get_replica_context()
  moving = tf.logical_not(common.kinematic_mask(particle_types))
  totals = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stack(
      [tf.reduce_sum(tf.cast(moving, tf.float32)), stop]))
  with tf.GradientTape() as tape:
    predicted, target = predict()
    sum_squared_error, _ = one_step.masked_squared_error(predicted, target,
                                                         particle_types)
    share = tf.math.divide_no_nan(sum_squared_error, totals[0])
    scaled_share = optimizer.scale_loss(share)
  gradients = tape.gradient(scaled_share, simulator.trainable_variables)
  loss = context.all_reduce(tf.distribute.ReduceOp.SUM, share)
  return loss, totals[1], gradients


def make_train_step(simulator, optimizer, train_recipe,
                    metadata: Optional[Mapping[str, Any]] = None,
                    workers: Optional[distribution.Workers] = None,
                    element_spec: Any = None,
                    on_loss: Optional[Callable[[tf.Tensor], None]] = None,
                    seed: Optional[int] = None):
  """The train step of `train_recipe` on `workers`' strategy, a
  `tf.function(batches, stop, num_unroll)` that never retraces.

  Args:
    simulator, optimizer: made in the strategy's scope.
    train_recipe: `OneStep` or `Windows` (`recipe`).
    metadata: the dataset's; on one device, the input signature is the
      recipe's for it (open particle and batch sizes).
    workers: the strategy; None: one device (`Workers.local()`).
    element_spec: on several replicas, the input signature of `batches`
      (`make_dataset`'s `element_spec`; None: trace per new input
      structure).
    on_loss: called with the global loss inside the function (the
      divergence monitor's `record`: a few scalar ops, no host round trip).
    seed: the run seed: each replica's noise is drawn from (seed, step,
      replica) (`random_streams`); None: stateful draws.

  Returns:
    `step(batches, stop, num_unroll) -> (loss, stops)`: `batches` one batch
    on one device, else a tuple of one batch per local replica of this
    worker (an element of `make_dataset`'s); `stop` a float32 scalar (1:
    this worker was asked to stop); `num_unroll` an int32 scalar (unused by
    `OneStep`); the global loss and the number of replicas asked to stop.
  """
  workers = distribution.resolve(workers)
  strategy, local = workers.strategy, workers.local_replicas

  def replica_step(batch, stop, num_unroll):
    noise_seed = one_step.step_noise_seed(seed, optimizer)
    loss, stops, gradients = replica_loss_and_gradients(
        simulator, optimizer,
        lambda: train_recipe.predict(simulator, batch, num_unroll, noise_seed),
        train_recipe.particle_types(batch), stop)
    optimizer.apply_gradients(zip(gradients, simulator.trainable_variables))
    return loss, stops

  def step(batches, stop, num_unroll):
    if workers.one_device:
      batch = batches
    else:
      # Replica ids count this worker's replicas from `index * local`.
      batch = strategy.experimental_distribute_values_from_function(
          lambda context: batches[context.replica_id_in_sync_group % local])
    loss, stops = strategy.run(replica_step, args=(batch, stop, num_unroll))
    loss = strategy.experimental_local_results(loss)[0]
    stops = strategy.experimental_local_results(stops)[0]
    if on_loss is not None:
      on_loss(loss)
    return loss, stops

  if workers.one_device:
    element_spec = train_recipe.signature(metadata)
  if element_spec is None:
    return tf.function(step)
  return tf.function(step, input_signature=[
      element_spec, tf.TensorSpec([], tf.float32),
      tf.TensorSpec([], tf.int32)])


def loss_of(step_fn, num_unroll: int = 0) -> Callable[[Any], tf.Tensor]:
  """`batches -> loss`: `make_train_step`'s step with no stop request and
  `num_unroll` unrolled steps (benchmarks, demos, tests)."""
  no_stop = tf.constant(0.0)
  unroll = tf.constant(num_unroll, tf.int32)
  return lambda batches: step_fn(batches, no_stop, unroll)[0]


def make_dataset(workers: Optional[distribution.Workers], data_path: str,
                 metadata: reading_utils.Metadata, batch_size: int,
                 window_length: Optional[int] = None,
                 shuffle_buffer_size: int = 512, seed: Optional[int] = None,
                 skip_corrupt_records: bool = False):
  """This worker's training input: its shard, as `make_train_step`'s step
  takes it (one batch on one device, else one per local replica).

  Args:
    workers: the strategy; None: one device (`Workers.local()`).
    batch_size: the global batch (see `distribution.per_replica_batch_size`).
    window_length: None for one-step batches, else windows of this many
      frames (the recipe's `window_length`).
    Others: as `reading_utils.get_one_step_dataset`.

  Raises:
    reading_utils.DatasetError: fewer trajectories than workers.
  """
  workers = distribution.resolve(workers)
  per_replica = distribution.per_replica_batch_size(workers, batch_size)
  shard = distribution.shard(workers)
  if shard is not None:
    count = reading_utils.count_records(data_path, "train")
    if count < workers.num_workers:
      raise reading_utils.DatasetError(
          f"{reading_utils.split_file(data_path, 'train')} has {count} "
          f"trajectories, fewer than the {workers.num_workers} workers of "
          f"--distribution={workers.name} (each reads its own)")
  if window_length is None:
    dataset = reading_utils.get_one_step_dataset(
        data_path, "train", per_replica, metadata, is_training=True,
        shuffle_buffer_size=shuffle_buffer_size, seed=seed,
        skip_corrupt_records=skip_corrupt_records, shard=shard)
  else:
    dataset = reading_utils.get_window_dataset(
        data_path, "train", per_replica, metadata, window_length,
        shuffle_buffer_size=shuffle_buffer_size, seed=seed,
        skip_corrupt_records=skip_corrupt_records, shard=shard)
  if workers.one_device:
    return dataset
  return group_for_replicas(dataset, workers.local_replicas).prefetch(
      tf.data.AUTOTUNE)


def group_for_replicas(dataset: tf.data.Dataset,
                       count: int) -> tf.data.Dataset:
  """Tuples of `count` consecutive elements of `dataset`, one per replica.

  Args:
    dataset: of one replica's batches (`(features, target)` or a window).
    count: the local replicas.
  """

  def element(*parts):
    return parts[0] if len(parts) == 1 else parts

  if count == 1:
    return dataset.map(lambda *parts: (element(*parts),))

  def unstack(*parts):
    grouped = element(*parts)
    return tuple(tf.nest.map_structure(lambda value: value[index], grouped)
                 for index in range(count))

  return dataset.ragged_batch(count).map(unstack)


class StopRequest:
  """SIGTERM or SIGINT as a request to save and stop, that all workers act
  on after the same step.

  `local_request` is this process's signal, sent to the others with each
  step (`TrainStep`); `signal_name` is set once a step has reported a
  request from any worker (it names the signal, or `a signal to another
  worker`), and the training loop stops then.
  """

  def __init__(self):
    self.signal_name = None
    self._local_signal = None
    self._previous = {}

  def __enter__(self) -> "StopRequest":
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # Not the main thread: leave signals alone.
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self._local_signal = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  @property
  def local_request(self) -> float:
    return 0.0 if self._local_signal is None else 1.0

  def agree(self, requested: bool) -> None:
    if requested and self.signal_name is None:
      self.signal_name = self._local_signal or "a signal to another worker"


class TrainStep:
  """The trainer's `(batch, step) -> loss`.

  Sends this worker's stop request with each step and reads the agreed one
  of the step before (so the host does not wait for the step it has just
  started).
  """

  def __init__(self, step_fn, stop: StopRequest,
               unroll: Callable[[int], int] = lambda step: 0):
    self._step_fn = step_fn
    self._stop = stop
    self._unroll = unroll
    self._pending = None

  def __call__(self, batch, step: int) -> tf.Tensor:
    loss, stops = self._step_fn(batch, tf.constant(self._stop.local_request),
                                tf.constant(self._unroll(step), tf.int32))
    if self._pending is not None:
      self._stop.agree(float(self._pending) > 0)
    self._pending = stops
    return loss


def train_step_and_dataset(workers: Optional[distribution.Workers],
                           data_path: str, metadata: reading_utils.Metadata,
                           simulator, optimizer, noise_std: float,
                           training_config: config_lib.TrainingConfig,
                           options, on_loss, stop: StopRequest,
                           seed: Optional[int], shuffle_seed: int):
  """`trainer`'s step function and input pipeline.

  Args:
    workers: the strategy; None: one device (`Workers.local()`).
    training_config: which recipe (`recipe`).
    options: `trainer.TrainOptions`.
    on_loss: `divergence.Monitor.record`.
    stop: the stop request.
    seed: the run seed, the same on every worker: one unroll length per
      step for the whole global batch, each replica's own noise.
    shuffle_seed: this worker's input shuffle seed.
  """
  train_recipe = recipe(training_config, noise_std)
  description = train_recipe.describe()
  if description:
    logging.info(description)
  dataset = make_dataset(
      workers, data_path, metadata, options.batch_size,
      train_recipe.window_length,
      shuffle_buffer_size=options.shuffle_buffer_size, seed=shuffle_seed,
      skip_corrupt_records=options.skip_corrupt_records)
  step_fn = make_train_step(
      simulator, optimizer, train_recipe, metadata, workers,
      element_spec=dataset.element_spec, on_loss=on_loss, seed=seed)
  return TrainStep(step_fn, stop,
                   lambda step: train_recipe.unroll(step, seed)), dataset
