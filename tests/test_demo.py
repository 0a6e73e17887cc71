"""The main job's baselines and the demo end to end on a tiny dataset."""

import dataclasses
import json
import os
import pickle

import numpy as np
import tensorflow as tf

from learning_to_simulate import reading_utils
from learning_to_simulate.apps import demo
from learning_to_simulate.data import common
from learning_to_simulate.data import synthetic
from learning_to_simulate.training import baselines
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib


class BaselinesTest(tf.test.TestCase):

  def test_constant_velocity_rollout(self):
    initial = np.zeros([6, 2, 2], np.float32)
    initial[-2] = [[0.0, 0.0], [1.0, 1.0]]
    initial[-1] = [[0.1, 0.0], [1.0, 1.0]]
    truth = np.full([3, 2, 2], 7.0, np.float32)
    predicted = baselines.constant_velocity_rollout({
        "initial_positions": initial, "ground_truth_rollout": truth,
        "particle_types": np.array([common.ParticleType.WATER,
                                    common.ParticleType.KINEMATIC])})
    # Particle 0 keeps moving by (0.1, 0); the kinematic one is on truth.
    self.assertAllClose(predicted[:, 0], [[0.2, 0.0], [0.3, 0.0], [0.4, 0.0]])
    self.assertAllClose(predicted[:, 1], truth[:, 1])
    self.assertAllClose(baselines.rollout_mse(predicted, truth, 1),
                        np.mean((predicted[:1] - truth[:1])**2))

  def test_zero_acceleration_mse_is_exact_for_ballistic_motion(self):
    path = self.create_tempdir().full_path
    metadata = synthetic.write_tiny_dataset(path, num_kinematic=0)
    # Constant gravity g = 1e-4 along y: the zero-acceleration prediction
    # misses by g in one of two dimensions (particles held at the walls
    # miss by less, hence the tolerance).
    mse = baselines.zero_acceleration_position_mse(path, "test", metadata)
    self.assertAllClose(mse, 0.5 * (1e-4)**2, rtol=0.3)
    self.assertEqual(baselines.zero_acceleration_position_mse(
        path, "test", metadata, moving_only=True), mse)

  def test_zero_acceleration_mse_of_the_moving_particles(self):
    path = self.create_tempdir().full_path
    # 24 moving particles and 4 static kinematic ones, which the
    # prediction gets exactly: the same error over 24 instead of 28.
    metadata = synthetic.write_tiny_dataset(path, num_kinematic=4)
    every = baselines.zero_acceleration_position_mse(path, "test", metadata)
    moving = baselines.zero_acceleration_position_mse(path, "test", metadata,
                                                      moving_only=True)
    self.assertAllClose(moving, every * 28 / 24, rtol=1e-12)


