"""Scaling out with `tf.distribute`: the strategy of `--distribution`, this
process's place in it, and what only the chief may write.

- `none`: one device, under TensorFlow's default strategy
  (`Workers.local()`): one worker, one replica, and every helper here is a
  no-op. The code is the same for every strategy; the one place where one
  device differs is the training input (`Workers.one_device`: batches are
  fed as they are, not grouped per replica, as before strategies existed,
  so that checkpoints of the input position stay valid).
- `mirrored`: `tf.distribute.MirroredStrategy` over all local GPUs (on a
  host without GPU: over its logical CPU devices, usually one).
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy` over the hosts
  that `TF_CONFIG` describes (one process per host, each with its local
  GPUs); the chief is `chief` task 0 if there is one, else `worker` 0.
- `tpu`: `tf.distribute.TPUStrategy` (wired in; untested, no TPU here).

Workers agree through the strategy's own collectives: `gather` sends a small
JSON value from every worker to every worker (metrics of a sharded
evaluation, a consistency check at start), `barrier` waits for all. A dead
worker is noticed by the coordination service's heartbeats (seconds): the
survivors' collectives fail and `failures` turns that into one line.

Only the chief writes into the model directory (checkpoints, `config.json`,
summaries, the best model) and holds its lock; the others write their copies
(checkpoint saves are collective under `MultiWorkerMirroredStrategy`) into a
temporary directory removed at the end (`write_directory`). The one
exception: worker i's input position, in its own
`checkpoints.input_directory` (see `trainer`).
"""

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
from typing import Any, Iterator, List, Mapping, Optional

from absl import logging
import numpy as np
import tensorflow as tf

from learning_to_simulate.training import model_lock

DISTRIBUTIONS = ("none", "mirrored", "multi_worker", "tpu")


class WorkerFailedError(ValueError):
  """A worker of a multi-worker job failed: the others cannot go on."""


@dataclasses.dataclass(frozen=True)
class Workers:
  """A strategy and this process's place among the workers running it.

  Attributes:
    strategy: the `tf.distribute` strategy.
    name: the `--distribution` that made it.
    num_workers: processes (hosts) in the job.
    index: this worker's index, 0 for the chief.
  """
  strategy: tf.distribute.Strategy
  name: str
  num_workers: int = 1
  index: int = 0

  @classmethod
  def local(cls) -> "Workers":
    """One device, under TensorFlow's default strategy (`--distribution=none`;
    what a `workers` argument of None stands for)."""
    return cls(tf.distribute.get_strategy(), "none")

  @property
  def one_device(self) -> bool:
    """`--distribution=none`: the default strategy on one device."""
    return self.name == "none"

  @property
  def is_chief(self) -> bool:
    return self.index == 0

  @property
  def num_replicas(self) -> int:
    return self.strategy.num_replicas_in_sync

  @property
  def local_replicas(self) -> int:
    return self.num_replicas // self.num_workers


def make_workers(name: str, tpu: str = "") -> Workers:
  """The strategy of `--distribution=name` (`Workers.local()` for `none`).

  Call it at program start, before TensorFlow runs any op (collectives are
  configured when the runtime starts).

  Args:
    name: one of `DISTRIBUTIONS`.
    tpu: the TPU's name or address for `tpu` (`TPUClusterResolver`'s `tpu`;
      empty: from the environment, `local` on a TPU VM).

  Raises:
    ValueError: an unknown name, a missing or malformed `TF_CONFIG`, no TPU.
  """
  if name == "none":
    return Workers.local()
  if name == "mirrored":
    devices = (tf.config.list_logical_devices("GPU") or
               tf.config.list_logical_devices("CPU"))
    strategy = tf.distribute.MirroredStrategy(
        devices=[device.name for device in devices])
    workers = Workers(strategy, name)
  elif name == "multi_worker":
    workers = _multi_worker()
  elif name == "tpu":
    workers = Workers(_tpu_strategy(tpu), name)
  else:
    raise ValueError(f"--distribution must be one of "
                     f"{', '.join(DISTRIBUTIONS)}, got {name!r}")
  logging.info("--distribution=%s: worker %d of %d%s, %d replica(s) in sync "
               "on %s.", name, workers.index, workers.num_workers,
               " (chief)" if workers.is_chief else "", workers.num_replicas,
               ", ".join(workers.strategy.extended.worker_devices))
  return workers


