"""The benchmark's synthetic workload and its FLOP count.

Particles on a jittered lattice at the WaterDrop connectivity radius, spaced
so that a particle has ~17 neighbours in 2D (about 21k edges for a batch of
2 x 600), and the forward FLOPs of the straightforward formulation of the
paper's model (Sanchez-Gonzalez et al. 2020, arXiv:2002.09405), so that
algorithmic savings show up as speed. Used by `benchmark`.
"""

import functools
import math
import re
from typing import Any, Dict, List, NamedTuple

import numpy as np
import tensorflow as tf

from learning_to_simulate import connectivity_utils
from learning_to_simulate import graph_network
from learning_to_simulate import learned_simulator
from learning_to_simulate.data import common
from learning_to_simulate.data import synthetic
from learning_to_simulate.training import config as config_lib

# WaterDrop's connectivity radius, in a unit box.
RADIUS = 0.015
# Expected particles (self included) in a ball of the radius at the lattice
# density: `pi r**2 / spacing**2` in 2D, `4/3 pi r**3 / spacing**3` in 3D.
# Particles near the edge of a block have fewer: 2 x 600 particles get ~17.3
# on average (20.8k edges), a block of 2000 in 3D ~24.
NEIGHBOURS_PER_PARTICLE = {2: 17.5, 3: 30.0}
# Lattice jitter, in spacings.
JITTER = 0.1
# Free space around the lattice, on each side of the box.
MARGIN = 0.1
# Per-frame motion of the input frames: velocity and acceleration stds (also
# the metadata statistics). Small against the spacing (~6e-3), so the
# neighbour counts stay those of the lattice.
VEL_STD = 1e-4
ACC_STD = 1e-5
# Acceleration std of the rollout model (no training noise folded in): an
# untrained model would push the particles apart within a few dozen steps and
# later steps would see a thinner graph (cheaper than a real rollout); with
# this std and the inputs at rest the particles move less than 1e-3 radius in
# 300 steps, so every step sees the initial graph (checked: `final_edges`).
ROLLOUT_ACC_STD = 1e-9
# Backward pass ~ 2 x forward: a train step counts as 3 forward passes.
TRAIN_FLOP_FACTOR = 3

class Point(NamedTuple):
  """One workload size."""
  particles_per_example: int
  batch_size: int
  dim: int = 2

  @property
  def num_particles(self) -> int:
    return self.particles_per_example * self.batch_size

  @property
  def name(self) -> str:
    name = f"{self.particles_per_example}x{self.batch_size}"
    return name if self.dim == 2 else f"{name}x{self.dim}"


def parse_point(spec: str) -> Point:
  """`"600x2"` -> 2 examples of 600 particles in 2D; `"2000x1x3"`: 3D.

  Raises:
    ValueError: the spec is malformed or a size is out of range.
  """
  match = re.fullmatch(r"\s*(\d+)x(\d+)(?:x(\d+))?\s*", spec)
  if not match:
    raise ValueError(f"point {spec!r} is not PARTICLESxBATCH[xDIM], e.g. "
                     "600x2 or 2000x1x3")
  particles, batch_size = int(match.group(1)), int(match.group(2))
  dim = int(match.group(3) or 2)
  if particles < 1 or batch_size < 1:
    raise ValueError(f"point {spec!r}: particles and batch size must be >= 1")
  if dim not in NEIGHBOURS_PER_PARTICLE:
    raise ValueError(f"point {spec!r}: dim must be 2 or 3, got {dim}")
  return Point(particles, batch_size, dim)


def parse_points(specs: str) -> List[Point]:
  """Comma-separated `parse_point` specs."""
  points = [parse_point(spec) for spec in specs.split(",") if spec.strip()]
  if not points:
    raise ValueError("no benchmark points given")
  return points


# ---------------------------------------------------------------------------
# Workload.


class Workload(NamedTuple):
  """A train batch and the metadata of its synthetic dataset.

  `features`: `position` `[num_particles, INPUT_SEQUENCE_LENGTH, dim]`
  float32, `particle_type` `[num_particles]` int64 (all water),
  `n_particles_per_example` `[batch_size]` int32. `target`:
  `[num_particles, dim]` float32 next positions.
  """
  features: Dict[str, np.ndarray]
  target: np.ndarray
  metadata: Dict[str, Any]


