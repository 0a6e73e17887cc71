"""The training-recipe study: does an opt-in option beat the paper's recipe?

Trains the same model with the paper's recipe and with each candidate, at an
equal number of steps and several seeds, on datasets made by this package's
generator, and evaluates every model on the valid and the test split with
the rollout metrics of `training.metrics` (and the physics-free baselines),
as trained, with density relaxation (`--relaxation_steps=3`), behind
impermeable walls (`--clamp_to_bounds`), and behind walls with relaxation:
evaluation options, the same weights (`ROLLOUT_VARIANTS`). The choice is
made on the valid split only (`choose`: the row that meets every target
there with the lowest full-rollout MSE); the test split then reports how
the chosen row does on data no choice has seen. Prints the tables of both
splits per dataset, mean +- standard deviation over seeds, and writes
`{output_dir}/study.json`.

  python -m learning_to_simulate.benchmarks.recipe_study \\
      --output_dir=outputs/recipe_study            # the recorded study
  python -m learning_to_simulate.benchmarks.recipe_study --quick \\
      --output_dir=/tmp/study                      # a smoke test

Every run is a `train` child process (its own `--model_path`), then one
`score_split` child per split (what `train --mode=eval` and
`--mode=eval_rollout` with each variant's flags give, in one process), pinned
to one core with `--jobs` runs at a time; a run whose model and scores are
complete is not redone, so an interrupted study resumes where it stopped. Needs the `datagen` extra
(Taichi) to make the datasets.

A study that lasts longer than a machine lands run by run: with
`--results_dir` (a folder kept in the repository, such as
`benchmarks/results/recipe_study`), each finished run writes one small file,
`{results_dir}/{dataset}/{recipe}/seed{k}.json` (its flags, steps, training
seconds, host and every score), and a run whose file exists is not run again,
on this machine or the next. `--render` prints the tables from those files
alone:

  python -m learning_to_simulate.benchmarks.recipe_study \
      --results_dir=benchmarks/results/recipe_study --render
"""

import concurrent.futures
import dataclasses
import glob
import json
import os
import platform
import re
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np

