"""Particle spacing, a connectivity radius from it, and neighbour counts.

The model connects every particle to all others within
`default_connectivity_radius` (Sanchez-Gonzalez et al. 2020, Sec. 3); the
paper's datasets give each particle roughly 10 to 20 neighbours. For a
dataset made elsewhere, the radius is suggested from the particle spacing
(the median distance to the nearest other particle) in the same number of
spacings the generator uses, and the neighbour-count distribution that radius
gives is reported so it can be checked. Counts use a scipy KD-tree with the
model's inclusive test (`distance <= radius`).
"""

import math
from typing import NamedTuple, Sequence

import numpy as np
from scipy import spatial

# Connectivity radius in particle spacings: 20 neighbours inside a lattice
# block at rest in 2D (pi * 2.5^2), 26 in 3D (4/3 pi * 1.8^3); fewer near
# free surfaces. Shared with the dataset generator.
RADIUS_SPACINGS = {2: 2.5, 3: 1.8}
# Percentiles reported by `NeighbourCounts`.
PERCENTILES = (5, 25, 50, 75, 95)


class NeighbourCounts(NamedTuple):
  """Distribution of the number of other particles within a radius.

  Attributes:
    radius: the connectivity radius.
    num_particles: particles counted (over all frames given).
    mean: mean count.
    minimum, maximum: extreme counts.
    percentiles: counts at `PERCENTILES`.
  """
  radius: float
  num_particles: int
  mean: float
  minimum: int
  maximum: int
  percentiles: Sequence[float]

  def describe(self) -> str:
    """One line, e.g. `mean 14.2  min 3  p5 8 ... max 20 (1,200 particles)`."""
    quantiles = "  ".join(f"p{p} {v:g}" for p, v in
                          zip(PERCENTILES, self.percentiles))
    return (f"mean {self.mean:.1f}  min {self.minimum}  {quantiles}  "
            f"max {self.maximum}  ({self.num_particles:,} particles)")


def neighbour_counts(positions: np.ndarray, radius: float) -> np.ndarray:
  """`[num_particles]` int: other particles within `radius` (inclusive).

  Args:
    positions: `[num_particles, dim]`.
    radius: the connectivity radius.
  """
  positions = np.asarray(positions, np.float64)
  tree = spatial.cKDTree(positions)
  counts = tree.query_ball_point(positions, radius, return_length=True)
  return np.asarray(counts, np.int64) - 1  # Each particle finds itself.


def particle_spacing(frames: Sequence[np.ndarray]) -> float:
  """Median distance from a particle to its nearest other particle.

  Args:
    frames: positions `[num_particles, dim]` of one or more frames (each
      frame is searched on its own).

  Raises:
    ValueError: no frame has two particles at distinct positions.
  """
  distances = []
  for positions in frames:
    positions = np.asarray(positions, np.float64)
    if len(positions) < 2:
      continue
    nearest, _ = spatial.cKDTree(positions).query(positions, k=2)
    distances.append(nearest[:, 1])
  distances = np.concatenate(distances) if distances else np.zeros(0)
  distances = distances[distances > 0]  # Coincident particles say nothing.
  if not distances.size:
    raise ValueError("cannot estimate the particle spacing: no frame has two "
                     "particles at distinct positions")
  return float(np.median(distances))


def round_significant(value: float, digits: int = 3) -> float:
  """`value` rounded to `digits` significant digits (0.0153 for 0.015312)."""
  if value == 0:
    return 0.0
  exponent = math.floor(math.log10(abs(value)))
  return round(value, digits - 1 - exponent)


def suggest_radius(spacing: float, dim: int) -> float:
  """`RADIUS_SPACINGS[dim]` particle spacings, to 3 significant digits."""
  if dim not in RADIUS_SPACINGS:
    raise ValueError(f"dim must be 2 or 3, got {dim}")
  return round_significant(RADIUS_SPACINGS[dim] * spacing)


def count_distribution(frames: Sequence[np.ndarray],
                       radius: float) -> NeighbourCounts:
  """Neighbour counts within `radius` over the particles of `frames`.

  Args:
    frames: positions `[num_particles, dim]` of one or more frames (each
      frame is its own graph, as each example of a batch is).
    radius: the connectivity radius.
  """
  if not frames:
    raise ValueError("need at least one frame to count neighbours")
  counts = np.concatenate([neighbour_counts(positions, radius)
                           for positions in frames])
  return NeighbourCounts(
      radius=float(radius), num_particles=int(counts.size),
      mean=float(counts.mean()), minimum=int(counts.min()),
      maximum=int(counts.max()),
      percentiles=[float(v) for v in np.percentile(counts, PERCENTILES)])
