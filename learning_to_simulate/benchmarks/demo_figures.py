"""The demo's figures, and the pretrained model's, as recorded in BENCHMARKS.md.

Runs the main job (`apps.demo.run_demo`: the shipped pretrained model, then a
model trained for `--num_steps`) on the bundled sample and prints its
summary as a markdown table, with each model's full-rollout MSE against the
better baseline and the wall time of each part.

  python -m learning_to_simulate.benchmarks.demo_figures \\
      --output_dir=outputs/demo_figures

takes the demo's flags (`--num_steps`, `--output_dir`, `--seed`, ...).
"""

from typing import Any, Dict, Sequence

from absl import app
from absl import flags

from learning_to_simulate.apps import demo
from learning_to_simulate.benchmarks import report as report_lib
from learning_to_simulate import reading_utils
from learning_to_simulate.training import baselines


def figures_table(summary: Dict[str, Any]) -> str:
  """Markdown: a row per model and baseline, the demo's columns."""
  header = ["", *(title for _, title in demo.COLUMNS),
            "full MSE / better baseline"]
  best = min(summary["baselines"][name]["mse_full"]
             for name in baselines.ROLLOUT_BASELINES)
  rows = []
  for part, label in (("pretrained", "pretrained (shipped)"),
                      ("trained", "trained here")):
    if part in summary:
      row = demo.model_row(summary[part])
      rows.append([label, *(f"{row[key]:.3e}" for key, _ in demo.COLUMNS),
                   f"{row['mse_full'] / best:.2f}"])
  for name in (*baselines.ROLLOUT_BASELINES, "zero_acceleration"):
    metrics = summary["baselines"][name]
    rows.append([name.replace("_", " "),
                 *(f"{metrics[key]:.3e}" if key in metrics else ""
                   for key, _ in demo.COLUMNS),
                 f"{metrics['mse_full'] / best:.2f}"
                 if "mse_full" in metrics else ""])
  return report_lib.format_markdown_table(header, rows)


# The demo's own flags (`--num_steps`, `--output_dir`, ...) apply.
FLAGS = flags.FLAGS


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  summary = demo.run_demo(reading_utils.bundled_dataset_path(),
                          FLAGS.output_dir, FLAGS.num_steps,
                          paper_model=False, num_rollouts=None,
                          num_eval_steps=FLAGS.num_eval_steps,
                          seed=FLAGS.seed, render=FLAGS.render)
  print(figures_table(summary))
  for part in ("pretrained", "trained"):
    if part in summary:
      print(f"{part}: {summary[part]['seconds']} s")
  if "trained" in summary:
    print(f"training: {summary['trained']['train_seconds']} s")
  print(f"total: {summary['total_seconds']} s")


if __name__ == "__main__":
  demo.define_flags()
  app.run(main)