from learning_to_simulate.benchmarks import report as report_lib
from learning_to_simulate.benchmarks import timing
from learning_to_simulate.benchmarks import train_log
from learning_to_simulate.data import dataset_writer
from learning_to_simulate.training import baselines
from learning_to_simulate.training import metrics as metrics_lib
from learning_to_simulate.visualization import rollout_files
from learning_to_simulate.visualization import snapshots


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A generated dataset of the study."""
  name: str
  scene: str
  num_train: int
  num_valid: int
  num_test: int
  num_frames: int
  seed: int = 1
  resolution: Optional[int] = None
  wall_layers: int = 0  # Static wall particles (`generate_dataset`).


# Water with more trajectories than the bundled sample, and water poured
# over static obstacles (kinematic particles); `water_walls` is `water` (the
# same seed: the same material, bit for bit) with 2 layers of wall particles;
# `multi_material` is water, sand and goop in one box (issue 37's final table);
# `ramps_walls` and `multi_material_walls` are those two with the same 2
# layers of wall particles (for the recipes chosen on `water_walls`).
DATASETS = (
    DatasetSpec("water", "water_drop", 32, 4, 8, 201),
    DatasetSpec("ramps", "water_ramps", 32, 4, 8, 201),
    DatasetSpec("water_walls", "water_drop", 32, 4, 8, 201, wall_layers=2),
    DatasetSpec("multi_material", "multi_material", 32, 4, 8, 201),
    DatasetSpec("ramps_walls", "water_ramps", 32, 4, 8, 201, wall_layers=2),
    DatasetSpec("multi_material_walls", "multi_material", 32, 4, 8, 201,
                wall_layers=2),
)
QUICK_DATASETS = (
    DatasetSpec("water", "water_drop", 2, 1, 1, 14, resolution=16),
)
QUICK_RECIPES = ("paper", "pushforward")

# The demo's model size: small enough for a 2-core CPU.
MODEL_FLAGS = ("--latent_size=64", "--hidden_size=64", "--hidden_layers=2",
               "--message_passing_steps=5")
QUICK_MODEL_FLAGS = ("--latent_size=8", "--hidden_size=8",
                     "--hidden_layers=1", "--message_passing_steps=2")


def recipes(num_steps: int) -> Dict[str, List[str]]:
  """Recipe name -> its train flags. `paper` is the faithful model."""
  phase = max(num_steps // 8, 1)
  pushforward = ["--pushforward_max_unroll=3",
                 f"--pushforward_phase_steps={phase}",
                 "--pushforward_probability=0.3"]
  return {
      "paper": [],
      "pushforward": pushforward,
      # One unrolled step at most: less of the model's own drift in training.
      "pushforward_1": ["--pushforward_max_unroll=1"] + pushforward[1:],
      "noise_1.5e-3": ["--noise_std=1.5e-3"],
      "noise_3e-4": ["--noise_std=3e-4"],
      # Both: LagrangeBench's default pairs pushforward with noise 3e-4.
      "pushforward_noise_3e-4": pushforward + ["--noise_std=3e-4"],
      # The same, with gravity outside the network: the target is the
      # acceleration minus the metadata's external_acceleration.
      "pushforward_noise_3e-4_gravity": pushforward + [
          "--noise_std=3e-4", "--external_acceleration=auto"],
      # Gradient through two steps of the model's own rollout.
      "multistep_2": ["--multistep_loss_steps=2"],
      # Issue 37's screen, against the screen's best (pushforward at the
      # paper's noise; walls and relaxation are evaluation options): a global
      # grid branch, and 1.33x and 2x the water datasets' radius (0.0390625).
      "pushforward_grid": pushforward + [
          "--grid_resolution=32", "--grid_channels=16", "--grid_levels=3"],
      # The grid widened by one radius (the wall particles inside it) and
      # particles beyond it left out: one that leaves the box no longer
      # reads the grid's edge wherever it is.
      "pushforward_grid_margin": pushforward + [
          "--grid_resolution=32", "--grid_channels=16", "--grid_levels=3",
          "--grid_margin=1"],
      "pushforward_radius_1.33x": pushforward + [
          "--connectivity_radius=0.052"],
      "pushforward_radius_2x": pushforward + ["--connectivity_radius=0.078"],
      # Wall particles that hear only from moving ones: about half the
      # edges of `water_walls`, so about half its training time.
      "pushforward_no_kinematic_pairs": pushforward + [
          "--nokinematic_pair_edges"],
      # Both: the configuration of the water_walls model's second run.
      "pushforward_grid_no_kinematic_pairs": pushforward + [
          "--grid_resolution=32", "--grid_channels=16", "--grid_levels=3",
          "--nokinematic_pair_edges"],
      # The same, its unrolled training inputs relaxed as its rollouts with
      # relaxation are (the relaxation saved with it; the variants below
      # say whether a rollout relaxes).
      "pushforward_grid_no_kinematic_pairs_relaxed": pushforward + [
          "--grid_resolution=32", "--grid_channels=16", "--grid_levels=3",
          "--nokinematic_pair_edges", "--relaxation_steps=3",
          "--pushforward_relaxation"],
  }


# Columns of the tables: (metric key, header).
# The one-step MSE twice: the original's over all particles (wall particles
# included, which the loss never trains), and over the moving ones alone.
ONE_STEP_KEYS = ("one_step_position_mse", "one_step_position_mse_moving")
COLUMNS = (("one_step_position_mse", "one-step MSE"),
           ("one_step_position_mse_moving", "one-step MSE, moving"),
           ("mse_20", "MSE 1-20"),
           ("mse_full", "full MSE"),
           ("emd", "EMD (W2^2)"),
           ("kinetic_energy_ratio", "KE ratio"),
           ("centre_of_mass_error", "centre of mass off"),
           ("density_ratio", "density"),
           ("wall_height_error", "wall height off"),
           ("kinetic_energy_mse", "KE MSE"),
           ("out_of_domain", "out of domain"),
           ("train_seconds", "train s"))


def _run(module: str, args: Sequence[str], log_path: str,
         core: Optional[int]) -> str:
  """Runs `python -m learning_to_simulate.{module}`; returns its stdout."""
  command, env = timing.module_command(module, list(args))
  if core is not None:
    env.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
  with open(log_path, "a") as log:
    process = subprocess.run(
        command, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
        check=False,
        preexec_fn=(lambda: os.sched_setaffinity(0, {core}))
        if core is not None else None)
  if process.returncode != 0:
    raise RuntimeError(f"{module} {' '.join(args)} failed (exit "
                       f"{process.returncode}); see {log_path}")
  return process.stdout


def make_datasets(specs: Sequence[DatasetSpec], root: str) -> Dict[str, str]:
  """Generates the datasets that are not there yet; name -> path."""
  # pylint: disable=g-import-not-at-top
  from learning_to_simulate.generation import generate_dataset
  # pylint: enable=g-import-not-at-top
  paths = {}
  for spec in specs:
    path = os.path.join(root, spec.name)
    if not os.path.exists(os.path.join(path, "metadata.json")):
      generate_dataset.generate_dataset(
          spec.scene, path, spec.num_train, spec.num_valid, spec.num_test,
          spec.num_frames, spec.seed, resolution=spec.resolution,
          wall_layers=spec.wall_layers)
    paths[spec.name] = path
  return paths


def run_one(data_path: str, run_dir: str, recipe_flags: Sequence[str],
            model_flags: Sequence[str], num_steps: int, seed: int,
            core: Optional[int]) -> Dict[str, Any]:
  """Trains, evaluates and rolls out one model; returns its results.

  Resumes: a run with `results.json` is read back (and the splits it lacks
  evaluated), and `train` resumes from its checkpoints.

  Returns:
    `train_seconds` (summed over the pieces a resumed run trained in, from
    its log), `train_pieces` and `splits`: for `valid` and `test`, the
    scores of `score_split`.
  """
  results_path = os.path.join(run_dir, "results.json")
  model_path = os.path.join(run_dir, "model")
  log_path = os.path.join(run_dir, "log.txt")
  if os.path.exists(results_path):
    with open(results_path) as f:
      results = _upgrade(json.load(f))
  else:
    os.makedirs(run_dir, exist_ok=True)
    start = time.time()
    _run("train", [
        f"--data_path={data_path}", f"--model_path={model_path}",
        *model_flags, *recipe_flags, f"--num_steps={num_steps}",
        f"--seed={seed}", "--lr=1e-3", "--min_lr=1e-5",
        f"--lr_decay_steps={num_steps}",
        f"--log_every_steps={max(num_steps // 10, 1)}",
        "--eval_every_steps=0"], log_path, core)
    # A run resumed after a stop trained in pieces: the log holds them all,
    # the clock above only the last.
    with open(log_path) as f:
      seconds, pieces = train_log.training_seconds(f.read())
    results = {"train_seconds": (time.time() - start if seconds is None
                                 else seconds),
               "train_pieces": pieces, "splits": {}}
  changed = False
  for split in SPLITS:
    # Runs of an earlier study lack the valid split, the moving particles'
    # one-step MSE or some rollout variants (relaxation).
    scores = results["splits"].setdefault(split, {})
    parts = missing_parts(scores)
    if parts:
      scores.update(score_split(data_path, model_path, run_dir, split, parts,
                                log_path, core))
      changed = True
  if changed:
    dataset_writer.write_json(results_path, results)
  return results


def missing_parts(scores: Dict[str, Any]) -> List[str]:
  """What a split's scores lack: `score_split`'s parts."""
  parts = [] if ONE_STEP_KEYS[1] in scores else ["one_step"]
  return parts + [key for key, _, _, _ in ROLLOUT_VARIANTS
                  if key not in scores]


def complete(results: Dict[str, Any]) -> bool:
  """Whether a run's results hold every split and score of this study."""
  return all(not missing_parts(results["splits"].get(split, {}))
             for split in SPLITS)


