"""Models side by side on one split, per trajectory, as a physicist would.

    python -m learning_to_simulate.apps.compare --data_path=/data/water \\
      --split=valid --output=compare.json \\
      --model=shipped=pretrained:water_drop,clamp_to_bounds=0 \\
      --model=mine=/models/water:best,relaxation_steps=3

Each `--model` is `NAME=SOURCE[,OPTION=VALUE...]`:
- `SOURCE`: a model directory, with `:CHECKPOINT` to pick one (`latest`, the
  default; `best`; `ckpt-N` in that directory, or a checkpoint path), or
  `pretrained:NAME` for a model shipped with the package;
- `OPTION`: an evaluation option (`clamp_to_bounds` 0/1, `relaxation_steps`,
  `relaxation_step_size`, `relaxation_rest_density`,
  `relaxation_mirror_walls` 0/1) other than the one the
  model was saved with. The same directory may appear twice with different
  options (walls on and off, with and without relaxation).

Every model rolls out every trajectory of the split (`--limit` the first
ones), normalized with the metadata it was trained with (which it keeps), and
each rollout is scored against the ground truth and the two
physics-free baselines (`api.score`). The table on stdout has, per model, the
means over trajectories of the full-rollout MSE, its ratio to that
trajectory's better baseline (mean and worst), the kinetic energy over the
rollout against the truth's, the centre of mass's distance from the truth's at
the last step as a share of the box (mean and worst), how packed the fluid
is against the truth (`density_ratio`: above 1 it compacts) and the share of
particle-steps out of the box; then a row per trajectory. `--output` keeps it
all as JSON (written atomically).
"""

import dataclasses
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import numpy as np

from learning_to_simulate import api
from learning_to_simulate import reading_utils
from learning_to_simulate.data import dataset_writer
from learning_to_simulate.training import baselines

# Evaluation options and how their values are read.
OPTION_TYPES = {"clamp_to_bounds": "bool", "relaxation_steps": "int",
                "relaxation_step_size": "float",
                "relaxation_rest_density": "float",
                "relaxation_mirror_walls": "bool"}
PRETRAINED_PREFIX = "pretrained:"

# Summary columns: (key, header, format).
COLUMNS = (("mse_full", "full MSE", "{:.3e}"),
           ("ratio_mean", "/ better baseline", "{:.3f}x"),
           ("ratio_worst", "worst", "{:.3f}x"),
           ("kinetic_energy_ratio", "kinetic energy", "{:.2f}x"),
           ("centre_of_mass_error", "centre of mass off", "{:.1%}"),
           ("centre_of_mass_worst", "worst", "{:.1%}"),
           ("density_ratio", "density", "{:.2f}x"),
           ("wall_height_error", "height at the walls off", "{:.1%}"),
           ("out_of_domain", "out of the box", "{:.2%}"))


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """One `--model`: a name, where its weights are and its options."""
  name: str
  model_path: Optional[str] = None
  pretrained: Optional[str] = None
  checkpoint: str = "latest"
  options: Dict[str, Any] = dataclasses.field(default_factory=dict)


def _option_value(spec: str, key: str, text: str) -> Any:
  kind = OPTION_TYPES[key]
  try:
    if kind == "bool":
      if text.lower() not in ("0", "1", "true", "false"):
        raise ValueError(text)
      return text.lower() in ("1", "true")
    return int(text) if kind == "int" else float(text)
  except ValueError:
    raise ValueError(f"--model={spec}: {key} must be "
                     f"{'0 or 1' if kind == 'bool' else 'a number'}, "
                     f"got {text!r}") from None


def parse_model_spec(spec: str) -> ModelSpec:
  """`NAME=SOURCE[,OPTION=VALUE...]` (see the module docstring).

  Raises:
    ValueError: one line naming the spec and what was expected.
  """
  name, sep, rest = spec.partition("=")
  if not sep or not name or not rest:
    raise ValueError(f"--model={spec}: expected NAME=SOURCE[,OPTION=VALUE...]"
                     ", e.g. mine=/models/water:best,relaxation_steps=3")
  source, *pairs = rest.split(",")
  options = {}
  for pair in pairs:
    key, sep, value = pair.partition("=")
    if not sep or key not in OPTION_TYPES:
      raise ValueError(f"--model={spec}: {pair!r} is not OPTION=VALUE with "
                       f"OPTION one of {', '.join(OPTION_TYPES)}")
    options[key] = _option_value(spec, key, value)
  if source.startswith(PRETRAINED_PREFIX):
    return ModelSpec(name, pretrained=source[len(PRETRAINED_PREFIX):],
                     options=options)
  model_path, _, checkpoint = source.partition(":")
  if not model_path:
    raise ValueError(f"--model={spec}: no model directory before ':'")
  checkpoint = checkpoint or "latest"
  if checkpoint not in ("latest", "best") and not os.path.isabs(checkpoint):
    checkpoint = os.path.join(model_path, checkpoint)
  return ModelSpec(name, model_path=model_path, checkpoint=checkpoint,
                   options=options)


def trajectory_row(scores: Dict[str, Dict[str, float]]) -> Dict[str, float]:
  """One trajectory's `api.score` as the table's numbers."""
  model = scores["model"]
  better = min(scores[name]["mse_full"]
               for name in baselines.ROLLOUT_BASELINES)
  return {"mse_full": model["mse_full"],
          "ratio_to_better_baseline": model["mse_full"] / better,
          "kinetic_energy_ratio": model.get("kinetic_energy_ratio",
                                            float("nan")),
          "centre_of_mass_error": model["centre_of_mass_error"],
          "density_ratio": model.get("density_ratio", float("nan")),
          "wall_height_error": model.get("wall_height_error", float("nan")),
          "out_of_domain": model["out_of_domain"]}


