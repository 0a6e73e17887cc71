"""Same seed, same run; a resumed run goes on where it stopped (issue 25).

- The random streams are functions of the seed and the step alone.
- The training input's position is saved in checkpoints and restored: the
  batches after a restore are those the uninterrupted iterator gives.
- Validation draws the same noise each time.
- End to end (subprocesses, one thread, `--deterministic`): a run killed
  with SIGKILL and resumed ends with the weights of an uninterrupted run
  with the same seed, bit for bit; another seed does not.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from learning_to_simulate import reading_utils
from learning_to_simulate.data import synthetic
from learning_to_simulate.model import build
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import pushforward
from learning_to_simulate.training import random_streams
from learning_to_simulate.training import validation

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TIMEOUT = 240


def _batches(iterator, count):
  """The next `count` batches' arrays, flattened to a list per batch."""
  return [[value.numpy() for value in tf.nest.flatten(next(iterator))]
          for _ in range(count)]


def _same(batches, other):
  """Whether two lists of batches (from `_batches`) are equal."""
  return len(batches) == len(other) and all(
      len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
      for a, b in zip(batches, other))


class RandomStreamsTest(tf.test.TestCase):

  def test_noise_seed_is_a_function_of_seed_step_and_replica(self):
    seeds = {(seed, step, replica): tuple(random_streams.noise_seed(
        seed, tf.constant(step), replica).numpy())
             for seed in (3, 4) for step in (0, 1, 7) for replica in (0, 1)}
    self.assertLen(set(seeds.values()), len(seeds))  # All different.
    self.assertEqual(seeds[(3, 7, 1)], tuple(random_streams.noise_seed(
        3, tf.constant(7, tf.int64), 1).numpy()))

  def test_unroll_lengths_do_not_depend_on_the_steps_before(self):
    recipe = config_lib.TrainingConfig(pushforward_max_unroll=3,
                                       pushforward_phase_steps=2)

    def unroll(seed, step):
      return pushforward.step_unroll(step, recipe, seed)

    forward = [unroll(3, step) for step in range(40)]
    backward = [unroll(3, step) for step in reversed(range(40))][::-1]
    self.assertEqual(forward, backward)
    self.assertEqual(set(forward[8:]), {0, 1, 2, 3})
    self.assertNotEqual(forward, [unroll(4, step) for step in range(40)])

  def test_shuffle_seeds_differ_by_step_and_worker(self):
    seeds = {random_streams.shuffle_seed(3, step, worker)
             for step in (0, 10) for worker in (0, 1)}
    self.assertLen(seeds, 4)
    self.assertEqual(random_streams.run_seed(5), 5)
    self.assertNotEqual(random_streams.run_seed(None),
                        random_streams.run_seed(None))


class InputPositionTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path
    self.data_path = os.path.join(self.root, "data")
    self.metadata = synthetic.write_tiny_dataset(
        self.data_path, num_particles=12, num_kinematic=2, num_frames=14,
        num_trajectories=3, seed=5)

  def _description(self, kind, **changes):
    settings = dict(batch_size=2, kind=kind)
    settings.update(changes)
    return checkpoints.input_description(
        reading_utils.split_file(self.data_path, "train"), **settings)

  def _datasets(self, seed):
    yield reading_utils.get_one_step_dataset(
        self.data_path, "train", 2, self.metadata, is_training=True,
        shuffle_buffer_size=16, seed=seed)
    yield reading_utils.get_window_dataset(
        self.data_path, "train", 2, self.metadata, window_length=9,
        shuffle_buffer_size=16, seed=seed)

  def test_a_restored_input_gives_the_batches_that_would_have_come(self):
    for kind, (dataset, new_dataset) in enumerate(zip(self._datasets(3),
                                                      self._datasets(3))):
      model_path = os.path.join(self.root, f"model{kind}")
      iterator = iter(dataset)
      _batches(iterator, 7)
      path = checkpoints.make_manager(
          model_path, None, input_iterator=iterator,
          description=self._description(kind)).save(7)
      self.assertIsNone(checkpoints.damage(path))
      expected = _batches(iterator, 5)
      restored = iter(new_dataset)
      self.assertIsNone(checkpoints.restore_input(path, restored,
                                                  self._description(kind)))
      self.assertTrue(_same(_batches(restored, 5), expected))
      # What a fresh iterator gives instead: the start of the stream.
      self.assertFalse(_same(_batches(iter(new_dataset), 5), expected))

  def test_a_position_is_restored_only_into_its_input(self):
    dataset = next(self._datasets(3))
    path = checkpoints.make_manager(os.path.join(self.root, "old"),
                                    tf.Module()).save(1)
    self.assertEqual(checkpoints.restore_input(path, iter(dataset),
                                               self._description(0)),
                     "it was saved without it")
    iterator = iter(dataset)
    _batches(iterator, 2)
    path = checkpoints.make_manager(
        os.path.join(self.root, "new"), None, input_iterator=iterator,
        description=self._description(0)).save(2)
    self.assertEqual(
        checkpoints.restore_input(path, iter(dataset),
                                  self._description(0, batch_size=4)),
        "it was saved for another input: batch_size 2 then, 4 now")
    # Other data at the same place: the file's size or time differ.
    train_file = reading_utils.split_file(self.data_path, "train")
    os.utime(train_file, ns=(1, 1))
    self.assertRegex(
        checkpoints.restore_input(path, iter(dataset), self._description(0)),
        r"^it was saved for another input: mtime_ns \d+ then, 1 now$")

  def test_a_damaged_position_is_damage(self):
    iterator = iter(next(self._datasets(3)))
    _batches(iterator, 2)
    path = checkpoints.make_manager(
        os.path.join(self.root, "model"), None, input_iterator=iterator,
        description=self._description(0)).save(2)
    data = tf.io.gfile.glob(path + ".data-*")[0]
    with open(data, "r+b") as f:  # The iterator's state comes first.
      f.seek(100)
      byte = f.read(1)
      f.seek(100)
      f.write(bytes([byte[0] ^ 0xFF]))
    self.assertRegex(checkpoints.damage(path),
                     r"^unreadable: .*checksum.*does not match")

  def test_a_new_shuffle_is_not_the_start_of_the_stream(self):
    start = _batches(iter(next(self._datasets(
        random_streams.shuffle_seed(3, 0)))), 3)
    later = _batches(iter(next(self._datasets(
        random_streams.shuffle_seed(3, 10)))), 3)
    self.assertFalse(_same(start, later))