def score_split(data_path: str, model_path: str, run_dir: str, split: str,
                parts: Sequence[str], log_path: str,
                core: Optional[int]) -> Dict[str, Any]:
  """`parts` of one model's scores on one split (`score_split`'s: the
  one-step MSEs of `train --mode=eval`, the rollout metrics of
  `train --mode=eval_rollout` for each variant), in one child process."""
  output = os.path.join(run_dir, f"scores_{split}.json")
  _run("benchmarks.score_split", [
      f"--data_path={data_path}", f"--model_path={model_path}",
      f"--run_dir={run_dir}", f"--split={split}",
      f"--parts={','.join(parts)}", f"--output={output}"], log_path, core)
  with open(output) as f:
    return json.load(f)


# The choice is made on the first, the second reports on unseen data.
SPLITS = ("valid", "test")
# How each model is rolled out: (key in a record, row suffix in the tables,
# evaluation options as `train`'s flags would set them, rollout folder).
# Evaluation options: the same weights.
ROLLOUT_VARIANTS = (
    # Explicit about relaxation: a recipe may save some with its model.
    ("rollout", "", {"relaxation_steps": 0}, "rollouts"),
    # Relaxation without walls: with wall particles in the data, they are
    # what the relaxation pushes against (Neural SPH's setting).
    ("relaxation", " + relaxation", {"relaxation_steps": 3},
     "rollouts_relaxation"),
    ("walls", " + walls", {"clamp_to_bounds": True, "relaxation_steps": 0},
     "rollouts_walls"),
    ("walls_relaxation", " + walls + relaxation",
     {"clamp_to_bounds": True, "relaxation_steps": 3},
     "rollouts_walls_relaxation"),
)


def _upgrade(results: Dict[str, Any]) -> Dict[str, Any]:
  """A `results.json` of an earlier study (the test split's scores at the
  top, perhaps without walls) in today's layout."""
  if "splits" in results:
    return results
  test = {key: results[key] for key in
          ("one_step_position_mse", "rollout", "baselines", "walls")
          if key in results}
  splits = {"test": test} if "walls" in test else {}
  return {"train_seconds": results["train_seconds"], "splits": splits}


def rollout_directory(run_dir: str, folder: str, split: str) -> str:
  """Where a run's rollouts of one variant on one split are."""
  return os.path.join(run_dir, folder + ("" if split == "test" else
                                         f"_{split}"))


