"""Training and evaluation under tf.distribute (issue 15).

- In this process: TF_CONFIG checks, shards, the agreed stop, failure lines.
- MirroredStrategy over 2 logical CPU devices, in a subprocess (logical
  devices must be set before TensorFlow starts): one step's loss, gradients
  and update equal one device's on the same global batch and noise.
- MultiWorkerMirroredStrategy with 2 worker processes on 127.0.0.1: a
  worker killed mid-run stops the job with one line; the next start resumes
  from the last checkpoint; the model resumes on one device; eval and
  eval_rollout split the trajectories (pickles identical to one process).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import types

import tensorflow as tf

from learning_to_simulate.benchmarks import distribution_scaling
from learning_to_simulate.data import synthetic
from learning_to_simulate import reading_utils
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import distribution
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import train_step as train_step_lib
from learning_to_simulate.training import trainer
from learning_to_simulate.training import validation

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SMALL = ["--latent_size=8", "--hidden_size=8", "--message_passing_steps=2"]
_TIMEOUT = 240


def _env(**extra):
  env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2",
             TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
  env.pop("TF_CONFIG", None)
  env.update(extra)
  return env


def _tf_config(ports, index):
  return json.dumps({
      "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
      "task": {"type": "worker", "index": index}})


def _start_workers(*args):
  """Two `train --distribution=multi_worker` processes; the chief first."""
  ports = distribution_scaling.free_ports(2)
  return [subprocess.Popen(
      [sys.executable, "-m", "learning_to_simulate.train",
       "--distribution=multi_worker", *args], cwd=_ROOT,
      env=_env(TF_CONFIG=_tf_config(ports, index)), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True) for index in range(2)]


def _finish(processes, timeout=_TIMEOUT):
  """`(returncode, stdout, stderr)` of each process (killed at timeout)."""
  deadline = time.time() + timeout
  results = []
  for process in processes:
    try:
      out, err = process.communicate(timeout=max(deadline - time.time(), 1))
    except subprocess.TimeoutExpired:
      for other in processes:
        other.kill()
      out, err = process.communicate()
      raise AssertionError(f"a worker hung:\n{err[-3000:]}") from None
    results.append((process.returncode, out, err))
  return results


def _run_workers(*args):
  results = _finish(_start_workers(*args))
  for index, (code, _, err) in enumerate(results):
    if code != 0:
      raise AssertionError(f"worker {index} of {args} failed:\n"
                           f"{err[-3000:]}")
  return results


def _run_cli(*args):
  result = subprocess.run(
      [sys.executable, "-m", "learning_to_simulate.train", *args], cwd=_ROOT,
      env=_env(), capture_output=True, text=True, timeout=_TIMEOUT)
  if result.returncode != 0:
    raise AssertionError(f"{args} failed:\n{result.stderr[-3000:]}")
  return result


class WorkersTest(tf.test.TestCase):
  """The helpers, in this process (no collective)."""

  def test_multi_worker_needs_a_valid_tf_config(self):
    for tf_config, message in (
        (None, r"^--distribution=multi_worker needs TF_CONFIG, e\.g\. .*; "
         "it is not set$"),
        ("{", r"^TF_CONFIG is not valid JSON: "),
        ('{"cluster": {}}', r"needs TF_CONFIG.*; got "),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", '
         '"index": 1}}', r"^TF_CONFIG: task .* is not a chief or worker "),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", '
         '"index": 0}}', r"^TF_CONFIG: task ")):
      with self.subTest(tf_config=tf_config):
        saved = os.environ.pop("TF_CONFIG", None)
        try:
          if tf_config is not None:
            os.environ["TF_CONFIG"] = tf_config
          with self.assertRaisesRegex(ValueError, message):
            distribution.make_workers("multi_worker")
        finally:
          os.environ.pop("TF_CONFIG", None)
          if saved is not None:
            os.environ["TF_CONFIG"] = saved

  def test_unknown_distribution(self):
    with self.assertRaisesRegex(ValueError, r"^--distribution must be one "
                                "of none, mirrored, multi_worker, tpu"):
      distribution.make_workers("horovod")
    local = distribution.make_workers("none")
    self.assertIs(local.strategy, tf.distribute.get_strategy())
    self.assertEqual((local.name, local.num_workers, local.index,
                      local.num_replicas, local.local_replicas),
                     ("none", 1, 0, 1, 1))
    self.assertTrue(local.one_device)
    self.assertTrue(local.is_chief)
    self.assertEqual(distribution.resolve(None), local)

  def test_global_batch_splits_evenly(self):
    workers = distribution.Workers(
        types.SimpleNamespace(num_replicas_in_sync=4), "multi_worker", 2, 1)
    self.assertEqual(distribution.per_replica_batch_size(workers, 8), 2)
    self.assertEqual(distribution.per_replica_batch_size(
        distribution.Workers.local(), 3), 3)
    with self.assertRaisesRegex(
        ValueError, r"^--batch_size=6 \(the global batch\) must be a "
        r"multiple of the 4 replicas of --distribution=multi_worker$"):
      distribution.per_replica_batch_size(workers, 6)

  def test_shards_and_own_indices(self):
    second = distribution.Workers(None, "multi_worker", 3, 1)
    self.assertEqual(distribution.shard(second), (3, 1))
    self.assertEqual(list(distribution.own_indices(8, second)), [1, 4, 7])
    self.assertFalse(second.is_chief)
    local = distribution.Workers.local()
    self.assertIsNone(distribution.shard(local))
    self.assertEqual(list(distribution.own_indices(3, local)), [0, 1, 2])
    self.assertEqual(distribution.gather(local, {"a": 1}), [{"a": 1}])
    one = distribution.Workers(None, "mirrored")
    self.assertIsNone(distribution.shard(one))
    self.assertEqual(distribution.gather(one, {"a": 1}), [{"a": 1}])
    self.assertEqual(distribution.worker_seed(5, second), 6)
    self.assertEqual(distribution.worker_seed(5, local), 5)
    self.assertIsNone(distribution.worker_seed(None, second))

  def test_reading_a_shard(self):
    data_path = os.path.join(self.get_temp_dir(), "data")
    synthetic.write_tiny_dataset(data_path, dim=2, num_particles=5,
                                 num_frames=8, num_trajectories=5, seed=0)

    def keys(shard):
      return [int(context["key"]) for context, _ in
              reading_utils.load_trajectories(data_path, "train",
                                              shard=shard)]

    everything = keys(None)
    self.assertLen(everything, 5)
    self.assertEqual(keys((2, 0)), everything[0::2])
    self.assertEqual(keys((2, 1)), everything[1::2])

  def test_agreed_stop(self):
    stop = train_step_lib.StopRequest()
    self.assertEqual(stop.local_request, 0.0)
    stop.agree(False)
    self.assertIsNone(stop.signal_name)
    stop.agree(True)  # Another worker was signaled.
    self.assertEqual(stop.signal_name, "a signal to another worker")
    stop = train_step_lib.StopRequest()
    with stop:
      os.kill(os.getpid(), signal.SIGTERM)
    self.assertEqual(stop.local_request, 1.0)
    self.assertIsNone(stop.signal_name)  # Not before the others know.
    stop.agree(True)
    self.assertEqual(stop.signal_name, "SIGTERM")

  def test_failures_are_one_line(self):
    workers = distribution.Workers(None, "multi_worker", 2, 0)
    dead = tf.errors.UnavailableError(None, None, (
        "Graph execution error:\n\nDetected at node CollectiveReduceV2\n"
        "  File \"x.py\", line 1\nCollective ops is aborted by: Error "
        "reported from /job:worker/task:1: The following tasks are "
        "unhealthy (stopped sending heartbeats):\n"
        "/job:worker/replica:0/task:1\nThe tasks have crashed."))
    with self.assertRaisesRegex(
        distribution.WorkerFailedError,
        r"^--distribution=multi_worker: /job:worker/replica:0/task:1 "
        r"stopped \(no heartbeat: it crashed or was killed\); the job cannot"
        r" go on: restart every worker \(it resumes\)$"):
      with distribution.failures(workers, "it resumes"):
        raise dead
    lost = tf.errors.UnavailableError(None, None, (
        "recvmsg:Connection reset by peer\nAdditional GRPC error "
        "information from remote target /job:worker/replica:0/task:0"))
    self.assertEqual(distribution.describe_failure(lost),
                     "lost the connection to /job:worker/replica:0/task:0 "
                     "(it crashed or was killed)")
    with self.assertRaises(tf.errors.UnavailableError):  # One worker: as is.
      with distribution.failures(distribution.Workers.local(), "x"):
        raise dead


class ScalingReportTest(tf.test.TestCase):

  def test_efficiency_of_the_best_runs(self):
    runs = [
        {"workers": 1, "kind": "none", "global_batch": 2,
         "steps_per_s": 1.0, "examples_per_s": 2.0, "load_average": 1.0},
        {"workers": 1, "kind": "multi_worker", "global_batch": 2,
         "steps_per_s": 0.9, "examples_per_s": 1.8, "load_average": 1.0},
        {"workers": 2, "kind": "multi_worker", "global_batch": 4,
         "steps_per_s": 0.8, "examples_per_s": 3.2, "all_reduce_ms": 12.5,
         "load_average": 2.0},
        {"workers": 1, "kind": "none", "global_batch": 2,
         "steps_per_s": 1.25, "examples_per_s": 2.5, "load_average": 1.5},
    ]
    summary = distribution_scaling.summarize(runs)
    self.assertAllClose(summary["scaling_efficiency"], 3.2 / 5.0)
    self.assertEqual(summary["best"]["none/1"]["examples_per_s"], 2.5)
    self.assertEqual(summary["best"]["multi_worker/1"]["examples_per_s"],
                     1.8)
    table = distribution_scaling.format_table(runs).splitlines()
    self.assertEqual(table[0], "| workers | --distribution | global batch | "
                     "steps/s | examples/s | gradient all-reduce ms | "
                     "load average |")
    self.assertEqual(table[2], "| 1 | none | 2 | 1 | 2 | - | 1.0 |")
    self.assertEqual(table[4],
                     "| 2 | multi_worker | 4 | 0.8 | 3.2 | 12.5 | 2.0 |")


# The learning rate of the comparison's Adam (in the script below).
_LR = 1e-3
# Run in a subprocess: 2 logical CPU devices, then the comparison.
_MIRRORED_SCRIPT = r"""
import json
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from learning_to_simulate.data import common
from learning_to_simulate.model import build
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import distribution
from learning_to_simulate.training import one_step, optimizers, pushforward
from learning_to_simulate.training import train_step as train_step_lib

