"""MLS-MPM particle simulator in Taichi, the ground truth behind generated data.

The Moving Least Squares Material Point Method of Hu et al. 2018 ("A Moving
Least Squares Material Point Method with Displacement Discontinuity and
Two-Way Rigid Body Coupling"), the method the paper's Water, Sand and Goop
datasets came from (arXiv:2002.09405, Sec. 4). Quadratic B-spline transfers,
APIC/MLS affine momentum, one background grid shared by all materials:

- `WATER`: weakly compressible fluid, Kirchhoff stress `K J (J - 1) I`.
- `SAND`: Drucker-Prager elastoplasticity on Hencky strain (Klar et al. 2016)
  with the volume correction of Tampubolon et al. 2017.
- `GOOP`: fixed-corotated elasticity whose shape (singular values over
  `J^(1/dim)`) is clamped to a narrow yield range (Stomakhin et al. 2013, no
  hardening, isochoric: the volume stays elastic), so shear deformation
  accumulates and the material flows like a viscoplastic paste without
  compacting.

Units are SI on the unit square (cube): gravity 9.8 along axis 1, density 1.
The box walls sit at `BOUNDS` with slip conditions; static obstacles enter as
capsules (segments with a radius) whose signed distance drives a slip
condition on the grid. Grid conditions let particles sink up to about a cell
into a wall, so after each substep particles are also clamped into the box
and pushed out of the capsules. Taichi is an optional dependency (the
`datagen` extra): it is imported only when a `Solver` is built.
"""

import dataclasses
import math
import re
from typing import Callable, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from learning_to_simulate.data import common

TAICHI_REQUIREMENT = "taichi==1.7.4"
MISSING_TAICHI_MESSAGE = (
    "generate_dataset needs Taichi: pip install "
    f"'learning_to_simulate[datagen]' (or pip install {TAICHI_REQUIREMENT})")

# Box walls, as in the DeepMind datasets: particles live in [0.1, 0.9]^dim.
BOUNDS = (0.1, 0.9)
# Seconds between saved frames (the DeepMind WaterDrop value).
FRAME_DT = 0.0025
GRAVITY = 9.8
GRAVITY_AXIS = 1  # y is up in 2D and 3D.
DENSITY = 1.0
# Particles are seeded on a lattice with this many per grid cell along each
# axis (4 per cell in 2D, 8 in 3D, as in the classic MLS-MPM examples).
PARTICLES_PER_CELL = 2
# Substep dt <= CFL_NUMBER * dx / (fastest elastic wave speed).
CFL_NUMBER = 0.4
# Coarser grids cannot resolve the 0.1 wall margin and a block of particles.
MIN_RESOLUTION = 8
# The quadratic stencil reaches two nodes past a particle's base node; the
# padding keeps every stencil of a particle in [0, 1] inside the grid.
GRID_PADDING = 3
ARCHS = ("cpu", "gpu")
# Capacity of the solver's obstacle table.
MAX_OBSTACLES = 16

# Material constants (SI units, density 1).
WATER_BULK_MODULUS = 1000.0
SAND_YOUNGS_MODULUS = 1000.0
SAND_POISSON_RATIO = 0.3
SAND_FRICTION_ANGLE_DEG = 40.0
GOOP_YOUNGS_MODULUS = 500.0
GOOP_POISSON_RATIO = 0.3
GOOP_YIELD_COMPRESSION = 1e-2  # Shape singular values are clamped to
GOOP_YIELD_STRETCH = 5e-3      # [1 - compression, 1 + stretch].
# Coulomb friction of walls and obstacles, per material (water slips; grains
# and paste grip, so sand piles up instead of sliding across the floor). A
# node takes the mass-weighted mean of the materials around it.
WALL_FRICTION = {
    common.ParticleType.WATER: 0.0,
    common.ParticleType.SAND: 0.5,
    common.ParticleType.GOOP: 0.5,
}
# Smallest singular value used in the logarithm of the Hencky strain.
MIN_SINGULAR_VALUE = 1e-4

