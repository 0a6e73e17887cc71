"""apps.compare: models side by side, per trajectory."""

import math
import os
import shutil
import tempfile

import tensorflow as tf

from learning_to_simulate import api
from learning_to_simulate.apps import compare
from learning_to_simulate.data import synthetic


class ParseModelSpecTest(tf.test.TestCase):

  def test_directory_checkpoint_and_options(self):
    self.assertEqual(
        compare.parse_model_spec(
            "mine=/m:best,relaxation_steps=3,clamp_to_bounds=0"),
        compare.ModelSpec("mine", model_path="/m", checkpoint="best",
                          options={"relaxation_steps": 3,
                                   "clamp_to_bounds": False}))
    self.assertEqual(compare.parse_model_spec("a=/m"),
                     compare.ModelSpec("a", model_path="/m"))
    # A bare ckpt-N is the model directory's.
    self.assertEqual(compare.parse_model_spec("a=/m:ckpt-5").checkpoint,
                     "/m/ckpt-5")
    self.assertEqual(
        compare.parse_model_spec("a=/m:/other/ckpt-5").checkpoint,
        "/other/ckpt-5")

  def test_pretrained(self):
    self.assertEqual(
        compare.parse_model_spec(
            "shipped=pretrained:water_drop,relaxation_step_size=0.2"),
        compare.ModelSpec("shipped", pretrained="water_drop",
                          options={"relaxation_step_size": 0.2}))

  def test_bad_specs_say_what_was_expected(self):
    for spec, expected in (
        ("mine", "expected NAME=SOURCE"),
        ("=/m", "expected NAME=SOURCE"),
        ("a=/m,walls=1", "'walls=1' is not OPTION=VALUE"),
        ("a=/m,relaxation_steps=three", "relaxation_steps must be a number"),
        ("a=/m,clamp_to_bounds=2", "clamp_to_bounds must be 0 or 1"),
        ("a=:best", "no model directory")):
      with self.assertRaisesRegex(ValueError, expected):
        compare.parse_model_spec(spec)


class SummaryTest(tf.test.TestCase):

  def test_trajectory_row_is_against_the_better_baseline(self):
    row = compare.trajectory_row({
        "model": {"mse_full": 1.0, "kinetic_energy_ratio": 0.9,
                  "centre_of_mass_error": 0.05, "density_ratio": 1.25,
                  "wall_height_error": 0.125, "out_of_domain": 0.01},
        "constant_velocity": {"mse_full": 8.0},
        "frozen": {"mse_full": 4.0}})
    self.assertEqual(row, {"mse_full": 1.0, "ratio_to_better_baseline": 0.25,
                           "kinetic_energy_ratio": 0.9,
                           "centre_of_mass_error": 0.05,
                           "density_ratio": 1.25, "wall_height_error": 0.125,
                           "out_of_domain": 0.01})

  def test_means_worsts_and_a_truth_at_rest(self):
    rows = [{"mse_full": 1.0, "ratio_to_better_baseline": 0.5,
             "kinetic_energy_ratio": 1.5, "centre_of_mass_error": 0.25,
             "density_ratio": 1.0, "wall_height_error": 0.25,
             "out_of_domain": 0.0},
            {"mse_full": 3.0, "ratio_to_better_baseline": 0.25,
             "kinetic_energy_ratio": float("nan"),
             "centre_of_mass_error": 0.5, "density_ratio": 2.0,
             "wall_height_error": 0.125, "out_of_domain": 0.5}]
    self.assertEqual(compare.summarize(rows), {
        "mse_full": 2.0, "ratio_mean": 0.375, "ratio_worst": 0.5,
        "kinetic_energy_ratio": 1.5, "centre_of_mass_error": 0.375,
        "centre_of_mass_worst": 0.5, "density_ratio": 1.5,
        "wall_height_error": 0.1875, "out_of_domain": 0.25})
    rows[0]["kinetic_energy_ratio"] = float("nan")
    self.assertTrue(
        math.isnan(compare.summarize(rows)["kinetic_energy_ratio"]))


class CompareTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp()
    cls.data_path = os.path.join(cls.root, "data")
    synthetic.write_tiny_dataset(cls.data_path, dim=2, num_particles=12,
                                 num_kinematic=2, num_frames=10,
                                 context_size=0, seed=4)
    cls.model_path = api.train(
        cls.data_path, os.path.join(cls.root, "model"), 2,
        model=api.ModelConfig(latent_size=8, hidden_size=8,
                              message_passing_steps=1),
        validation_options=api.ValidationOptions(every_steps=0), seed=3)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root)
    super().tearDownClass()

  def test_models_side_by_side(self):
    # A model trained before models kept their dataset's metadata
    # normalizes with the dataset's.
    old = os.path.join(self.root, "old")
    shutil.copytree(self.model_path, old)
    os.remove(os.path.join(old, "metadata.json"))
    specs = [compare.parse_model_spec(spec) for spec in (
        f"latest={self.model_path}",
        f"step2={self.model_path}:ckpt-2",
        f"walls={self.model_path},clamp_to_bounds=1",
        f"old={old}")]
    result = compare.compare(self.data_path, "test", specs)
    trajectories = api.load_trajectories(self.data_path, "test")
    self.assertEqual(result["num_trajectories"], len(trajectories))
    models = result["models"]
    self.assertEqual(list(models), ["latest", "step2", "walls", "old"])
    for model in models.values():
      self.assertLen(model["per_trajectory"], len(trajectories))
    # The latest checkpoint is step 2: the same rollouts.
    self.assertEqual(models["latest"]["per_trajectory"],
                     models["step2"]["per_trajectory"])
    self.assertEqual(models["old"]["per_trajectory"],
                     models["latest"]["per_trajectory"])
    # Each row is the API's score of that rollout.
    simulator = api.load_simulator(self.model_path)
    self.assertEqual(
        models["latest"]["per_trajectory"][0],
        compare.trajectory_row(api.score(simulator.rollout(trajectories[0]))))
    # Walls keep every particle in the box.
    self.assertEqual(models["walls"]["summary"]["out_of_domain"], 0.0)
    self.assertEqual(models["walls"]["options"], {"clamp_to_bounds": True})
    table = compare.format_markdown(result).splitlines()
    self.assertLen([line for line in table if line.startswith("| walls |")],
                   1 + len(trajectories))

  def test_a_name_given_twice(self):
    specs = [compare.ModelSpec("a", model_path=self.model_path)] * 2
    with self.assertRaisesRegex(ValueError, "the name\\(s\\) a are given"):
      compare.compare(self.data_path, "test", specs)


if __name__ == "__main__":
  tf.test.main()