METADATA = {
    "dim": 2, "bounds": [[0.0, 1.0], [0.0, 1.0]],
    "default_connectivity_radius": 0.1, "sequence_length": 10,
    "vel_mean": [0.0, 0.0], "vel_std": [3e-3, 4e-3],
    "acc_mean": [0.0, -1e-4], "acc_std": [1e-4, 2e-4],
}
MODEL = config_lib.ModelConfig(latent_size=16, hidden_size=16,
                               message_passing_steps=2)
OPTIMIZER = config_lib.OptimizerConfig(lr=LR, min_lr=LR)
tf.random.set_seed(0)
rng = np.random.default_rng(0)

def make_batch(sizes):
  n = sum(sizes)
  start = rng.uniform(0.2, 0.8, [n, 1, 2])
  velocity = rng.normal(0, 3e-3, [n, 1, 2])
  t = np.arange(common.WINDOW_LENGTH)[None, :, None]
  positions = start + velocity * t + 0.5 * np.array([0, -1e-4]) * t**2
  types = np.where(rng.uniform(size=n) < 0.3, 3, 5)
  return ({"position": tf.constant(positions[:, :-1], tf.float32),
           "particle_type": tf.constant(types, tf.int64),
           "n_particles_per_example": tf.constant(sizes, tf.int32)},
          tf.constant(positions[:, -1], tf.float32))

