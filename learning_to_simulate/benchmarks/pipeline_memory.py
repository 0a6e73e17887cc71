"""Peak RSS of training against dataset size.

Writes synthetic datasets that differ only in their number of training
trajectories, trains the default model on each for a few steps in a fresh
process (`python -m learning_to_simulate.train --mode=train`), and reports
each run's peak RSS and time. A pipeline that streams its input (ours: records
decoded in the graph, windows cut lazily, a bounded shuffle buffer) uses the
same memory for every size; one that loads the dataset grows with it.

    python -m learning_to_simulate.benchmarks.pipeline_memory --trajectories=8,128
"""

import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List, Sequence

from absl import app
from absl import flags
import numpy as np

from learning_to_simulate.benchmarks import report as report_lib
from learning_to_simulate.benchmarks import timing
from learning_to_simulate.benchmarks import workload as workload_lib
from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer

# Particles oscillate about their lattice sites with this amplitude (in
# lattice spacings) and period (frames), with random phases and directions:
# velocities and accelerations of the order of the throughput workload's,
# and the same neighbour counts in every frame.
AMPLITUDE = 0.2
PERIOD = 50


def oscillating_trajectory(particles: int, frames: int,
                           rng: np.random.Generator) -> np.ndarray:
  """`[frames, particles, 2]` float32: a 2D lattice block, oscillating."""
  start = workload_lib.lattice_block(particles, 2, rng)
  amplitude = AMPLITUDE * workload_lib.lattice_spacing(2)
  direction = rng.normal(size=[particles, 2])
  direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
  phase = rng.uniform(0.0, 2 * np.pi, [particles, 1])
  t = np.arange(frames)[:, None, None]
  offset = amplitude * np.sin(2 * np.pi * t / PERIOD + phase) * direction
  return (start + offset).astype(np.float32)


def _trajectories(count: int, particles: int, frames: int,
                  seed: int) -> Iterator[dataset_writer.Trajectory]:
  rng = np.random.default_rng(seed)
  types = np.full([particles], common.ParticleType.WATER, np.int64)
  for _ in range(count):
    yield dataset_writer.Trajectory(
        oscillating_trajectory(particles, frames, rng), types)


def write_dataset(path: str, num_trajectories: int, particles: int,
                  frames: int, seed: int = 0) -> int:
  """Writes a 2D dataset whose train split has `num_trajectories`.

  Trajectories are the throughput benchmark's lattice blocks, oscillating
  (`oscillating_trajectory`; WaterDrop's radius, ~17 neighbours per particle
  in every frame), generated one at a time so the
  writer's memory stays small; valid and test hold one each; the statistics
  come from the first train trajectory (the same for every size).

  Returns:
    The size of `train.tfrecord` in bytes.
  """
  train = _trajectories(num_trajectories, particles, frames, seed)
  first = next(train)
  extent = workload_lib.box_extent(particles, 2)
  metadata = {"bounds": [[0.0, extent]] * 2, "sequence_length": frames - 1,
              "default_connectivity_radius": workload_lib.RADIUS,
              "dim": 2, "dt": 0.0025}
  metadata.update(dataset_writer.compute_statistics([first]))
  splits = {
      "train": itertools.chain([first], train),
      "valid": _trajectories(1, particles, frames, seed + 1),
      "test": _trajectories(1, particles, frames, seed + 2),
  }
  dataset_writer.write_dataset(path, splits, metadata)
  return os.path.getsize(os.path.join(path, "train.tfrecord"))


def train_and_measure(data_path: str, model_path: str, num_steps: int,
                      batch_size: int) -> Dict[str, Any]:
  """Runs the train CLI in a child process; its peak RSS and wall time."""
  command, env = timing.module_command("train", [
      "--mode=train", f"--data_path={data_path}",
      f"--model_path={model_path}", f"--num_steps={num_steps}",
      f"--batch_size={batch_size}",
      f"--log_every_steps={max(1, num_steps // 4)}"])
  start = time.perf_counter()
  process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  stderr = process.stderr.read()
  _, status, usage = os.wait4(process.pid, 0)  # This child's own rusage.
  seconds = time.perf_counter() - start
  process.returncode = os.waitstatus_to_exitcode(status)
  process.stderr.close()
  if process.returncode != 0:
    raise RuntimeError(f"training on {data_path} failed:\n{stderr[-2000:]}")
  return {"peak_rss_mib": timing.rss_mib(usage.ru_maxrss),
          "seconds": seconds}


def run(trajectory_counts: Sequence[int], particles: int, frames: int,
        num_steps: int, batch_size: int, work_dir: str) -> List[Dict[str, Any]]:
  """One dataset and one training run per count; a result each."""
  results = []
  for count in trajectory_counts:
    data_path = os.path.join(work_dir, f"data_{count}")
    size = write_dataset(data_path, count, particles, frames)
    measured = train_and_measure(data_path, os.path.join(
        work_dir, f"model_{count}"), num_steps, batch_size)
    results.append({"train_trajectories": count, "particles": particles,
                    "frames": frames, "train_file_mib": size / 2**20,
                    "num_steps": num_steps, "batch_size": batch_size,
                    **measured})
    shutil.rmtree(data_path, ignore_errors=True)
  return results


def format_table(results: Sequence[Dict[str, Any]]) -> str:
  header = ["train trajectories", "train.tfrecord MiB", "steps",
            "peak RSS MiB", "wall s"]
  rows = [[str(r["train_trajectories"]), f"{r['train_file_mib']:.1f}",
           str(r["num_steps"]), f"{r['peak_rss_mib']:.0f}",
           f"{r['seconds']:.0f}"] for r in results]
  return report_lib.format_markdown_table(header, rows)


FLAGS = flags.FLAGS


def _define_flags() -> None:
  flags.DEFINE_list("trajectories", ["8", "128"],
                    "Train-split sizes (trajectories) to compare.")
  flags.DEFINE_integer("particles", 600, "Particles per trajectory.")
  flags.DEFINE_integer("frames", 400, "Frames per trajectory.")
  flags.DEFINE_integer("num_steps", 30, "Training steps per run.")
  flags.DEFINE_integer("batch_size", 2, "Training batch size.")
  flags.DEFINE_string("work_dir", None,
                      "Where datasets and models go (default: a temporary "
                      "directory, removed at the end).")
  flags.DEFINE_string("output_json", None, "Also write the results here.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    counts = [int(c) for c in FLAGS.trajectories]
  except ValueError:
    sys.exit(f"pipeline_memory: error: --trajectories must be integers, "
             f"got {','.join(FLAGS.trajectories)}")
  sizes = counts + [FLAGS.particles, FLAGS.num_steps, FLAGS.batch_size]
  if min(sizes) < 1 or FLAGS.frames < common.MIN_NUM_FRAMES:
    sys.exit("pipeline_memory: error: --trajectories, --particles, "
             "--num_steps and --batch_size must be >= 1 and --frames >= "
             f"{common.MIN_NUM_FRAMES}")
  with timing.work_directory(FLAGS.work_dir, "lts_pipeline_") as work_dir:
    results = run(counts, FLAGS.particles, FLAGS.frames, FLAGS.num_steps,
                  FLAGS.batch_size, work_dir)
  if FLAGS.output_json:
    dataset_writer.write_json(FLAGS.output_json, results)
  print(format_table(results))
  print(json.dumps(results))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
