"""The main job end to end: a pretrained simulator, then one trained here.

`python -m learning_to_simulate.apps.demo` (what `scripts/demo.sh` runs):

1. **Pretrained** (seconds): the simulator shipped with the package
   (`pretrained/water_drop_sample/`, with its provenance), rolls out the test
   trajectories with the evaluation options it was chosen with (walls,
   relaxation: its `config.json`); they are scored and the first is rendered
   to a GIF. When it has such options, it is scored once more without them,
   so that their effect shows. Every other shipped model (`multi_material`:
   water, sand and goop; `water_walls`: water with wall particles) is scored
   the same way on its own bundled test split, in a table of its own.
2. **Trained here** (minutes): a fresh simulator trained for `--num_steps`
   on the dataset (the bundled sample unless `--data_path`), evaluated one
   step at a time, rolled out, scored and rendered the same way.

Both are scored with the rollout metrics of `training.metrics` against two
physics-free baselines, constant velocity and frozen (every particle at its
last known position), and zero acceleration for the one-step error. The
summary table goes to stdout and `{output_dir}/summary.json`.

By default part 2 uses a small model, a faster learning-rate schedule and
the opt-in recipe that the recipe study chose (BENCHMARKS.md, "Beyond the
paper"), so it finishes in minutes; `--paper_model` trains the paper's
model with the paper's recipe instead.
"""

import dataclasses
import os
import time
from typing import Any, Dict, List, Optional

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from learning_to_simulate.data import dataset_writer
from learning_to_simulate import reading_utils
from learning_to_simulate.apps import compare
from learning_to_simulate.training import baselines
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import devices
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import trainer
from learning_to_simulate.training import validation
from learning_to_simulate.visualization import animation
from learning_to_simulate.visualization import physics_plot
from learning_to_simulate.visualization import rollout_files

# Small and quick to train on a CPU; the paper's features and network, with
# impermeable walls (an opt-in integrator option, see "Beyond the paper").
DEMO_MODEL = config_lib.ModelConfig(latent_size=64, hidden_size=64,
                                    hidden_layers=2, message_passing_steps=5,
                                    clamp_to_bounds=True)
# The opt-in training recipe of the demo (see BENCHMARKS.md, "Beyond the
# paper"): pushforward, phased in over the first 3/8 of the run.
DEMO_PUSHFORWARD_PROBABILITY = 0.3
DEMO_PUSHFORWARD_MAX_UNROLL = 3

# The parts of a summary: (key, label), in the order they are shown.
PARTS = (("pretrained", "pretrained"),
         ("pretrained_bare", "pretrained, walls and relaxation off"),
         ("trained", "trained here"))

# Columns of the summary: (metric, header); rollout metrics are means over
# the rolled-out test trajectories.
COLUMNS = (("one_step_position_mse", "one-step MSE"), ("mse_20", "MSE 1-20"),
           ("mse_full", "full MSE"), ("emd", "EMD (W2^2)"),
           ("out_of_domain", "out of domain"))


