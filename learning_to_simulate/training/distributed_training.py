"""Data-parallel training steps under a `tf.distribute` strategy.

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
gradient of the global loss, as on one device. Each replica draws its own
input noise.

Input: each worker reads its own shard of the training trajectories
(record `i` goes to worker `i mod W`), one trajectory at a time as on one
device, so its memory does not grow with the dataset. Its pipeline is a
plain `tf.data` one whose elements hold one batch per local replica, handed
to the replicas by `experimental_distribute_values_from_function`: unlike
`tf.distribute`'s distributed iterators, its iterator can be checkpointed,
so a resumed job goes on with the batches it would have had (each worker
its own, see `trainer`).

Stopping: SIGTERM or SIGINT to any worker stops every worker after the same
step (a flag travels in the step's first all-reduce), so that all save the
same checkpoint.
"""

from typing import Any, Callable, Mapping, Optional, Tuple

import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate import reading_utils
from learning_to_simulate.training import distribution
from learning_to_simulate.training import one_step
from learning_to_simulate.training import pushforward

NoiseFn = Callable[[Mapping[str, tf.Tensor]], tf.Tensor]
Predict = Callable[[], Tuple[tf.Tensor, tf.Tensor]]


class AgreedStop:
  """A stop request that all workers act on at the same step.

  Wraps the trainer's signal handler: `local_request` is this worker's
  signal, sent to the others with each step; `signal_name` is set once a
  step has reported a request from any worker (it names the signal, or
  `a signal to another worker`).
  """

  def __init__(self, local):
    self._local = local
    self.signal_name = None

  def __enter__(self):
    self._local.__enter__()
    return self

  def __exit__(self, *exc):
    return self._local.__exit__(*exc)

  @property
  def local_request(self) -> float:
    return 0.0 if self._local.signal_name is None else 1.0

  def agree(self, requested: bool) -> None:
    if requested and self.signal_name is None:
      self.signal_name = (self._local.signal_name or
                          "a signal to another worker")


