"""Scenes for dataset generation: randomized initial conditions per seed.

Each scene draws, from a `numpy.random.Generator`, the initial state of one
trajectory in the spirit of the paper's datasets (arXiv:2002.09405, Sec. 4 and
Appendix B): blocks of material dropped in the `[0.1, 0.9]^dim` box, for
WaterDrop, Sand, Goop and MultiMaterial, and water poured onto static ramps
for WaterRamps. Material particles sit on a lattice of spacing
`mpm.particle_spacing(resolution)`, so the particle count scales with the
resolution. Obstacles are capsules for the solver and, for the learned model,
static `KINEMATIC` particles on their surface.

`generate_trajectory` turns a scene and a generator into one simulated
`dataset_writer.Trajectory`; `connectivity_radius` and `mean_neighbour_count`
size the graph for the learned model. The scenes themselves are pure numpy;
only simulating needs Taichi.
"""

import dataclasses
import math
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer
from learning_to_simulate.data import neighbours
from learning_to_simulate.generation import mpm

# Gap, in particle spacings, between seeded material and the walls.
WALL_MARGIN_SPACINGS = 2.0
# Side length range of a block of material, in box units.
BLOCK_SIZE_RANGE = (0.1, 0.25)
# Initial block velocity components are drawn uniformly from +-this, m/s.
MAX_INITIAL_SPEED = 1.0
# Ramps: length range (box units), tilt range (degrees), thickness (cells).
RAMP_LENGTH_RANGE = (0.2, 0.35)
RAMP_TILT_RANGE_DEG = (10.0, 35.0)
RAMP_RADIUS_CELLS = 1.0
# Ramps stay below this height and the water starts above it.
RAMP_MAX_HEIGHT = 0.55
# Smallest gap between two ramps, in particle spacings; draws per scene.
RAMP_GAP_SPACINGS = 4.0
RAMP_MAX_TRIES = 50
# Connectivity radius in particle spacings (one home, shared with the
# dataset converter): 20 neighbours inside the seeding lattice in 2D, 26 in 3D.
RADIUS_SPACINGS = neighbours.RADIUS_SPACINGS


class InitialState(NamedTuple):
  """Initial condition of one trajectory.

  Attributes:
    positions: `[num_simulated, dim]` float32 positions of simulated particles.
    velocities: `[num_simulated, dim]` float32 initial velocities, m/s.
    particle_types: `[num_simulated]` int64 WATER, SAND or GOOP.
    obstacles: static capsules the solver treats as slip boundaries.
    kinematic_positions: `[num_kinematic, dim]` float32 positions of the
      static KINEMATIC particles that show the obstacles to the model.
  """
  positions: np.ndarray
  velocities: np.ndarray
  particle_types: np.ndarray
  obstacles: Tuple[mpm.Capsule, ...]
  kinematic_positions: np.ndarray


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  """A named scene.

  Attributes:
    name: the `--scene` value.
    dim: 2 or 3.
    default_resolution: grid cells per unit length used when none is given.
    build: `(rng, resolution) -> InitialState`.
  """
  name: str
  dim: int
  default_resolution: int
  build: Callable[[np.random.Generator, int], InitialState]


def _lattice_block(lower: np.ndarray, upper: np.ndarray,
                   spacing: float) -> np.ndarray:
  """Indices `[n, dim]` of the lattice points `(i + 0.5) * spacing` in a box."""
  ranges = []
  for lo, hi in zip(lower, upper):
    first = math.ceil(lo / spacing - 0.5)
    last = math.floor(hi / spacing - 0.5)
    ranges.append(np.arange(first, max(first, last) + 1))
  grids = np.meshgrid(*ranges, indexing="ij")
  return np.stack([g.reshape(-1) for g in grids], axis=-1).astype(np.int64)


