"""Peak RSS of dataset conversion against input size.

Writes synthetic gns `.npz` datasets that differ only in their number of
training trajectories (2D lattice blocks oscillating about their sites, as in
`pipeline_memory`; one trajectory in memory at a time), converts each to the
DeepMind format in a fresh process (`python -m
learning_to_simulate.data.convert_dataset`), and reports each run's peak RSS
and time. A converter that streams (ours: trajectory by trajectory, twice)
uses the same memory for every size; one that loads the input grows with it.

    python -m learning_to_simulate.benchmarks.convert_memory --trajectories=4,48
"""

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

from learning_to_simulate.benchmarks import pipeline_memory
from learning_to_simulate.benchmarks import report as report_lib
from learning_to_simulate.benchmarks import timing
from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer
from learning_to_simulate.data import formats


def _trajectories(count: int, particles: int, frames: int,
                  seed: int) -> Iterator[dataset_writer.Trajectory]:
  rng = np.random.default_rng(seed)
  types = np.full([particles], common.ParticleType.WATER, np.int64)
  for _ in range(count):
    yield dataset_writer.Trajectory(
        pipeline_memory.oscillating_trajectory(particles, frames, rng), types)


def write_input(path: str, num_trajectories: int, particles: int,
                frames: int, seed: int = 0) -> int:
  """Writes `{train,valid,test}.npz` (gns); returns their total bytes.

  The train split has `num_trajectories`, valid and test one each.
  """
  counts = {"train": num_trajectories, "valid": 1, "test": 1}
  total = 0
  for offset, split in enumerate(common.SPLITS):
    file_path = os.path.join(path, f"{split}.npz")
    formats.write_gns_npz(file_path, _trajectories(
        counts[split], particles, frames, seed + offset))
    total += os.path.getsize(file_path)
  return total


def convert_and_measure(input_path: str, output_path: str) -> Dict[str, Any]:
  """Runs the converter CLI in a child process; its peak RSS and wall time."""
  command, env = timing.module_command("data.convert_dataset", [
      "--input_format=npz", f"--input_path={input_path}",
      f"--output_path={output_path}", "--dt=0.0025"])
  start = time.perf_counter()
  process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  stderr = process.stderr.read()
  _, status, usage = os.wait4(process.pid, 0)  # This child's own rusage.
  seconds = time.perf_counter() - start
  process.returncode = os.waitstatus_to_exitcode(status)
  process.stderr.close()
  if process.returncode != 0:
    raise RuntimeError(f"converting {input_path} failed:\n{stderr[-2000:]}")
  return {"peak_rss_mib": timing.rss_mib(usage.ru_maxrss),
          "seconds": seconds}


def run(trajectory_counts: Sequence[int], particles: int, frames: int,
        work_dir: str) -> List[Dict[str, Any]]:
  """One input and one conversion per count; a result each."""
  results = []
  for count in trajectory_counts:
    input_path = os.path.join(work_dir, f"npz_{count}")
    os.makedirs(input_path, exist_ok=True)
    size = write_input(input_path, count, particles, frames)
    output_path = os.path.join(work_dir, f"tfrecord_{count}")
    measured = convert_and_measure(input_path, output_path)
    results.append({
        "train_trajectories": count, "particles": particles,
        "frames": frames, "input_mib": size / 2**20,
        "trajectory_mib": frames * particles * 2 * 4 / 2**20, **measured})
    shutil.rmtree(input_path, ignore_errors=True)
    shutil.rmtree(output_path, ignore_errors=True)
  return results


def format_table(results: Sequence[Dict[str, Any]]) -> str:
  header = ["train trajectories", "input MiB", "MiB per trajectory",
            "peak RSS MiB", "wall s"]
  rows = [[str(r["train_trajectories"]), f"{r['input_mib']:.0f}",
           f"{r['trajectory_mib']:.1f}", f"{r['peak_rss_mib']:.0f}",
           f"{r['seconds']:.0f}"] for r in results]
  return report_lib.format_markdown_table(header, rows)


FLAGS = flags.FLAGS


def _define_flags() -> None:
  flags.DEFINE_list("trajectories", ["4", "48"],
                    "Train-split sizes (trajectories) to compare.")
  flags.DEFINE_integer("particles", 10000, "Particles per trajectory.")
  flags.DEFINE_integer("frames", 1000, "Frames per trajectory.")
  flags.DEFINE_string("work_dir", None,
                      "Where inputs and outputs go (default: a temporary "
                      "directory, removed at the end).")
  flags.DEFINE_string("output_json", None, "Also write the results here.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    counts = [int(c) for c in FLAGS.trajectories]
  except ValueError:
    sys.exit(f"convert_memory: error: --trajectories must be integers, "
             f"got {','.join(FLAGS.trajectories)}")
  if min(counts + [FLAGS.particles]) < 1 or (
      FLAGS.frames < common.WINDOW_LENGTH):
    sys.exit("convert_memory: error: --trajectories and --particles must be "
             f">= 1 and --frames >= {common.WINDOW_LENGTH}")
  with timing.work_directory(FLAGS.work_dir, "lts_convert_") as work_dir:
    results = run(counts, FLAGS.particles, FLAGS.frames, work_dir)
  if FLAGS.output_json:
    dataset_writer.write_json(FLAGS.output_json, results)
  print(format_table(results))
  print(json.dumps(results))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