def replica_loss_and_gradients(simulator, optimizer, predict: Predict,
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


def make_train_step(workers: distribution.Workers, simulator, optimizer,
                    noise_std: float, element_spec: Any = None,
                    on_loss: Optional[Callable[[tf.Tensor], None]] = None,
                    windows: bool = False,
                    noise_fn: Optional[NoiseFn] = None,
                    loss_steps: int = 1, seed: Optional[int] = None):
  """The distributed train step, a `tf.function(batch, stop, num_unroll)`.

  Args:
    workers: the strategy.
    simulator, optimizer: made in the strategy's scope.
    noise_std: the random-walk noise.
    element_spec: the distributed dataset's, as the input signature (None:
      trace per new input structure).
    on_loss: called with the global loss inside the function (the
      divergence monitor), as in `one_step.make_train_step`.
    windows: train on pushforward windows (`pushforward`), with
      `num_unroll` unrolled steps; else on one-step batches.
    noise_fn: one-step only: `features -> noise` `[num_particles,
      INPUT_SEQUENCE_LENGTH, dim]` instead of random noise (tests).
    loss_steps: windows only: the multi-step loss's number of steps.
    seed: the run seed: each replica's noise is drawn from (seed, step,
      replica) (`random_streams`); None: stateful draws.

  Returns:
    `step(batches, stop, num_unroll) -> (loss, stops)`: `batches` a tuple
    of one batch per local replica of this worker (an element of
    `make_dataset`'s), `stop` a float32 scalar (1: this worker was asked to
    stop), `num_unroll` an int32 scalar; the global loss and the number of
    replicas asked to stop.
  """
  strategy = workers.strategy
  local = workers.local_replicas

  def replica_step(batch, stop, num_unroll):
    noise_seed = one_step.step_noise_seed(seed, optimizer)
    if windows:
      particle_types = pushforward.loss_particle_types(batch, loss_steps)

      def predict():
        inputs = pushforward.unrolled_inputs(simulator, batch, num_unroll,
                                             noise_std, noise_seed)
        return pushforward.pushforward_accelerations(
            simulator, batch, inputs, num_unroll, loss_steps)
    else:
      particle_types = batch[0]["particle_type"]

      def predict():
        noise = None if noise_fn is None else noise_fn(batch[0])
        return one_step.predicted_and_target_accelerations(
            simulator, batch, noise_std, noise=noise, noise_seed=noise_seed)
    loss, stops, gradients = replica_loss_and_gradients(
        simulator, optimizer, predict, particle_types, stop)
    optimizer.apply_gradients(zip(gradients, simulator.trainable_variables))
    return loss, stops

  def step(batches, stop, num_unroll):
    # Replica ids count this worker's replicas from `index * local`.
    batch = strategy.experimental_distribute_values_from_function(
        lambda context: batches[context.replica_id_in_sync_group % local])
    loss, stops = strategy.run(replica_step, args=(batch, stop, num_unroll))
    loss = strategy.experimental_local_results(loss)[0]
    stops = strategy.experimental_local_results(stops)[0]
    if on_loss is not None:
      on_loss(loss)
    return loss, stops

  if element_spec is None:
    return tf.function(step)
  return tf.function(step, input_signature=[
      element_spec, tf.TensorSpec([], tf.float32),
      tf.TensorSpec([], tf.int32)])


def make_dataset(workers: distribution.Workers, data_path: str,
                 metadata: reading_utils.Metadata, batch_size: int,
                 window_length: Optional[int] = None,
                 shuffle_buffer_size: int = 512, seed: Optional[int] = None,
                 skip_corrupt_records: bool = False):
  """This worker's training input: its shard, one batch per local replica.

  Returns:
    A `tf.data.Dataset` of tuples of `workers.local_replicas` batches (see
    `group_for_replicas`), for `make_train_step`'s step.

  Args:
    batch_size: the global batch (see `distribution.per_replica_batch_size`).
    window_length: None for one-step batches, else pushforward windows of
      this many frames.
    Others: as `reading_utils.get_one_step_dataset`.

  Raises:
    reading_utils.DatasetError: fewer trajectories than workers.
  """
  per_replica = distribution.per_replica_batch_size(workers, batch_size)
  count = reading_utils.count_records(data_path, "train")
  if count < workers.num_workers:
    raise reading_utils.DatasetError(
        f"{reading_utils.split_file(data_path, 'train')} has {count} "
        f"trajectories, fewer than the {workers.num_workers} workers of "
        f"--distribution={workers.name} (each reads its own)")

  shard = None
  if workers.num_workers > 1:
    shard = (workers.num_workers, workers.index)
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


class TrainStep:
  """The trainer's `(batch, step) -> loss` on a strategy.

  Sends this worker's stop request with each step and reads the agreed one
  of the step before (so the host does not wait for the step it has just
  started).
  """

  def __init__(self, step_fn, stop: AgreedStop,
               sample_unroll: Optional[Callable[[int], int]] = None):
    self._step_fn = step_fn
    self._stop = stop
    self._sample_unroll = sample_unroll
    self._pending = None

  def __call__(self, batch, step: int) -> tf.Tensor:
    num_unroll = self._sample_unroll(step) if self._sample_unroll else 0
    loss, stops = self._step_fn(batch, tf.constant(self._stop.local_request),
                                tf.constant(num_unroll, tf.int32))
    if self._pending is not None:
      self._stop.agree(float(self._pending) > 0)
    self._pending = stops
    return loss


def train_step_and_dataset(workers: distribution.Workers, data_path: str,
                           metadata: reading_utils.Metadata, simulator,
                           optimizer, noise_std: float, training_config,
                           options, on_loss, stop: AgreedStop, seed: int,
                           shuffle_seed: int):
  """`trainer`'s step function and input pipeline on a strategy.

  Args:
    training_config: `config.TrainingConfig` (pushforward or not).
    options: `trainer.TrainOptions`.
    on_loss: `divergence.Monitor.record`.
    stop: the agreed stop request.
    seed: the run seed, the same on every worker: one unroll length per
      step for the whole global batch, each replica's own noise.
    shuffle_seed: this worker's input shuffle seed.
  """
  window_length = None
  sample_unroll = None
  if training_config.windowed:
    window_length = pushforward.window_length(training_config)
    sample_unroll = lambda step: pushforward.step_unroll(
        step, training_config, seed)
  dataset = make_dataset(
      workers, data_path, metadata, options.batch_size, window_length,
      shuffle_buffer_size=options.shuffle_buffer_size, seed=shuffle_seed,
      skip_corrupt_records=options.skip_corrupt_records)
  step_fn = make_train_step(workers, simulator, optimizer, noise_std,
                            dataset.element_spec, on_loss=on_loss,
                            windows=window_length is not None,
                            loss_steps=training_config.multistep_loss_steps,
                            seed=seed)
  return TrainStep(step_fn, stop, sample_unroll), dataset
