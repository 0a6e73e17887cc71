"""End to end: the original's commands on a tiny dataset this test writes."""

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer
from learning_to_simulate.data import synthetic
from learning_to_simulate import reading_utils
from learning_to_simulate.training import checkpoints

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SMALL = ["--latent_size=8", "--hidden_size=8", "--message_passing_steps=2"]


def last_line(result):
  return result.stderr.strip().splitlines()[-1]


def run_cli(*args, module="learning_to_simulate.train", check=True):
  env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run([sys.executable, "-m", module, *args], cwd=_ROOT,
                          env=env, capture_output=True, text=True,
                          timeout=300)
  if check and result.returncode != 0:
    raise AssertionError(f"{args} failed:\n{result.stderr[-3000:]}")
  return result


class TrainCliTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tf.compat.v1.test.get_temp_dir()
    cls.data_path = os.path.join(cls.root, "dataset")
    cls.metadata = synthetic.write_tiny_dataset(
        cls.data_path, dim=2, num_particles=20, num_kinematic=4,
        num_frames=12, context_size=2, seed=1)
    cls.model_path = os.path.join(cls.root, "model")
    cls.first = run_cli(f"--data_path={cls.data_path}",
                        f"--model_path={cls.model_path}", "--num_steps=6",
                        "--log_every_steps=3", "--seed=3", *_SMALL)

  def test_train_logs_and_saves(self):
    self.assertRegex(self.first.stderr, r"step 6/6  loss [0-9.e+-]+  lr "
                     r"[0-9.e+-]+  [0-9.]+ steps/s  ETA")
    self.assertRegex(self.first.stderr, "no GPU found, running on CPU|GPU: ")
    files = os.listdir(self.model_path)
    self.assertIn("ckpt-6.index", files)
    self.assertIn("config.json", files)
    self.assertTrue(os.listdir(os.path.join(self.model_path, "train")))

  def test_validation_and_best_checkpoint(self):
    # Validation runs at the last step by default, and keeps the best model.
    self.assertRegex(self.first.stderr, r"validation at step 6 \(valid, 2 "
                     r"rollouts, [0-9.]+s\): loss_mse [0-9.e+-]+ .* mse_full "
                     r"[0-9.e+-]+ .*\(best mse_full: saved\)")
    self.assertIn("ckpt-6.index",
                  os.listdir(os.path.join(self.model_path, "best")))
    evaluated = run_cli(f"--data_path={self.data_path}",
                        f"--model_path={self.model_path}", "--mode=eval",
                        "--checkpoint=best", "--num_eval_steps=1")
    self.assertRegex(evaluated.stderr, r"Restored .*best/ckpt-6")
    bad = run_cli(f"--data_path={self.data_path}",
                  f"--model_path={self.model_path}", "--mode=eval",
                  "--checkpoint=/nowhere/ckpt-3", check=False)
    self.assertNotEqual(bad.returncode, 0)
    self.assertRegex(bad.stderr.strip().splitlines()[-1],
                     r"^train: error: --checkpoint: no checkpoint at "
                     r"/nowhere/ckpt-3")

  def test_resume_eval_and_rollout(self):
    # A copy of the trained model (a model directory may move) resumes.
    model_path = os.path.join(self.root, "resumed")
    shutil.copytree(self.model_path, model_path)
    # Resuming needs no model flags: they come from config.json. Runtime
    # options such as --recompute_grad may change between runs.
    resumed = run_cli(f"--data_path={self.data_path}",
                      f"--model_path={model_path}", "--num_steps=7",
                      "--recompute_grad", "--eval_every_steps=0")
    self.assertRegex(resumed.stderr,
                     rf"Resumed from {model_path}/ckpt-6 at step 6")
    self.assertIn("ckpt-7.index", os.listdir(model_path))
    self.assertNotIn("ckpt-7.index", os.listdir(self.model_path))

    evaluated = run_cli(f"--data_path={self.data_path}",
                        f"--model_path={model_path}", "--mode=eval",
                        "--eval_split=valid", "--num_eval_steps=2")
    self.assertRegex(evaluated.stdout, r"loss_mse: [0-9.e+-]+\n"
                     r"one_step_position_mse: [0-9.e+-]+")

    output_path = os.path.join(self.root, "rollouts")
    rolled = run_cli(f"--data_path={self.data_path}",
                     f"--model_path={model_path}", "--mode=eval_rollout",
                     f"--output_path={output_path}", "--num_rollouts=1")
    self.assertRegex(rolled.stdout, r"rollout_error_mse\[0\]: [0-9.e+-]+\n"
                     r"rollout_error_mse: [0-9.e+-]+")
    self.assertCountEqual(os.listdir(output_path),
                          ["rollout_test_0.pkl", "metrics.json"])
    with open(os.path.join(output_path, "rollout_test_0.pkl"), "rb") as f:
      rollout = pickle.load(f)
    with open(os.path.join(output_path, "metrics.json")) as f:
      metrics = json.load(f)
    self.assertEqual(set(metrics["model"]), {"mean", "per_trajectory"})
    self.assertEqual(set(metrics["frozen"]["mean"]),
                     set(metrics["model"]["mean"]))
    self.assertIn("constant_velocity", metrics)
    # The physics curves of each trajectory, from the pickle with numpy.
    (curves,) = metrics["curves"]
    moving = rollout["particle_types"] != common.ParticleType.KINEMATIC
    truth = rollout["ground_truth_rollout"][:, moving].astype(np.float64)
    self.assertAllClose(curves["centre_of_mass"]["water"]["ground_truth"],
                        truth.mean(axis=1), rtol=1e-5)
    velocity = np.diff(np.concatenate(
        [rollout["initial_positions"][-1:, moving], truth]), axis=0)
    self.assertAllClose(curves["kinetic_energy"]["ground_truth"],
                        0.5 * np.mean(np.sum(velocity**2, -1), 1), rtol=1e-5)
    self.assertAlmostEqual(
        metrics["model"]["per_trajectory"][0]["rollout_error_mse"],
        float(np.mean((rollout["predicted_rollout"] -
                       rollout["ground_truth_rollout"])**2)))
    # The table of means, the model and the baselines side by side.
    self.assertRegex(rolled.stdout, r"mse_full +[0-9.e+-]+ +[0-9.e+-]+ +"
                     r"[0-9.e+-]+")
    self.assertEqual(set(rollout), {
        "initial_positions", "predicted_rollout", "ground_truth_rollout",
        "particle_types", "metadata", "global_context"})
    num_steps = self.metadata["sequence_length"] - common.INPUT_SEQUENCE_LENGTH
    self.assertEqual(rollout["initial_positions"].shape, (6, 24, 2))
    self.assertEqual(rollout["predicted_rollout"].shape, (num_steps, 24, 2))
    self.assertEqual(rollout["ground_truth_rollout"].shape,
                     (num_steps, 24, 2))
    self.assertEqual(rollout["global_context"].shape, (12, 2))
    self.assertEqual(rollout["metadata"], self.metadata)

    context, features = next(iter(reading_utils.load_trajectories(
        self.data_path, "test")))
    positions = features["position"].numpy()
    self.assertAllEqual(rollout["initial_positions"], positions[:6])
    self.assertAllEqual(rollout["ground_truth_rollout"],
                        positions[6:6 + num_steps])
    self.assertAllEqual(rollout["particle_types"], context["particle_type"])
    kinematic = rollout["particle_types"] == common.ParticleType.KINEMATIC
    self.assertEqual(kinematic.sum(), 4)
    self.assertAllEqual(rollout["predicted_rollout"][:, kinematic],
                        rollout["ground_truth_rollout"][:, kinematic])
    self.assertTrue(np.all(np.isfinite(rollout["predicted_rollout"])))

    capped = run_cli(f"--data_path={self.data_path}",
                     f"--model_path={model_path}", "--mode=eval_rollout",
                     f"--output_path={output_path}", "--num_rollouts=2",
                     "--rollout_steps=2", "--eval_split=valid")
    del capped
    with open(os.path.join(output_path, "rollout_valid_1.pkl"), "rb") as f:
      self.assertEqual(pickle.load(f)["predicted_rollout"].shape, (2, 24, 2))

    # Past the data: the prediction runs on, the ground truth stops, and
    # kinematic particles stay where the data left them.
    beyond = num_steps + 3
    run_cli(f"--data_path={self.data_path}", f"--model_path={model_path}",
            "--mode=eval_rollout", f"--output_path={output_path}",
            "--num_rollouts=1", f"--rollout_steps={beyond}")
    with open(os.path.join(output_path, "rollout_test_0.pkl"), "rb") as f:
      extrapolated = pickle.load(f)
    self.assertEqual(extrapolated["predicted_rollout"].shape, (beyond, 24, 2))
    self.assertEqual(extrapolated["ground_truth_rollout"].shape,
                     (num_steps, 24, 2))
    self.assertAllEqual(extrapolated["predicted_rollout"][-3:, kinematic],
                        np.repeat(positions[-2:-1, kinematic], 3, axis=0))

  def test_hyperparameter_mismatch_is_an_error(self):
    result = run_cli(f"--data_path={self.data_path}",
                     f"--model_path={self.model_path}", "--mode=eval",
                     "--latent_size=16", check=False)
    self.assertNotEqual(result.returncode, 0)
    self.assertRegex(result.stderr.strip().splitlines()[-1],
                     r"--latent_size=16 differs from the value 8 the model "
                     r"in .* was trained with")

  def test_eval_without_checkpoint(self):
    empty = os.path.join(self.root, "empty_model")
    os.makedirs(empty, exist_ok=True)
    result = run_cli(f"--data_path={self.data_path}", f"--model_path={empty}",
                     "--mode=eval", check=False)
    self.assertNotEqual(result.returncode, 0)
    self.assertRegex(result.stderr.strip().splitlines()[-1],
                     r"--model_path .*empty_model.* has no checkpoint")

  def test_eval_rollout_needs_output_path(self):
    result = run_cli(f"--data_path={self.data_path}",
                     f"--model_path={self.model_path}",
                     "--mode=eval_rollout", check=False)
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("--output_path is required", result.stderr)

  def test_unknown_flag_value(self):
    result = run_cli("--mode=fly", check=False)
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("value should be one of <train|eval|eval_rollout|export>",
                  result.stderr)
    result = run_cli("--optimizer=lbfgs", check=False)
    self.assertIn("value should be one of <adam|rmsprop|sgd|adadelta>",
                  result.stderr)

  def test_pretrained_flag_names_a_shipped_model(self):
    for value, expected in ((True, "water_drop"), ("true", "water_drop"),
                            ("multi_material", "multi_material"),
                            ("multi_material_sample", "multi_material"),
                            ("water_walls", "water_walls"),
                            ("false", None), (False, None), (None, None)):
      self.assertEqual(checkpoints.parse_pretrained(value), expected,
                       msg=value)
    with self.assertRaisesRegex(checkpoints.CheckpointError,
                                "--pretrained must be one of water_drop, "
                                "multi_material, water_walls"):
      checkpoints.parse_pretrained("lava")
    result = run_cli("--pretrained=lava", "--mode=eval", check=False)
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("--pretrained must be one of water_drop, multi_material, "
                  "water_walls (bare: water_drop), got 'lava'", result.stderr)
    # Bare, it is the water model; by name, another, on its own bundled data.
    for flag, name in (("--pretrained", "water_drop"),
                       ("--pretrained=multi_material", "multi_material")):
      result = run_cli(flag, "--mode=eval", "--num_eval_steps=1")
      self.assertIn(f"--pretrained={name}: using the model shipped with the "
                    f"package, {checkpoints.pretrained_model_path(name)}",
                    result.stderr)
      self.assertIn(f"using the bundled dataset "
                    f"{reading_utils.bundled_dataset_path(name)}",
                    result.stderr)

  def test_missing_split_and_metadata(self):
    result = run_cli(f"--data_path={self.root}", f"--model_path={self.root}/m",
                     check=False)
    self.assertNotEqual(result.returncode, 0)
    self.assertRegex(result.stderr.strip().splitlines()[-1],
                     r"metadata\.json not found")
    no_test = os.path.join(self.root, "no_test")
    dataset_writer.write_dataset(
        no_test, {"train": []}, self.metadata)
    result = run_cli(f"--data_path={no_test}",
                     f"--model_path={self.model_path}", "--mode=eval",
                     check=False)
    self.assertRegex(result.stderr.strip().splitlines()[-1],
                     r"test\.tfrecord not found")

  def test_malformed_record(self):
    bad = os.path.join(self.root, "bad")
    metadata = dict(self.metadata)
    metadata.pop("context_mean")
    metadata.pop("context_std")
    dataset_writer.write_dataset(bad, {"train": [dataset_writer.Trajectory(
        np.zeros([12, 5, 3], np.float32), np.zeros([5], np.int64))]},
                                 metadata)
    result = run_cli(f"--data_path={bad}", f"--model_path={bad}/m",
                     "--num_steps=2", *_SMALL, check=False)
    self.assertNotEqual(result.returncode, 0)
    self.assertRegex(result.stderr.strip().splitlines()[-1],
                     r"train: error: .*train\.tfrecord: each record must "
                     r"hold 12 position frames")

  def test_sigterm_saves_a_checkpoint(self):
    model_path = os.path.join(self.root, "interrupted")
    env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(
        [sys.executable, "-m", "learning_to_simulate.train",
         f"--data_path={self.data_path}", f"--model_path={model_path}",
         "--num_steps=1000000", "--log_every_steps=1", *_SMALL],
        cwd=_ROOT, env=env, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
      if "step 3/" in line:
        break
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    self.assertEqual(process.returncode, 0, stderr[-2000:])
    self.assertRegex(stderr, r"Stopped by SIGTERM at step \d+; saved")
    latest = tf.train.latest_checkpoint(model_path)
    self.assertIsNotNone(latest)
    self.assertGreaterEqual(int(latest.rsplit("-", 1)[1]), 3)
    # The saved checkpoint restores into a fresh run.
    resumed = run_cli(f"--data_path={self.data_path}",
                      f"--model_path={model_path}",
                      f"--num_steps={int(latest.rsplit('-', 1)[1]) + 1}",
                      "--eval_every_steps=0")
    self.assertIn("Resumed from", resumed.stderr)

  # Issue 16: what users break, each answered in one line.

  def test_diverging_run_stops_with_one_line(self):
    model_path = os.path.join(self.root, "diverging")
    result = run_cli(f"--data_path={self.data_path}",
                     f"--model_path={model_path}", "--lr=1e30",
                     "--num_steps=50", "--log_every_steps=2", "--seed=3",
                     *_SMALL, check=False)
    self.assertEqual(result.returncode, 1, result.stderr[-2000:])
    self.assertRegex(last_line(result),
                     r"^train: error: (loss is (NaN|-?inf) at step \d+|a "
                     r"variable is not finite after step \d+); no checkpoint "
                     r"was saved; lower --lr or check the data$")
    self.assertEqual(checkpoints.numbers_on_disk(model_path), [])
    # As it says: the same command with a lower --lr trains.
    run_cli(f"--data_path={self.data_path}", f"--model_path={model_path}",
            "--lr=1e-4", "--num_steps=1", "--seed=3", "--eval_every_steps=0",
            *_SMALL)
    self.assertEqual(checkpoints.numbers_on_disk(model_path), [1])
    self.assertIsNone(checkpoints.damage(
        checkpoints.checkpoint_path(model_path, 1)))

  def test_second_trainer_is_refused(self):
    model_path = os.path.join(self.root, "locked")
    os.makedirs(model_path)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from learning_to_simulate.training import model_lock\n"
         "with model_lock.hold(sys.argv[1]):\n"
         "  print('locked', flush=True)\n"
         "  time.sleep(300)\n", model_path],
        cwd=_ROOT, env=dict(os.environ, PYTHONPATH=_ROOT),
        stdout=subprocess.PIPE, text=True)
    try:
      self.assertEqual(holder.stdout.readline().strip(), "locked")
      result = run_cli(f"--data_path={self.data_path}",
                       f"--model_path={model_path}", "--num_steps=2",
                       *_SMALL, check=False)
    finally:
      holder.kill()
      holder.wait()
    self.assertEqual(result.returncode, 1)
    self.assertRegex(last_line(result),
                     rf"^train: error: --model_path '{model_path}' is in use "
                     rf"by another trainer \(pid {holder.pid} on host .+, "
                     r"started .+\); wait for it to end or use another "
                     r"--model_path$")
    self.assertFalse(checkpoints.numbers_on_disk(model_path))

  def test_bad_flags_and_damaged_files_are_one_line(self):
    result = run_cli(f"--data_path={self.data_path}",
                     f"--model_path={self.root}/zero",
                     "--checkpoint_every_steps=0", check=False)
    self.assertEqual(result.returncode, 1)
    self.assertEqual(last_line(result), "train: error: "
                     "--checkpoint_every_steps must be >= 1, got 0")
    truncated = os.path.join(self.root, "truncated")
    self._copy_dataset(truncated)
    path = os.path.join(truncated, "test.tfrecord")
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) - 1)
    result = run_cli(f"--data_path={truncated}",
                     f"--model_path={self.model_path}", "--mode=eval",
                     check=False)
    self.assertEqual(result.returncode, 1)
    self.assertRegex(last_line(result),
                     rf"^train: error: {path}: record 1 at byte offset \d+ "
                     r"runs past the end of the file \(\d+ bytes\): the file "
                     r"is truncated; .* --skip_corrupt_records")

  def _copy_dataset(self, path):
    os.makedirs(path)
    for name in os.listdir(self.data_path):
      with open(os.path.join(self.data_path, name), "rb") as src:
        with open(os.path.join(path, name), "wb") as dst:
          dst.write(src.read())

  def test_bad_particle_type_in_eval_rollout(self):
    data_path = os.path.join(self.root, "bad_type")
    self._copy_dataset(data_path)
    good = next(iter(reading_utils.load_trajectories(self.data_path,
                                                     "test")))
    types = good[0]["particle_type"].numpy().copy()
    types[5] = 12
    dataset_writer.write_tfrecord(
        os.path.join(data_path, "test.tfrecord"),
        [dataset_writer.Trajectory(good[1]["position"].numpy(), types,
                                   good[1]["step_context"].numpy())])
    result = run_cli(f"--data_path={data_path}",
                     f"--model_path={self.model_path}",
                     "--mode=eval_rollout",
                     f"--output_path={self.root}/bad_type_rollouts",
                     check=False)
    self.assertEqual(result.returncode, 1)
    self.assertEqual(last_line(result),
                     f"train: error: {data_path}/test.tfrecord: trajectory 0 "
                     "(record 0) has particle type 12; types must be in 0..8")

  def test_ctrl_c_during_eval_rollout(self):
    data_path = os.path.join(self.root, "long")
    synthetic.write_tiny_dataset(
        data_path, dim=2, num_particles=20, num_kinematic=4, num_frames=100,
        num_trajectories=20, context_size=2, seed=2)
    output_path = os.path.join(self.root, "interrupted_rollouts")
    env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen(
        [sys.executable, "-m", "learning_to_simulate.train",
         f"--data_path={data_path}", f"--model_path={self.model_path}",
         "--mode=eval_rollout", f"--output_path={output_path}",
         # Long rollouts (past the data), so the interrupt comes mid-run
         # even on a loaded machine.
         "--rollout_steps=1000"],
        cwd=_ROOT, env=env, stderr=subprocess.PIPE, text=True,
        # Ctrl-C's default action, as at a terminal: a test runner started in
        # the background (`cmd &`, nohup) has SIGINT ignored, and an ignored
        # signal stays ignored across exec.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stderr:
      if "Rollout 0:" in line:
        break
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    self.assertEqual(process.returncode, 130, stderr[-2000:])
    line = stderr.strip().splitlines()[-1]
    match = re.fullmatch(
        r"train: interrupted: wrote (\d+) of 20 rollouts \(rollout_test_0"
        rf"\.pkl( \.\. rollout_test_\d+\.pkl)?\) to {output_path}; none "
        r"is partial", line)
    self.assertIsNotNone(match, line)
    written = int(match.group(1))
    self.assertBetween(written, 1, 19)
    self.assertCountEqual(os.listdir(output_path),
                          [f"rollout_test_{i}.pkl" for i in range(written)])
    for name in os.listdir(output_path):
      with open(os.path.join(output_path, name), "rb") as f:
        self.assertLen(pickle.load(f)["predicted_rollout"], 1000)


class ModelDemoTest(tf.test.TestCase):

  def test_model_demo_runs(self):
    result = run_cli(module="learning_to_simulate.model_demo")
    self.assertIn("Per-particle output tensor: (100, 3)", result.stdout)
    self.assertRegex(result.stdout, r"Loss before one Adam step: [0-9.]+")


if __name__ == "__main__":
  tf.test.main()
