"""Scores one trained model of the recipe study on one split, in one process.

What `train --mode=eval` and one `train --mode=eval_rollout` per evaluation
variant of the study (`recipe_study.ROLLOUT_VARIANTS`: as trained, with
relaxation, behind walls, behind walls with relaxation) give, with the same
library calls and the same defaults, so the same numbers and the same rollout
folders: one TensorFlow start per split instead of five.

  python -m learning_to_simulate.benchmarks.score_split \\
      --data_path=DATA --model_path=RUN/model --run_dir=RUN --split=valid \\
      --parts=one_step,rollout,relaxation,walls,walls_relaxation \\
      --output=RUN/scores_valid.json

Writes `--output` (JSON): the one-step MSEs (`one_step_position_mse` and,
with moving particles, `one_step_position_mse_moving`, to the 8 significant
digits `train --mode=eval` prints), and per rollout variant asked for the
model's mean rollout metrics (`metrics.json`'s `model.mean`); with the
`rollout` variant, the physics-free baselines' means as `baselines`.
"""

import sys
from typing import Any, Dict, Sequence

from absl import app
from absl import flags

from learning_to_simulate.benchmarks import recipe_study
from learning_to_simulate.data import dataset_writer
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import devices
from learning_to_simulate.training import evaluation

ONE_STEP = "one_step"


def score_split(data_path: str, model_path: str, run_dir: str, split: str,
                parts: Sequence[str]) -> Dict[str, Any]:
  """The scores of `parts` (`ONE_STEP` and keys of `ROLLOUT_VARIANTS`).

  Rollouts go to `recipe_study.rollout_directory(run_dir, folder, split)`.
  """
  variants = {key: (overrides, folder) for key, _, overrides, folder
              in recipe_study.ROLLOUT_VARIANTS}
  unknown = set(parts) - set(variants) - {ONE_STEP}
  if unknown:
    raise ValueError(f"--parts: unknown {sorted(unknown)}; expected "
                     f"{ONE_STEP} or one of {sorted(variants)}")
  saved = config_lib.load(model_path)

  def model_config(overrides):
    # As the `train` CLI resolves its evaluation flags against config.json.
    return config_lib.resolve(saved, "model", config_lib.ModelConfig,
                              dict(overrides), model_path, evaluating=True)

  scores = {}
  if ONE_STEP in parts:
    metrics = evaluation.evaluate(data_path, model_path, model_config({}),
                                  split=split)
    for key in recipe_study.ONE_STEP_KEYS:
      if key in metrics:  # The second needs moving particles.
        scores[key] = float(f"{metrics[key]:.8g}")
  for key in parts:
    if key == ONE_STEP:
      continue
    overrides, folder = variants[key]
    summary = evaluation.evaluate_rollouts(
        data_path, model_path,
        recipe_study.rollout_directory(run_dir, folder, split),
        model_config(overrides), split=split)["metrics"]
    scores[key] = summary["model"]["mean"]
    if key == "rollout":
      scores["baselines"] = {name: summary[name]["mean"]
                             for name in ("constant_velocity", "frozen")}
  return scores


def _define_flags() -> None:
  for name in ("data_path", "model_path", "run_dir", "split", "output"):
    flags.DEFINE_string(name, None, help="See the module docstring.",
                        required=True)
  flags.DEFINE_list("parts", [ONE_STEP] + [
      key for key, _, _, _ in recipe_study.ROLLOUT_VARIANTS],
                    help="What to score: one_step and rollout variants.")


def main(argv: Sequence[str]) -> None:
  del argv
  values = flags.FLAGS
  devices.configure_devices()
  try:
    scores = score_split(values.data_path, values.model_path, values.run_dir,
                         values.split, values.parts)
  except (ValueError, OSError) as error:
    sys.exit(f"score_split: error: {error}")
  dataset_writer.write_json(values.output, scores)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