def lattice_spacing(dim: int, radius: float = RADIUS) -> float:
  """Spacing with `NEIGHBOURS_PER_PARTICLE[dim]` particles per radius ball."""
  if dim not in NEIGHBOURS_PER_PARTICLE:
    raise ValueError(f"dim must be 2 or 3, got {dim}")
  ball = math.pi * radius**2 if dim == 2 else 4 / 3 * math.pi * radius**3
  return (ball / NEIGHBOURS_PER_PARTICLE[dim]) ** (1 / dim)


def box_extent(num_particles: int, dim: int) -> float:
  """Side of the box `[0, extent]**dim` around a lattice block (>= 1)."""
  spacing = lattice_spacing(dim)
  side = math.ceil(num_particles ** (1 / dim) - 1e-9)
  return max(1.0, (side - 1) * spacing + 2 * MARGIN)


def lattice_block(num_particles: int, dim: int,
                  rng: np.random.Generator) -> np.ndarray:
  """`[num_particles, dim]` jittered lattice centred in its box.

  The spacing is `lattice_spacing(dim)` and the box `[0, box_extent]**dim`.
  """
  spacing = lattice_spacing(dim)
  side = math.ceil(num_particles ** (1 / dim) - 1e-9)
  origin = (box_extent(num_particles, dim) - (side - 1) * spacing) / 2
  return synthetic.jittered_lattice(num_particles, dim, spacing, rng,
                                    origin=origin, jitter=JITTER)


def lattice_trajectory(num_particles: int, num_frames: int, dim: int,
                       rng: np.random.Generator) -> np.ndarray:
  """A `lattice_block` moving by a random walk; `[num_frames, N, dim]`.

  Each particle starts with a velocity of std `VEL_STD` that changes by
  `ACC_STD` per frame: over a few frames the neighbour counts stay those of
  the lattice (over hundreds the block spreads out).
  """
  start = lattice_block(num_particles, dim, rng)
  velocity = rng.normal(0.0, VEL_STD, [1, num_particles, dim])
  acceleration = rng.normal(0.0, ACC_STD,
                            [num_frames - 2, num_particles, dim])
  # x[t + 1] = x[t] + v[t], v[t + 1] = v[t] + a[t]  (dt = 1 frame).
  velocities = np.cumsum(np.concatenate([velocity, acceleration]), axis=0)
  displacement = np.concatenate(
      [np.zeros([1, num_particles, dim]), np.cumsum(velocities, axis=0)])
  return start[np.newaxis] + displacement


def make_workload(num_particles_per_example: int, batch_size: int,
                  dim: int = 2, seed: int = 0) -> Workload:
  """A seeded batch of water particles on jittered lattices.

  Each example is a `lattice_trajectory` of `INPUT_SEQUENCE_LENGTH + 1`
  frames, in the box `[0, box_extent]**dim`.

  Args:
    num_particles_per_example: particles of one example.
    batch_size: examples in the batch.
    dim: 2 or 3.
    seed: seed of the lattice jitter and the motion.

  Returns:
    The batch and its metadata (WaterDrop radius, `bounds` `[dim, 2]`,
    velocity and acceleration statistics).
  """
  if num_particles_per_example < 1 or batch_size < 1:
    raise ValueError("num_particles_per_example and batch_size must be >= 1, "
                     f"got {num_particles_per_example} and {batch_size}")
  extent = box_extent(num_particles_per_example, dim)
  rng = np.random.default_rng(seed)
  examples = [lattice_trajectory(num_particles_per_example,
                                 common.WINDOW_LENGTH, dim, rng)
              for _ in range(batch_size)]
  trajectory = np.concatenate(examples, axis=1).astype(np.float32)
  trajectory = np.transpose(trajectory, [1, 0, 2])  # [N, frames, dim]
  num_particles = num_particles_per_example * batch_size
  features = {
      "position": trajectory[:, :common.INPUT_SEQUENCE_LENGTH],
      "particle_type": np.full([num_particles], common.ParticleType.WATER,
                               np.int64),
      "n_particles_per_example": np.full([batch_size],
                                         num_particles_per_example, np.int32),
  }
  metadata = {
      "dim": dim,
      "bounds": [[0.0, extent]] * dim,
      "default_connectivity_radius": RADIUS,
      "sequence_length": common.WINDOW_LENGTH - 1,
      "dt": 0.0025,
      "vel_mean": [0.0] * dim, "vel_std": [VEL_STD] * dim,
      "acc_mean": [0.0] * dim, "acc_std": [ACC_STD] * dim,
  }
  return Workload(features, trajectory[:, common.INPUT_SEQUENCE_LENGTH],
                  metadata)