def summarize(rows: Sequence[Dict[str, float]]) -> Dict[str, float]:
  """Means (and worsts) over a model's trajectory rows.

  The kinetic-energy, density and wall-height means leave out trajectories
  where the value is undefined (NaN: a truth at rest, without neighbours, or
  a box without side walls); NaN if all are.
  """
  def column(key):
    return np.array([row[key] for row in rows], np.float64)

  def defined_mean(key):
    values = column(key)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")
  return {"mse_full": float(column("mse_full").mean()),
          "ratio_mean": float(column("ratio_to_better_baseline").mean()),
          "ratio_worst": float(column("ratio_to_better_baseline").max()),
          "kinetic_energy_ratio": defined_mean("kinetic_energy_ratio"),
          "centre_of_mass_error": float(column("centre_of_mass_error").mean()),
          "centre_of_mass_worst": float(column("centre_of_mass_error").max()),
          "density_ratio": defined_mean("density_ratio"),
          "wall_height_error": defined_mean("wall_height_error"),
          "out_of_domain": float(column("out_of_domain").mean())}


def _cell(value: float, fmt: str) -> str:
  return "n/a" if math.isnan(value) else fmt.format(value)


def format_markdown(result: Dict[str, Any]) -> str:
  """The summary table, then one row per model and trajectory."""
  lines = [f"{result['split']} split of {result['data_path']}, "
           f"{result['num_trajectories']} trajectories; metrics over moving "
           "particles, means over trajectories", "",
           "| model | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
           "|---" * (len(COLUMNS) + 1) + "|"]
  for name, model in result["models"].items():
    lines.append(f"| {name} | " + " | ".join(
        _cell(model["summary"][key], fmt) for key, _, fmt in COLUMNS) + " |")
  lines += ["", "| model | trajectory | full MSE | / better baseline | "
            "kinetic energy | centre of mass off | density | "
            "height at the walls off | out of the box |",
            "|---|---|---|---|---|---|---|---|---|"]
  for name, model in result["models"].items():
    for index, row in enumerate(model["per_trajectory"]):
      lines.append(
          f"| {name} | {index} | {row['mse_full']:.3e} | "
          f"{row['ratio_to_better_baseline']:.3f}x | "
          f"{_cell(row['kinetic_energy_ratio'], '{:.2f}x')} | "
          f"{row['centre_of_mass_error']:.1%} | "
          f"{_cell(row['density_ratio'], '{:.2f}x')} | "
          f"{_cell(row['wall_height_error'], '{:.1%}')} | "
          f"{row['out_of_domain']:.2%} |")
  return "\n".join(lines)


def compare(data_path: str, split: str, specs: Sequence[ModelSpec],
            limit: Optional[int] = None) -> Dict[str, Any]:
  """Rolls every model out on the split's trajectories and scores them.

  Returns:
    `data_path`, `split`, `num_trajectories` and `models`: name ->
    `source`, `options`, `summary` (`summarize`) and `per_trajectory`
    (`trajectory_row`s, in the split's order).

  Raises:
    ValueError: two models with one name, or a model that cannot be loaded
      (from `api.load_simulator`).
  """
  names = [spec.name for spec in specs]
  repeated = sorted({name for name in names if names.count(name) > 1})
  if repeated:
    raise ValueError(f"--model: the name(s) {', '.join(repeated)} are given "
                     "twice; give each model its own NAME")
  trajectories = api.load_trajectories(data_path, split, limit=limit)
  models = {}
  for spec in specs:
    # A model normalizes with the metadata it was trained with, which it
    # keeps (a model trained before models kept it: the dataset's).
    own_metadata = spec.pretrained or os.path.exists(os.path.join(
        spec.model_path, reading_utils.METADATA_FILENAME))
    simulator = api.load_simulator(
        model_path=spec.model_path, pretrained=spec.pretrained or False,
        data_path=None if own_metadata else data_path,
        checkpoint=spec.checkpoint, **spec.options)
    start = time.time()
    rows = [trajectory_row(api.score(simulator.rollout(trajectory)))
            for trajectory in trajectories]
    logging.info("%s: %d trajectories in %.0f s, mean full MSE %.3e",
                 spec.name, len(rows), time.time() - start,
                 summarize(rows)["mse_full"])
    models[spec.name] = {
        "source": (PRETRAINED_PREFIX + spec.pretrained if spec.pretrained
                   else f"{spec.model_path}:{spec.checkpoint}"),
        "options": dict(spec.options), "summary": summarize(rows),
        "per_trajectory": rows}
  return {"data_path": data_path or "the bundled water sample",
          "split": split,
          "num_trajectories": len(trajectories), "models": models}


def define_flags() -> None:
  flags.DEFINE_string("data_path", None, "The dataset (default: the bundled "
                      "water sample).")
  flags.DEFINE_string("split", "valid", "The split to compare on (choose "
                      "on valid, report on test).")
  flags.DEFINE_multi_string("model", None, "NAME=SOURCE[,OPTION=VALUE...] "
                            "(see the module docstring); repeat it.")
  flags.DEFINE_integer("limit", None, "Only the split's first N "
                       "trajectories.")
  flags.DEFINE_string("output", None, "Also write the result as JSON here.")
  flags.mark_flag_as_required("model")


def main(argv: List[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  options = flags.FLAGS
  try:
    specs = [parse_model_spec(spec) for spec in options.model]
    result = compare(options.data_path, options.split, specs, options.limit)
  except (ValueError, OSError) as error:
    sys.exit(f"compare: error: {error}")
  print(format_markdown(result))
  if options.output:
    dataset_writer.write_json(options.output, result)


if __name__ == "__main__":
  define_flags()
  app.run(main)
