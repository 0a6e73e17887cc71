"""How long rendering a long rollout takes, how big the files are, how much
memory it needs.

Writes a seeded synthetic 2D rollout in which every particle moves every
frame (a random walk in the bounds, so no frame repeats the last and the
GIF's per-frame palettes and the encoder get no easy frames), then renders
it with `render_rollout` once per format, each in its own process, and
reports the wall time, the file's size and the render process's peak RSS
(its own, from `os.wait4`; the ffmpeg encoder runs in a child of it).

  python -m learning_to_simulate.benchmarks.render_speed \
      [--num_frames=1000 --num_particles=2000 --step_stride=3 --output=...]
"""

import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, Sequence

from absl import app
from absl import flags
import numpy as np

from learning_to_simulate.data import common

FORMATS = ("gif", "mp4")


def synthetic_rollout(num_frames: int, num_particles: int,
                      seed: int = 0) -> Dict[str, Any]:
  """A rollout pickle's dict: `num_frames` frames of `num_particles` 2D
  particles of one type, truth and prediction random walks in [0.1, 0.9]^2.
  """
  rng = np.random.default_rng(seed)

  def walk():
    steps = rng.normal(0.0, 0.004, [num_frames, num_particles, 2])
    start = rng.uniform(0.2, 0.8, [1, num_particles, 2])
    return np.clip(start + np.cumsum(steps, axis=0), 0.1, 0.9)

  truth, predicted = walk(), walk()
  first = common.INPUT_SEQUENCE_LENGTH
  return {
      "initial_positions": truth[:first].astype(np.float32),
      "ground_truth_rollout": truth[first:].astype(np.float32),
      "predicted_rollout": predicted[first:].astype(np.float32),
      "particle_types": np.full([num_particles], 5, np.int64),
      "metadata": {"bounds": [[0.1, 0.9]] * 2, "dim": 2,
                   "sequence_length": num_frames,
                   "default_connectivity_radius": 0.015, "dt": 0.0025},
  }


def render(rollout_path: str, output_path: str,
           step_stride: int) -> Dict[str, float]:
  """Renders `rollout_path` in a new process; its time, size and peak RSS."""
  command = [sys.executable, "-m", "learning_to_simulate.render_rollout",
             f"--rollout_path={rollout_path}",
             f"--output_path={output_path}", f"--step_stride={step_stride}"]
  start = time.perf_counter()
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
  # Read stderr while it runs (a full pipe would block it), then reap it
  # with its resource usage.
  with process.stderr:
    stderr = process.stderr.read()
  _, status, usage = os.wait4(process.pid, 0)
  seconds = time.perf_counter() - start
  process.returncode = os.waitstatus_to_exitcode(status)
  if process.returncode:
    raise RuntimeError(f"{' '.join(command)} failed: {stderr[-2000:]!r}")
  return {"seconds": seconds, "megabytes": os.path.getsize(output_path) / 1e6,
          "peak_rss_gib": usage.ru_maxrss / 2**20}  # ru_maxrss is in KiB.


def measure(num_frames: int, num_particles: int, step_stride: int,
            formats: Sequence[str] = FORMATS) -> Dict[str, Any]:
  """Renders a synthetic rollout in each format; the figures by format."""
  with tempfile.TemporaryDirectory(prefix="render_speed_") as directory:
    rollout_path = os.path.join(directory, "rollout.pkl")
    with open(rollout_path, "wb") as f:
      pickle.dump(synthetic_rollout(num_frames, num_particles), f)
    results = {name: render(rollout_path,
                            os.path.join(directory, f"rollout.{name}"),
                            step_stride)
               for name in formats}
  return {"num_frames": num_frames, "num_particles": num_particles,
          "step_stride": step_stride,
          "rendered_frames": len(range(0, num_frames, step_stride)),
          "cpu_count": os.cpu_count(), "formats": results}


def main(argv: Sequence[str]) -> None:
  del argv
  FLAGS = flags.FLAGS
  for name in FLAGS.formats:
    if name not in FORMATS:
      raise app.UsageError(f"--formats: expected some of {FORMATS}, got "
                           f"{name!r}")
  result = measure(FLAGS.num_frames, FLAGS.num_particles, FLAGS.step_stride,
                   FLAGS.formats)
  text = json.dumps(result, indent=1)
  print(text)
  if FLAGS.output:
    with open(FLAGS.output + ".tmp", "w") as f:
      f.write(text + "\n")
    os.replace(FLAGS.output + ".tmp", FLAGS.output)


def define_flags() -> None:
  flags.DEFINE_integer("num_frames", 1000, "Frames of the synthetic rollout.")
  flags.DEFINE_integer("num_particles", 2000, "Particles of the rollout.")
  flags.DEFINE_integer("step_stride", 3, "render_rollout's --step_stride.")
  flags.DEFINE_list("formats", list(FORMATS), "Output formats rendered.")
  flags.DEFINE_string("output", "", "Also write the JSON here.")


if __name__ == "__main__":
  define_flags()
  app.run(main)