SIMULATED_TYPES = (common.ParticleType.WATER, common.ParticleType.SAND,
                   common.ParticleType.GOOP)


class TaichiNotFoundError(ImportError):
  """Raised when dataset generation is asked for without Taichi installed."""


def import_taichi():
  """Imports Taichi, or raises `TaichiNotFoundError` saying how to get it."""
  try:
    import taichi  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    library = _missing_library(str(e))
    if library:  # Installed, but a system library it links is not.
      raise TaichiNotFoundError(
          f"Taichi is installed but cannot load {library}, a system library "
          f"it needs: install it (Debian/Ubuntu: apt-get install "
          f"{_DEBIAN_PACKAGES.get(library, 'the package that has it')})"
      ) from e
    raise TaichiNotFoundError(MISSING_TAICHI_MESSAGE) from e
  return taichi


# Shared libraries Taichi's core links and a bare system may lack.
_DEBIAN_PACKAGES = {"libX11.so.6": "libx11-6"}


def _missing_library(message: str) -> str:
  """The shared library an ImportError's message says is missing, or ''."""
  match = re.match(r"(\S+\.so[.\d]*): cannot open shared object file",
                   message)
  return match.group(1) if match else ""


def lame_parameters(youngs_modulus: float,
                    poisson_ratio: float) -> Tuple[float, float]:
  """Returns the Lame parameters `(mu, lambda)`."""
  mu = youngs_modulus / (2 * (1 + poisson_ratio))
  lam = youngs_modulus * poisson_ratio / ((1 + poisson_ratio) *
                                          (1 - 2 * poisson_ratio))
  return mu, lam


def max_wave_speed() -> float:
  """Fastest elastic (P-)wave speed over all materials, in m/s."""
  moduli = [WATER_BULK_MODULUS]
  for youngs, poisson in ((SAND_YOUNGS_MODULUS, SAND_POISSON_RATIO),
                          (GOOP_YOUNGS_MODULUS, GOOP_POISSON_RATIO)):
    mu, lam = lame_parameters(youngs, poisson)
    moduli.append(lam + 2 * mu)
  return math.sqrt(max(moduli) / DENSITY)


def particle_spacing(resolution: int) -> float:
  """Lattice spacing of seeded particles for a grid of `resolution` cells."""
  return 1.0 / (resolution * PARTICLES_PER_CELL)


def min_substeps(resolution: int) -> int:
  """Fewest MPM substeps per saved frame that keep the substep CFL-stable."""
  max_dt = CFL_NUMBER / resolution / max_wave_speed()
  return max(1, math.ceil(FRAME_DT / max_dt))


class Capsule(NamedTuple):
  """A static obstacle: points within `radius` of the segment start-end."""
  start: np.ndarray  # `[dim]`
  end: np.ndarray  # `[dim]`
  radius: float


def capsule_distance(points: np.ndarray,
                     capsule: Capsule) -> Tuple[np.ndarray, np.ndarray]:
  """Signed distance to a capsule and its outward normal.

  Args:
    points: `[num_points, dim]` query points.
    capsule: the obstacle.

  Returns:
    `[num_points]` signed distances (negative inside) and `[num_points, dim]`
    unit outward normals. On the segment itself, where the direction is
    undefined, the normal is perpendicular to the segment (2D) or along the
    first axis orthogonal to it.
  """
  start = np.asarray(capsule.start, np.float64)
  axis = np.asarray(capsule.end, np.float64) - start
  t = np.clip((points - start) @ axis / max(axis @ axis, 1e-12), 0.0, 1.0)
  offset = points - (start + t[:, None] * axis)
  distance = np.linalg.norm(offset, axis=-1)
  fallback = np.zeros_like(start)
  fallback[0], fallback[1] = -axis[1], axis[0]
  if not fallback.any():
    fallback[0] = 1.0
  fallback /= np.linalg.norm(fallback)
  normal = np.where(distance[:, None] > 1e-9,
                    offset / np.maximum(distance, 1e-9)[:, None], fallback)
  return distance - capsule.radius, normal