class ValidationNoiseTest(tf.test.TestCase):

  def test_every_validation_draws_the_same_noise(self):
    root = self.create_tempdir().full_path
    data_path = os.path.join(root, "data")
    metadata = synthetic.write_tiny_dataset(
        data_path, num_particles=12, num_kinematic=2, num_frames=10, seed=2)
    model = config_lib.ModelConfig(latent_size=8, hidden_size=8,
                                   hidden_layers=1, message_passing_steps=1,
                                   noise_std=0.05)
    simulator = build.build_simulator(metadata, model)
    options = validation.ValidationOptions(every_steps=1, num_batches=2,
                                           num_rollouts=1, rollout_steps=2)
    losses = {}
    for seed in (7, None):
      validator = validation.Validator(
          data_path, os.path.join(root, f"model{seed}"), metadata, simulator,
          model.noise_std, options, seed=seed)
      losses[seed] = [validator(step)["loss_mse"] for step in (1, 2)]
    self.assertEqual(losses[7][0], losses[7][1])
    self.assertNotEqual(losses[None][0], losses[None][1])  # Stateful draws.


def _train(*args):
  """A `train` process on one thread; returns it (not waited for)."""
  env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2",
             TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
  return subprocess.Popen(
      [sys.executable, "-m", "learning_to_simulate.train", *args], cwd=_ROOT,
      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process):
  _, err = process.communicate(timeout=_TIMEOUT)
  if process.returncode != 0:
    raise AssertionError(f"train failed:\n{err[-3000:]}")
  return err


def _weights(model_path):
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(model_path))
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_dtype_map()
          if name.startswith("simulator/")}


class SeededRunTest(tf.test.TestCase):

  def test_killed_and_resumed_run_ends_as_an_uninterrupted_one(self):
    root = self.create_tempdir().full_path
    data_path = os.path.join(root, "data")
    synthetic.write_tiny_dataset(
        data_path, num_particles=16, num_kinematic=3, num_frames=14,
        num_trajectories=3, seed=4)
    num_steps = 30
    common = [f"--data_path={data_path}", "--latent_size=8",
              "--hidden_size=8", "--message_passing_steps=2",
              "--batch_size=2", "--shuffle_buffer_size=8",
              "--eval_every_steps=0", "--deterministic",
              "--pushforward_max_unroll=2", "--pushforward_phase_steps=4",
              f"--num_steps={num_steps}"]

    def model(name, seed=3):
      return [f"--model_path={os.path.join(root, name)}", f"--seed={seed}"]

    whole = _train(*common, *model("whole"))
    other_seed = _train(*common, *model("other_seed", seed=4))
    killed = _train(*common, *model("killed"), "--checkpoint_every_steps=2")
    state = os.path.join(root, "killed", checkpoints.STATE_FILENAME)
    deadline = time.time() + _TIMEOUT
    while not os.path.exists(state) and killed.poll() is None:
      self.assertLess(time.time(), deadline, "no checkpoint was saved")
      time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    numbers = checkpoints.numbers_on_disk(os.path.join(root, "killed"))
    self.assertLess(max(numbers), num_steps, "killed after the last step")
    err = _finish(_train(*common, *model("killed")))
    self.assertIn(f"at step {max(numbers)}.", err)
    self.assertIn("The input goes on where", err)

    _finish(whole)
    _finish(other_seed)
    want = _weights(os.path.join(root, "whole"))
    resumed = _weights(os.path.join(root, "killed"))
    self.assertEqual(sorted(want), sorted(resumed))
    for name, value in want.items():
      self.assertAllEqual(value, resumed[name], msg=name)
    different = _weights(os.path.join(root, "other_seed"))
    self.assertFalse(all(np.array_equal(value, different[name])
                         for name, value in want.items()))

  def test_deterministic_needs_a_seed(self):
    process = _train("--deterministic", "--num_steps=1")
    _, err = process.communicate(timeout=_TIMEOUT)
    self.assertEqual(process.returncode, 1)
    self.assertEqual(err.strip().splitlines()[-1],
                     "train: error: --deterministic needs --seed (every "
                     "random draw of a deterministic run follows from it)")


if __name__ == "__main__":
  tf.test.main()
