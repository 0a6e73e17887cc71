r"""Generates particle datasets with the MLS-MPM simulator (`mpm.py`).

The library function `generate_dataset` draws the initial conditions of every
trajectory from one seed (`scenes.py`), simulates them with Taichi and writes
a dataset directory in the DeepMind format (`dataset_writer.py`), with the
velocity and acceleration statistics of the train split in its metadata.

On `cpu` the solver runs single-threaded, so the same arguments give
byte-identical files.

Usage:
  python -m learning_to_simulate.generation.generate_dataset --scene=water_drop \
      --output_path=/tmp/water_drop --num_train=8 --num_valid=2 \
      --num_test=2 --num_frames=201 --seed=0
"""

import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tqdm

from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer
from learning_to_simulate.generation import mpm
from learning_to_simulate.generation import scenes

# Frames per trajectory at which the mean neighbour count is measured.
NEIGHBOUR_COUNT_FRAMES = 11
# The metadata key recording `--wall_layers` (absent: no wall particles).
WALL_LAYERS_KEY = "wall_layers"
# Seconds between redraws of the progress bar.
PROGRESS_INTERVAL = 0.25


def _validate(scene: str, output_path: str, num_train: int, num_valid: int,
              num_test: int, num_frames: int, seed: int,
              resolution: Optional[int], substeps: Optional[int],
              arch: str) -> scenes.SceneSpec:
  """Checks the arguments; raises `ValueError` naming the flag."""
  spec = scenes.get_scene(scene)
  if not output_path:
    raise ValueError("--output_path is required")
  if os.path.exists(output_path) and not os.path.isdir(output_path):
    raise ValueError(f"--output_path {output_path!r} is an existing file; "
                     "expected a directory (new or existing)")
  if num_train < 1:
    raise ValueError(f"--num_train must be >= 1 (the statistics come from the "
                     f"train split), got {num_train}")
  for name, value in (("num_valid", num_valid), ("num_test", num_test)):
    if value < 0:
      raise ValueError(f"--{name} must be >= 0, got {value}")
  if num_frames < common.MIN_NUM_FRAMES:
    raise ValueError(f"--num_frames must be >= {common.MIN_NUM_FRAMES} (6 input "
                     f"frames and 2 targets), got {num_frames}")
  if seed < 0:
    raise ValueError(f"--seed must be >= 0, got {seed}")
  if resolution is not None and resolution < mpm.MIN_RESOLUTION:
    raise ValueError(f"--resolution must be >= {mpm.MIN_RESOLUTION}, got "
                     f"{resolution}")
  if substeps is not None:
    needed = mpm.min_substeps(resolution or spec.default_resolution)
    if substeps < needed:
      raise ValueError(f"--substeps must be >= {needed} at this resolution "
                       f"(CFL limit), got {substeps}")
  if arch not in mpm.ARCHS:
    raise ValueError(f"--arch must be one of {mpm.ARCHS}, got {arch!r}")
  return spec


class Progress:
  """Generation progress: trajectories done / total, frames/s and ETA.

  Logs one line per finished trajectory and, when the stream is a terminal,
  shows a tqdm bar over all frames.
  """

  def __init__(self, num_trajectories: int, num_frames: int,
               stream: TextIO = sys.stderr):
    self._num_trajectories = num_trajectories
    self._trajectories = 0
    self._total_frames = num_trajectories * (num_frames - 1)
    self._frames = 0
    self._start = time.time()
    # `disable=None` turns the bar off when the stream is not a terminal.
    self._bar = tqdm.tqdm(total=self._total_frames, unit="frame",
                          file=stream, disable=not stream.isatty(),
                          mininterval=PROGRESS_INTERVAL, leave=False,
                          desc=f"0/{num_trajectories} trajectories")

  def frame_done(self) -> None:
    self._frames += 1
    self._bar.update(1)

  def trajectory_done(self, split: str, num_particles: int) -> None:
    self._trajectories += 1
    self._bar.set_description(
        f"{self._trajectories}/{self._num_trajectories} trajectories",
        refresh=False)
    elapsed = max(time.time() - self._start, 1e-9)
    rate = self._frames / elapsed
    eta = (self._total_frames - self._frames) / max(rate, 1e-9)
    self._bar.clear()  # The log line goes above the bar.
    logging.info("trajectory %d/%d (%s): %d particles, %.0f frames/s, "
                 "ETA %.0f s", self._trajectories, self._num_trajectories,
                 split, num_particles, rate, eta)
    if self._trajectories == self._num_trajectories:
      self._bar.close()
    else:
      self._bar.refresh()


