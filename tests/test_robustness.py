"""Training and evaluation never lose a good model; bad input is one line.

Each test reproduces one way users break a run (issue 16) with a tiny model
on a tiny dataset, in process, and checks the error message and that the
checkpoints on disk are unchanged, finite and loadable. `test_train_cli`
checks the command line's side (exit codes, the line on stderr).
"""

import errno
import functools
import hashlib
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from learning_to_simulate.data import dataset_writer
from learning_to_simulate.data import synthetic
from learning_to_simulate import reading_utils
from learning_to_simulate.model import build
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import divergence
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import model_lock
from learning_to_simulate.training import optimizers
from learning_to_simulate.training import train_step as train_step_lib
from learning_to_simulate.training import trainer
from learning_to_simulate.training import validation

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = config_lib.ModelConfig(latent_size=8, hidden_size=8,
                              message_passing_steps=2)
ADAM = config_lib.OptimizerConfig()
# Adam steps of ~1e30: the next forward pass overflows, whatever the seed.
DIVERGING = config_lib.OptimizerConfig(lr=1e30)
# The dataset: 2 trajectories per split, 12 frames of 24 particles each.
DATASET = dict(dim=2, num_particles=20, num_kinematic=4, num_frames=12,
               seed=1)


def train(*args, **kwargs):
  """`trainer.train` without validation: these tests are about checkpoints
  and failures, and validation at the last step (tested on its own in
  test_validation) would add seconds to each of their trainings."""
  return trainer.train(*args, validation_options=validation.ValidationOptions(
      every_steps=0), **kwargs)


def options(**kwargs) -> trainer.TrainOptions:
  return trainer.TrainOptions(**{**dict(
      num_steps=4, checkpoint_every_steps=2, log_every_steps=2, seed=0,
      shuffle_buffer_size=16), **kwargs})


@functools.lru_cache(maxsize=None)
def fixture():
  """A tiny dataset and a model trained on it, with ckpt-2 and ckpt-4."""
  root = tempfile.mkdtemp(prefix="robustness_")
  data_path = os.path.join(root, "dataset")
  metadata = synthetic.write_tiny_dataset(data_path, **DATASET)
  model_path = os.path.join(root, "trained")
  tf.random.set_seed(0)
  train(data_path, model_path, TINY, ADAM, options())
  return data_path, model_path, metadata


def digests(model_path):
  """sha256 of each checkpoint file."""
  out = {}
  for name in sorted(os.listdir(model_path)):
    path = os.path.join(model_path, name)
    if name.startswith(checkpoints.CHECKPOINT_NAME + "-") and (
        os.path.isfile(path)):
      with open(path, "rb") as f:
        out[name] = hashlib.sha256(f.read()).hexdigest()
  return out


def trajectory_with(positions=None, particle_types=None):
  """The first trajectory of a fresh synthetic draw, with replacements."""
  rng = np.random.default_rng(5)
  trajectory = synthetic.ballistic_trajectory(20, 12, 2, rng,
                                              num_kinematic=4)
  return dataset_writer.Trajectory(
      trajectory.positions if positions is None else positions,
      trajectory.particle_types if particle_types is None else
      particle_types)


def dense_weights(data_path, path):
  """The simulator's dense trainable variables restored from `path`."""
  _, simulator = evaluation.load_model(data_path, None, TINY, checkpoint=path)
  return [variable.numpy() for variable in simulator.trainable_variables
          if "embedding" not in variable.name]


def saved_step(path):
  reader = tf.train.load_checkpoint(path)
  (name,) = [name for name in reader.get_variable_to_shape_map()
             if name.startswith("optimizer/_iterations")]
  return int(reader.get_tensor(name))


class WarmStartTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.data_path, self.trained, _ = fixture()
    self.model_path = os.path.join(self.create_tempdir().full_path, "model")

  def test_starts_from_the_weights_at_their_step(self):
    # A directory warm-starts from its latest checkpoint, ckpt-4.
    with self.assertLogs("absl", "INFO") as logs:
      train(self.data_path, self.model_path, TINY, ADAM,
                    options(num_steps=5, warm_start=self.trained))
    self.assertRegex("\n".join(logs.output), "Warm start from .*ckpt-4: its "
                     "weights, a fresh optimizer state, the schedules at "
                     "step 4")
    new = checkpoints.checkpoint_path(self.model_path, 5)
    self.assertEqual(saved_step(new), 5)
    before = dense_weights(self.data_path,
                           checkpoints.checkpoint_path(self.trained, 4))
    after = dense_weights(self.data_path, new)
    # Adam's first step from fresh moments at step t = 5 moves a weight by
    # lr * sqrt(1 - b2^t) / (1 - b1^t) * (1 - b1) / sqrt(1 - b2) where its
    # gradient is far above epsilon: the run started from ckpt-4's weights,
    # at step 4, with moments at zero.
    b1, b2, t = 0.9, 0.999, 5
    expected = optimizers.DecayedLearningRate(
        ADAM.lr, ADAM.min_lr, ADAM.lr_decay_steps, ADAM.lr_decay_rate)(4) * (
            np.sqrt(1 - b2**t) / (1 - b1**t) * (1 - b1) / np.sqrt(1 - b2))
    largest = max(np.max(np.abs(a - b)) for a, b in zip(after, before))
    self.assertAllClose(largest, expected, rtol=1e-3)

  def test_a_directory_with_checkpoints_resumes_from_them(self):
    shutil.copytree(self.trained, self.model_path)
    with self.assertLogs("absl", "INFO") as logs:
      train(self.data_path, self.model_path, TINY, ADAM, options(
          num_steps=5, warm_start=checkpoints.checkpoint_path(self.trained,
                                                              2)))
    self.assertRegex("\n".join(logs.output), "has checkpoints: resuming "
                     "from them, not from --warm_start")
    self.assertEqual(saved_step(checkpoints.checkpoint_path(self.model_path,
                                                            5)), 5)

  def test_missing_checkpoint(self):
    missing = os.path.join(self.trained, "ckpt-99")
    with self.assertRaisesRegex(checkpoints.CheckpointError,
                                f"^--warm_start: no checkpoint at {missing} "):
      train(self.data_path, self.model_path, TINY, ADAM,
                    options(warm_start=missing))


class RememberedInterruptTest(tf.test.TestCase):

  def test_ctrl_c_raises_and_is_remembered_for_the_next_check(self):
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
      with evaluation.RememberedInterrupt() as interrupt:
        interrupt.check()  # Nothing asked for yet.
        with self.assertRaises(KeyboardInterrupt):
          os.kill(os.getpid(), signal.SIGINT)
          signal.sigtimedwait([], 0.1)  # Lets the handler run.
        # Were that KeyboardInterrupt swallowed, the next check raises it.
        self.assertTrue(interrupt.requested)
        with self.assertRaises(KeyboardInterrupt):
          interrupt.check()
      self.assertIs(signal.getsignal(signal.SIGINT),
                    signal.default_int_handler)
      # A handler someone else installed is left alone.
      ignore = lambda signum, frame: None
      signal.signal(signal.SIGINT, ignore)
      with evaluation.RememberedInterrupt():
        self.assertIs(signal.getsignal(signal.SIGINT), ignore)
    finally:
      signal.signal(signal.SIGINT, previous)


class RobustnessTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    tf.random.set_seed(0)
    self.data_path, trained, self.metadata = fixture()
    self.root = self.create_tempdir().full_path
    self.model_path = os.path.join(self.root, "model")
    shutil.copytree(trained, self.model_path)

  def assert_usable(self, model_path, numbers):
    """The checkpoints on disk are exactly `numbers`, readable and finite."""
    self.assertEqual(checkpoints.numbers_on_disk(model_path), numbers)
    for number in numbers:
      self.assertIsNone(checkpoints.damage(
          checkpoints.checkpoint_path(model_path, number)))

  def dataset_copy(self, name):
    path = os.path.join(self.root, name)
    shutil.copytree(self.data_path, path)
    return path

  def dataset_with(self, name, trajectory):
    """The dataset with `trajectory` as record 0 (key 0) of every split.

    First, so that every run fails before its first step (no tracing).
    """
    path = self.dataset_copy(name)
    good = trajectory_with()
    for split in ("train", "valid", "test"):
      dataset_writer.write_tfrecord(
          os.path.join(path, f"{split}.tfrecord"), [trajectory, good])
    return path

  # Finding 1: a diverging run stops and never saves a non-finite model.

  def test_monitor_names_the_first_nonfinite_loss(self):
    weights = tf.Variable([1.0, 2.0])
    monitor = divergence.Monitor([weights, tf.Variable(3, tf.int64)], step=0)
    record = tf.function(monitor.record)
    record(tf.constant(1.0))
    monitor.check(1, kept=None)  # All finite: no error.
    record(tf.constant(np.nan))
    record(tf.constant(np.inf))
    self.assertEqual(int(monitor.first_step.numpy()), 2)
    with self.assertRaisesRegex(
        divergence.DivergedError,
        "^loss is NaN at step 2; kept ckpt-0; lower --lr or check the "
        "data$"):
      monitor.check(3, kept="/models/m/ckpt-0")

  def test_monitor_checks_the_variables(self):
    weights = tf.Variable([1.0, 2.0])
    monitor = divergence.Monitor([weights], step=4)
    tf.function(monitor.record)(tf.constant(0.5))
    weights.assign([1.0, np.inf])
    monitor.check_loss(kept=None)  # The losses were finite.
    with self.assertRaisesRegex(
        divergence.DivergedError,
        "^a variable is not finite after step 5; no checkpoint was saved; "
        "lower --lr or check the data$"):
      monitor.check(5, kept=None)

  def test_diverging_run_keeps_only_finite_checkpoints(self):
    model_path = os.path.join(self.root, "diverging")
    with self.assertRaisesRegex(
        divergence.DivergedError,
        r"^(loss is (NaN|-?inf) at step \d+|a variable is not finite after "
        r"step \d+); kept ckpt-(\d+); lower --lr or check the data$") as e:
      train(self.data_path, model_path, TINY, DIVERGING, options(
          num_steps=50, checkpoint_every_steps=1, log_every_steps=10))
    numbers = checkpoints.numbers_on_disk(model_path)
    self.assertNotEmpty(numbers)
    self.assertEndsWith(str(e.exception).split(";")[1],
                        f"ckpt-{numbers[-1]}")
    self.assert_usable(model_path, numbers)

  def test_stop_request_on_a_diverged_run_saves_nothing(self):
    before = digests(self.model_path)

    class StopAfterThreeSteps:
      """`StopRequest` as if SIGTERM came during the third step."""

      def __init__(self):
        self.steps = 0
        self.signal_name = None

      def __enter__(self):
        return self

      def __exit__(self, *exc):
        pass

      @property
      def local_request(self):
        self.steps += 1
        return 1.0 if self.steps >= 3 else 0.0

      def agree(self, requested):
        if requested:
          self.signal_name = "SIGTERM"

    # Resuming the good model at a learning rate that diverges at once.
    with mock.patch.object(train_step_lib, "StopRequest",
                           StopAfterThreeSteps):
      with self.assertRaisesRegex(
          divergence.DivergedError,
          r"(loss is (NaN|-?inf) at step [5-7]|a variable is not finite after"
          r" step 7); kept ckpt-4; lower --lr or check the data$"):
        train(self.data_path, self.model_path, TINY, DIVERGING,
                      options(num_steps=100, log_every_steps=1000,
                              checkpoint_every_steps=1000))
    self.assertEqual(digests(self.model_path), before)
    self.assert_usable(self.model_path, [2, 4])

  def _save_nonfinite_checkpoint(self, number):
    simulator = build.build_simulator(self.metadata, TINY)
    optimizer = optimizers.make_optimizer(ADAM, simulator)
    manager = checkpoints.make_manager(self.model_path, simulator, optimizer)
    checkpoints.restore_latest(manager, require=True)
    variable = simulator.trainable_variables[0]
    variable.assign(tf.fill(variable.shape, np.nan))
    manager.save(checkpoint_number=number)

  def test_eval_never_uses_a_nonfinite_checkpoint(self):
    self._save_nonfinite_checkpoint(6)
    with self.assertLogs("absl", "WARNING") as logs:
      metrics = evaluation.evaluate(self.data_path, self.model_path, TINY,
                                    num_eval_steps=1)
    self.assertRegex("\n".join(logs.output),
                     r"Checkpoint .*ckpt-6 is damaged \(.* is not finite: "
                     r"training diverged\); using ckpt-4 instead")
    self.assertTrue(np.isfinite(metrics["loss_mse"]))
    for number in (2, 4):
      for path in tf.io.gfile.glob(checkpoints.checkpoint_path(
          self.model_path, number) + ".*"):
        os.remove(path)
    with self.assertRaisesRegex(
        checkpoints.CheckpointError,
        r"^--model_path '.*' has no usable checkpoint: ckpt-6 .* is not "
        r"finite: training diverged$"):
      evaluation.evaluate(self.data_path, self.model_path, TINY)

  def test_nonfinite_metric_is_an_error(self):
    with self.assertRaisesRegex(
        ValueError, "^loss_mse is not finite on the test split: the model's "
        "predictions overflow$"):
      evaluation._check_finite({"loss_mse": np.nan, "other": 1.0},
                               "the test split")

  # Findings 2 and 3: resume from the newest usable checkpoint on disk.

  def test_corrupt_state_file_resumes_from_the_newest_checkpoint(self):
    before = digests(self.model_path)
    state = os.path.join(self.model_path, checkpoints.STATE_FILENAME)
    with open(state, "wb") as f:
      f.write(b"model_checkpoint_path: \x00\xff{{ garbage")
    with self.assertLogs("absl", "INFO") as logs:
      train(self.data_path, self.model_path, TINY, ADAM,
                    options(num_steps=6))
    log = "\n".join(logs.output)
    self.assertRegex(log, r"The checkpoint state file .*checkpoint is "
                     r"unreadable")
    self.assertRegex(log, r"Resumed from .*ckpt-4 at step 4")
    after = digests(self.model_path)
    self.assertEqual({k: after[k] for k in before}, before)
    self.assert_usable(self.model_path, [2, 4, 6])
    state = tf.train.get_checkpoint_state(self.model_path)
    self.assertEqual(os.path.basename(state.model_checkpoint_path), "ckpt-6")
    self.assertEqual([os.path.basename(p)
                      for p in state.all_model_checkpoint_paths],
                     ["ckpt-2", "ckpt-4", "ckpt-6"])

  def damage_latest(self, kind):
    """Damages ckpt-4 in one of the ways users have seen."""
    prefix = checkpoints.checkpoint_path(self.model_path, 4)
    data = tf.io.gfile.glob(prefix + ".data-*")[0]
    if kind == "truncated_data":
      with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)
    elif kind == "truncated_index":
      with open(prefix + ".index", "r+b") as f:
        f.truncate(10)
    elif kind == "flipped_byte":
      with open(data, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    elif kind == "deleted_files":
      for path in tf.io.gfile.glob(prefix + ".*"):
        os.remove(path)

  def test_train_falls_back_past_a_damaged_checkpoint(self):
    self.damage_latest("truncated_data")
    before = digests(self.model_path)
    with self.assertLogs("absl", "INFO") as logs:
      train(self.data_path, self.model_path, TINY, ADAM,
                    options(num_steps=3))
    log = "\n".join(logs.output)
    self.assertRegex(log, r"Checkpoint .*ckpt-4 is damaged \(unreadable: "
                     r".*\); using ckpt-2 instead")
    self.assertRegex(log, r"Resumed from .*ckpt-2 at step 2")
    # Moved aside, byte for byte, where no save can overwrite it.
    after = digests(self.model_path)
    for name, digest in before.items():
      self.assertEqual(after[name if name.startswith("ckpt-2")
                             else name + checkpoints.DAMAGED_SUFFIX], digest)
    self.assert_usable(self.model_path, [2, 3])

  @parameterized.parameters("truncated_data", "truncated_index",
                            "flipped_byte", "deleted_files")
  def test_eval_falls_back_past_a_damaged_checkpoint(self, kind):
    self.damage_latest(kind)
    before = digests(self.model_path)
    with self.assertLogs("absl", "INFO") as logs:
      evaluation.load_model(self.data_path, self.model_path, TINY)
    log = "\n".join(logs.output)
    if kind == "deleted_files":
      self.assertRegex(log, r"The checkpoint state file names .*ckpt-4, "
                       "which is missing")
    else:
      self.assertRegex(log, r"Checkpoint .*ckpt-4 is damaged \(unreadable: "
                       r".*\); using ckpt-2 instead")
    self.assertRegex(log, r"Restored .*ckpt-2")
    self.assertEqual(digests(self.model_path), before)  # Eval only reads.

  @parameterized.named_parameters(
      ("out_of_memory", MemoryError()),
      ("permission", tf.errors.PermissionDeniedError(
          None, None, "ckpt-4.data-00000-of-00001; Permission denied")),
      ("transient", tf.errors.UnavailableError(
          None, None, "network file system not responding")))
  def test_a_read_error_that_is_not_damage_leaves_the_checkpoint(self, error):
    before = digests(self.model_path)
    real_load = tf.train.load_checkpoint

    def load(path):  # Fails on the newest checkpoint only.
      if path.endswith("ckpt-4"):
        raise error
      return real_load(path)

    message = (r"^could not read checkpoint .*ckpt-4: "
               f"{type(error).__name__}: .*no sign of damage: it is left "
               r"as it is; fix the cause and run again\)$")
    with mock.patch.object(tf.train, "load_checkpoint", load):
      with self.assertRaisesRegex(checkpoints.CheckpointReadError, message):
        train(self.data_path, self.model_path, TINY, ADAM,
                      options(num_steps=6))
      with self.assertRaisesRegex(checkpoints.CheckpointReadError, message):
        evaluation.load_model(self.data_path, self.model_path, TINY)
    # Neither renamed nor skipped: training had not started from ckpt-2.
    self.assertEqual(digests(self.model_path), before)

  def test_only_evidence_of_damage_is_damage(self):
    self.assertTrue(checkpoints.is_damage(
        IndexError("Read less bytes than requested")))
    self.assertTrue(checkpoints.is_damage(tf.errors.OpError(
        None, None, "TensorBundle at x shard 0: Checksum does not match",
        tf.errors.UNKNOWN)))
    self.assertTrue(checkpoints.is_damage(tf.errors.DataLossError(
        None, None, "anything")))
    self.assertFalse(checkpoints.is_damage(IndexError("list index")))
    self.assertFalse(checkpoints.is_damage(MemoryError()))
    self.assertFalse(checkpoints.is_damage(OSError(errno.EIO, "I/O error")))
    self.assertFalse(checkpoints.is_damage(tf.errors.ResourceExhaustedError(
        None, None, "OOM when allocating tensor")))

  def test_no_usable_checkpoint_is_an_error(self):
    self.damage_latest("truncated_index")
    with open(checkpoints.checkpoint_path(self.model_path, 2) + ".index",
              "r+b") as f:
      f.truncate(10)
    before = digests(self.model_path)
    message = (r"^--model_path '.*' has no usable checkpoint: ckpt-4 "
               r"unreadable: .*; ckpt-2 unreadable: .*$")
    with self.assertRaisesRegex(checkpoints.CheckpointError, message):
      train(self.data_path, self.model_path, TINY, ADAM,
                    options(num_steps=6))
    with self.assertRaisesRegex(checkpoints.CheckpointError, message):
      evaluation.evaluate(self.data_path, self.model_path, TINY)
    self.assertEqual(digests(self.model_path), before)

  # Finding 4: one trainer per model directory; kill -9 frees the lock.

  def test_second_trainer_is_refused_and_kill_9_frees_the_lock(self):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from learning_to_simulate.training import model_lock\n"
         "with model_lock.hold(sys.argv[1]):\n"
         "  print('locked', flush=True)\n"
         "  time.sleep(300)\n", self.model_path],
        cwd=_ROOT, env=dict(os.environ, PYTHONPATH=_ROOT),
        stdout=subprocess.PIPE, text=True)
    try:
      self.assertEqual(holder.stdout.readline().strip(), "locked")
      # A live save of the holder must survive the refused run.
      live = os.path.join(self.model_path, "ckpt-6_temp")
      os.makedirs(live)
      config = os.path.join(self.model_path, config_lib.CONFIG_FILENAME)
      with open(config) as f:
        saved_config = f.read()
      with self.assertRaisesRegex(
          model_lock.LockedError,
          rf"^--model_path '{self.model_path}' is in use by another trainer "
          rf"\(pid {holder.pid} on host {socket.gethostname()}, started "
          r"[0-9T:+-]+\); wait for it to end or use another --model_path$"):
        train(self.data_path, self.model_path, TINY, DIVERGING,
                      options(num_steps=6))
      self.assertTrue(os.path.isdir(live))
      with open(config) as f:
        self.assertEqual(f.read(), saved_config)
    finally:
      holder.send_signal(signal.SIGKILL)
      holder.wait()
    # The lock file stays behind, but the kernel released the lock.
    self.assertTrue(os.path.exists(
        os.path.join(self.model_path, model_lock.LOCK_FILENAME)))
    with model_lock.hold(self.model_path):
      pass

  # Findings 5 and 6: damaged, empty and non-finite datasets.

  def test_truncated_file(self):
    data_path = self.dataset_copy("truncated")
    path = os.path.join(data_path, "train.tfrecord")
    offsets = list(reading_utils.record_offsets(path))
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) - 40)
    message = (f"^{path}: record 1 at byte offset {offsets[1][0]} runs past "
               f"the end of the file \\({os.path.getsize(path)} bytes\\): "
               "the file is truncated; download or copy it again, or pass "
               "--skip_corrupt_records to read the complete records only$")
    with self.assertRaisesRegex(reading_utils.DatasetError, message):
      train(data_path, self.model_path, TINY, ADAM,
                    options(num_steps=6))
    with self.assertLogs("absl", "WARNING"):
      self.assertEqual(reading_utils.check_split(data_path, "train", True), 1)

  def test_flipped_byte_is_named_with_its_offset(self):
    data_path = self.dataset_copy("flipped")
    before = digests(self.model_path)
    for split in ("train", "test"):
      path = os.path.join(data_path, f"{split}.tfrecord")
      (_, _), (offset, length) = reading_utils.record_offsets(path)
      with open(path, "r+b") as f:
        f.seek(offset + 12 + length // 2)
        byte = f.read(1)
        f.seek(offset + 12 + length // 2)
        f.write(bytes([byte[0] ^ 1]))
    def message(split):
      return (f"^{data_path}/{split}.tfrecord: record 1 at byte offset "
              f"{offset} is damaged: its checksum does not match \\(a "
              "damaged byte\\); restore the file, or pass "
              "--skip_corrupt_records to skip damaged records$")
    with self.assertRaisesRegex(reading_utils.DatasetError, message("test")):
      evaluation.evaluate(data_path, self.model_path, TINY)
    with self.assertRaisesRegex(reading_utils.DatasetError, message("test")):
      evaluation.evaluate_rollouts(data_path, self.model_path,
                                   os.path.join(self.root, "rollouts"), TINY)
    with self.assertRaisesRegex(reading_utils.DatasetError,
                                message("train")):
      train(data_path, self.model_path, TINY, ADAM,
                    options(num_steps=20))
    self.assertEqual(digests(self.model_path), before)
    # Opt-in: the records before the damaged one are read.
    metrics = evaluation.evaluate(data_path, self.model_path, TINY,
                                  skip_corrupt_records=True)
    self.assertEqual(metrics["num_batches"], 3)  # 6 windows of record 0.

  def test_skipping_every_record_is_an_error(self):
    data_path = self.dataset_copy("all_bad")
    path = os.path.join(data_path, "train.tfrecord")
    with open(path, "r+b") as f:
      f.seek(100)
      f.write(b"\x00\x01\x02")
    with self.assertRaisesRegex(
        reading_utils.DatasetError,
        rf"^{path} gave no training windows \(every record was skipped as "
        r"damaged\)$"):
      train(data_path, os.path.join(self.root, "fresh"), TINY, ADAM,
                    options(skip_corrupt_records=True))

  def test_empty_train_split(self):
    data_path = self.dataset_copy("empty")
    path = os.path.join(data_path, "train.tfrecord")
    open(path, "wb").close()
    with self.assertRaisesRegex(reading_utils.DatasetError,
                                f"^{path} holds no trajectories$"):
      train(data_path, self.model_path, TINY, ADAM,
                    options(num_steps=6))

  def test_nonfinite_positions(self):
    positions = trajectory_with().positions.copy()
    positions[7, 3, 1] = np.nan
    data_path = self.dataset_with("nan", trajectory_with(positions))
    before = digests(self.model_path)
    for split, run in (
        ("train", lambda: train(data_path, self.model_path, TINY,
                                        ADAM, options(num_steps=20))),
        ("test", lambda: evaluation.evaluate(data_path, self.model_path,
                                             TINY)),
        ("test", lambda: evaluation.evaluate_rollouts(
            data_path, self.model_path, os.path.join(self.root, "out"),
            TINY))):
      with self.assertRaisesRegex(
          reading_utils.DatasetError,
          f"^{data_path}/{split}.tfrecord: trajectory 0 \\(record 0\\) has "
          r"a non-finite position \(NaN or inf\)$"):
        run()
    self.assertEqual(digests(self.model_path), before)

  # Finding 7: errors that were tracebacks or unclear.

  def test_particle_type_out_of_range(self):
    types = trajectory_with().particle_types.copy()
    types[2] = 12
    data_path = self.dataset_with("types", trajectory_with(
        particle_types=types))
    for split, run in (
        ("train", lambda: train(data_path, self.model_path, TINY,
                                        ADAM, options(num_steps=20))),
        ("test", lambda: evaluation.evaluate(data_path, self.model_path,
                                             TINY)),
        ("test", lambda: evaluation.evaluate_rollouts(
            data_path, self.model_path, os.path.join(self.root, "out"),
            TINY))):
      with self.assertRaisesRegex(
          reading_utils.DatasetError,
          f"^{data_path}/{split}.tfrecord: trajectory 0 \\(record 0\\) has "
          "particle type 12; types must be in 0..8$"):
        run()

  def test_path_that_is_a_file(self):
    a_file = os.path.join(self.root, "a_file")
    open(a_file, "w").close()
    with self.assertRaisesRegex(
        ValueError,
        f"^--model_path '{a_file}' is an existing file, not a directory$"):
      train(self.data_path, a_file, TINY, ADAM, options())
    with self.assertRaisesRegex(
        ValueError,
        f"^--model_path '{a_file}' is an existing file, not a directory$"):
      evaluation.evaluate(self.data_path, a_file, TINY)
    with self.assertRaisesRegex(
        ValueError,
        f"^--output_path '{a_file}' is an existing file, not a directory$"):
      evaluation.evaluate_rollouts(self.data_path, self.model_path, a_file,
                                   TINY)

  def test_unwritable_directories(self):
    path = os.path.join(self.root, "read_only", "model")
    with mock.patch.object(os, "makedirs", side_effect=PermissionError(
        errno.EACCES, "Permission denied", path)):
      with self.assertRaisesRegex(
          ValueError,
          f"^cannot create --output_path '{path}': Permission denied$"):
        dataset_writer.make_directory(path, "--output_path")
    with mock.patch.object(os, "access", return_value=False):
      with self.assertRaisesRegex(
          ValueError, f"^--model_path '{self.model_path}' is not writable$"):
        train(self.data_path, self.model_path, TINY, ADAM, options())

  def test_checkpoint_every_steps_zero(self):
    for kwargs, message in (
        (dict(checkpoint_every_steps=0),
         "--checkpoint_every_steps must be >= 1, got 0"),
        (dict(checkpoint_every_secs=-1.0),
         "--checkpoint_every_secs must be >= 0, got -1.0"),
        (dict(shuffle_buffer_size=0),
         "--shuffle_buffer_size must be >= 1, got 0")):
      with self.assertRaisesRegex(ValueError, f"^{message}$"):
        options(**kwargs).validate()

  def test_full_disk_during_a_checkpoint_save(self):
    before = digests(self.model_path)
    with mock.patch.object(tf.train.CheckpointManager, "save",
                           side_effect=OSError(errno.ENOSPC,
                                               "No space left on device")):
      with self.assertRaisesRegex(
          checkpoints.CheckpointError,
          f"^could not save ckpt-6 in {self.model_path}: No space left on "
          "device; the latest complete checkpoint, ckpt-4, is intact$"):
        train(self.data_path, self.model_path, TINY, ADAM,
                      options(num_steps=6, checkpoint_every_steps=100))
    self.assertEqual(digests(self.model_path), before)
    self.assert_usable(self.model_path, [2, 4])
    # TensorFlow's own write error, and the half-written save it leaves.
    manager = checkpoints.make_manager(
        self.model_path, build.build_simulator(self.metadata, TINY))
    temp = checkpoints.checkpoint_path(self.model_path, 7) + "_temp"
    os.makedirs(temp)
    with mock.patch.object(
        tf.train.CheckpointManager, "save",
        side_effect=tf.errors.ResourceExhaustedError(
            None, None, f"{temp}/part-00000-of-00001.data-00000-of-00001; "
            "No space left on device")):
      with self.assertRaisesRegex(
          checkpoints.CheckpointError,
          f"^could not save ckpt-7 in {self.model_path}: .*; No space left "
          "on device; no earlier checkpoint exists$"):
        checkpoints.save(manager, 7, kept=None)
    self.assertFalse(os.path.exists(temp))
    self.assertEqual(digests(self.model_path), before)

  def test_full_disk_during_rollouts(self):
    output_path = os.path.join(self.root, "rollouts")
    dump = pickle.dump
    calls = []

    def dump_then_fail(*args, **kwargs):
      calls.append(1)
      if len(calls) > 1:
        raise OSError(errno.ENOSPC, "No space left on device")
      dump(*args, **kwargs)

    with mock.patch.object(evaluation.pickle, "dump", dump_then_fail):
      with self.assertRaisesRegex(
          ValueError,
          f"^could not write {output_path}/rollout_test_1.pkl: No space left "
          "on device; the 1 rollouts written before it are complete$"):
        evaluation.evaluate_rollouts(self.data_path, self.model_path,
                                     output_path, TINY, rollout_steps=2)
    self.assertEqual(os.listdir(output_path), ["rollout_test_0.pkl"])

  # Finding 8: stale temporary files, and Ctrl-C during rollouts.

  def test_stale_temporary_files_are_removed(self):
    stale = [os.path.join(self.model_path, "ckpt-6_temp"),
             os.path.join(self.model_path, "checkpoint.tmp3f2a")]
    os.makedirs(stale[0])
    with open(os.path.join(stale[0], "part-00000-of-00001.data-00000-of-"
                           "00001"), "wb") as f:
      f.write(b"\x00" * 64)
    open(stale[1], "w").close()
    before = digests(self.model_path)
    # What `trainer.train` does once it holds the lock (`test_lock...`
    # shows that a refused trainer leaves a live save alone).
    with self.assertLogs("absl", "WARNING") as logs:
      self.assertEqual(checkpoints.recover(self.model_path),
                       checkpoints.checkpoint_path(self.model_path, 4))
    self.assertRegex("\n".join(logs.output),
                     "Removed what interrupted saves left behind: "
                     r"ckpt-6_temp, checkpoint\.tmp3f2a")
    for path in stale:
      self.assertFalse(os.path.exists(path))
    self.assertEqual(digests(self.model_path), before)
    self.assert_usable(self.model_path, [2, 4])

  def test_interrupted_rollouts_say_what_was_written(self):
    output_path = os.path.join(self.root, "rollouts")
    dump = pickle.dump
    calls = []

    def dump_then_interrupt(*args, **kwargs):
      calls.append(1)
      if len(calls) > 1:
        raise KeyboardInterrupt
      dump(*args, **kwargs)

    with mock.patch.object(evaluation.pickle, "dump", dump_then_interrupt):
      with self.assertRaises(evaluation.RolloutsInterrupted) as raised:
        evaluation.evaluate_rollouts(self.data_path, self.model_path,
                                     output_path, TINY, rollout_steps=2)
    self.assertEqual(
        str(raised.exception),
        f"interrupted: wrote 1 of 2 rollouts (rollout_test_0.pkl) to "
        f"{output_path}; none is partial")
    self.assertEqual(raised.exception.files,
                     [os.path.join(output_path, "rollout_test_0.pkl")])
    self.assertEqual(os.listdir(output_path), ["rollout_test_0.pkl"])


if __name__ == "__main__":
  tf.test.main()
