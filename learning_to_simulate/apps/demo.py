"""The main job end to end: train, evaluate, roll out and render.

`python -m learning_to_simulate.apps.demo` trains a GNS (arXiv:2002.09405) on the
dataset bundled with the package (or `--data_path`) for a budget that fits
in minutes on a laptop CPU, then runs one-step evaluation and rollouts,
renders the first rollout to a GIF and prints a summary against two
physics-free baselines: zero acceleration (one step) and constant-velocity
extrapolation (rollout).

By default it uses a smaller model and a faster learning-rate schedule than
the paper, so it finishes quickly; `--paper_model` switches to the paper's
configuration (latent 128, 10 message-passing steps, lr 1e-4 -> 1e-6).
"""

import os
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from learning_to_simulate.data import dataset_writer
from learning_to_simulate import reading_utils
from learning_to_simulate.training import baselines
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import devices
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import trainer
from learning_to_simulate.visualization import animation
from learning_to_simulate.visualization import rollout_files

flags.DEFINE_string("data_path", None,
                    "Dataset directory (default: the bundled sample).")
flags.DEFINE_string("output_dir", "outputs/demo",
                    "Where the model, rollouts, GIF and summary go.")
flags.DEFINE_integer("num_steps", 6000, "Training steps.")
flags.DEFINE_boolean("paper_model", False,
                     "Use the paper's model and learning-rate schedule "
                     "instead of the small demo configuration.")
flags.DEFINE_integer("num_rollouts", 2, "Test trajectories to roll out.")
flags.DEFINE_integer("short_horizon", 20,
                     "Steps of the short-horizon rollout comparison.")
flags.DEFINE_integer("num_eval_steps", 200,
                     "Batches of one-step evaluation.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_boolean("render", True, "Render the first rollout to a GIF.")

FLAGS = flags.FLAGS

# Small and quick to train; everything else is the paper's model.
DEMO_MODEL = config_lib.ModelConfig(latent_size=64, hidden_size=64,
                                    hidden_layers=2, message_passing_steps=5)


def demo_configs(paper_model: bool, num_steps: int):
  """Model and optimizer configs for the demo or the paper's setting."""
  if paper_model:
    return config_lib.ModelConfig(), config_lib.OptimizerConfig()
  # A 10x decay over the run from a larger initial rate.
  return DEMO_MODEL, config_lib.OptimizerConfig(
      lr=1e-3, min_lr=1e-5, lr_decay_steps=max(num_steps, 1))


def run_demo(data_path: str, output_dir: str, num_steps: int,
             paper_model: bool, num_rollouts: int, short_horizon: int,
             num_eval_steps: int, seed: int, render: bool):
  """Runs the main job; returns the summary dict (also written as JSON)."""
  start = time.time()
  metadata = reading_utils.read_metadata(data_path)
  model_config, optimizer_config = demo_configs(paper_model, num_steps)
  model_path = os.path.join(output_dir,
                            "model_paper" if paper_model else "model_demo")
  rollout_path = os.path.join(output_dir, "rollouts")
  tf.random.set_seed(seed)

  trainer.train(data_path, model_path, model_config, optimizer_config,
                trainer.TrainOptions(num_steps=num_steps, seed=seed,
                                     log_every_steps=max(num_steps // 20, 1),
                                     checkpoint_every_steps=1000))
  train_seconds = time.time() - start

  one_step = evaluation.evaluate(data_path, model_path, model_config,
                                 split="test", num_eval_steps=num_eval_steps)
  zero_acceleration = baselines.zero_acceleration_position_mse(
      data_path, "test", metadata, num_batches=num_eval_steps)

  rollouts = evaluation.evaluate_rollouts(
      data_path, model_path, rollout_path, model_config, split="test",
      num_rollouts=num_rollouts)
  model_short, baseline_short, baseline_full = [], [], []
  first_rollout = None
  for path in rollouts["files"]:
    rollout = rollout_files.load_rollout(path)
    if first_rollout is None:
      first_rollout = rollout
    constant_velocity = baselines.constant_velocity_rollout(rollout)
    truth = rollout["ground_truth_rollout"]
    model_short.append(baselines.rollout_mse(rollout["predicted_rollout"],
                                             truth, short_horizon))
    baseline_short.append(baselines.rollout_mse(constant_velocity, truth,
                                                short_horizon))
    baseline_full.append(baselines.rollout_mse(constant_velocity, truth))

  gif_path = None
  if render:
    gif_path = os.path.join(output_dir, "rollout_test_0.gif")
    animation.render_animation(first_rollout, gif_path)

  summary = {
      "data_path": os.path.abspath(data_path),
      "model_path": os.path.abspath(model_path),
      "model": "paper" if paper_model else "demo",
      "train_steps": num_steps,
      "train_seconds": round(train_seconds, 1),
      "one_step_position_mse": one_step["one_step_position_mse"],
      "one_step_position_mse_zero_acceleration": zero_acceleration,
      "loss_mse": one_step["loss_mse"],
      "short_horizon_steps": short_horizon,
      "rollout_mse_short": float(np.mean(model_short)),
      "rollout_mse_short_constant_velocity": float(np.mean(baseline_short)),
      "rollout_mse_full": rollouts["rollout_error_mse"],
      "rollout_mse_full_constant_velocity": float(np.mean(baseline_full)),
      "rollouts": [os.path.abspath(p) for p in rollouts["files"]],
      "gif": os.path.abspath(gif_path) if gif_path else None,
      "total_seconds": round(time.time() - start, 1),
  }
  dataset_writer.write_json(os.path.join(output_dir, "summary.json"), summary)
  return summary


def format_summary(summary) -> str:
  def ratio(model, baseline):
    return f"{model / baseline:.3f}x the baseline" if baseline else ""
  lines = [
      "",
      f"== Demo summary ({summary['model']} model, {summary['train_steps']} "
      f"steps, {summary['total_seconds']:.0f}s) ==",
      f"one-step position MSE      {summary['one_step_position_mse']:.3e}"
      f"   zero acceleration {summary['one_step_position_mse_zero_acceleration']:.3e}"
      f"   ({ratio(summary['one_step_position_mse'], summary['one_step_position_mse_zero_acceleration'])})",
      f"rollout MSE, {summary['short_horizon_steps']} steps       "
      f"{summary['rollout_mse_short']:.3e}   constant velocity "
      f"{summary['rollout_mse_short_constant_velocity']:.3e}   "
      f"({ratio(summary['rollout_mse_short'], summary['rollout_mse_short_constant_velocity'])})",
      f"rollout MSE, full          {summary['rollout_mse_full']:.3e}   "
      f"constant velocity {summary['rollout_mse_full_constant_velocity']:.3e}",
      f"model:    {summary['model_path']}",
      f"rollouts: {os.path.dirname(summary['rollouts'][0])}",
  ]
  if summary["gif"]:
    lines.append(f"animation: {summary['gif']}")
  return "\n".join(lines)


def main(argv):
  del argv
  devices.configure_devices()
  data_path = FLAGS.data_path or reading_utils.bundled_dataset_path()
  if not FLAGS.data_path:
    logging.info("Using the bundled dataset %s.", data_path)
  try:
    summary = run_demo(data_path, FLAGS.output_dir, FLAGS.num_steps,
                       FLAGS.paper_model, FLAGS.num_rollouts,
                       FLAGS.short_horizon, FLAGS.num_eval_steps, FLAGS.seed,
                       FLAGS.render)
  except (ValueError, tf.errors.InvalidArgumentError) as error:
    raise SystemExit(f"demo: error: {error}") from None
  print(format_summary(summary))


if __name__ == "__main__":
  app.run(main)