def _multi_worker() -> Workers:
  """`MultiWorkerMirroredStrategy` from `TF_CONFIG`, checked first."""
  raw = os.environ.get("TF_CONFIG")
  usage = ("--distribution=multi_worker needs TF_CONFIG, e.g. "
           "'{\"cluster\": {\"worker\": [\"host1:12345\", \"host2:12345\"]}, "
           "\"task\": {\"type\": \"worker\", \"index\": 0}}'")
  if not raw:
    raise ValueError(f"{usage}; it is not set")
  try:
    config = json.loads(raw)
  except json.JSONDecodeError as error:
    raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from None
  cluster = config.get("cluster") if isinstance(config, dict) else None
  task = config.get("task") if isinstance(config, dict) else None
  if (not isinstance(cluster, dict) or not isinstance(task, dict) or
      not any(cluster.get(job) for job in ("chief", "worker"))):
    raise ValueError(f"{usage}; got {raw}")
  task_type, task_index = task.get("type"), task.get("index")
  if (task_type not in ("chief", "worker") or not isinstance(task_index, int)
      or not 0 <= task_index < len(cluster.get(task_type) or [])):
    raise ValueError(f"TF_CONFIG: task {task!r} is not a chief or worker of "
                     f"the cluster {cluster!r}")
  num_chiefs = len(cluster.get("chief") or [])
  strategy = tf.distribute.MultiWorkerMirroredStrategy()
  index = task_index if task_type == "chief" else num_chiefs + task_index
  return Workers(strategy, "multi_worker",
                 num_chiefs + len(cluster.get("worker") or []), index)


def _tpu_strategy(tpu: str) -> tf.distribute.Strategy:
  """`TPUStrategy` on the TPU system `tpu` names (untested here)."""
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, RuntimeError, tf.errors.OpError) as error:
    raise ValueError(f"--distribution=tpu: no TPU system found "
                     f"(--tpu={tpu!r}): {_first_line(error)}") from None
  return tf.distribute.TPUStrategy(resolver)


def resolve(workers: Optional[Workers]) -> Workers:
  """`workers`, or `Workers.local()` for None (the public functions'
  default: one device)."""
  return Workers.local() if workers is None else workers


def scope(workers: Workers):
  """The strategy's scope: create the variables in it."""
  return workers.strategy.scope()


def is_chief(workers: Workers) -> bool:
  return workers.is_chief


def per_replica_batch_size(workers: Workers, batch_size: int) -> int:
  """`batch_size` (the global batch) split over the replicas.

  Raises:
    ValueError: it does not split evenly.
  """
  if batch_size % workers.num_replicas:
    raise ValueError(f"--batch_size={batch_size} (the global batch) must be "
                     f"a multiple of the {workers.num_replicas} replicas of "
                     f"--distribution={workers.name}")
  return batch_size // workers.num_replicas


def shard(workers: Workers):
  """This worker's `reading_utils.Shard`, or None for a single worker."""
  if workers.num_workers == 1:
    return None
  return workers.num_workers, workers.index


def own_indices(count: int, workers: Workers) -> range:
  """Of items `0 .. count - 1`, those of this worker's `shard`."""
  share = shard(workers)
  return range(count) if share is None else range(share[1], count, share[0])


def _sum_over_workers(workers: Workers, array: np.ndarray) -> np.ndarray:
  """The sum of `array` over the workers (each worker counted once)."""
  strategy = workers.strategy
  local = workers.local_replicas

  def value(context):
    first = context.replica_id_in_sync_group % local == 0
    return tf.constant(array if first else np.zeros_like(array))

  values = strategy.experimental_distribute_values_from_function(value)
  return strategy.reduce(tf.distribute.ReduceOp.SUM, values,
                         axis=None).numpy()


