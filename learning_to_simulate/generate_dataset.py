r"""Generates particle datasets with the MLS-MPM simulator (`mpm.py`).

The library function `generate_dataset` draws the initial conditions of every
trajectory from one seed (`scenes.py`), simulates them with Taichi and writes
a dataset directory in the DeepMind format (`dataset_writer.py`), with the
velocity and acceleration statistics of the train split in its metadata.

On `cpu` the solver runs single-threaded, so the same arguments give
byte-identical files.

Usage:
  python -m learning_to_simulate.generate_dataset --scene=water_drop \
      --output_path=/tmp/water_drop --num_train=8 --num_valid=2 \
      --num_test=2 --num_frames=201 --seed=0
"""

import os
import sys
import time
from typing import Any, Dict, List, Optional

from absl import app
from absl import flags
from absl import logging
import numpy as np

from learning_to_simulate import common
from learning_to_simulate import dataset_writer
from learning_to_simulate import mpm
from learning_to_simulate import scenes

# Rollouts need the 6 input frames plus at least two targets.
MIN_NUM_FRAMES = common.INPUT_SEQUENCE_LENGTH + 2
# Connectivity radius in particle spacings: 20 neighbours inside the seeding
# lattice in 2D (pi * 2.5^2), 26 in 3D (4/3 pi * 1.8^3); fewer near surfaces.
RADIUS_SPACINGS = {2: 2.5, 3: 1.8}
# Particles used to measure the mean neighbour count (brute force).
MAX_NEIGHBOUR_SAMPLE = 2000


def _validate(scene: str, output_path: str, num_train: int, num_valid: int,
              num_test: int, num_frames: int, resolution: Optional[int],
              substeps: Optional[int], arch: str) -> scenes.SceneSpec:
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
  if num_frames < MIN_NUM_FRAMES:
    raise ValueError(f"--num_frames must be >= {MIN_NUM_FRAMES} (6 input "
                     f"frames and 2 targets), got {num_frames}")
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


def connectivity_radius(dim: int, resolution: int) -> float:
  """`default_connectivity_radius` for particles seeded at `resolution`."""
  return RADIUS_SPACINGS[dim] * mpm.particle_spacing(resolution)


