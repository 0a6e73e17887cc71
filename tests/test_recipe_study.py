"""The recipe study and the validation-cost benchmark, on tiny settings."""

import json
import os
import subprocess

import numpy as np
from PIL import Image
import tensorflow as tf

from learning_to_simulate.benchmarks import recipe_study
from learning_to_simulate.benchmarks import timing
from learning_to_simulate.benchmarks import train_log
from learning_to_simulate.benchmarks import validation_cost
from learning_to_simulate.data import synthetic
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import validation
from learning_to_simulate.visualization import snapshots


class RecipeStudyTest(tf.test.TestCase):

  def test_quick_study_end_to_end(self):
    out = self.create_tempdir().full_path
    # One recipe (each costs a training and 10 evaluations in child
    # processes); the others differ only in their train flags, below.
    records = self.create_tempdir().full_path
    study = recipe_study.run_study(out, num_steps=8, seeds=[0],
                                   recipe_names=["paper"], quick=True,
                                   results_dir=records)
    results = study["results"]["water"]
    summary, valid = results["test"], results["valid"]
    # Each recipe as trained, with relaxation, behind walls, and behind walls
    # with relaxation, and the two baselines, on each split: the valid one for
    # the choice, the test one to report.
    for split in (summary, valid):
      self.assertEqual(list(split), [
          "paper", "paper + relaxation", "paper + walls",
          "paper + walls + relaxation", "baseline: constant velocity",
          "baseline: frozen"])
    # Two splits, two sets of trajectories: the baselines differ.
    self.assertNotEqual(summary["baseline: frozen"]["mse_full"]["mean"],
                        valid["baseline: frozen"]["mse_full"]["mean"])
    self.assertEqual(results["chosen_on_valid"], recipe_study.choose(
        recipe_study.targets(valid), valid))
    for name in ("paper", "paper + walls"):
      self.assertLen(summary[name]["mse_full"]["values"], 1)
      self.assertGreater(summary[name]["train_seconds"]["mean"], 0.0)
    # "+ walls" rows are the same models (their one-step MSE, taken without
    # walls, and training time are the as-trained row's), rolled out anew.
    for key in ("one_step_position_mse", "train_seconds"):
      self.assertEqual(summary["paper + walls"][key], summary["paper"][key])
      self.assertEqual(summary["paper + walls + relaxation"][key],
                       summary["paper"][key])
    # Relaxation moves particles: its rollouts are not the walls' alone.
    self.assertNotEqual(summary["paper + walls + relaxation"]["mse_full"],
                        summary["paper + walls"]["mse_full"])
    # The quick dataset has no kinematic particles: the moving particles'
    # one-step MSE is the original's.
    self.assertAllClose(summary["paper"]["one_step_position_mse_moving"],
                        summary["paper"]["one_step_position_mse"], rtol=1e-6)
    # The scores of one process per split are those of the `train` CLI with
    # the variant's flags.
    run_dir = os.path.join(out, "runs", "water", "paper", "seed0")
    cli_rollouts = os.path.join(out, "cli_rollouts")
    command, env = timing.module_command("train", [
        f"--data_path={os.path.join(out, 'datasets', 'water')}",
        f"--model_path={os.path.join(run_dir, 'model')}",
        "--mode=eval_rollout", "--eval_split=valid", "--clamp_to_bounds",
        "--relaxation_steps=3", f"--output_path={cli_rollouts}"])
    subprocess.run(command, env=env, check=True, capture_output=True)
    with open(os.path.join(cli_rollouts, "metrics.json")) as f:
      cli = json.load(f)["model"]["mean"]
    with open(os.path.join(run_dir, "results.json")) as f:
      run_results = json.load(f)
    # One piece, timed from its log.
    self.assertEqual(run_results["train_pieces"], 1)
    with open(os.path.join(run_dir, "log.txt")) as f:
      self.assertEqual(train_log.training_seconds(f.read()),
                       (run_results["train_seconds"], 1))
    self.assertEqual(run_results["splits"]["valid"]["walls_relaxation"], cli)
    with open(os.path.join(out, "study.json")) as f:
      self.assertEqual(json.load(f)["num_steps"], 8)
    table = recipe_study.format_study(study)
    self.assertRegex(table, r"\| paper \+ walls \| [0-9.e+-]+ \|")
    self.assertIn("Targets on water (valid)", table)
    self.assertIn("water, test split:", table)
    self.assertIn("Chosen on water's valid split: ", table)
    # The run trained the quick model (saved in config.json); the other
    # recipes add their train flags to the same command.
    with open(os.path.join(out, "runs", "water", "paper", "seed0",
                           "model", "config.json")) as f:
      self.assertEqual(json.load(f)["model"]["latent_size"], 8)
    self.assertIn("--pushforward_max_unroll=3",
                  recipe_study.recipes(8)["pushforward"])
    # A second call reads the finished runs back instead of training again.
    again = recipe_study.run_study(out, num_steps=8, seeds=[0],
                                   recipe_names=["paper"], quick=True)
    self.assertEqual(again["results"]["water"]["test"]["paper"],
                     summary["paper"])
    # The run landed as one record; on a new machine (another output_dir,
    # no datasets, no runs) the study reads it back and runs nothing.
    with open(recipe_study.result_path(records, "water", "paper", 0)) as f:
      record = json.load(f)
    self.assertEqual((record["recipe"], record["seed"], record["num_steps"],
                      record["dataset"]["name"]), ("paper", 0, 8, "water"))
    # Beside it, its first valid trajectory in pictures: the truth, then the
    # model as trained, with relaxation, behind walls, behind walls with
    # relaxation.
    picture = recipe_study.picture_path(records, "water", "paper", 0)
    self.assertEqual(os.path.dirname(picture), os.path.dirname(
        recipe_study.result_path(records, "water", "paper", 0)))
    with Image.open(picture) as image:
      self.assertEqual(image.format, "PNG")
      width, height = image.size
    self.assertAllClose(width / height, 5 * snapshots.PANEL_SIZE / (
        5 * snapshots.PANEL_SIZE + 0.3), rtol=0.03)
    self.assertEqual(record["model_flags"],
                     list(recipe_study.QUICK_MODEL_FLAGS))
    elsewhere = self.create_tempdir().full_path
    moved = recipe_study.run_study(elsewhere, num_steps=8, seeds=[0],
                                   recipe_names=["paper"], quick=True,
                                   results_dir=records)
    self.assertEqual(os.listdir(elsewhere), ["study.json"])
    self.assertEqual(moved["results"], study["results"])
    # The tables from the records alone.
    rendered = recipe_study.render_study(records)
    self.assertEqual(rendered["results"], study["results"])
    self.assertEqual(recipe_study.format_study(rendered).splitlines()[1:],
                     table.splitlines()[1:])
    with self.assertRaisesRegex(ValueError, "holds a run of 8 steps, not "
                                "--num_steps=9"):
      recipe_study.run_study(elsewhere, num_steps=9, seeds=[0],
                             recipe_names=["paper"], quick=True,
                             results_dir=records)
    with self.assertRaisesRegex(ValueError, "--results_dir: no run records"):
      recipe_study.render_study(elsewhere)
    # A Markdown file's block of tables, rendered again in place.
    page = os.path.join(os.path.dirname(records), "PAGE.md")
    block = (f"<!-- recipe_study --results_dir={os.path.basename(records)} "
             "--render -->\n{}\n<!-- end of recipe_study's tables -->")
    with open(page, "w") as f:
      f.write("# Before\n\n" + block.format("stale") + "\n\nAfter.\n")
    self.assertEqual(recipe_study.update_markdown(page),
                     [os.path.basename(records)])
    with open(page) as f:
      self.assertEqual(f.read(), "# Before\n\n" + block.format(
          recipe_study.format_study(rendered)) + "\n\nAfter.\n")
    with open(os.path.join(elsewhere, "EMPTY.md"), "w") as f:
      f.write("no block\n")
    with self.assertRaisesRegex(ValueError, "EMPTY.md has no block"):
      recipe_study.update_markdown(os.path.join(elsewhere, "EMPTY.md"))
    # A metric newer than a record comes from its run's rollout pickles; a
    # value the record has stays.
    record_path = recipe_study.result_path(records, "water", "paper", 0)
    with open(record_path) as f:
      record = json.load(f)
    valid = record["results"]["splits"]["valid"]
    density = valid["walls"].pop("density_ratio")
    valid["walls"]["mse_full"] = -1.0
    # The baselines' too, from the rollouts as trained.
    frozen = record["results"]["splits"]["test"]["baselines"]["frozen"]
    wall_height = frozen.pop("wall_height_error")
    with open(record_path, "w") as f:
      json.dump(record, f)
    self.assertEqual(recipe_study.rescore_records(records, elsewhere), [])
    self.assertEqual(recipe_study.rescore_records(records, out),
                     [record_path])
    with open(record_path) as f:
      splits = json.load(f)["results"]["splits"]
    rescored = splits["valid"]["walls"]
    self.assertAllClose(rescored["density_ratio"], density, rtol=1e-6)
    self.assertEqual(rescored["mse_full"], -1.0)
    self.assertAllClose(
        splits["test"]["baselines"]["frozen"]["wall_height_error"],
        wall_height, rtol=1e-6)
    self.assertEqual(recipe_study.rescore_records(records, out), [])

  def test_benchmarks_md_tables_are_rendered_from_the_committed_records(self):
    path = os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "BENCHMARKS.md")
    with open(path) as f:
      text = f.read()
    updated, rendered = recipe_study.render_markdown(
        text, os.path.dirname(path))
    self.assertIn("benchmarks/results/screen37", rendered)
    self.assertEqual(updated, text, "BENCHMARKS.md's tables differ from "
                     "their records: run python -m learning_to_simulate."
                     "benchmarks.recipe_study --update=BENCHMARKS.md")

  def test_targets(self):
    def row(one_step, full, out_of_domain):
      return {"one_step_position_mse": {"mean": float(np.mean(one_step)),
                                        "std": float(np.std(one_step)),
                                        "values": one_step},
              "mse_full": {"mean": full, "std": 0.0, "values": [full]},
              "out_of_domain": {"mean": float(np.mean(out_of_domain)),
                                "std": 0.0, "values": out_of_domain}}
    summary = {
        # One-step 2 +- 1: the spread allows up to 3.
        "paper": row([1.0, 3.0], 10.0, [0.1, 0.0]),
        "good": row([2.5, 3.5], 7.0, [0.0, 0.0]),
        "leaky": row([1.0, 1.0], 1.0, [0.0, 1e-3]),
        "imprecise": row([3.0, 3.2], 1.0, [0.0, 0.0]),
        "baseline: frozen": row([9.0], 9.0, [0.0]),
    }
    verdicts = recipe_study.targets(summary)
    self.assertEqual(list(verdicts), ["paper", "good", "leaky", "imprecise"])
    self.assertEqual(verdicts["good"]["met"],
                     {"full_mse": True, "out_of_domain": True,
                      "one_step": True})
    self.assertAllClose(verdicts["good"]["full_mse_ratio"], 0.7)
    self.assertAllClose(verdicts["good"]["one_step_limit_ratio"], 1.5)
    self.assertFalse(verdicts["paper"]["all_met"])
    self.assertFalse(verdicts["leaky"]["met"]["out_of_domain"])
    self.assertEqual(verdicts["leaky"]["out_of_domain_max"], 1e-3)
    self.assertFalse(verdicts["imprecise"]["met"]["one_step"])
    self.assertTrue(verdicts["good"]["all_met"])
    table = recipe_study.format_targets(verdicts)
    self.assertIn("| good | 0.70x (yes) | 0 (yes) | 1.50x, limit 1.50x (yes) "
                  "| **all** |", table)
    self.assertEqual(recipe_study.targets({"good": summary["good"]}), {})
    # The choice: the lowest full MSE among the rows meeting every target.
    self.assertEqual(recipe_study.choose(verdicts, summary), "good")
    verdicts["imprecise"]["all_met"] = True  # Say it met them: lower MSE.
    self.assertEqual(recipe_study.choose(verdicts, summary), "imprecise")
    self.assertIsNone(recipe_study.choose(
        {name: dict(v, all_met=False) for name, v in verdicts.items()},
        summary))
    # With the moving particles' one-step MSE in every row, it decides: the
    # all-particle one counts prescribed (kinematic) particles.
    for name, moving in (("paper", [1.0, 3.0]), ("good", [2.5, 3.5]),
                         ("leaky", [1.0, 1.0]), ("imprecise", [1.0, 1.0]),
                         ("baseline: frozen", [9.0])):
      summary[name]["one_step_position_mse_moving"] = {
          "mean": float(np.mean(moving)), "std": float(np.std(moving)),
          "values": moving}
    summary["good"]["one_step_position_mse"]["mean"] = 100.0
    verdicts = recipe_study.targets(summary)
    self.assertTrue(verdicts["good"]["met"]["one_step"])
    self.assertTrue(verdicts["imprecise"]["met"]["one_step"])

  def test_results_of_an_earlier_study_are_upgraded(self):
    test = {"one_step_position_mse": 1.0, "rollout": {"mse_full": 2.0},
            "baselines": {}, "walls": {"mse_full": 1.5}}
    old = dict(test, train_seconds=9.0)
    self.assertEqual(recipe_study._upgrade(old),  # pylint: disable=protected-access
                     {"train_seconds": 9.0, "splits": {"test": test}})
    # Without walls its test scores are incomplete: both splits are redone.
    no_walls = {key: value for key, value in old.items() if key != "walls"}
    self.assertEqual(recipe_study._upgrade(no_walls),  # pylint: disable=protected-access
                     {"train_seconds": 9.0, "splits": {}})
    # A record without the relaxation rollouts is incomplete (the study
    # completes it where the run's directory is), and its tables have no
    # relaxation row.
    split = dict(test, one_step_position_mse_moving=1.0,
                 rollout={"mse_full": 2.0, "out_of_domain": 0.0},
                 baselines={"frozen": {"mse_full": 3.0}},
                 walls={"mse_full": 1.5, "out_of_domain": 0.0})
    record = {"train_seconds": 9.0,
              "splits": {"valid": split, "test": split}}
    self.assertFalse(recipe_study.complete(record))
    self.assertEqual(list(recipe_study.summarize({"x": [record]})),
                     ["x", "x + walls", "baseline: frozen"])
    for name in ("valid", "test"):
      record["splits"][name] = dict(
          split, walls_relaxation={"mse_full": 1.2, "out_of_domain": 0.0},
          relaxation={"mse_full": 1.8, "out_of_domain": 0.1})
    self.assertTrue(recipe_study.complete(record))
    self.assertEqual(list(recipe_study.summarize({"x": [record]})),
                     ["x", "x + relaxation", "x + walls",
                      "x + walls + relaxation", "baseline: frozen"])

  def test_unknown_recipe(self):
    with self.assertRaisesRegex(ValueError, r"--recipes: unknown \['magic'\]"):
      recipe_study.run_study(self.create_tempdir().full_path, 8, [0],
                             ["magic"], quick=True)
    with self.assertRaisesRegex(ValueError, r"--datasets: unknown \['sea'\]"):
      recipe_study.run_study(self.create_tempdir().full_path, 8, [0],
                             ["paper"], quick=True, dataset_names=["sea"])