def gather(workers: Workers, value: Any) -> List[Any]:
  """Every worker's JSON-serializable `value`, by worker index, on every
  worker (a collective: all workers must call it)."""
  if workers.num_workers == 1:
    return [value]
  payload = np.frombuffer(json.dumps(value).encode(), np.uint8)
  lengths = np.zeros([workers.num_workers], np.float32)
  lengths[workers.index] = payload.size
  lengths = _sum_over_workers(workers, lengths).astype(np.int64)
  # float32 carries bytes exactly; each entry has one non-zero term.
  rows = np.zeros([workers.num_workers, lengths.max()], np.float32)
  rows[workers.index, :payload.size] = payload
  rows = _sum_over_workers(workers, rows).astype(np.uint8)
  return [json.loads(row[:length].tobytes().decode())
          for row, length in zip(rows, lengths)]


def barrier(workers: Workers) -> None:
  """Returns once every worker has reached it."""
  gather(workers, None)


def check_agree(workers: Workers, values: Mapping[str, Any]
                ) -> None:
  """Checks that every worker has the chief's `values`.

  Raises:
    ValueError: on every worker, naming the first worker and value that
      differ from the chief's.
  """
  everyone = gather(workers, dict(values))
  for index, other in enumerate(everyone[1:], 1):
    for key, chief_value in everyone[0].items():
      if other.get(key) != chief_value:
        raise ValueError(
            f"--distribution={workers.name}: worker {index} has {key} "
            f"{other.get(key)!r}, the chief {chief_value!r}; start every "
            "worker with the same flags and data and a --model_path that "
            "they all share")


def worker_seed(seed: Optional[int], workers: Workers) -> Optional[int]:
  """The global seed of this worker: `seed + index` (the chief's is `seed`),
  so that workers draw their own input noise."""
  if seed is None:
    return seed
  return seed + workers.index


def training_lock(workers: Workers, model_path: str):
  """The model directory's training lock on the chief; none elsewhere."""
  if is_chief(workers):
    return model_lock.hold(model_path)
  return contextlib.nullcontext()


@contextlib.contextmanager
def write_directory(workers: Workers,
                    model_path: str) -> Iterator[str]:
  """Where this worker writes checkpoints and the best model.

  The chief writes into `model_path`; another worker, which must save too
  (saves are collective), into a temporary directory removed afterwards.
  """
  if is_chief(workers):
    yield model_path
    return
  path = tempfile.mkdtemp(prefix=f"learning_to_simulate_worker{workers.index}_")
  try:
    yield path
  finally:
    shutil.rmtree(path, ignore_errors=True)


def summary_writer(workers: Workers, path: str):
  """A TensorBoard writer into `path` on the chief, one that drops
  everything elsewhere."""
  if is_chief(workers):
    return tf.summary.create_file_writer(path)
  return tf.summary.create_noop_writer()


# What the survivors of a failed worker get from their collectives.
_PEER_FAILURES = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                  tf.errors.CancelledError, tf.errors.AbortedError)
_TASK = re.compile(r"/job:\w+/replica:\d+/task:\d+")


def _first_line(error: BaseException) -> str:
  """The first line of an error's message that is not a traceback line."""
  message = getattr(error, "message", None) or str(error)
  for line in message.splitlines():
    line = line.strip()
    if line and not line.startswith(("File ", "Detected at node",
                                      "Graph execution error")):
      return line
  return type(error).__name__


def describe_failure(error: tf.errors.OpError) -> str:
  """One line for a collective that failed: which worker, if it is known."""
  message = error.message or ""
  tasks = ", ".join(sorted(set(_TASK.findall(message)))) or "a worker"
  if "unhealthy" in message or "heartbeat" in message:
    return f"{tasks} stopped (no heartbeat: it crashed or was killed)"
  if "remote target" in message or "Connection" in message:
    return f"lost the connection to {tasks} (it crashed or was killed)"
  return (f"a collective failed ({type(error).__name__}: "
          f"{_first_line(error)})")


@contextlib.contextmanager
def failures(workers: Workers, resume: str) -> Iterator[None]:
  """Turns the collective errors of a failed worker into one line.

  Args:
    workers: the job (nothing is caught for a single worker).
    resume: what a restart does, e.g. `training resumes from ... `.

  Raises:
    WorkerFailedError: the failed worker, and `resume`.
  """
  if workers.num_workers == 1:
    yield
    return
  try:
    yield
  except _PEER_FAILURES as error:
    raise WorkerFailedError(
        f"--distribution={workers.name}: {describe_failure(error)}; the job "
        f"cannot go on: restart every worker ({resume})") from None