def concat(batches):
  features = {k: tf.concat([b[0][k] for b in batches], 0)
              for k in batches[0][0]}
  return features, tf.concat([b[1] for b in batches], 0)

def noise_fn(features):  # The same noise wherever an example goes.
  return 3e-4 * tf.sin(7919.0 * features["position"])

# Replica 0 gets examples of 30 and 20 particles, replica 1 of 7 and 12.
replica_batches = [make_batch([30, 20]), make_batch([7, 12])]
global_batch = concat(replica_batches)

workers = distribution.make_workers("mirrored")
strategy = workers.strategy
with strategy.scope():
  simulator = build.build_simulator(METADATA, MODEL)
  optimizer = optimizers.make_optimizer(OPTIMIZER, simulator)
single = build.build_simulator(METADATA, MODEL)
single_optimizer = optimizers.make_optimizer(OPTIMIZER, single)
for mine, theirs in zip(single.trainable_variables,
                        simulator.trainable_variables):
  mine.assign(theirs)

# One device, the global batch (in a graph too: graph rewrites round the
# target accelerations differently from eager execution).
@tf.function
def single_step(batch):
  with tf.GradientTape() as tape:
    predicted, target = one_step.predicted_and_target_accelerations(
        single, batch, 0.0, noise=noise_fn(batch[0]))
    loss = one_step.masked_loss(predicted, target, batch[0]["particle_type"])
  grads = tape.gradient(loss, single.trainable_variables)
  single_optimizer.apply_gradients(zip(grads, single.trainable_variables))
  return loss, [tf.convert_to_tensor(g) for g in grads]