def _physics_means(files: Sequence[str], with_baselines: bool
                   ) -> Dict[str, Dict[str, float]]:
  """`metrics.physics_summary` of the model (and, `with_baselines`, of each
  baseline), mean over the rollout pickles `files`: predictor -> metric ->
  value."""
  scores = []
  for file in files:
    rollout = rollout_files.load_rollout(file)
    others = (baselines.baseline_rollouts(rollout).items() if with_baselines
              else ())
    scores.append({"model": metrics_lib.physics_summary(rollout), **{
        name: metrics_lib.physics_summary(dict(rollout,
                                               predicted_rollout=predicted))
        for name, predicted in others}})
  return {name: metrics_lib.mean_metrics([
      {key: value for key, value in score[name].items() if np.isfinite(value)}
      for score in scores]) for name in scores[0]}


def rescore_records(results_dir: str, output_dir: str) -> List[str]:
  """Adds to the records the physics metrics they lack, from their runs.

  A record written before a metric of `metrics.physics_summary` existed
  (`density_ratio`, `wall_height_error`) gets it, for each split and
  `ROLLOUT_VARIANTS` entry (and for the baselines, from the rollouts as
  trained), from the rollout pickles of its run in `{output_dir}/runs` when
  they are there (the mean over trajectories, as `eval_rollout`'s); a value
  the record has is never changed. Runs nothing.

  Returns:
    The records that changed (rewritten atomically).
  """
  changed = []
  for path in sorted(glob.glob(os.path.join(results_dir, "*", "*",
                                            "seed*.json"))):
    with open(path) as f:
      record = json.load(f)
    run_dir = os.path.join(output_dir, "runs", record["dataset"]["name"],
                           record["recipe"], f"seed{record['seed']}")
    results = _upgrade(record["results"])
    added = False
    for split, scores in results["splits"].items():
      for key, _, _, folder in ROLLOUT_VARIANTS:
        files = sorted(glob.glob(os.path.join(
            rollout_directory(run_dir, folder, split),
            f"rollout_{split}_*.pkl")))
        if key not in scores or not files:
          continue
        # The baselines' are kept with the rollouts as trained only.
        with_baselines = key == "rollout" and "baselines" in scores
        means = _physics_means(files, with_baselines)
        targets = [(scores[key], means["model"])]
        if with_baselines:
          targets += [(scores["baselines"][name], means[name])
                      for name in scores["baselines"] if name in means]
        for held, computed in targets:
          missing = {name: value for name, value in computed.items()
                     if name not in held}
          held.update(missing)
          added = added or bool(missing)
    if added:
      record["results"] = results
      dataset_writer.write_json(path, record)
      changed.append(path)
  return changed


def _flat(results: Dict[str, Any], split: str,
          variant: str) -> Dict[str, float]:
  scores = results["splits"][split]
  return {"train_seconds": results["train_seconds"],
          **{key: scores[key] for key in ONE_STEP_KEYS if key in scores},
          **scores[variant]}


def summarize(runs: Dict[str, List[Dict[str, Any]]],
              split: str = "test") -> Dict[str, Any]:
  """Recipe -> metric -> mean, std (over seeds) and values, on `split`.

  Each recipe has more rows, "+ relaxation", "+ walls" and "+ walls +
  relaxation", with the same models rolled out with those evaluation
  options (`ROLLOUT_VARIANTS`; their one-step MSE is the one without them);
  a row whose rollouts some record lacks (written before the variant
  existed) is left out.
  """
  summary = {}
  for recipe, results in runs.items():
    for variant, row_suffix, _, _ in ROLLOUT_VARIANTS:
      if not all(variant in r["splits"][split] for r in results):
        continue
      flat = [_flat(r, split, variant) for r in results]
      summary[recipe + row_suffix] = {
          key: {"mean": float(np.mean([f[key] for f in flat])),
                "std": float(np.std([f[key] for f in flat])),
                "values": [f[key] for f in flat]}
          for key, _ in COLUMNS if all(key in f for f in flat)}
  first = next(iter(runs.values()))[0]["splits"][split]
  for name, metrics in first["baselines"].items():
    summary[f"baseline: {name.replace('_', ' ')}"] = {
        key: {"mean": metrics[key], "std": 0.0, "values": [metrics[key]]}
        for key, _ in COLUMNS if key in metrics}
  return summary


def format_table(summary: Dict[str, Any]) -> str:
  """Markdown table: a row per recipe (and baseline), mean +- std."""
  def cell(entry):
    if entry is None:
      return ""
    if entry["std"] == 0.0 and len(entry["values"]) == 1:
      return f"{entry['mean']:.3g}"
    return f"{entry['mean']:.3g} +- {entry['std']:.2g}"
  # A column no row has (a metric newer than every record) is left out.
  columns = [(key, header) for key, header in COLUMNS
             if any(key in metrics for metrics in summary.values())]
  rows = [[name] + [cell(metrics.get(key)) for key, _ in columns]
          for name, metrics in summary.items()]
  return report_lib.format_markdown_table(
      ["recipe"] + [header for _, header in columns], rows)