def mean_neighbour_count(positions: np.ndarray, radius: float) -> float:
  """Mean number of other particles within `radius` (inclusive).

  Args:
    positions: `[num_particles, dim]`; at most `MAX_NEIGHBOUR_SAMPLE` of them
      are used as query points.
    radius: the connectivity radius.
  """
  positions = np.asarray(positions, np.float64)
  queries = positions[:MAX_NEIGHBOUR_SAMPLE]
  counts = []
  for chunk in np.array_split(queries, max(1, len(queries) // 64)):
    distances = np.linalg.norm(chunk[:, None] - positions[None], axis=-1)
    counts.append((distances <= radius).sum(axis=1) - 1)  # Not itself.
  return float(np.concatenate(counts).mean())


def generate_dataset(scene: str,
                     output_path: str,
                     num_train: int,
                     num_valid: int,
                     num_test: int,
                     num_frames: int,
                     seed: int,
                     resolution: Optional[int] = None,
                     substeps: Optional[int] = None,
                     arch: str = "cpu") -> Dict[str, Any]:
  """Simulates a dataset and writes it to `output_path`.

  Args:
    scene: a name in `scenes.SCENES` (`water_drop`, `sand`, `goop`,
      `multi_material`, `water_ramps`, `water_3d`).
    output_path: dataset directory to write (created if needed).
    num_train: trajectories in the train split (>= 1).
    num_valid: trajectories in the valid split (>= 0).
    num_test: trajectories in the test split (>= 0).
    num_frames: frames per trajectory (>= 8); `sequence_length` is one less.
    seed: seeds every initial condition (numpy `default_rng`).
    resolution: grid cells per unit length; the scene's default if None.
      Particles are seeded `mpm.PARTICLES_PER_CELL` per cell and axis.
    substeps: MPM substeps per frame; the CFL minimum if None.
    arch: `cpu` (single-threaded, reproducible) or `gpu`.

  Returns:
    The metadata written to `metadata.json`.

  Raises:
    ValueError: an argument is out of range (the message names its flag).
    mpm.TaichiNotFoundError: Taichi is not installed.
  """
  spec = _validate(scene, output_path, num_train, num_valid, num_test,
                   num_frames, resolution, substeps, arch)
  resolution = resolution or spec.default_resolution
  if substeps is None:
    substeps = mpm.min_substeps(resolution)
  config = mpm.SolverConfig(dim=spec.dim, resolution=resolution,
                            substeps=substeps, arch=arch)
  mpm.import_taichi()  # Fail early, before any work, without Taichi.

  rng = np.random.default_rng(seed)
  counts = {"train": num_train, "valid": num_valid, "test": num_test}
  initial_states = {split: [spec.build(rng, resolution) for _ in range(n)]
                    for split, n in counts.items()}
  capacity = max(len(s.positions) for states in initial_states.values()
                 for s in states)
  materials = sorted(set(int(t) for states in initial_states.values()
                         for s in states for t in np.unique(s.particle_types)))
  solver = mpm.Solver(config, capacity, materials)
  radius = connectivity_radius(spec.dim, resolution)

  total = sum(counts.values())
  done = 0
  start = time.time()
  splits: Dict[str, List[dataset_writer.Trajectory]] = {}
  for split, states in initial_states.items():
    splits[split] = []
    for state in states:
      tic = time.time()
      frames = solver.simulate(state.positions, state.velocities,
                               state.particle_types, num_frames,
                               capsules=state.obstacles)
      kinematic = np.broadcast_to(
          state.kinematic_positions,
          (num_frames,) + state.kinematic_positions.shape)
      positions = np.concatenate([frames, kinematic], axis=1)
      types = np.concatenate([
          state.particle_types,
          np.full(len(state.kinematic_positions),
                  int(common.ParticleType.KINEMATIC), np.int64)])
      splits[split].append(dataset_writer.Trajectory(
          positions.astype(np.float32), types.astype(np.int64)))
      done += 1
      elapsed = time.time() - start
      logging.info(
          "trajectory %d/%d (%s): %d particles, %.0f frames/s, ETA %.0f s",
          done, total, split, positions.shape[1],
          (num_frames - 1) / max(time.time() - tic, 1e-9),
          elapsed / done * (total - done))

  first = splits["train"][0].positions
  logging.info("connectivity radius %.5f: mean neighbour count %.1f (first "
               "frame), %.1f (last frame) of the first train trajectory",
               radius, mean_neighbour_count(first[0], radius),
               mean_neighbour_count(first[-1], radius))
  lo, hi = mpm.BOUNDS
  metadata = {
      "bounds": [[lo, hi]] * spec.dim,
      "sequence_length": num_frames - 1,
      "default_connectivity_radius": radius,
      "dim": spec.dim,
      "dt": mpm.FRAME_DT,
  }
  metadata.update(dataset_writer.compute_statistics(splits["train"]))
  dataset_writer.write_dataset(output_path, splits, metadata)
  logging.info("wrote %s (%d trajectories) in %.1f s", output_path, total,
               time.time() - start)
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


def main(argv):
  if len(argv) > 1:
    sys.exit(f"generate_dataset: error: unexpected arguments {argv[1:]}")
  try:
    generate_dataset(
        scene=FLAGS.scene, output_path=FLAGS.output_path,
        num_train=FLAGS.num_train, num_valid=FLAGS.num_valid,
        num_test=FLAGS.num_test, num_frames=FLAGS.num_frames,
        seed=FLAGS.seed, resolution=FLAGS.resolution,
        substeps=FLAGS.substeps, arch=FLAGS.arch)
  except mpm.TaichiNotFoundError as e:
    sys.exit(str(e))
  except ValueError as e:
    sys.exit(f"generate_dataset: error: {e}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