single_loss, single_gradients = single_step(global_batch)

per_replica = strategy.experimental_distribute_values_from_function(
    lambda context: replica_batches[context.replica_id_in_sync_group])

@tf.function
def gradients(batch):
  def replica(batch):
    def predict():
      return one_step.predicted_and_target_accelerations(
          simulator, batch, 0.0, noise=noise_fn(batch[0]))
    loss, stops, grads = train_step_lib.replica_loss_and_gradients(
        simulator, optimizer, predict, batch[0]["particle_type"],
        tf.constant(0.0))
    return loss, [tf.convert_to_tensor(g) for g in grads]
  loss, grads = strategy.run(replica, args=(batch,))
  return (strategy.experimental_local_results(loss),
          strategy.reduce("SUM", grads, axis=None))

losses, summed = gradients(per_replica)
step = train_step_lib.make_train_step(
    simulator, optimizer, train_step_lib.OneStep(0.0, noise_fn=noise_fn),
    workers=workers)
step_loss, stops = step(tuple(replica_batches), tf.constant(1.0),
                        tf.constant(0))

def max_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(a, b))

variable_diff = max_diff(simulator.trainable_variables,
                         single.trainable_variables)

# Pushforward (noise_std 0: no noise), one unrolled step, on both models.
def make_window(sizes):
  features, _ = make_batch(sizes)
  n = sum(sizes)
  start = rng.uniform(0.2, 0.8, [n, 1, 2])
  t = np.arange(common.WINDOW_LENGTH + 1)[None, :, None]
  position = start + rng.normal(0, 3e-3, [n, 1, 2]) * t
  return dict(features, position=tf.constant(position, tf.float32))

replica_windows = [make_window([9, 14]), make_window([11, 5])]
global_window = {k: tf.concat([w[k] for w in replica_windows], 0)
                 for k in replica_windows[0]}
single_pushforward = tf.function(
    lambda window: pushforward.pushforward_train_step(
        single, single_optimizer, window, tf.constant(1), 0.0))
single_pushforward_loss = single_pushforward(global_window)
window_step = train_step_lib.make_train_step(
    simulator, optimizer,
    train_step_lib.Windows(config_lib.TrainingConfig(pushforward_max_unroll=1),
                           0.0), workers=workers)
pushforward_loss, _ = window_step(tuple(replica_windows), tf.constant(0.0),
                                  tf.constant(1))

# A two-step loss (no unroll before it) on the same windows, on both models.
single_multistep = tf.function(
    lambda window: pushforward.pushforward_train_step(
        single, single_optimizer, window, tf.constant(0), 0.0,
        loss_steps=2))
single_multistep_loss = single_multistep(global_window)
multistep_step = train_step_lib.make_train_step(
    simulator, optimizer,
    train_step_lib.Windows(config_lib.TrainingConfig(multistep_loss_steps=2),
                           0.0), workers=workers)
multistep_loss, _ = multistep_step(tuple(replica_windows), tf.constant(0.0),
                                    tf.constant(0))

# Each replica draws its own noise on the same inputs.
same = global_batch[0]
noises = strategy.experimental_local_results(strategy.run(
    lambda: one_step.sample_noise(same["position"], same["particle_type"],
                                  1e-3)))

