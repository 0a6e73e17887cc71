"""Seeded synthetic particle data for tests, demos and benchmarks.

Not physics: particles on a jittered lattice that move ballistically under a
constant gravity and are held inside the bounds. The data has the exact
DeepMind layout (see `dataset_writer`), so every code path can run on it.
"""

from typing import Any, Dict, Optional

import numpy as np

from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer


def jittered_lattice(num_particles: int, dim: int, spacing: float,
                     rng: np.random.Generator, origin: float = 0.2,
                     jitter: float = 0.1) -> np.ndarray:
  """`[num_particles, dim]` float32 lattice points with Gaussian jitter.

  Points fill a cube row by row at `spacing`, starting at `origin`, each
  moved by noise of std `jitter * spacing`.
  """
  side = int(np.ceil(num_particles ** (1.0 / dim)))
  grid = np.stack(np.meshgrid(*[np.arange(side)] * dim, indexing="ij"), -1)
  points = grid.reshape(-1, dim)[:num_particles] * spacing + origin
  points = points + rng.normal(0.0, jitter * spacing, points.shape)
  return points.astype(np.float32)


def ballistic_trajectory(num_particles: int, num_frames: int, dim: int,
                         rng: np.random.Generator, spacing: float = 0.02,
                         num_kinematic: int = 0,
                         context_size: Optional[int] = None
                         ) -> dataset_writer.Trajectory:
  """A trajectory of particles falling in the unit box [0.1, 0.9]^dim.

  Args:
    num_particles: moving (water) particles.
    num_frames: stored frames (`sequence_length + 1`).
    dim: 2 or 3.
    rng: random generator.
    spacing: lattice spacing.
    num_kinematic: extra static kinematic particles on the floor.
    context_size: if set, a random `[num_frames, context_size]` step context.
  """
  start = jittered_lattice(num_particles, dim, spacing, rng,
                           origin=rng.uniform(0.3, 0.5))
  velocity = rng.normal(0.0, 2e-3, [num_particles, dim])
  gravity = np.zeros(dim)
  gravity[1] = -1e-4
  t = np.arange(num_frames, dtype=np.float64)[:, None, None]
  positions = start + velocity * t + 0.5 * gravity * t**2
  positions = np.clip(positions, 0.1, 0.9)
  types = np.full([num_particles], common.ParticleType.WATER, np.int64)
  if num_kinematic:
    floor = rng.uniform(0.1, 0.9, [num_kinematic, dim])
    floor[:, 1] = 0.1
    positions = np.concatenate(
        [positions, np.broadcast_to(floor, (num_frames, num_kinematic, dim))],
        axis=1)
    types = np.concatenate(
        [types, np.full([num_kinematic], common.ParticleType.KINEMATIC,
                        np.int64)])
  context = None
  if context_size:
    context = rng.normal(size=[num_frames, context_size]).astype(np.float32)
  return dataset_writer.Trajectory(positions.astype(np.float32), types,
                                   context)


def write_tiny_dataset(output_path: str, dim: int = 2,
                       num_particles: int = 24, num_frames: int = 12,
                       num_trajectories: int = 2, num_kinematic: int = 4,
                       context_size: Optional[int] = None,
                       seed: int = 0) -> Dict[str, Any]:
  """Writes a small complete dataset; returns its metadata."""
  rng = np.random.default_rng(seed)
  splits = {split: [ballistic_trajectory(
      num_particles, num_frames, dim, rng, num_kinematic=num_kinematic,
      context_size=context_size) for _ in range(num_trajectories)]
            for split in common.SPLITS}
  metadata = {
      "bounds": [[0.1, 0.9]] * dim,
      "sequence_length": num_frames - 1,
      "default_connectivity_radius": 0.05,
      "dim": dim,
      "dt": 0.0025,
  }
  metadata.update(dataset_writer.compute_statistics(splits["train"]))
  if context_size:
    metadata["context_mean"] = [0.0] * context_size
    metadata["context_std"] = [1.0] * context_size
  dataset_writer.write_dataset(output_path, splits, metadata)
  return metadata