# The better-model issue's targets, at equal steps: full-rollout MSE at most
# this share of the paper recipe's, ...
TARGET_FULL_MSE_RATIO = 0.7


def targets(summary: Dict[str, Any], faithful: str = "paper"
            ) -> Dict[str, Dict[str, Any]]:
  """Row -> the issue's three targets against the faithful recipe as trained.

  - full-rollout MSE (mean over seeds) at most `TARGET_FULL_MSE_RATIO` of
    the faithful recipe's;
  - no particle out of the domain in any seed's rollouts;
  - one-step MSE (mean over seeds) no worse than the seed spread: at most
    the faithful recipe's mean plus its standard deviation over seeds. It is
    the moving particles' (`one_step_position_mse_moving`) where every row
    has it, as the issue says (kinematic particles, wall particles among
    them, are prescribed: the original's all-particle figure scores the
    model's output for them, which nothing uses); else the original's.

  Baselines have no row. Returns `{}` without a `faithful` row.
  """
  if faithful not in summary:
    return {}
  reference = summary[faithful]
  rows = [metrics for name, metrics in summary.items()
          if not name.startswith("baseline:")]
  one_step_key = (ONE_STEP_KEYS[1] if all(ONE_STEP_KEYS[1] in metrics
                                           for metrics in rows)
                  else ONE_STEP_KEYS[0])
  one_step = reference[one_step_key]
  one_step_limit = one_step["mean"] + one_step["std"]
  verdicts = {}
  for name, metrics in summary.items():
    if name.startswith("baseline:"):
      continue
    ratio = metrics["mse_full"]["mean"] / reference["mse_full"]["mean"]
    out_of_domain = max(metrics["out_of_domain"]["values"])
    one_step_mean = metrics[one_step_key]["mean"]
    met = {"full_mse": ratio <= TARGET_FULL_MSE_RATIO,
           "out_of_domain": out_of_domain == 0.0,
           "one_step": one_step_mean <= one_step_limit}
    verdicts[name] = {"full_mse_ratio": ratio,
                      "out_of_domain_max": out_of_domain,
                      "one_step_ratio": one_step_mean / one_step["mean"],
                      "one_step_limit_ratio": one_step_limit /
                                              one_step["mean"],
                      "met": met, "all_met": all(met.values())}
  return verdicts


def choose(verdicts: Dict[str, Dict[str, Any]],
           summary: Dict[str, Any]) -> Optional[str]:
  """The row to recommend: among those meeting every target (`targets`),
  the lowest mean full-rollout MSE; None if no row meets them all. Give it
  the valid split's verdicts and summary only."""
  met = [name for name, verdict in verdicts.items() if verdict["all_met"]]
  if not met:
    return None
  return min(met, key=lambda name: summary[name]["mse_full"]["mean"])


def format_targets(verdicts: Dict[str, Dict[str, Any]]) -> str:
  """Markdown table of `targets`: ratios to the paper, and yes / no."""
  def mark(ok):
    return "yes" if ok else "no"
  rows = [[name,
           f"{v['full_mse_ratio']:.2f}x ({mark(v['met']['full_mse'])})",
           f"{v['out_of_domain_max']:.3g} ({mark(v['met']['out_of_domain'])})",
           f"{v['one_step_ratio']:.2f}x, limit {v['one_step_limit_ratio']:.2f}x"
           f" ({mark(v['met']['one_step'])})",
           "**all**" if v["all_met"] else ""]
          for name, v in verdicts.items()]
  return report_lib.format_markdown_table(
      ["recipe", f"full MSE / paper (<= {TARGET_FULL_MSE_RATIO})",
       "out of domain, worst seed (0)",
       "one-step / paper (limit: paper's mean + std)",
       "targets"], rows)


def result_path(results_dir: str, dataset: str, recipe: str,
                seed: int) -> str:
  """Where a finished run's record lands: `{dataset}/{recipe}/seed{k}.json`."""
  return os.path.join(results_dir, dataset, recipe, f"seed{seed}.json")


def picture_path(results_dir: str, dataset: str, recipe: str,
                 seed: int) -> str:
  """Beside a run's record: still frames of its first valid rollout."""
  return result_path(results_dir, dataset, recipe, seed)[:-len(".json")] + (
      "_valid_0.png")


def write_picture(run_dir: str, path: str) -> bool:
  """Still frames of a run's first valid trajectory: the ground truth above
  the model rolled out in each of `ROLLOUT_VARIANTS` (as trained, with
  relaxation, behind walls, behind walls with relaxation) whose pickles the
  run has, so that a record can be looked at, not only read. Returns
  whether it wrote.
  """
  named = []
  for _, row_suffix, _, folder in ROLLOUT_VARIANTS:
    pickle_path = os.path.join(run_dir, f"{folder}_valid",
                               "rollout_valid_0.pkl")
    if os.path.exists(pickle_path):
      named.append((row_suffix.lstrip(" +") or "as trained",
                    rollout_files.load_rollout(pickle_path)))
  if not named:
    return False
  snapshots.write_comparison(named, path, num_columns=5)
  return True