print(json.dumps({
    "num_replicas": workers.num_replicas,
    "single_loss": float(single_loss),
    "replica_losses": [float(l) for l in losses],
    "step_loss": float(step_loss),
    "stops": float(stops),
    "gradient_diff": max_diff(summed, single_gradients),
    "gradient_scale": max(float(np.max(np.abs(g))) for g in single_gradients),
    "variable_diff": variable_diff,
    "pushforward_losses": [float(single_pushforward_loss),
                           float(pushforward_loss)],
    "pushforward_variable_diff": max_diff(simulator.trainable_variables,
                                          single.trainable_variables),
    "multistep_losses": [float(single_multistep_loss),
                         float(multistep_loss)],
    "multistep_variable_diff": max_diff(simulator.trainable_variables,
                                        single.trainable_variables),
    "iterations": int(optimizer.iterations.numpy()),
    "noise_diff": float(np.max(np.abs(noises[0] - noises[1]))),
}))
"""


class MirroredTest(tf.test.TestCase):

  def test_one_step_equals_one_device_on_the_global_batch(self):
    result = subprocess.run([sys.executable, "-c",
                             f"LR = {_LR!r}\n" + _MIRRORED_SCRIPT],
                            cwd=_ROOT, env=_env(), capture_output=True,
                            text=True, timeout=_TIMEOUT)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    got = json.loads(result.stdout.strip().splitlines()[-1])
    self.assertEqual(got["num_replicas"], 2)
    # The global loss, on both replicas and from the step.
    self.assertAllClose(got["replica_losses"], [got["single_loss"]] * 2,
                        rtol=1e-6)
    self.assertAllClose(got["step_loss"], got["single_loss"], rtol=1e-6)
    self.assertEqual(got["stops"], 2.0)  # Both replicas sent stop = 1.
    # Summed replica gradients are the one-device gradients.
    self.assertLess(got["gradient_diff"], 1e-5 * got["gradient_scale"])
    self.assertGreater(got["gradient_scale"], 1e-3)
    # And Adam's first update is the same. That update is lr * g / (|g| +
    # eps), about +-lr (1e-3) per element, and round-off in the replicas'
    # sum moves it for elements whose gradient is near eps (2e-6 seen in
    # one run of many); a wrong update is off by about lr.
    self.assertLess(got["variable_diff"], 1e-2 * _LR)
    # A pushforward step (one unrolled step) too.
    self.assertAllClose(got["pushforward_losses"][1],
                        got["pushforward_losses"][0], rtol=1e-5)
    self.assertLess(got["pushforward_variable_diff"], 1e-2 * _LR)
    # And a two-step loss.
    self.assertAllClose(got["multistep_losses"][1],
                        got["multistep_losses"][0], rtol=1e-5)
    self.assertLess(got["multistep_variable_diff"], 1e-2 * _LR)
    self.assertEqual(got["iterations"], 3)
    self.assertGreater(got["noise_diff"], 0.0)


class MultiWorkerTest(tf.test.TestCase):
  """Two worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy)."""

  def setUp(self):
    super().setUp()
    self.root = self.get_temp_dir()
    self.data_path = os.path.join(self.root, "dataset")
    synthetic.write_tiny_dataset(
        self.data_path, dim=2, num_particles=20, num_kinematic=4,
        num_frames=12, num_trajectories=3, context_size=2, seed=1)

  def test_train_kill_resume_and_evaluate(self):
    # One sequence, as a user meets it (each phase needs the one before).
    model_path = os.path.join(self.root, "model")
    data = f"--data_path={self.data_path}"
    args = [data, f"--model_path={model_path}", "--checkpoint_every_steps=2",
            "--seed=3", *_SMALL]

    # 1. Train until ckpt-4, then kill worker 1: the chief stops in one line.
    processes = _start_workers(*args, "--num_steps=100000",
                               "--eval_every_steps=0")
    deadline = time.time() + _TIMEOUT
    while not os.path.exists(os.path.join(model_path, "ckpt-4.index")):
      if time.time() > deadline or any(p.poll() is not None
                                       for p in processes):
        for p in processes:
          p.kill()
        self.fail(f"no ckpt-4: {processes[0].communicate()[1][-3000:]}")
      time.sleep(0.2)
    processes[1].send_signal(signal.SIGKILL)
    killed = time.time()
    (code, _, err), _ = _finish(processes, timeout=120)
    self.assertLess(time.time() - killed, 60)
    self.assertEqual(code, 1)
    self.assertRegex(
        err.strip().splitlines()[-1],
        r"^train: error: --distribution=multi_worker: "
        r"(/job:worker/replica:0/task:1 stopped \(no heartbeat: it crashed "
        r"or was killed\)|lost the connection to .*); the job cannot go on: "
        r"restart every worker \(training resumes from the latest checkpoint"
        rf" in {model_path}\)$")
    latest = tf.train.latest_checkpoint(model_path)
    number = int(latest.rsplit("-", 1)[1])
    self.assertGreaterEqual(number, 4)

    # 2. The next start resumes from it, validates, and only the chief
    # writes into the model directory.
    chief, other = _run_workers(
        *args, f"--num_steps={number + 2}", "--log_every_steps=1",
        f"--eval_every_steps={number + 2}", "--eval_num_rollouts=1",
        "--eval_num_batches=1")
    last = number + 2
    for _, _, err in (chief, other):
      self.assertIn(f"Resumed from {latest} at step {number}.", err)
      # The same global loss on both workers.
      self.assertIn(re.search(rf"step {last}/{last}  loss [0-9.e+-]+",
                              chief[2])[0], err)
      self.assertIn(f"validation at step {last}", err)
    self.assertIn(f"Finished at step {last}; saved {model_path}/ckpt-{last}.",
                  chief[2])
    scratch = re.search(rf"Finished at step {last}; saved (.*)/ckpt-{last}\.",
                        other[2])[1]
    self.assertNotEqual(scratch, model_path)
    self.assertFalse(os.path.exists(scratch))  # Removed at the end.
    self.assertIn(f"ckpt-{last}.index",
                  os.listdir(os.path.join(model_path, "best")))

    # 3. The checkpoint resumes on one device.
    model = config_lib.ModelConfig(latent_size=8, hidden_size=8,
                                   message_passing_steps=2)
    with self.assertLogs(level="INFO") as logs:
      trainer.train(self.data_path, model_path, model,
                    config_lib.OptimizerConfig(),
                    trainer.TrainOptions(num_steps=last + 1),
                    validation.ValidationOptions(every_steps=0))
    self.assertIn(f"Resumed from {model_path}/ckpt-{last} at step {last}.",
                  "\n".join(logs.output))

    # 4. eval_rollout: the same pickles and metrics.json as one process.
    output = os.path.join(self.root, "rollouts")
    results = _run_workers(data, f"--model_path={model_path}",
                           "--mode=eval_rollout", "--eval_split=valid",
                           f"--output_path={output}")
    single = os.path.join(self.root, "single_rollouts")
    expected = evaluation.evaluate_rollouts(
        self.data_path, model_path, single, model, split="valid")
    self.assertLen(expected["files"], 3)
    self.assertEqual(sorted(os.listdir(output)), sorted(os.listdir(single)))
    for name in os.listdir(single):
      with open(os.path.join(single, name), "rb") as f:
        want = f.read()
      with open(os.path.join(output, name), "rb") as f:
        self.assertEqual(f.read(), want, name)
    for _, out, _ in results:  # Every worker prints the whole.
      self.assertIn(f"rollout_error_mse: {expected['rollout_error_mse']:.8g}",
                    out)

    # 5. eval: the sums over both shards.
    results = _run_workers(data, f"--model_path={model_path}", "--mode=eval",
                           "--eval_split=valid", "--batch_size=3")
    want = evaluation.evaluate(self.data_path, model_path, model,
                               split="valid", batch_size=3)
    for _, out, _ in results:
      got = float(re.search(r"one_step_position_mse: (\S+)", out)[1])
      self.assertAllClose(got, want["one_step_position_mse"], rtol=1e-5)

  def test_resumed_job_goes_on_with_each_workers_batches(self):
    # A job resumed from its step-4 checkpoint ends at step 6 as the job
    # that ran through: each worker's input position is saved (the chief's
    # in its checkpoints, the other's in input-worker-1/) and restored.
    def run(model_path):
      return [err for _, _, err in _run_workers(
          f"--data_path={self.data_path}", f"--model_path={model_path}",
          "--seed=3", "--deterministic", "--eval_every_steps=0",
          "--shuffle_buffer_size=4", "--batch_size=2", "--num_steps=6",
          "--checkpoint_every_steps=2", *_SMALL)]

    whole = os.path.join(self.root, "whole")
    run(whole)
    # The same job stopped after its step-4 checkpoint, without state files.
    resumed = os.path.join(self.root, "resumed")
    shutil.copytree(whole, resumed)
    for directory in (resumed, os.path.join(resumed, "input-worker-1")):
      self.assertIn("ckpt-4.index", os.listdir(directory))
      for name in os.listdir(directory):
        if name.startswith("ckpt-6.") or name == "checkpoint":
          os.remove(os.path.join(directory, name))
    chief, other = run(resumed)
    self.assertIn(f"The input goes on where {resumed}/ckpt-4 left it.",
                  chief)
    self.assertIn(f"The input goes on where {resumed}/input-worker-1/ckpt-4 "
                  "left it.", other)
    want = tf.train.load_checkpoint(os.path.join(whole, "ckpt-6"))
    got = tf.train.load_checkpoint(os.path.join(resumed, "ckpt-6"))
    names = [name for name in want.get_variable_to_dtype_map()
             if name.startswith("simulator/")]
    self.assertNotEmpty(names)
    for name in names:
      self.assertAllEqual(want.get_tensor(name), got.get_tensor(name),
                          msg=name)

if __name__ == "__main__":
  tf.test.main()