def _random_blocks(rng: np.random.Generator, dim: int, resolution: int,
                   num_blocks: int,
                   materials: Sequence[common.ParticleType],
                   floor: Optional[float] = None
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Random axis-aligned blocks of material, each with its own velocity.

  Overlapping blocks merge: a lattice point belongs to the first block drawn
  that covers it. With a `floor`, blocks start above that height (axis 1),
  shrunk to fit if needed.

  Returns:
    `[n, dim]` float32 positions, `[n, dim]` float32 velocities and `[n]`
    int64 particle types.
  """
  spacing = mpm.particle_spacing(resolution)
  margin = WALL_MARGIN_SPACINGS * spacing
  lo, hi = mpm.BOUNDS
  indices, velocities, types = [], [], []
  lowest = np.full(dim, lo + margin)
  if floor is not None:
    lowest[mpm.GRAVITY_AXIS] = max(lowest[mpm.GRAVITY_AXIS], floor + margin)
  for block in range(num_blocks):
    size = np.minimum(rng.uniform(*BLOCK_SIZE_RANGE, size=dim),
                      hi - margin - lowest)
    lower = rng.uniform(lowest, hi - margin - size)
    velocity = rng.uniform(-MAX_INITIAL_SPEED, MAX_INITIAL_SPEED, size=dim)
    points = _lattice_block(lower, lower + size, spacing)
    indices.append(points)
    velocities.append(np.tile(velocity, (len(points), 1)))
    types.append(np.full(len(points), int(materials[block]), np.int64))
  indices = np.concatenate(indices)
  _, first = np.unique(indices, axis=0, return_index=True)
  first = np.sort(first)  # Keep the drawing order.
  positions = (indices[first] + 0.5) * spacing
  return (positions.astype(np.float32),
          np.concatenate(velocities)[first].astype(np.float32),
          np.concatenate(types)[first])


def _no_obstacles(dim: int) -> Tuple[Tuple[mpm.Capsule, ...], np.ndarray]:
  return (), np.zeros((0, dim), np.float32)


def _blocks_scene(materials: Sequence[common.ParticleType], dim: int,
                  num_blocks_range: Tuple[int, int],
                  mixed: bool = False) -> Callable[..., InitialState]:
  """Random blocks of `materials` (one each, shuffled, if `mixed`)."""

  def build(rng: np.random.Generator, resolution: int) -> InitialState:
    num_blocks = int(rng.integers(num_blocks_range[0],
                                  num_blocks_range[1] + 1))
    if mixed:
      block_materials = [materials[i] for i in
                         rng.permutation(len(materials))[:num_blocks]]
    else:
      block_materials = [materials[0]] * num_blocks
    positions, velocities, types = _random_blocks(rng, dim, resolution,
                                                  num_blocks, block_materials)
    obstacles, kinematic = _no_obstacles(dim)
    return InitialState(positions, velocities, types, obstacles, kinematic)

  return build


def wall_particles(dim: int, resolution: int, layers: int) -> np.ndarray:
  """`[n, dim]` float32 static particles in `layers` layers around the box.

  The layers sit outside the walls of `mpm.BOUNDS` at 1..`layers` particle
  spacings, where the mirror image of material resting on a wall would be
  (as `capsule_particles` for obstacles), so that the learned model sees a
  wall as material it cannot enter, as in the wall particles of SPH and of
  LagrangeBench's datasets. Along a wall the points are evenly spaced from
  one end of the box to the other (a spacing within 2% of the particles',
  since the box is not a whole number of spacings), and the layers continue
  around the corners. Every point is a point of the grid `C^dim` where `C`
  is that coordinate set with the outer layers added; the ones inside the
  box are left out, so no point is repeated.
  """
  if layers < 0:
    raise ValueError(f"--wall_layers must be >= 0, got {layers}")
  spacing = mpm.particle_spacing(resolution)
  lo, hi = mpm.BOUNDS
  inside = np.linspace(lo, hi, int(round((hi - lo) / spacing)) + 1)
  outer = spacing * np.arange(1, layers + 1)
  coordinates = np.concatenate([lo - outer[::-1], inside, hi + outer])
  grid = np.stack(np.meshgrid(*[coordinates] * dim, indexing="ij"),
                  axis=-1).reshape(-1, dim)
  outside = np.any((grid < lo) | (grid > hi), axis=-1)
  return grid[outside].astype(np.float32)


def with_walls(state: InitialState, resolution: int,
               layers: int) -> InitialState:
  """The state with `wall_particles` appended to its kinematic particles.

  The solver does not see them (its box walls are the walls); they are for
  the learned model only, as the obstacles' particles.
  """
  if not layers:
    return state
  dim = state.positions.shape[-1]
  walls = wall_particles(dim, resolution, layers)
  return state._replace(kinematic_positions=np.concatenate(
      [state.kinematic_positions.reshape(-1, dim), walls]).astype(np.float32))


def capsule_particles(capsule: mpm.Capsule, spacing: float) -> np.ndarray:
  """`[n, 2]` points of a lattice, `spacing` apart, filling a 2D capsule.

  Rows run along the segment, and the outermost points sit about one spacing
  inside the surface, where the next layer of material rests: the obstacle
  looks to the learned model like material it cannot enter.
  """
  start = np.asarray(capsule.start, np.float64)
  axis = np.asarray(capsule.end, np.float64) - start
  length = np.linalg.norm(axis)
  tangent = axis / length
  normal = np.array([-tangent[1], tangent[0]])
  inset = max(capsule.radius - spacing, 0.0)
  num_rows = 2 * int(round(inset / spacing)) + 1
  offsets = np.linspace(-inset, inset, num_rows)
  num_along = int(round((length + 2 * inset) / spacing)) + 1
  along = np.linspace(-inset, length + inset, max(num_along, 2))
  points = (start + along[:, None, None] * tangent +
            offsets[None, :, None] * normal)
  return points.reshape(-1, 2).astype(np.float32)


def _water_ramps(rng: np.random.Generator, resolution: int) -> InitialState:
  """Water blocks above 1-3 tilted static ramps that do not touch (2D)."""
  spacing = mpm.particle_spacing(resolution)
  radius = RAMP_RADIUS_CELLS / resolution
  lo, hi = mpm.BOUNDS
  obstacles = []
  num_ramps = int(rng.integers(1, 4))
  for _ in range(RAMP_MAX_TRIES):
    if len(obstacles) == num_ramps:
      break
    length = rng.uniform(*RAMP_LENGTH_RANGE)
    tilt = (math.radians(rng.uniform(*RAMP_TILT_RANGE_DEG)) *
            rng.choice([-1, 1]))
    half = 0.5 * length * np.array([math.cos(tilt), math.sin(tilt)])
    reach = np.abs(half) + radius + 2 * spacing
    # Ramps sit in the lower part of the box, below the water.
    low = lo + reach
    high = np.maximum(low, np.array([hi, RAMP_MAX_HEIGHT]) - reach)
    center = rng.uniform(low, high)
    ramp = mpm.Capsule(center - half, center + half, radius)
    # Ramps must not touch: water has to fit between them.
    axis_points = np.linspace(ramp.start, ramp.end, 32)
    if all(mpm.capsule_distance(axis_points, other)[0].min() >
           radius + RAMP_GAP_SPACINGS * spacing for other in obstacles):
      obstacles.append(ramp)
  positions, velocities, types = _random_blocks(
      rng, 2, resolution, int(rng.integers(1, 3)),
      [common.ParticleType.WATER] * 2, floor=RAMP_MAX_HEIGHT)
  # Drop material seeded inside or against an obstacle.
  clear = np.ones(len(positions), bool)
  for capsule in obstacles:
    distance, _ = mpm.capsule_distance(positions.astype(np.float64), capsule)
    clear &= distance > spacing
  if not clear.any():  # Keep at least one particle (statistics need one).
    clear[np.argmax(positions[:, 1])] = True
  kinematic = np.concatenate(
      [capsule_particles(c, spacing) for c in obstacles])
  kinematic = np.clip(kinematic, lo, hi)
  return InitialState(positions[clear], velocities[clear], types[clear],
                      tuple(obstacles), kinematic)


WATER, SAND, GOOP = (common.ParticleType.WATER, common.ParticleType.SAND,
                     common.ParticleType.GOOP)

SCENES: Dict[str, SceneSpec] = {
    spec.name: spec for spec in (
        SceneSpec("water_drop", 2, 32, _blocks_scene([WATER], 2, (1, 3))),
        SceneSpec("sand", 2, 32, _blocks_scene([SAND], 2, (1, 3))),
        SceneSpec("goop", 2, 32, _blocks_scene([GOOP], 2, (1, 3))),
        SceneSpec("multi_material", 2, 32,
                  _blocks_scene([WATER, SAND, GOOP], 2, (2, 3), mixed=True)),
        SceneSpec("water_ramps", 2, 32, _water_ramps),
        SceneSpec("water_3d", 3, 16, _blocks_scene([WATER], 3, (1, 2))),
    )
}


def get_scene(name: str) -> SceneSpec:
  """The scene called `name`; raises `ValueError` naming `--scene` otherwise."""
  if name not in SCENES:
    raise ValueError(f"--scene must be one of {sorted(SCENES)}, got {name!r}")
  return SCENES[name]


def connectivity_radius(dim: int, resolution: int) -> float:
  """`default_connectivity_radius` for particles seeded at `resolution`."""
  return RADIUS_SPACINGS[dim] * mpm.particle_spacing(resolution)


def mean_neighbour_count(positions: np.ndarray, radius: float) -> float:
  """Mean number of other particles within `radius` (inclusive) of each.

  Args:
    positions: `[num_particles, dim]`.
    radius: the connectivity radius.
  """
  return float(np.mean(neighbours.neighbour_counts(positions, radius)))


def make_solver(scene: SceneSpec, states: Sequence[InitialState],
                resolution: int, substeps: int, arch: str) -> mpm.Solver:
  """A solver able to simulate every state in `states` (Taichi is reset)."""
  config = mpm.SolverConfig(dim=scene.dim, resolution=resolution,
                            substeps=substeps, arch=arch)
  capacity = max(len(state.positions) for state in states)
  materials = sorted({int(t) for state in states
                      for t in np.unique(state.particle_types)})
  return mpm.Solver(config, capacity, materials)


def simulate_state(solver: mpm.Solver, state: InitialState, num_frames: int,
                   on_frame: Optional[Callable[[], None]] = None
                   ) -> dataset_writer.Trajectory:
  """Simulates `state`, then appends its static KINEMATIC particles.

  Returns:
    A trajectory with `[num_frames, num_particles, dim]` float32 positions,
    the simulated particles first, then the kinematic ones.
  """
  frames = solver.simulate(state.positions, state.velocities,
                           state.particle_types, num_frames,
                           capsules=state.obstacles, on_frame=on_frame)
  kinematic = np.broadcast_to(
      state.kinematic_positions,
      (num_frames,) + state.kinematic_positions.shape)
  types = np.concatenate([
      state.particle_types,
      np.full(len(state.kinematic_positions),
              int(common.ParticleType.KINEMATIC), np.int64)])
  return dataset_writer.Trajectory(
      np.concatenate([frames, kinematic], axis=1).astype(np.float32),
      types.astype(np.int64))


def generate_trajectory(scene: str,
                        num_frames: int,
                        rng: np.random.Generator,
                        resolution: Optional[int] = None,
                        substeps: Optional[int] = None,
                        arch: str = "cpu") -> dataset_writer.Trajectory:
  """Draws one initial state of `scene` from `rng` and simulates it.

  Builds (and compiles) a solver for this one trajectory, which resets
  Taichi; `generate_dataset` shares one solver among many trajectories.

  Args:
    scene: a name in `SCENES`.
    num_frames: frames to return, the initial one included (>= 1).
    rng: source of the random initial condition.
    resolution: grid cells per unit length; the scene's default if None.
    substeps: MPM substeps per frame; the CFL minimum if None.
    arch: `cpu` (single-threaded, reproducible) or `gpu`.

  Returns:
    The trajectory: `[num_frames, num_particles, dim]` float32 positions,
    `[num_particles]` int64 particle types.

  Raises:
    ValueError: an unknown scene or an out-of-range argument.
    mpm.TaichiNotFoundError: Taichi is not installed.
  """
  spec = get_scene(scene)
  resolution = resolution or spec.default_resolution
  if substeps is None:
    substeps = mpm.min_substeps(resolution)
  state = spec.build(rng, resolution)
  solver = make_solver(spec, [state], resolution, substeps, arch)
  return simulate_state(solver, state, num_frames)