def run_record(spec: DatasetSpec, recipe: str, recipe_flags: Sequence[str],
               model_flags: Sequence[str], num_steps: int, seed: int,
               results: Dict[str, Any]) -> Dict[str, Any]:
  """The small file a finished run leaves (`result_path`)."""
  return {"dataset": dataclasses.asdict(spec), "recipe": recipe,
          "recipe_flags": list(recipe_flags),
          "model_flags": list(model_flags), "num_steps": num_steps,
          "seed": seed,
          "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                   "python": platform.python_version()},
          "results": results}


def read_records(results_dir: str) -> List[Dict[str, Any]]:
  """Every run record under `results_dir`, in path order.

  Raises:
    ValueError: a file that is not a run record, named.
  """
  records = []
  for path in sorted(glob.glob(os.path.join(results_dir, "*", "*",
                                            "seed*.json"))):
    try:
      with open(path) as f:
        record = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
      raise ValueError(f"{path}: not a run record ({error})") from None
    missing = [key for key in ("dataset", "recipe", "seed", "num_steps",
                               "results") if key not in record]
    if missing:
      raise ValueError(f"{path}: not a run record (missing "
                       f"{', '.join(missing)})")
    records.append(record)
  return records


def summarize_records(records: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  """The study's results (as `run_study` returns them) from run records.

  Recipes and datasets come in the order of their first record; each
  recipe's seeds in the order of the records.
  """
  grouped: Dict[str, Dict[str, List[Dict[str, Any]]]] = {}
  for record in records:
    grouped.setdefault(record["dataset"]["name"], {}).setdefault(
        record["recipe"], []).append(record["results"])
  study = {"results": {}}
  for dataset, runs in grouped.items():
    study["results"][dataset] = {split: summarize(runs, split)
                                 for split in SPLITS}
    valid = study["results"][dataset]["valid"]
    study["results"][dataset]["chosen_on_valid"] = choose(targets(valid),
                                                          valid)
  return study


def render_study(results_dir: str) -> Dict[str, Any]:
  """The study from the run records under `results_dir` alone (`--render`).

  Raises:
    ValueError: no records, or records of several step counts.
  """
  records = read_records(results_dir)
  if not records:
    raise ValueError(f"--results_dir: no run records in {results_dir} "
                     "(expected {dataset}/{recipe}/seed{k}.json)")
  steps = sorted({record["num_steps"] for record in records})
  if len(steps) > 1:
    raise ValueError(f"--results_dir: {results_dir} mixes runs of "
                     f"{steps} steps; render one study at a time")
  study = summarize_records(records)
  study.update(num_steps=steps[0],
               seeds=sorted({record["seed"] for record in records}))
  return study


def run_study(output_dir: str, num_steps: int, seeds: Sequence[int],
              recipe_names: Sequence[str], quick: bool, jobs: int = 1,
              cores: Optional[Sequence[int]] = None,
              dataset_names: Optional[Sequence[str]] = None,
              results_dir: Optional[str] = None) -> Dict[str, Any]:
  """Runs (or resumes) the whole study; returns and writes its summary.

  Args:
    output_dir: datasets, runs and `study.json`.
    num_steps: training steps of every run.
    seeds: seeds of each recipe.
    recipe_names: keys of `recipes`.
    quick: tiny datasets and model (a smoke test).
    jobs: runs at a time.
    cores: CPU cores the runs are pinned to, in turn (one core a run, one
      thread); None runs them unpinned.
    dataset_names: names of the datasets to run on (None: all of them).
    results_dir: where each finished run writes its record
      (`result_path`); a run whose record is there is read back and not
      run again. None: no records.
  """
  specs = QUICK_DATASETS if quick else DATASETS
  if dataset_names is not None:
    known = [spec.name for spec in specs]
    unknown = sorted(set(dataset_names) - set(known))
    if unknown:
      raise ValueError(f"--datasets: unknown {unknown}; known: "
                       f"{', '.join(known)}")
    specs = tuple(spec for spec in specs if spec.name in dataset_names)
  model_flags = QUICK_MODEL_FLAGS if quick else MODEL_FLAGS
  all_recipes = recipes(num_steps)
  unknown = sorted(set(recipe_names) - set(all_recipes))
  if unknown:
    raise ValueError(f"--recipes: unknown {unknown}; known: "
                     f"{', '.join(all_recipes)}")
  start = time.time()
  by_name = {spec.name: spec for spec in specs}
  # Recipe by recipe, so that an interrupted study has whole recipes.
  tasks = [(dataset, recipe, seed) for recipe in recipe_names
           for dataset in by_name for seed in seeds]
  results = {}
  if results_dir is not None:
    for task in tasks:
      path = result_path(results_dir, *task)
      if os.path.exists(path):
        with open(path) as f:
          record = json.load(f)
        if record.get("num_steps") != num_steps:
          raise ValueError(f"{path} holds a run of {record.get('num_steps')}"
                           f" steps, not --num_steps={num_steps}")
        record_results = _upgrade(record["results"])
        run_results = os.path.join(output_dir, "runs", *task[:2],
                                   f"seed{task[2]}", "results.json")
        if complete(record_results) or not os.path.exists(run_results):
          results[task] = record_results
        # Else run again: the run's directory completes its scores.
    if results:
      print(f"{len(results)} of {len(tasks)} runs read back from "
            f"{results_dir}", flush=True)
  todo = [task for task in tasks if task not in results]
  paths = {}
  if todo:
    paths = make_datasets([by_name[name] for name in by_name
                           if any(task[0] == name for task in todo)],
                          os.path.join(output_dir, "datasets"))
  cores = list(cores) if cores else [None]
  with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    futures = {}
    for index, (dataset, recipe, seed) in enumerate(todo):
      run_dir = os.path.join(output_dir, "runs", dataset, recipe,
                             f"seed{seed}")
      futures[pool.submit(
          run_one, paths[dataset], run_dir, all_recipes[recipe], model_flags,
          num_steps, seed, cores[index % len(cores)])
             ] = (dataset, recipe, seed)
    for future in concurrent.futures.as_completed(futures):
      dataset, recipe, seed = futures[future]
      results[(dataset, recipe, seed)] = future.result()
      if results_dir is not None:  # Lands now, whatever happens next.
        dataset_writer.write_json(
            result_path(results_dir, dataset, recipe, seed),
            run_record(by_name[dataset], recipe, all_recipes[recipe],
                       model_flags, num_steps, seed,
                       results[(dataset, recipe, seed)]))
        try:
          write_picture(os.path.join(output_dir, "runs", dataset, recipe,
                                     f"seed{seed}"),
                        picture_path(results_dir, dataset, recipe, seed))
        except (OSError, ValueError) as error:  # The record has landed.
          print(f"warning: no picture of {dataset} / {recipe} / seed "
                f"{seed}: {error}", flush=True)
      print(f"done: {dataset} / {recipe} / seed {seed} "
            f"({time.time() - start:.0f} s)", flush=True)
  study = {"num_steps": num_steps, "seeds": list(seeds),
           "recipes": {name: all_recipes[name] for name in recipe_names},
           "model_flags": list(model_flags),
           "datasets": {spec.name: dataclasses.asdict(spec) for spec in specs},
           "wall_seconds": time.time() - start, "results": {}}
  for dataset in by_name:
    runs = {recipe: [results[(dataset, recipe, seed)] for seed in seeds]
            for recipe in recipe_names}
    study["results"][dataset] = {split: summarize(runs, split)
                                 for split in SPLITS}
    valid = study["results"][dataset]["valid"]
    study["results"][dataset]["chosen_on_valid"] = choose(targets(valid),
                                                          valid)
  dataset_writer.write_json(os.path.join(output_dir, "study.json"), study)
  return study


def format_study(study: Dict[str, Any]) -> str:
  lines = [f"Recipe study: {study['num_steps']} steps, seeds "
           f"{study['seeds']}" + (f", {study['wall_seconds']:.0f} s"
                                  if "wall_seconds" in study else "") +
           "; with several seeds, mean +- std over them (ddof=0). KE ratio: "
           "kinetic energy summed over the rollout against the truth's; "
           "centre of mass off: at the last step, in box sizes."]
  for dataset, results in study["results"].items():
    lines += ["", f"### {dataset}"]
    for split in SPLITS:
      summary = results[split]
      lines += ["", f"{dataset}, {split} split:", "", format_table(summary)]
      verdicts = targets(summary)
      if verdicts:
        lines += ["", f"Targets on {dataset} ({split}), against the paper's "
                  "recipe as trained:", "", format_targets(verdicts)]
    chosen = results["chosen_on_valid"]
    if chosen is None and "paper" not in results["valid"]:
      lines += ["", f"Chosen on {dataset}'s valid split: none (the targets "
                "are against the paper's recipe, which this study did not "
                "run)."]
    elif chosen is None:
      lines += ["", f"Chosen on {dataset}'s valid split: none (no row meets "
                "every target there)."]
    else:
      test = results["test"][chosen]["mse_full"]
      paper = results["test"]["paper"]["mse_full"]["mean"] if (
          "paper" in results["test"]) else None
      ratio = f", {test['mean'] / paper:.2f}x the paper's" if paper else ""
      lines += ["", f"Chosen on {dataset}'s valid split: {chosen}; on the "
                f"test split its full-rollout MSE is {test['mean']:.3g} +- "
                f"{test['std']:.2g}{ratio}."]
  return "\n".join(lines)


# A block of a Markdown file that `update_markdown` writes: the tables of the
# records in the results directory it names (relative to the file).
_BLOCK = re.compile(r"(<!-- recipe_study --results_dir=(\S+) --render -->\n)"
                    r"(.*?)(<!-- end of recipe_study's tables -->)", re.S)


def render_markdown(text: str, base: str) -> Tuple[str, List[str]]:
  """`text` (Markdown) with every recipe_study block rendered again from the
  records of the directory it names (relative to `base`), and those
  directories."""
  rendered = []

  def render(match):
    rendered.append(match.group(2))
    tables = format_study(render_study(os.path.join(base, match.group(2))))
    return match.group(1) + tables + "\n" + match.group(4)

  return _BLOCK.sub(render, text), rendered


def update_markdown(path: str) -> List[str]:
  """Renders every recipe_study block of a Markdown file again from its
  records (`render_markdown`), in place and atomically; returns the results
  directories rendered.

  Raises:
    ValueError: a file without such a block, or a block's bad records.
  """
  with open(path) as f:
    text = f.read()
  updated, rendered = render_markdown(text,
                                      os.path.dirname(os.path.abspath(path)))
  if not rendered:
    raise ValueError(f"--update: {path} has no block '<!-- recipe_study "
                     "--results_dir=DIR --render -->' ... '<!-- end of "
                     "recipe_study's tables -->'")
  if updated != text:
    with dataset_writer.atomic_file(path) as tmp_path:
      with open(tmp_path, "w") as f:
        f.write(updated)
  return rendered


FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Registers the CLI flags, only when run as a program (the library's
  importers, the demo for one, have flags of the same names)."""
  flags.DEFINE_string("output_dir", "outputs/recipe_study",
                      "Datasets, runs and study.json go here.")
  flags.DEFINE_integer("num_steps", 6000, "Training steps of every run.")
  flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds per recipe.")
  flags.DEFINE_list("recipes", list(recipes(1)),
                    "Recipes to run (paper is the faithful one).")
  flags.DEFINE_boolean("quick", False,
                       "Tiny datasets and model, a few steps: a smoke test "
                       "of the study itself.")
  flags.DEFINE_list("datasets", None,
                    "Datasets to run on (default: all of them).")
  flags.DEFINE_integer("jobs", 1, "Runs at a time.", lower_bound=1)
  flags.DEFINE_string("results_dir", None,
                      "Each finished run writes its record here "
                      "({dataset}/{recipe}/seed{k}.json, a folder to commit); "
                      "runs with a record are not run again.")
  flags.DEFINE_boolean("render", False,
                       "Print the tables from the records in --results_dir "
                       "alone (no run).")
  flags.DEFINE_string("update", None,
                      "Render the tables of every recipe_study block of this "
                      "Markdown file (BENCHMARKS.md) again from the records "
                      "its block names, in place (no run).")
  flags.DEFINE_boolean("rescore", False,
                       "Add to the records in --results_dir the rollout "
                       "metrics they lack, from the rollout pickles of their "
                       "runs in --output_dir (no run).")
  flags.DEFINE_list("cores", None,
                    "Pin the runs to these CPU cores, one core and thread a "
                    "run, in turn (default: unpinned).")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  quick = FLAGS.quick
  num_steps = 20 if quick and not FLAGS["num_steps"].present else (
      FLAGS.num_steps)
  seeds = [int(seed) for seed in FLAGS.seeds]
  recipe_names = FLAGS.recipes
  if quick and not FLAGS["seeds"].present:
    seeds = [0]
  if quick and not FLAGS["recipes"].present:
    recipe_names = list(QUICK_RECIPES)
  cores = [int(core) for core in FLAGS.cores] if FLAGS.cores else None
  try:
    if FLAGS.update:
      for results_dir in update_markdown(FLAGS.update):
        print(f"{FLAGS.update}: rendered the records of {results_dir}")
      return
    if FLAGS.rescore:
      if not FLAGS.results_dir:
        raise ValueError("--rescore needs --results_dir")
      changed = rescore_records(FLAGS.results_dir, FLAGS.output_dir)
      print(f"{len(changed)} record(s) completed from the runs in "
            f"{FLAGS.output_dir}" + "".join(f"\n  {path}" for path in changed))
      return
    if FLAGS.render:
      if not FLAGS.results_dir:
        raise ValueError("--render needs --results_dir")
      print(format_study(render_study(FLAGS.results_dir)))
      return
    study = run_study(FLAGS.output_dir, num_steps, seeds, recipe_names,
                      quick, FLAGS.jobs, cores, FLAGS.datasets,
                      FLAGS.results_dir)
  except (RuntimeError, ValueError) as error:
    sys.exit(f"recipe_study: error: {error}")
  print(format_study(study))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
