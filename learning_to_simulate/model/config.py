"""The model's configuration: what determines its function and variables.

Defaults are the paper's (Sanchez-Gonzalez et al. 2020, Appendix B and the
original code): latent 128, MLPs of 2 hidden layers of 128, 10
message-passing steps, noise std 6.7e-4 (folded into the normalization
stds). Every option beyond the paper is off by default. An architecture
option is one field here, one flag (`train.py`) and its module in
`model/`; `training.config` saves this with the run in `config.json`.
"""

import dataclasses
from typing import Dict, Optional, Tuple

from learning_to_simulate.model import relaxation as relaxation_lib


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """What determines the model's function and its variables."""
  latent_size: int = 128
  hidden_size: int = 128
  hidden_layers: int = 2
  message_passing_steps: int = 10
  # Part of the model: it is folded into the normalization stds.
  noise_std: float = 6.7e-4
  # Beyond the paper (opt-in): predicted positions never leave the domain
  # bounds, as in the simulators that made the data (hard walls).
  clamp_to_bounds: bool = False
  # Beyond the paper (opt-in): `[dim]` known external acceleration (gravity,
  # positions per frame squared) taken out of the network's target and added
  # back before integration (`model.external_force`); None: the paper's.
  external_acceleration: Optional[Tuple[float, ...]] = None
  # Beyond the paper (opt-in, an evaluation option): density relaxation
  # steps after each rollout step (`model.relaxation`); 0: none.
  relaxation_steps: int = 0
  relaxation_step_size: float = 0.1  # Screened on water (valid).
  relaxation_rest_density: Optional[float] = None  # None: measured.
  # Beyond the paper (opt-in): the radius of the particle graph (and of
  # relaxation's kernel), in position units; None: the metadata's
  # `default_connectivity_radius`.
  connectivity_radius: Optional[float] = None
  # Beyond the paper (opt-in): a grid branch (`model.grid_branch`) with this
  # many nodes per axis over the bounds; 0: none.
  grid_resolution: int = 0
  grid_channels: int = 16
  grid_levels: int = 3

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
    if self.connectivity_radius is not None and not (
        self.connectivity_radius > 0):
      raise ValueError(f"--connectivity_radius must be > 0, got "
                       f"{self.connectivity_radius}")
    self.relaxation().validate()

  def relaxation(self) -> relaxation_lib.Relaxation:
    return relaxation_lib.Relaxation(self.relaxation_steps,
                                     self.relaxation_step_size,
                                     self.relaxation_rest_density)

  def grid(self) -> Optional[Dict[str, int]]:
    """The grid branch's settings (`LearnedSimulator`'s `grid`), or None."""
    if not self.grid_resolution:
      return None
    return dict(resolution=self.grid_resolution,
                channels=self.grid_channels, levels=self.grid_levels)

  def graph_network_kwargs(self) -> Dict[str, int]:
    return dict(latent_size=self.latent_size,
                mlp_hidden_size=self.hidden_size,
                mlp_num_hidden_layers=self.hidden_layers,
                num_message_passing_steps=self.message_passing_steps)
