"""The model's configuration: what determines its function and variables.

Defaults are the paper's (Sanchez-Gonzalez et al. 2020, Appendix B and the
original code): latent 128, MLPs of 2 hidden layers of 128, 10
message-passing steps, noise std 6.7e-4 (folded into the normalization
stds). Every option beyond the paper is off by default. An architecture
option is one entry here, a field declared with `options.option` (its
default and help: the CLI's flag follows from it), and its module in
`model/`; `training.config` saves this with the run in `config.json`.
"""

import dataclasses
from typing import Dict, Optional, Tuple

from learning_to_simulate.model import relaxation as relaxation_lib
from learning_to_simulate.model.options import option


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """What determines the model's function and its variables."""
  latent_size: int = option(128, "Size of node and edge latents.")
  hidden_size: int = option(128, "Hidden layer size of every MLP.")
  hidden_layers: int = option(2, "Hidden layers of every MLP.")
  message_passing_steps: int = option(10, "Number of message-passing steps.")
  # The original's flag. Part of the model: it is folded into the
  # normalization stds.
  noise_std: float = option(6.7e-4, "The std deviation of the noise.")
  clamp_to_bounds: bool = option(
      False, "Beyond the paper (opt-in): clip predicted positions to the "
      "dataset bounds, impermeable walls as in the simulators that made the "
      "data. Saved with the model; eval modes may switch it either way.")
  # `[dim]` (`model.external_force`).
  external_acceleration: Optional[Tuple[float, ...]] = option(
      None, "Beyond the paper (opt-in): the known external acceleration "
      "(gravity) in positions per frame squared, one number per dimension, "
      "or 'auto' for the dataset metadata's external_acceleration (the "
      "generator writes it). The network predicts the acceleration minus "
      "it; it is added back before integration. Saved with the model.")
  # `model.relaxation`; an evaluation option.
  relaxation_steps: int = option(
      0, "Beyond the paper (opt-in): density relaxation steps after each "
      "rollout step, pushing particles out of regions denser than the rest "
      "density (model/relaxation.py); 0: none. An evaluation option like "
      "--clamp_to_bounds: eval modes may change it.")
  relaxation_step_size: float = option(
      0.1, "Scale of each relaxation correction, in connectivity radii per "
      "unit of density excess (0.1 and --relaxation_steps=3: chosen on "
      "water's valid split; 1.0 is unstable).")
  relaxation_rest_density: Optional[float] = option(
      None, "Rest density of the relaxation, in kernel units (a lone "
      "particle has 1); default: the 90th percentile of the movable "
      "particles' densities in the last input frame of each rollout.")
  relaxation_mirror_walls: bool = option(
      False, "Relaxation: kinematic particles (walls made of particles, "
      "obstacles) push a movable neighbour with its full pressure instead "
      "of half of it, as if they mirrored the fluid's pressure "
      "(model/relaxation.py). An evaluation option.")
  connectivity_radius: Optional[float] = option(
      None, "Opt-in: the radius of the particle graph (and of relaxation's "
      "kernel), in position units; default: the metadata's "
      "default_connectivity_radius. Saved with the model.")
  # `connectivity_utils.drop_pairs`.
  kinematic_pair_edges: bool = option(
      True, "Keep the graph's edges between two kinematic particles (walls, "
      "obstacles), as the paper does. --nokinematic_pair_edges leaves them "
      "out (self-edges stay): kinematic particles then hear only from "
      "moving ones, and a scene with wall particles trains about 1.8x "
      "faster. Opt-in; saved with the model.")
  # `model.grid_branch`.
  grid_resolution: int = option(
      0, "Opt-in grid branch: latents scattered onto a grid of this many "
      "nodes per axis over the bounds, a small multi-resolution CNN, "
      "gathered back before decoding (0: off, the paper's network). Saved "
      "with the model.")
  grid_channels: int = option(16, "Channels of the grid branch's CNN.")
  grid_levels: int = option(
      3, "Resolution levels of the grid branch's CNN (--grid_resolution "
      "must be a multiple of 2^(levels - 1)).")
  grid_margin: Optional[float] = option(
      None, "Grid branch: widen its grid by this many connectivity radii "
      "beyond the bounds on every side, and leave a particle outside the "
      "widened grid out of it (it adds nothing and reads 0 from it). Default: "
      "the grid spans the bounds and a particle outside them (wall particles, "
      "one that left the box) is moved onto its edge, however far out. "
      "Saved with the model.")

  def __post_init__(self):
    if self.external_acceleration is not None:  # JSON gives a list.
      object.__setattr__(self, "external_acceleration",
                         tuple(float(v) for v in self.external_acceleration))

  def validate(self) -> None:
    for name in ("latent_size", "hidden_size", "message_passing_steps"):
      if getattr(self, name) < 1:
        raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
    if self.hidden_layers < 0:
      raise ValueError(f"--hidden_layers must be >= 0, got "
                       f"{self.hidden_layers}")
    if self.noise_std < 0:
      raise ValueError(f"--noise_std must be >= 0, got {self.noise_std}")
    if self.grid_resolution:
      for name in ("grid_channels", "grid_levels"):
        if getattr(self, name) < 1:
          raise ValueError(f"--{name} must be >= 1, got "
                           f"{getattr(self, name)}")
      step = 2**(self.grid_levels - 1)
      if self.grid_resolution % step or self.grid_resolution < 2 * step:
        raise ValueError(
            f"--grid_resolution must be 0 (off) or a multiple of "
            f"2^(grid_levels - 1) = {step} and at least {2 * step}, got "
            f"{self.grid_resolution}")
    if self.grid_margin is not None:
      if not self.grid_resolution:
        raise ValueError("--grid_margin needs the grid branch "
                         "(--grid_resolution)")
      if not self.grid_margin >= 0:
        raise ValueError(f"--grid_margin must be >= 0, got "
                         f"{self.grid_margin}")
    if self.connectivity_radius is not None and not (
        self.connectivity_radius > 0):
      raise ValueError(f"--connectivity_radius must be > 0, got "
                       f"{self.connectivity_radius}")
    self.relaxation().validate()

  def relaxation(self) -> relaxation_lib.Relaxation:
    return relaxation_lib.Relaxation(self.relaxation_steps,
                                     self.relaxation_step_size,
                                     self.relaxation_rest_density,
                                     self.relaxation_mirror_walls)

  def grid(self) -> Optional[Dict[str, float]]:
    """The grid branch's settings (`LearnedSimulator`'s `grid`), or None."""
    if not self.grid_resolution:
      return None
    settings = dict(resolution=self.grid_resolution,
                    channels=self.grid_channels, levels=self.grid_levels)
    if self.grid_margin is not None:
      settings["margin_radii"] = self.grid_margin
    return settings

  def graph_network_kwargs(self) -> Dict[str, int]:
    return dict(latent_size=self.latent_size,
                mlp_hidden_size=self.hidden_size,
                mlp_num_hidden_layers=self.hidden_layers,
                num_message_passing_steps=self.message_passing_steps)