def count_edges(positions: np.ndarray, n_particles_per_example: np.ndarray,
                radius: float = RADIUS) -> int:
  """Edges of the model's radius graph (self edges included), numpy reference.

  Args:
    positions: `[num_particles, dim]` positions.
    n_particles_per_example: `[batch_size]`.
    radius: connectivity radius.
  """
  _, _, n_edge = connectivity_utils.compute_connectivity_for_batch(
      positions, n_particles_per_example, radius, add_self_edges=True)
  return int(n_edge.sum())


def rollout_features(workload: Workload, num_steps: int
                     ) -> Dict[str, np.ndarray]:
  """The first example, at rest, as `rollout.rollout` inputs.

  Its last input frame is repeated `INPUT_SEQUENCE_LENGTH + num_steps`
  times: `position` `[particles_per_example, 6 + num_steps, dim]`.
  """
  count = int(workload.features["n_particles_per_example"][0])
  last = workload.features["position"][:count, -1:]
  return {
      "position": np.repeat(last, common.INPUT_SEQUENCE_LENGTH + num_steps,
                            axis=1),
      "particle_type": workload.features["particle_type"][:count],
      "n_particles_per_example": np.array([count], np.int32),
  }


# ---------------------------------------------------------------------------
# FLOP counting.


def model_flops(num_nodes: int, num_edges: int, dim: int,
                model_config: config_lib.ModelConfig,
                num_particle_types: int = common.NUM_PARTICLE_TYPES,
                embedding_size: int = common.PARTICLE_TYPE_EMBEDDING_SIZE,
                context_size: int = 0) -> int:
  """Forward FLOPs of the straightforward formulation: 2 x the Linear MACs,
  as the model itself counts them (`EncodeProcessDecode.forward_flops`, on
  a network of this configuration built for the purpose).

  Encoder: a node MLP on `5 dim` velocities + `2 dim` boundary distances
  (+ the type embedding, + the context) and an edge MLP on `dim + 1`
  features, both to the latent size. Each message-passing step: an edge MLP
  on `[edge, receiver, sender]` latents (`3 latent`) per edge, a node MLP on
  `[aggregated edges, node]` (`2 latent`) per node. Decoder: latent -> `dim`
  per node. Biases, activations, LayerNorm, gathers and the aggregation are
  not counted; an implementation that saves work counts as faster.

  Args:
    num_nodes: particles in the batch.
    num_edges: edges in the batch, self edges included.
    dim: spatial dimension.
    model_config: latent and MLP sizes, message-passing steps.
    num_particle_types: the type embedding is an input when > 1.
    embedding_size: width of the type embedding.
    context_size: width of the global context appended to the nodes.

  Returns:
    FLOPs of one forward pass (a train step: `TRAIN_FLOP_FACTOR` x this).
  """
  return _network(dim, model_config, num_particle_types, embedding_size,
                  context_size).forward_flops(num_nodes, num_edges)


@functools.lru_cache(maxsize=8)
def _network(dim: int, model_config: config_lib.ModelConfig,
             num_particle_types: int, embedding_size: int,
             context_size: int) -> graph_network.EncodeProcessDecode:
  """The graph network of a simulator of this configuration, built on one
  particle (its variables are what `forward_flops` reads)."""
  stats = common.Stats(np.zeros(dim, np.float32), np.ones(dim, np.float32))
  normalization = {"velocity": stats, "acceleration": stats}
  if context_size:
    normalization["context"] = common.Stats(
        np.zeros(context_size, np.float32), np.ones(context_size, np.float32))
  simulator = learned_simulator.LearnedSimulator(
      num_dimensions=dim, connectivity_radius=RADIUS,
      graph_network_kwargs=model_config.graph_network_kwargs(),
      boundaries=[[0.0, 1.0]] * dim, normalization_stats=normalization,
      num_particle_types=num_particle_types,
      particle_type_embedding_size=embedding_size)
  simulator(tf.zeros([1, common.INPUT_SEQUENCE_LENGTH, dim]),
            n_particles_per_example=tf.constant([1]),
            global_context=(tf.zeros([1, context_size]) if context_size
                            else None),
            particle_types=tf.zeros([1], tf.int64))
  return simulator.graph_network