def obstacle_field(capsules: Sequence[Capsule], dim: int,
                   resolution: int) -> Tuple[np.ndarray, np.ndarray]:
  """Signed distance and normal of the union of `capsules` at grid nodes.

  Returns:
    `[grid_size] * dim` float32 signed distances (a large positive value with
    no obstacles) and `[grid_size] * dim + [dim]` float32 outward normals,
    where `grid_size = resolution + GRID_PADDING` and node `i` sits at
    `i / resolution`.
  """
  grid_size = resolution + GRID_PADDING
  axes = [np.arange(grid_size, dtype=np.float64) / resolution] * dim
  nodes = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, dim)
  sdf = np.full(nodes.shape[0], np.inf)
  normal = np.zeros_like(nodes)
  for capsule in capsules:
    distance, direction = capsule_distance(nodes, capsule)
    closer = distance < sdf
    sdf[closer] = distance[closer]
    normal[closer] = direction[closer]
  sdf = np.minimum(sdf, 1.0)  # Any value beyond the box means "no obstacle".
  shape = (grid_size,) * dim
  return (sdf.reshape(shape).astype(np.float32),
          normal.reshape(shape + (dim,)).astype(np.float32))


@dataclasses.dataclass(frozen=True)
class SolverConfig:
  """Discretization of one simulation.

  Attributes:
    dim: 2 or 3.
    resolution: grid cells per unit length (the box is the unit square/cube).
    substeps: MPM steps per saved frame; the substep is `FRAME_DT / substeps`.
    arch: `cpu` (single-threaded, bit-reproducible) or `gpu`.
  """
  dim: int
  resolution: int
  substeps: int
  arch: str = "cpu"

  def __post_init__(self):
    if self.dim not in (2, 3):
      raise ValueError(f"dim must be 2 or 3, got {self.dim}")
    if self.resolution < MIN_RESOLUTION:
      raise ValueError(f"resolution must be >= {MIN_RESOLUTION}, got "
                       f"{self.resolution}")
    if self.substeps < min_substeps(self.resolution):
      raise ValueError(
          f"substeps={self.substeps} is unstable for resolution="
          f"{self.resolution}: need >= {min_substeps(self.resolution)} "
          "(CFL limit)")
    if self.arch not in ARCHS:
      raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")