def mean_neighbour_count(trajectories: Sequence[dataset_writer.Trajectory],
                         radius: float) -> float:
  """Mean neighbours within `radius`, over particles and sampled frames.

  Args:
    trajectories: trajectories with `[num_frames, num_particles, dim]`
      positions; `NEIGHBOUR_COUNT_FRAMES` evenly spaced frames of each
      (first and last included) are measured.
    radius: the connectivity radius.
  """
  counts = []
  for trajectory in trajectories:
    num_frames = len(trajectory.positions)
    frames = np.unique(np.linspace(0, num_frames - 1,
                                   NEIGHBOUR_COUNT_FRAMES).astype(int))
    counts += [scenes.mean_neighbour_count(trajectory.positions[frame], radius)
               for frame in frames]
  return float(np.mean(counts))


def draw_initial_states(spec: scenes.SceneSpec, seed: int, resolution: int,
                        counts: Dict[str, int], wall_layers: int = 0
                        ) -> Dict[str, List[scenes.InitialState]]:
  """Per split, in the order of `counts`, its initial states, all drawn
  from one `numpy.random.default_rng(seed)` (with `wall_layers` of wall
  particles, which draw nothing)."""
  rng = np.random.default_rng(seed)
  return {split: [scenes.with_walls(spec.build(rng, resolution), resolution,
                                    wall_layers) for _ in range(n)]
          for split, n in counts.items()}


def generate_dataset(scene: str,
                     output_path: str,
                     num_train: int,
                     num_valid: int,
                     num_test: int,
                     num_frames: int,
                     seed: int,
                     resolution: Optional[int] = None,
                     substeps: Optional[int] = None,
                     arch: str = "cpu",
                     wall_layers: int = 0) -> Dict[str, Any]:
  """Simulates a dataset and writes it to `output_path`.

  The initial conditions of the train, valid and test trajectories, in this
  order, are drawn from one `numpy.random.default_rng(seed)`; one solver
  simulates them all.

  Args:
    scene: a name in `scenes.SCENES` (`water_drop`, `sand`, `goop`,
      `multi_material`, `water_ramps`, `water_3d`).
    output_path: dataset directory to write (created if needed; files are
      moved into place only when complete).
    num_train: trajectories in the train split (>= 1).
    num_valid: trajectories in the valid split (>= 0).
    num_test: trajectories in the test split (>= 0).
    num_frames: frames per trajectory (>= 8); `sequence_length` is one less.
    seed: seeds every initial condition (>= 0).
    resolution: grid cells per unit length; the scene's default if None.
      Particles are seeded `mpm.PARTICLES_PER_CELL` per cell and axis.
    substeps: MPM substeps per frame; the CFL minimum if None.
    arch: `cpu` (single-threaded, reproducible) or `gpu`.
    wall_layers: layers of static KINEMATIC particles around the box
      (`scenes.wall_particles`), after every trajectory's own particles; 0:
      none. They draw nothing from the seed: the material moves as without
      them. Recorded in the metadata as `wall_layers` when > 0.

  Returns:
    The metadata written to `metadata.json`.

  Raises:
    ValueError: an argument is out of range (the message names its flag).
    mpm.TaichiNotFoundError: Taichi is not installed.
  """
  if wall_layers < 0:
    raise ValueError(f"--wall_layers must be >= 0, got {wall_layers}")
  spec = _validate(scene, output_path, num_train, num_valid, num_test,
                   num_frames, seed, resolution, substeps, arch)
  resolution = resolution or spec.default_resolution
  if substeps is None:
    substeps = mpm.min_substeps(resolution)
  mpm.import_taichi()  # Fail early, before any work, without Taichi.

  counts = {"train": num_train, "valid": num_valid, "test": num_test}
  initial_states = draw_initial_states(spec, seed, resolution, counts,
                                       wall_layers)
  solver = scenes.make_solver(
      spec, [s for states in initial_states.values() for s in states],
      resolution, substeps, arch)
  logging.info("%s: resolution %d, %d substeps per frame, %d trajectories "
               "of %d frames", scene, resolution, substeps,
               sum(counts.values()), num_frames)

  start = time.time()
  progress = Progress(sum(counts.values()), num_frames)
  splits: Dict[str, List[dataset_writer.Trajectory]] = {}
  for split, states in initial_states.items():
    splits[split] = []
    for state in states:
      trajectory = scenes.simulate_state(solver, state, num_frames,
                                         on_frame=progress.frame_done)
      splits[split].append(trajectory)
      progress.trajectory_done(split, len(trajectory.particle_types))

  radius = scenes.connectivity_radius(spec.dim, resolution)
  logging.info("connectivity radius %.5f: mean neighbour count %.1f over the "
               "train split (%d evenly spaced frames per trajectory)", radius,
               mean_neighbour_count(splits["train"], radius),
               NEIGHBOUR_COUNT_FRAMES)
  lo, hi = mpm.BOUNDS
  metadata = {
      "bounds": [[lo, hi]] * spec.dim,
      "sequence_length": num_frames - 1,
      "default_connectivity_radius": radius,
      "dim": spec.dim,
      "dt": mpm.FRAME_DT,
      # Gravity in positions per frame squared, for the model's
      # `--external_acceleration=auto`.
      common.EXTERNAL_ACCELERATION_KEY: [
          -mpm.GRAVITY * mpm.FRAME_DT**2 if d == mpm.GRAVITY_AXIS else 0.0
          for d in range(spec.dim)],
  }
  if wall_layers:
    metadata[WALL_LAYERS_KEY] = wall_layers
  metadata.update(dataset_writer.compute_statistics(splits["train"]))
  dataset_writer.write_dataset(output_path, splits, metadata)
  logging.info("wrote %s (%d trajectories) in %.1f s", output_path,
               sum(counts.values()), time.time() - start)
  return metadata


FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Registers the CLI flags.

  Only when run as a program, so that importing the library does not clash
  with the flags of other modules (`train.py` also has `--seed`).
  """
  flags.DEFINE_string("scene", "water_drop",
                      f"Scene to simulate: one of {sorted(scenes.SCENES)}.")
  flags.DEFINE_string("output_path", None, "Dataset directory to write.")
  flags.DEFINE_integer("num_train", 8, "Train trajectories.")
  flags.DEFINE_integer("num_valid", 2, "Valid trajectories.")
  flags.DEFINE_integer("num_test", 2, "Test trajectories.")
  flags.DEFINE_integer("num_frames", 201,
                       "Frames per trajectory (sequence_length + 1).")
  flags.DEFINE_integer("seed", 0, "Seed of the initial conditions.")
  flags.DEFINE_integer("resolution", None,
                       "Grid cells per unit length (scene default if unset).")
  flags.DEFINE_integer("substeps", None,
                       "MPM substeps per frame (CFL minimum if unset).")
  flags.DEFINE_enum("arch", "cpu", list(mpm.ARCHS),
                    "Taichi backend; only cpu is bit-reproducible.")
  flags.DEFINE_integer("wall_layers", 0,
                       "Layers of static KINEMATIC wall particles around the "
                       "box, for the learned model (0: none; the paper's "
                       "datasets have none).")


def main(argv):
  if len(argv) > 1:
    sys.exit(f"generate_dataset: error: unexpected arguments {argv[1:]}")
  try:
    generate_dataset(
        scene=FLAGS.scene, output_path=FLAGS.output_path,
        num_train=FLAGS.num_train, num_valid=FLAGS.num_valid,
        num_test=FLAGS.num_test, num_frames=FLAGS.num_frames,
        seed=FLAGS.seed, resolution=FLAGS.resolution,
        substeps=FLAGS.substeps, arch=FLAGS.arch,
        wall_layers=FLAGS.wall_layers)
  except mpm.TaichiNotFoundError as e:
    sys.exit(str(e))
  except ValueError as e:
    sys.exit(f"generate_dataset: error: {e}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
