"""What leaving out the edges between kinematic particles saves in training.

Times, in one process on one dataset with kinematic particles (wall
particles, as `generate_dataset --wall_layers=2` makes them, or obstacles),
the demo's model size with and without `--nokinematic_pair_edges`:
training steps on the same batches, in alternating rounds so that a busy
machine slows both alike, and the edges per batch.

  python -m learning_to_simulate.benchmarks.kinematic_edges \\
      --data_path=/work/data/water_drop_walls_sample
"""

import dataclasses
import json
import time
from typing import Any, Dict, List

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from learning_to_simulate import connectivity_utils
from learning_to_simulate import reading_utils
from learning_to_simulate.data import common
from learning_to_simulate.model import build
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import optimizers
from learning_to_simulate.training import train_step as train_step_lib

# The demo's model size (`apps.demo`), which the shipped models have.
MODEL = config_lib.ModelConfig(latent_size=64, hidden_size=64,
                               hidden_layers=2, message_passing_steps=5)


def edge_counts(batch: Any, radius: float) -> Dict[str, int]:
  """Edges of one batch's graph, with and without kinematic pairs."""
  features, _ = batch
  positions = features["position"][:, -1]
  n_node = features["n_particles_per_example"]
  senders, receivers, n_edge = (
      connectivity_utils.compute_connectivity_for_batch_tf(
          positions, n_node, radius))
  _, _, kept = connectivity_utils.drop_pairs(
      senders, receivers, n_node,
      common.kinematic_mask(features["particle_type"]))
  return {"all": int(tf.reduce_sum(n_edge)), "kept": int(tf.reduce_sum(kept)),
          "particles": int(tf.reduce_sum(n_node)),
          "kinematic": int(tf.reduce_sum(tf.cast(common.kinematic_mask(
              features["particle_type"]), tf.int32)))}


def measure(data_path: str, steps: int = 50, rounds: int = 3,
            batch_size: int = 2,
            model_config: config_lib.ModelConfig = MODEL) -> Dict[str, Any]:
  """Seconds per training step of both graphs, their ratio and edges.

  Args:
    data_path: dataset directory (its train split).
    steps: timed training steps per round and graph.
    rounds: alternating rounds; the median round counts.
    batch_size: training batch size.
    model_config: the model (its `kinematic_pair_edges` is set both ways).
  """
  metadata = reading_utils.read_metadata(data_path)
  batches = list(reading_utils.get_one_step_dataset(
      data_path, "train", batch_size, metadata, is_training=True,
      seed=0).take(steps))
  steps_of = {}
  for name, keep in (("all", True), ("kept", False)):
    config = dataclasses.replace(model_config, kinematic_pair_edges=keep)
    simulator = build.build_simulator(metadata, config)
    optimizer = optimizers.make_optimizer(config_lib.OptimizerConfig(),
                                          simulator)
    steps_of[name] = train_step_lib.loss_of(train_step_lib.make_train_step(
        simulator, optimizer, train_step_lib.OneStep(config.noise_std),
        metadata))
    for batch in batches:  # Traces every shape once, untimed.
      float(steps_of[name](batch))
  seconds: Dict[str, List[float]] = {"all": [], "kept": []}
  for _ in range(rounds):
    for name, step in steps_of.items():
      start = time.perf_counter()
      for batch in batches:
        loss = step(batch)
      float(loss)
      seconds[name].append((time.perf_counter() - start) / len(batches))
  median = {name: float(np.median(values)) for name, values in seconds.items()}
  radius = build.connectivity_radius(metadata, model_config)
  counts = [edge_counts(batch, radius)
            for batch in batches]
  return {
      "data_path": data_path, "steps": steps, "rounds": rounds,
      "batch_size": batch_size,
      "seconds_per_step": median,
      "time_ratio": median["kept"] / median["all"],
      "mean_edges": {key: float(np.mean([c[key] for c in counts]))
                     for key in ("all", "kept")},
      "mean_particles": float(np.mean([c["particles"] for c in counts])),
      "mean_kinematic": float(np.mean([c["kinematic"] for c in counts])),
  }


def main(argv):
  del argv
  result = measure(FLAGS.data_path, FLAGS.steps, FLAGS.rounds)
  print(json.dumps(result, indent=1))
  print(f"training step: {1000 * result['seconds_per_step']['all']:.1f} ms "
        f"with every edge, {1000 * result['seconds_per_step']['kept']:.1f} "
        f"ms without the kinematic pairs ({result['time_ratio']:.2f}x); "
        f"edges per batch {result['mean_edges']['all']:.0f} -> "
        f"{result['mean_edges']['kept']:.0f}")


if __name__ == "__main__":
  FLAGS = flags.FLAGS
  flags.DEFINE_string("data_path", None, "Dataset with kinematic particles.",
                      required=True)
  flags.DEFINE_integer("steps", 50, "Timed training steps per round.")
  flags.DEFINE_integer("rounds", 3, "Alternating rounds (median counts).")
  app.run(main)