class DemoTest(tf.test.TestCase):

  def test_demo_runs_end_to_end(self):
    root = self.create_tempdir().full_path
    data_path = os.path.join(root, "data")
    synthetic.write_tiny_dataset(data_path, num_frames=14)
    tf.random.set_seed(0)
    with self.assertLogs("absl", "INFO") as logs:
      summary = demo.run_demo(data_path, os.path.join(root, "out"),
                              num_steps=5, paper_model=False, num_rollouts=1,
                              num_eval_steps=2, seed=0, render=True)
    # The pretrained model was trained on the bundled sample: not here.
    self.assertNotIn("pretrained", summary)
    self.assertRegex("\n".join(logs.output), "skipping part 1")
    trained = summary["trained"]
    self.assertEqual(trained["train_steps"], 5)
    self.assertTrue(os.path.exists(trained["gif"]))
    # Beside the GIF, its centre-of-mass and kinetic-energy plot.
    self.assertEqual(os.path.dirname(trained["physics_plot"]),
                     os.path.dirname(trained["gif"]))
    with open(trained["physics_plot"], "rb") as f:
      self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
    self.assertLen(trained["rollouts"]["files"], 1)
    self.assertEqual(trained["recipe"]["pushforward_max_unroll"],
                     demo.DEMO_PUSHFORWARD_MAX_UNROLL)
    self.assertEqual(set(summary["baselines"]),
                     {"constant_velocity", "frozen", "zero_acceleration"})
    with open(os.path.join(root, "out", "summary.json")) as f:
      self.assertEqual(json.load(f)["trained"]["train_steps"], 5)
    text = demo.format_summary(summary)
    self.assertRegex(text, r"trained here \(demo, 5 steps\) +[0-9.e+-]+")
    self.assertRegex(text, r"\nfrozen +[0-9.e+-]+")
    self.assertRegex(text, r"trained here: full-rollout MSE [0-9.]+x the "
                     r"better baseline \((constant velocity|frozen)\)")
    # Per trajectory, the physics checked with numpy on the pickle.
    (row,) = trained["per_trajectory"]
    with open(os.path.join(root, "out", "rollouts", row["file"]), "rb") as f:
      rollout = pickle.load(f)
    moving = rollout["particle_types"] != common.ParticleType.KINEMATIC
    predicted = rollout["predicted_rollout"][:, moving]
    truth = rollout["ground_truth_rollout"][:, moving]
    last_input = rollout["initial_positions"][-1:, moving]
    energy = lambda x: np.sum(np.diff(np.concatenate([last_input, x]),
                                      axis=0)**2)
    self.assertAllClose(row["kinetic_energy_ratio"],
                        energy(predicted) / energy(truth), rtol=1e-4)
    bounds = np.asarray(rollout["metadata"]["bounds"])
    self.assertAllClose(
        row["centre_of_mass_error"],
        np.max(np.abs(predicted[-1].mean(0) - truth[-1].mean(0))) /
        np.max(bounds[:, 1] - bounds[:, 0]), rtol=1e-4)
    self.assertAllClose(row["mse_full"], np.mean((predicted - truth)**2),
                        rtol=1e-4)
    # Density: pairs closer than the connectivity radius, at every step of
    # this short rollout (at most 50 are counted).
    self.assertLessEqual(len(truth), 50)
    radius = rollout["metadata"]["default_connectivity_radius"]
    pairs = lambda x: np.sum(np.linalg.norm(
        x[:, :, None] - x[:, None], axis=-1) < radius) - x.size // x.shape[-1]
    self.assertGreater(pairs(truth), 0)
    self.assertAllClose(row["density_ratio"], pairs(predicted) / pairs(truth),
                        rtol=1e-4)
    self.assertIn("trained here, per test trajectory:", text)
    self.assertRegex(text, rf"  {row['file']} +[0-9.e+-]+ +[0-9.]+x +"
                     r"[0-9.]+x +[0-9.]+% of box")

  def test_pretrained_is_also_scored_without_its_evaluation_options(self):
    output_dir = self.create_tempdir().full_path
    summary = demo.run_demo(reading_utils.bundled_dataset_path(), output_dir,
                            num_steps=0, paper_model=False, num_rollouts=1,
                            num_eval_steps=1, seed=0, render=False)
    saved = config_lib.load(checkpoints.pretrained_model_path())["model"]
    self.assertTrue(saved["clamp_to_bounds"] or saved["relaxation_steps"])
    rollouts = {}
    for part in ("pretrained", "pretrained_bare"):
      with open(os.path.join(output_dir, part, "rollouts",
                             "rollout_test_0.pkl"), "rb") as f:
        rollouts[part] = pickle.load(f)["predicted_rollout"]
    # The same weights, rolled out another way.
    self.assertNotAllClose(rollouts["pretrained"], rollouts["pretrained_bare"])
    if saved["clamp_to_bounds"]:
      bounds = np.asarray(reading_utils.read_metadata(
          reading_utils.bundled_dataset_path())["bounds"], np.float32)
      self.assertAllInRange(rollouts["pretrained"], bounds.min(), bounds.max())
    text = demo.format_summary(summary)
    self.assertRegex(text, r"\npretrained, walls and relaxation off +[0-9.e+-]+")
    self.assertRegex(text, r"\npretrained, walls and relaxation off: "
                     r"full-rollout MSE [0-9.]+x")
    self.assertIn("pretrained, walls and relaxation off, per test trajectory:",
                  text)
    # The other shipped model, on its own test split, in its own table with
    # its own baselines.
    self.assertCountEqual(summary["other_pretrained"],
                          ["multi_material", "water_walls"])
    other = summary["other_pretrained"]["multi_material"]
    self.assertEqual(other["data_path"], reading_utils.bundled_dataset_path(
        "multi_material"))
    self.assertLen(other["pretrained"]["rollouts"]["files"], 1)
    self.assertNotEqual(other["baselines"]["frozen"]["mse_full"],
                        summary["baselines"]["frozen"]["mse_full"])
    self.assertRegex(text, r"== The pretrained multi_material model: its "
                     r"bundled test split \(.*multi_material_sample\), 1 "
                     r"trajectories of 194 steps ==")
    section = text[text.index("== The pretrained multi_material"):]
    self.assertRegex(section, r"\npretrained +[0-9.e+-]+")
    self.assertRegex(section, r"\nfrozen +[0-9.e+-]+")

  def test_without_evaluation_options(self):
    model = config_lib.ModelConfig(latent_size=8)
    self.assertIsNone(demo.without_evaluation_options(model))
    for options in ({"clamp_to_bounds": True}, {"relaxation_steps": 3},
                    {"clamp_to_bounds": True, "relaxation_steps": 1}):
      bare = demo.without_evaluation_options(
          dataclasses.replace(model, **options))
      self.assertEqual(bare, model)

  def test_verdict(self):
    part = {"rollouts": {"model": {"mean": {"mse_full": 0.01,
                                            "out_of_domain": 0.0}}}}
    rows = {"constant_velocity": {"mse_full": 0.05},
            "frozen": {"mse_full": 0.04}}
    self.assertEqual(demo.verdict(part, rows),
                     "full-rollout MSE 0.25x the better baseline (frozen); "
                     "no particle left the domain")
    part["rollouts"]["model"]["mean"]["out_of_domain"] = 0.0123
    self.assertRegex(demo.verdict(part, rows),
                     "1.23% of particle-steps outside the domain")


if __name__ == "__main__":
  tf.test.main()