class Solver:
  """MLS-MPM on a fixed grid, for up to `capacity` particles.

  Building a solver (re)initializes Taichi, which invalidates any earlier
  solver in the process. On `cpu` Taichi runs on one thread so that the
  atomic scatter to the grid happens in a fixed order and results are
  bit-reproducible; `gpu` is faster but not reproducible. Only the
  constitutive models of `materials` are compiled, and only particles of
  those types can be simulated.
  """

  def __init__(self, config: SolverConfig, capacity: int,
               materials: Sequence[int] = SIMULATED_TYPES):
    if capacity < 1:
      raise ValueError(f"capacity must be >= 1, got {capacity}")
    unknown = set(int(m) for m in materials) - set(SIMULATED_TYPES)
    if unknown or not materials:
      raise ValueError(f"materials must be a non-empty subset of "
                       f"{[t.name for t in SIMULATED_TYPES]}, got "
                       f"{list(materials)}")
    self.materials = tuple(sorted(set(int(m) for m in materials)))
    ti = import_taichi()
    if config.arch == "cpu":
      ti.init(arch=ti.cpu, cpu_max_num_threads=1, fast_math=False,
              random_seed=0, log_level=ti.WARN)
    else:
      ti.init(arch=ti.gpu, fast_math=False, random_seed=0, log_level=ti.WARN)
    self.config = config
    self.capacity = capacity
    dim = config.dim
    self._grid_shape = (config.resolution + GRID_PADDING,) * dim
    self._x = ti.Vector.field(dim, ti.f32, capacity)
    self._v = ti.Vector.field(dim, ti.f32, capacity)
    self._affine = ti.Matrix.field(dim, dim, ti.f32, capacity)  # APIC C.
    self._deformation = ti.Matrix.field(dim, dim, ti.f32, capacity)  # F.
    self._material = ti.field(ti.i32, capacity)
    # Sand: log-volume gained by separating (volume correction).
    self._volume_correction = ti.field(ti.f32, capacity)
    self._grid_v = ti.Vector.field(dim, ti.f32, self._grid_shape)
    self._grid_m = ti.field(ti.f32, self._grid_shape)
    self._grid_friction = ti.field(ti.f32, self._grid_shape)  # Mass * mu.
    self._obstacle_sdf = ti.field(ti.f32, self._grid_shape)
    self._obstacle_normal = ti.Vector.field(dim, ti.f32, self._grid_shape)
    self._capsule_start = ti.Vector.field(dim, ti.f32, MAX_OBSTACLES)
    self._capsule_end = ti.Vector.field(dim, ti.f32, MAX_OBSTACLES)
    self._capsule_radius = ti.field(ti.f32, MAX_OBSTACLES)
    self._num_capsules = ti.field(ti.i32, ())
    self._substep = self._build_substep_kernel(ti)

  def simulate(self,
               positions: np.ndarray,
               velocities: np.ndarray,
               particle_types: np.ndarray,
               num_frames: int,
               capsules: Sequence[Capsule] = (),
               on_frame: Optional[Callable[[], None]] = None) -> np.ndarray:
    """Runs the simulation from rest state `F = I`.

    Args:
      positions: `[num_particles, dim]` initial positions inside `BOUNDS`.
      velocities: `[num_particles, dim]` initial velocities, m/s.
      particle_types: `[num_particles]` WATER, SAND or GOOP.
      num_frames: frames to return, the initial one included.
      capsules: static obstacles, at most `MAX_OBSTACLES`.
      on_frame: optional callback, called after each simulated frame.

    Returns:
      `[num_frames, num_particles, dim]` float32 positions, one frame every
      `FRAME_DT` seconds.
    """
    dim = self.config.dim
    positions = np.asarray(positions, np.float32)
    num_particles = positions.shape[0]
    if positions.shape != (num_particles, dim):
      raise ValueError(f"positions must be [num_particles, {dim}], got shape "
                       f"{positions.shape}")
    if not 1 <= num_particles <= self.capacity:
      raise ValueError(f"need 1 to {self.capacity} particles, got "
                       f"{num_particles}")
    if np.shape(velocities) != positions.shape:
      raise ValueError(f"velocities must have shape {positions.shape}, got "
                       f"{np.shape(velocities)}")
    if np.shape(particle_types) != (num_particles,):
      raise ValueError(f"particle_types must be [{num_particles}], got shape "
                       f"{np.shape(particle_types)}")
    unknown = set(np.unique(particle_types).tolist()) - set(self.materials)
    if unknown:
      raise ValueError(f"cannot simulate particle types {sorted(unknown)}; "
                       f"this solver was built for {list(self.materials)}")
    if num_frames < 1:
      raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if len(capsules) > MAX_OBSTACLES:
      raise ValueError(f"at most {MAX_OBSTACLES} capsules, got "
                       f"{len(capsules)}")

    def padded(array, dtype):
      out = np.zeros((self.capacity,) + np.shape(array)[1:], dtype)
      out[:num_particles] = array
      return out

    self._x.from_numpy(padded(positions, np.float32))
    self._v.from_numpy(padded(velocities, np.float32))
    self._affine.from_numpy(np.zeros((self.capacity, dim, dim), np.float32))
    self._deformation.from_numpy(
        np.tile(np.eye(dim, dtype=np.float32), (self.capacity, 1, 1)))
    self._material.from_numpy(padded(particle_types, np.int32))
    self._volume_correction.from_numpy(np.zeros(self.capacity, np.float32))
    sdf, normal = obstacle_field(capsules, dim, self.config.resolution)
    self._obstacle_sdf.from_numpy(sdf)
    self._obstacle_normal.from_numpy(normal)
    table = np.zeros((3, MAX_OBSTACLES, dim), np.float32)
    for k, capsule in enumerate(capsules):
      table[0, k], table[1, k] = capsule.start, capsule.end
      table[2, k] = capsule.radius
    self._capsule_start.from_numpy(table[0])
    self._capsule_end.from_numpy(table[1])
    self._capsule_radius.from_numpy(table[2, :, 0])
    self._num_capsules[None] = len(capsules)

    frames = np.empty((num_frames, num_particles, dim), np.float32)
    frames[0] = positions
    for frame in range(1, num_frames):
      for _ in range(self.config.substeps):
        self._substep(num_particles)
      frames[frame] = self._x.to_numpy()[:num_particles]
      if on_frame is not None:
        on_frame()
    if not np.isfinite(frames).all():
      raise FloatingPointError("MPM simulation diverged (non-finite positions)")
    return frames

  def _build_substep_kernel(self, ti):
    """Compiles one MLS-MPM substep (P2G, grid update, G2P) on the fields."""
    dim = self.config.dim
    resolution = self.config.resolution
    dx = 1.0 / resolution
    inv_dx = float(resolution)
    dt = FRAME_DT / self.config.substeps
    particle_volume = particle_spacing(resolution) ** dim
    particle_mass = DENSITY * particle_volume
    lo, hi = BOUNDS
    water = int(common.ParticleType.WATER)
    sand = int(common.ParticleType.SAND)
    goop = int(common.ParticleType.GOOP)
    # Only the constitutive models of materials in use are compiled (3D SVDs
    # are slow to compile).
    materials = tuple(int(m) for m in self.materials)
    sand_mu, sand_lambda = lame_parameters(SAND_YOUNGS_MODULUS,
                                           SAND_POISSON_RATIO)
    sin_phi = math.sin(math.radians(SAND_FRICTION_ANGLE_DEG))
    # Drucker-Prager cone slope (Klar et al. 2016, Eq. 27).
    sand_alpha = math.sqrt(2 / 3) * 2 * sin_phi / (3 - sin_phi)
    sand_cone = (dim * sand_lambda + 2 * sand_mu) / (2 * sand_mu) * sand_alpha
    goop_mu, goop_lambda = lame_parameters(GOOP_YOUNGS_MODULUS,
                                           GOOP_POISSON_RATIO)
    x, v, affine, deformation = (self._x, self._v, self._affine,
                                 self._deformation)
    material = self._material
    volume_correction = self._volume_correction
    grid_v, grid_m = self._grid_v, self._grid_m
    grid_friction = self._grid_friction
    obstacle_sdf = self._obstacle_sdf
    obstacle_normal = self._obstacle_normal
    capsule_start = self._capsule_start
    capsule_end = self._capsule_end
    capsule_radius = self._capsule_radius
    num_capsules = self._num_capsules
    gravity = [0.0] * dim
    gravity[GRAVITY_AXIS] = -GRAVITY
    # Friction is compiled in only when a material in use has some.
    has_friction = any(WALL_FRICTION[m] > 0.0 for m in materials)
    sand_friction = WALL_FRICTION[common.ParticleType.SAND]
    goop_friction = WALL_FRICTION[common.ParticleType.GOOP]
    water_friction = WALL_FRICTION[common.ParticleType.WATER]

    @ti.func
    def friction_coefficient(p):
      mu = water_friction
      if material[p] == sand:
        mu = sand_friction
      elif material[p] == goop:
        mu = goop_friction
      return mu

    @ti.func
    def kirchhoff_stress(p):
      """Applies plasticity to `F[p]` and returns the Kirchhoff stress."""
      identity = ti.Matrix.identity(ti.f32, dim)
      f = deformation[p]
      stress = ti.Matrix.zero(ti.f32, dim, dim)
      if ti.static(water in materials):
        if material[p] == water:
          # A fluid keeps no shear memory: reset F to its volume change.
          j = f.determinant()
          deformation[p] = identity * ti.pow(j, 1.0 / dim)
          stress = WATER_BULK_MODULUS * j * (j - 1.0) * identity
      if ti.static(sand in materials):
        if material[p] == sand:
          u, sigma, vt = ti.svd(f)
          eps = ti.Vector.zero(ti.f32, dim)
          for d in ti.static(range(dim)):
            eps[d] = ti.log(ti.max(ti.abs(sigma[d, d]), MIN_SINGULAR_VALUE))
          trace = eps.sum() + volume_correction[p]
          if trace >= 0.0:
            # Expansion: grains separate, no elastic strain is kept.
            volume_correction[p] = trace
            eps = ti.Vector.zero(ti.f32, dim)
          else:
            volume_correction[p] = 0.0
            deviator = eps - eps.sum() / dim
            deviator_norm = deviator.norm() + 1e-20
            plastic_strain = deviator_norm + sand_cone * trace
            if plastic_strain > 0.0:  # Outside the cone: return to its surface.
              eps -= plastic_strain / deviator_norm * deviator
          sigma_new = ti.Matrix.zero(ti.f32, dim, dim)
          tau = ti.Matrix.zero(ti.f32, dim, dim)
          for d in ti.static(range(dim)):
            sigma_new[d, d] = ti.exp(eps[d])
            tau[d, d] = 2.0 * sand_mu * eps[d] + sand_lambda * eps.sum()
          deformation[p] = u @ sigma_new @ vt.transpose()
          stress = u @ tau @ u.transpose()
      if ti.static(goop in materials):
        if material[p] == goop:
          u, sigma, vt = ti.svd(f)
          # Isochoric plasticity: clamp the shape (the singular values over
          # J^(1/dim)) and keep the volume elastic, so plastic flow neither
          # compacts nor dilates the paste.
          volume_scale = ti.pow(ti.abs(f.determinant()), 1.0 / dim)
          shape = ti.Vector.zero(ti.f32, dim)
          for d in ti.static(range(dim)):
            shape[d] = ti.min(ti.max(sigma[d, d] / volume_scale,
                                     1.0 - GOOP_YIELD_COMPRESSION),
                              1.0 + GOOP_YIELD_STRETCH)
          # The clamped shape keeps unit determinant: volume stays elastic.
          shape_volume = 1.0
          for d in ti.static(range(dim)):
            shape_volume *= shape[d]
          volume_scale /= ti.pow(shape_volume, 1.0 / dim)
          for d in ti.static(range(dim)):
            sigma[d, d] = volume_scale * shape[d]
          f = u @ sigma @ vt.transpose()
          deformation[p] = f
          j = f.determinant()
          rotation = u @ vt.transpose()
          stress = (2.0 * goop_mu * (f - rotation) @ f.transpose() +
                    goop_lambda * j * (j - 1.0) * identity)
      return stress

    @ti.kernel
    def substep(num_particles: ti.i32):
      for node in ti.grouped(grid_m):
        grid_v[node] = ti.Vector.zero(ti.f32, dim)
        grid_m[node] = 0.0
        if ti.static(has_friction):
          grid_friction[node] = 0.0
      # Particle to grid: momentum plus the MLS stress impulse.
      for p in range(num_particles):
        xp = x[p] * inv_dx
        base = ti.cast(xp - 0.5, ti.i32)
        fx = xp - base
        w = [0.5 * (1.5 - fx)**2, 0.75 - (fx - 1.0)**2, 0.5 * (fx - 0.5)**2]
        deformation[p] = (ti.Matrix.identity(ti.f32, dim) +
                          dt * affine[p]) @ deformation[p]
        stress = kirchhoff_stress(p)
        # MLS stress impulse; 4 / dx^2 is the inverse inertia of the
        # quadratic B-spline.
        stress_impulse = -dt * particle_volume * 4.0 * inv_dx * inv_dx * stress
        momentum_affine = stress_impulse + particle_mass * affine[p]
        for offset in ti.static(ti.grouped(ti.ndrange(*((3,) * dim)))):
          dpos = (offset - fx) * dx
          weight = 1.0
          for d in ti.static(range(dim)):
            weight *= w[offset[d]][d]
          grid_v[base + offset] += weight * (particle_mass * v[p] +
                                             momentum_affine @ dpos)
          grid_m[base + offset] += weight * particle_mass
          if ti.static(has_friction):
            grid_friction[base + offset] += (weight * particle_mass *
                                             friction_coefficient(p))
      # Grid update: gravity, then walls and obstacles that stop the inward
      # velocity and, by Coulomb friction, slow the tangential velocity by
      # `mu` times the normal speed they removed.
      for node in ti.grouped(grid_m):
        if grid_m[node] > 0.0:
          vel = grid_v[node] / grid_m[node]
          stopped = 0.0  # Normal speed removed at this node.
          for d in ti.static(range(dim)):
            vel[d] += dt * gravity[d]
            position = node[d] * dx
            if position < lo and vel[d] < 0.0:
              stopped -= vel[d]
              vel[d] = 0.0
            if position > hi and vel[d] > 0.0:
              stopped += vel[d]
              vel[d] = 0.0
          if obstacle_sdf[node] < 0.0:
            normal_speed = vel.dot(obstacle_normal[node])
            if normal_speed < 0.0:
              stopped -= normal_speed
              vel -= normal_speed * obstacle_normal[node]
          if ti.static(has_friction):
            speed = vel.norm()
            if stopped > 0.0 and speed > 0.0:
              mu = grid_friction[node] / grid_m[node]
              vel *= ti.max(0.0, 1.0 - mu * stopped / speed)
          grid_v[node] = vel
      # Grid to particle: velocity, APIC affine field, advection.
      for p in range(num_particles):
        xp = x[p] * inv_dx
        base = ti.cast(xp - 0.5, ti.i32)
        fx = xp - base
        w = [0.5 * (1.5 - fx)**2, 0.75 - (fx - 1.0)**2, 0.5 * (fx - 0.5)**2]
        new_v = ti.Vector.zero(ti.f32, dim)
        new_affine = ti.Matrix.zero(ti.f32, dim, dim)
        for offset in ti.static(ti.grouped(ti.ndrange(*((3,) * dim)))):
          dpos = offset - fx
          weight = 1.0
          for d in ti.static(range(dim)):
            weight *= w[offset[d]][d]
          node_v = grid_v[base + offset]
          new_v += weight * node_v
          new_affine += 4.0 * inv_dx * weight * node_v.outer_product(dpos)
        v[p] = new_v
        affine[p] = new_affine
        # The wall conditions act on nodes; clamping keeps the particles that
        # sit on a wall inside the bounds, and projection outside the capsules.
        position = ti.min(ti.max(x[p] + dt * new_v, lo), hi)
        for k in range(num_capsules[None]):
          start = capsule_start[k]
          axis = capsule_end[k] - start
          t = ti.min(ti.max((position - start).dot(axis) /
                            ti.max(axis.dot(axis), 1e-12), 0.0), 1.0)
          offset = position - (start + t * axis)
          distance = offset.norm()
          if 1e-9 < distance < capsule_radius[k]:
            position += (capsule_radius[k] / distance - 1.0) * offset
            position = ti.min(ti.max(position, lo), hi)
        x[p] = position

    return substep