def demo_configs(paper_model: bool, num_steps: int):
  """Model, optimizer and training configs of part 2."""
  if paper_model:
    return (config_lib.ModelConfig(), config_lib.OptimizerConfig(),
            config_lib.TrainingConfig())
  # A 10x decay over the run from a larger initial rate.
  optimizer = config_lib.OptimizerConfig(lr=1e-3, min_lr=1e-5,
                                         lr_decay_steps=max(num_steps, 1))
  training = config_lib.TrainingConfig(
      pushforward_max_unroll=DEMO_PUSHFORWARD_MAX_UNROLL,
      pushforward_phase_steps=max(num_steps // 8, 1),
      pushforward_probability=DEMO_PUSHFORWARD_PROBABILITY)
  return DEMO_MODEL, optimizer, training


def score_model(data_path: str, model_path: str,
                model_config: config_lib.ModelConfig, output_dir: str,
                num_rollouts: Optional[int], num_eval_steps: int,
                render: bool) -> Dict[str, Any]:
  """One-step metrics, scored test rollouts and a GIF of the first one.

  Returns:
    `one_step` (`evaluation.evaluate`), `rollouts` (the `metrics.json` of
    `evaluation.evaluate_rollouts`, pickles in `{output_dir}/rollouts`) and
    `gif` and `physics_plot` (its centre-of-mass height and kinetic
    energy over time beside the ground truth; paths, or None).
  """
  one_step = evaluation.evaluate(data_path, model_path, model_config,
                                 split="test", num_eval_steps=num_eval_steps)
  rollouts = evaluation.evaluate_rollouts(
      data_path, model_path, os.path.join(output_dir, "rollouts"),
      model_config, split="test", num_rollouts=num_rollouts)
  gif = plot = None
  if render:
    gif = os.path.join(output_dir, "rollout_test_0.gif")
    plot = os.path.join(output_dir, "rollout_test_0_physics.png")
    first = rollout_files.load_rollout(rollouts["files"][0])
    animation.render_animation(first, gif)
    physics_plot.plot_physics(rollouts["metrics"][evaluation.CURVES][0],
                              first["metadata"], plot, "rollout_test_0")
  return {"model_path": os.path.abspath(model_path),
          "one_step": one_step, "rollouts": rollouts["metrics"],
          "per_trajectory": trajectory_rows(rollouts["metrics"],
                                            rollouts["files"]),
          "gif": os.path.abspath(gif) if gif else None,
          "physics_plot": os.path.abspath(plot) if plot else None}


def trajectory_rows(metrics: Dict[str, Any],
                    files: List[str]) -> List[Dict[str, Any]]:
  """Each test trajectory as a physicist would look at it.

  Args:
    metrics: `evaluation.evaluate_rollouts`' `metrics` (the model's and the
      baselines' per trajectory).
    files: its rollout pickles, in the same order.

  Returns:
    Per trajectory: `file`, `mse_full`, `ratio_to_better_baseline` (of
    that trajectory's better baseline), the kinetic-energy ratio (NaN for a
    ground truth at rest), the centre-of-mass error at the last step and
    the density ratio (NaN without neighbours), how far off the height at
    the side walls is (`metrics.physics_summary`), and the share out of the
    box (`compare.trajectory_row`).
  """
  rows = []
  for index, path in enumerate(files):
    scores = {name: metrics[name]["per_trajectory"][index]
              for name in ("model", *baselines.ROLLOUT_BASELINES)}
    rows.append({"file": os.path.basename(path),
                 **compare.trajectory_row(scores)})
  return rows


def format_trajectories(label: str, rows: List[Dict[str, Any]]) -> List[str]:
  """The per-trajectory table of one model, as lines."""
  width = max(len(row["file"]) for row in rows)
  lines = [f"{label}, per test trajectory:",
           f"  {'trajectory':<{width}}  {'full MSE':>10}  "
           f"{'/ better baseline':>17}  {'kinetic energy':>14}  "
           f"{'centre of mass off':>18}  {'density':>7}  "
           f"{'height at the walls off':>23}"]
  for row in rows:
    lines.append(
        f"  {row['file']:<{width}}  {row['mse_full']:>10.3e}  "
        f"{row['ratio_to_better_baseline']:>16.2f}x  "
        f"{row['kinetic_energy_ratio']:>13.2f}x  "
        f"{100 * row['centre_of_mass_error']:>10.1f}% of box  "
        f"{row['density_ratio']:>6.2f}x  "
        f"{100 * row['wall_height_error']:>15.1f}% of box")
  return lines


def run_demo(data_path: str, output_dir: str, num_steps: int,
             paper_model: bool, num_rollouts: Optional[int],
             num_eval_steps: int, seed: int, render: bool,
             pretrained: bool = True) -> Dict[str, Any]:
  """Runs both parts; returns the summary dict (also written as JSON).

  Args:
    data_path: dataset directory.
    output_dir: where models, rollouts, GIFs and `summary.json` go.
    num_steps: training steps of part 2 (0: skip it).
    paper_model: train the paper's model and recipe in part 2.
    num_rollouts: test trajectories rolled out (None: all).
    num_eval_steps: cap on one-step evaluation batches.
    seed: seeds training.
    render: write the GIFs.
    pretrained: run part 1 (only on the dataset it was trained on).
  """
  start = time.time()
  metadata = reading_utils.read_metadata(data_path)
  summary: Dict[str, Any] = {"data_path": os.path.abspath(data_path)}
  if pretrained and os.path.realpath(data_path) == os.path.realpath(
      reading_utils.bundled_dataset_path()):
    summary.update(score_pretrained(checkpoints.DEFAULT_PRETRAINED,
                                    output_dir, num_rollouts, num_eval_steps,
                                    render))
    for name in checkpoints.installed_pretrained():
      if name == checkpoints.DEFAULT_PRETRAINED:
        continue
      other_path = reading_utils.bundled_dataset_path(name)
      section = score_pretrained(name, os.path.join(output_dir, name),
                                 num_rollouts, num_eval_steps, render)
      section["data_path"] = os.path.abspath(other_path)
      section["baselines"] = _baselines(
          other_path, reading_utils.read_metadata(other_path), section,
          num_eval_steps)
      summary.setdefault("other_pretrained", {})[name] = section
  elif pretrained:
    logging.info("The pretrained models were trained on the bundled "
                 "samples, not on %s: skipping part 1.", data_path)

  if num_steps > 0:
    model_config, optimizer_config, training_config = demo_configs(
        paper_model, num_steps)
    model_path = os.path.join(output_dir,
                              "model_paper" if paper_model else "model_demo")
    tf.random.set_seed(seed)
    part_start = time.time()
    trainer.train(data_path, model_path, model_config, optimizer_config,
                  trainer.TrainOptions(num_steps=num_steps, seed=seed,
                                       log_every_steps=max(num_steps // 20,
                                                           1),
                                       checkpoint_every_steps=1000),
                  validation.ValidationOptions(every_steps=0),
                  training_config)
    train_seconds = time.time() - part_start
    summary["trained"] = score_model(data_path, model_path, model_config,
                                     output_dir, num_rollouts,
                                     num_eval_steps, render)
    summary["trained"].update(
        model="paper" if paper_model else "demo", train_steps=num_steps,
        train_seconds=round(train_seconds, 1),
        seconds=round(time.time() - part_start, 1),
        recipe=dataclasses.asdict(training_config))

  summary["baselines"] = _baselines(data_path, metadata, summary,
                                    num_eval_steps)
  summary["total_seconds"] = round(time.time() - start, 1)
  dataset_writer.write_json(os.path.join(output_dir, "summary.json"), summary)
  return summary


def score_pretrained(name: str, output_dir: str,
                     num_rollouts: Optional[int], num_eval_steps: int,
                     render: bool) -> Dict[str, Any]:
  """A shipped model on its bundled dataset's test split (`score_model`),
  with the evaluation options it was saved with (`pretrained`) and, when it
  has some, without them (`pretrained_bare`), in `{output_dir}/{part}`."""
  data_path = reading_utils.bundled_dataset_path(name)
  model_path = checkpoints.pretrained_model_path(name)
  model_config = _saved_model_config(model_path)
  parts = {}
  for part, config in (("pretrained", model_config),
                       ("pretrained_bare",
                        without_evaluation_options(model_config))):
    if config is None:
      continue
    start = time.time()
    parts[part] = score_model(data_path, model_path, config,
                              os.path.join(output_dir, part), num_rollouts,
                              num_eval_steps,
                              render and part == "pretrained")
    parts[part]["seconds"] = round(time.time() - start, 1)
  return parts


def without_evaluation_options(
    model_config: config_lib.ModelConfig
) -> Optional[config_lib.ModelConfig]:
  """The config with walls and relaxation off; None if both are off."""
  if not model_config.clamp_to_bounds and not model_config.relaxation_steps:
    return None
  return dataclasses.replace(model_config, clamp_to_bounds=False,
                             relaxation_steps=0)


def _saved_model_config(model_path: str) -> config_lib.ModelConfig:
  saved = config_lib.load(model_path)
  if saved is None:
    raise ValueError(f"{model_path} has no config.json")
  return config_lib.ModelConfig(**saved["model"])


def _baselines(data_path, metadata, summary, num_eval_steps):
  """The baselines' one-step and rollout metrics on the same trajectories."""
  rollouts = next(summary[part]["rollouts"] for part in ("trained",
                                                          "pretrained")
                  if part in summary)
  zero_acceleration = baselines.zero_acceleration_position_mse(
      data_path, "test", metadata, num_batches=num_eval_steps,
      moving_only=True)
  out = {name: dict(rollouts[name]["mean"])
         for name in baselines.ROLLOUT_BASELINES}
  out["zero_acceleration"] = {"one_step_position_mse": zero_acceleration}
  return out


def model_row(part: Dict[str, Any]) -> Dict[str, float]:
  """The summary columns of a model: rollout means and the one-step MSE of
  the moving particles, as the rollout metrics and the zero-acceleration
  baseline count it (the original's counts kinematic particles too, which a
  model trained with its loss mask never learned to hold still)."""
  row = dict(part["rollouts"]["model"]["mean"])
  one_step = part["one_step"]
  row["one_step_position_mse"] = one_step.get(
      "one_step_position_mse_moving", one_step["one_step_position_mse"])
  return row


def verdict(metrics: Dict[str, Any], baseline_rows: Dict[str, Any]) -> str:
  """One line: full-rollout MSE against the better baseline, and leaks."""
  mean = metrics["rollouts"]["model"]["mean"]
  best_name = min(baselines.ROLLOUT_BASELINES,
                  key=lambda name: baseline_rows[name]["mse_full"])
  ratio = mean["mse_full"] / baseline_rows[best_name]["mse_full"]
  leaks = ("no particle left the domain" if mean["out_of_domain"] == 0 else
           f"{100 * mean['out_of_domain']:.2f}% of particle-steps outside the "
           "domain")
  return (f"full-rollout MSE {ratio:.2f}x the better baseline "
          f"({best_name.replace('_', ' ')}); {leaks}")


BASELINE_LABELS = {"constant_velocity": "constant velocity",
                   "frozen": "frozen",
                   "zero_acceleration": "zero acceleration (one step)"}


def _table(rows: List[Any]) -> List[str]:
  """`(label, metrics)` rows under the `COLUMNS` headers, as lines."""
  width = max(len(name) for name, _ in rows)
  lines = [" " * width + "".join(f"  {header:>13}" for _, header in COLUMNS)]
  for name, row in rows:
    lines.append(f"{name:<{width}}" + "".join(
        f"  {row[key]:>13.3e}" if key in row else " " * 15
        for key, _ in COLUMNS))
  return lines


def _details(section: Dict[str, Any]) -> List[str]:
  """Verdicts, per-trajectory tables and file paths of a section's parts."""
  lines = [""]
  for part, label in PARTS:
    if part in section:
      lines.append(f"{label}: " +
                   verdict(section[part], section["baselines"]))
  for part, label in PARTS:
    if part in section and section[part].get("per_trajectory"):
      lines += [""] + format_trajectories(label,
                                          section[part]["per_trajectory"])
  lines.append("")
  for part, _ in PARTS:
    if part in section and section[part]["gif"]:
      lines.append(f"animation ({part}): {section[part]['gif']}")
      if section[part].get("physics_plot"):
        lines.append(f"centre of mass and kinetic energy ({part}): "
                     f"{section[part]['physics_plot']}")
  return lines


def _extent(section: Dict[str, Any]) -> str:
  some = next(part for part, _ in PARTS if part in section)
  rollouts = section[some]["rollouts"]
  return (f"{len(rollouts['files'])} trajectories of "
          f"{rollouts['steps_with_ground_truth']} steps")


def format_summary(summary: Dict[str, Any]) -> str:
  """The summary table and a verdict line per model; then, for each other
  shipped model, its own table on its own test split."""
  rows = []
  if "pretrained" in summary:
    rows.append(("pretrained (shipped)", model_row(summary["pretrained"])))
  if "pretrained_bare" in summary:
    rows.append(("pretrained, walls and relaxation off",
                 model_row(summary["pretrained_bare"])))
  if "trained" in summary:
    trained = summary["trained"]
    rows.append((f"trained here ({trained['model']}, "
                 f"{trained['train_steps']} steps)", model_row(trained)))
  rows += [(BASELINE_LABELS[name], metrics)
           for name, metrics in summary["baselines"].items()]
  lines = ["", f"== Demo summary: test split, {_extent(summary)}, "
           f"{summary['total_seconds']:.0f} s =="]
  lines += _table(rows) + _details(summary)
  for name, section in summary.get("other_pretrained", {}).items():
    rows = [(label, model_row(section[part])) for part, label in PARTS
            if part in section]
    rows += [(BASELINE_LABELS[key], metrics)
             for key, metrics in section["baselines"].items()]
    lines += ["", f"== The pretrained {name} model: its bundled test split "
              f"({section['data_path']}), {_extent(section)} =="]
    lines += _table(rows) + _details(section)
  lines.append("One-step and rollout metrics over moving particles "
               "(docs/metrics.md); per trajectory in summary.json.")
  return "\n".join(lines)


def define_flags() -> None:
  """Registers the CLI flags (also used by `benchmarks.demo_figures`), only
  when run as a program, so that importing the module clashes with no other
  CLI's flags."""
  flags.DEFINE_string("data_path", None,
                      "Dataset directory (default: the bundled sample).")
  flags.DEFINE_string("output_dir", "outputs/demo",
                      "Where the models, rollouts, GIFs and summary go.")
  flags.DEFINE_integer("num_steps", 6000,
                       "Training steps of part 2 (0: only the pretrained "
                       "model).", lower_bound=0)
  flags.DEFINE_boolean("paper_model", False,
                       "Train the paper's model with the paper's recipe in "
                       "part 2 instead of the small demo configuration.")
  flags.DEFINE_boolean("pretrained", True,
                       "Part 1: roll out the pretrained model (on the bundled "
                       "sample only).")
  flags.DEFINE_integer("num_rollouts", None,
                       "Test trajectories to roll out (default: all).",
                       lower_bound=1)
  flags.DEFINE_integer("num_eval_steps", 200, "Batches of one-step evaluation.",
                       lower_bound=1)
  flags.DEFINE_integer("seed", 0, "Random seed.")
  flags.DEFINE_boolean("render", True, "Render the first rollouts to GIFs.")


FLAGS = flags.FLAGS


def main(argv):
  del argv
  devices.configure_devices()
  data_path = FLAGS.data_path or reading_utils.bundled_dataset_path()
  if not FLAGS.data_path:
    logging.info("Using the bundled dataset %s.", data_path)
  try:
    summary = run_demo(data_path, FLAGS.output_dir, FLAGS.num_steps,
                       FLAGS.paper_model, FLAGS.num_rollouts,
                       FLAGS.num_eval_steps, FLAGS.seed, FLAGS.render,
                       FLAGS.pretrained)
  except (ValueError, tf.errors.InvalidArgumentError) as error:
    raise SystemExit(f"demo: error: {error}") from None
  print(format_summary(summary))


if __name__ == "__main__":
  define_flags()
  app.run(main)