class TrainLogTest(tf.test.TestCase):

  def test_pieces_are_summed(self):
    log = "\n".join([
        "WARNING: a line absl did not write",
        "I1207 21:06:50.000000 111 trainer.py:300] Configuration ...",
        "I1207 21:07:00.000000 111 trainer.py:383] Training on d for 0..60",
        "I1207 21:09:46.500000 111 trainer.py:439] Stopped by SIGTERM at 5",
        # The next piece: start-up is not training.
        "I1207 22:00:00.000000 222 trainer.py:300] Configuration ...",
        "I1207 22:00:10.000000 222 trainer.py:383] Training on d for 5..60",
        "I1207 22:00:40.000000 222 trainer.py:200] step 30",
        # Killed without a word; another process writes after it.
        "I1207 22:05:00.000000 333 score_split.py:10] Scoring valid",
        "I1207 23:59:50.000000 444 trainer.py:383] Training on d for 30..60",
        "I1208 00:00:20.000000 444 trainer.py:442] Finished at step 60",
        "I1208 00:01:00.000000 444 score_split.py:10] Scoring test",
    ])
    seconds, pieces = train_log.training_seconds(log)
    self.assertEqual(pieces, 3)
    self.assertAllClose(seconds, 166.5 + 30.0 + 30.0)

  def test_no_training(self):
    self.assertEqual(train_log.training_seconds("I1207 21:06:50.000000 1 x] a"),
                     (None, 0))


class ValidationCostTest(tf.test.TestCase):

  def test_share(self):
    data_path = self.create_tempdir().full_path
    synthetic.write_tiny_dataset(data_path, num_frames=12)
    result = validation_cost.measure(
        data_path, train_steps=3, repeats=1,
        model_config=config_lib.ModelConfig(latent_size=8, hidden_size=8,
                                            message_passing_steps=2),
        options=validation.ValidationOptions(every_steps=100, num_batches=2))
    interval = 100 * result["step_seconds"]
    self.assertAllClose(result["share"], result["validation_seconds"] / (
        interval + result["validation_seconds"]))
    self.assertGreater(result["validation_seconds"], 0.0)
    self.assertIn("% of training time",
                  validation_cost.format_result(result))


if __name__ == "__main__":
  tf.test.main()
