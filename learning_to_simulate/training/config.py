"""Hyperparameters, their defaults, and the copy saved beside checkpoints.

Defaults are the paper's (Sanchez-Gonzalez et al. 2020, Appendix B and the
original code): latent 128, MLPs of 2 hidden layers of 128, 10 message-passing
steps, noise std 6.7e-4, Adam with the learning rate decaying from 1e-4 to
1e-6 (factor 0.1 every 5e6 steps), batch size 2.

`{model_path}/config.json` records the configuration a model was trained
with, so evaluation rebuilds the same model without repeating flags.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from learning_to_simulate.data import dataset_writer
from learning_to_simulate.model import relaxation as relaxation_lib

CONFIG_FILENAME = "config.json"
OPTIMIZERS = ("adam", "rmsprop", "sgd", "adadelta")


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


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Optimizer and learning-rate schedule.

  lr(step) = (lr - min_lr) * lr_decay_rate ** (step / lr_decay_steps) + min_lr
  """
  optimizer: str = "adam"
  lr: float = 1e-4
  min_lr: float = 1e-6
  lr_decay_steps: int = int(5e6)
  lr_decay_rate: float = 0.1

  def validate(self) -> None:
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, "
                       f"got {self.optimizer!r}")
    if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
      raise ValueError(f"need 0 <= --min_lr <= --lr and --lr > 0, got "
                       f"lr={self.lr}, min_lr={self.min_lr}")
    if self.lr_decay_steps <= 0:
      raise ValueError(f"--lr_decay_steps must be > 0, got "
                       f"{self.lr_decay_steps}")
    if not 0 < self.lr_decay_rate <= 1:
      raise ValueError(f"--lr_decay_rate must be in (0, 1], got "
                       f"{self.lr_decay_rate}")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """The training recipe beyond the paper: opt-in, off by default.

  Pushforward training (Brandstetter et al. 2022, "Message passing neural PDE
  solvers", Sec. 2.3; on by default in LagrangeBench, Toshev et al. 2023):
  before some training steps the model first rolls itself forward
  `k` steps from the noisy inputs, without gradient, and learns the next
  step from its own predictions. Unroll length `k` becomes available at
  `k * pushforward_phase_steps` training steps (up to
  `pushforward_max_unroll`); once some are, a step unrolls with probability
  `pushforward_probability`, its length drawn uniformly among them.

  Multi-step loss: the trained step is followed by `multistep_loss_steps - 1`
  more steps of the model's own predictions, with gradient through them, and
  the loss is the mean of the paper's loss over these steps.
  """
  pushforward_max_unroll: int = 0  # 0: the paper's one-step training.
  pushforward_phase_steps: int = 20000
  pushforward_probability: float = 0.2
  multistep_loss_steps: int = 1  # 1: the paper's one-step loss.

  def validate(self) -> None:
    if self.pushforward_max_unroll < 0:
      raise ValueError(f"--pushforward_max_unroll must be >= 0, got "
                       f"{self.pushforward_max_unroll}")
    if self.pushforward_phase_steps < 0:
      raise ValueError(f"--pushforward_phase_steps must be >= 0, got "
                       f"{self.pushforward_phase_steps}")
    if not 0 <= self.pushforward_probability <= 1:
      raise ValueError(f"--pushforward_probability must be in [0, 1], got "
                       f"{self.pushforward_probability}")
    if self.multistep_loss_steps < 1:
      raise ValueError(f"--multistep_loss_steps must be >= 1, got "
                       f"{self.multistep_loss_steps}")

  @property
  def windowed(self) -> bool:
    """Trains on windows of several steps (pushforward or multi-step loss);
    False: the paper's one-step batches."""
    return self.pushforward_max_unroll > 0 or self.multistep_loss_steps > 1


# Sections of config.json and their classes. A file written before a section
# existed reads as that section's defaults.
SECTIONS = {"model": ModelConfig, "optimizer": OptimizerConfig,
            "training": TrainingConfig}


def to_dict(model: ModelConfig, optimizer: OptimizerConfig,
            training: TrainingConfig = TrainingConfig()) -> Dict[str, Any]:
  return {"model": dataclasses.asdict(model),
          "optimizer": dataclasses.asdict(optimizer),
          "training": dataclasses.asdict(training)}


# config.json's record of how the run trains, beside what it trains: the
# settings that change the numbers a run produces but not the model's
# variables (`run_changes` names the ones a resumed run changed).
RUN_SECTION = "run"


def save(model_path: str, model: ModelConfig, optimizer: OptimizerConfig,
         training: TrainingConfig = TrainingConfig(),
         run: Optional[Dict[str, Any]] = None) -> None:
  """Writes `{model_path}/config.json` atomically (with `run`: e.g. batch
  size, seed, precision and replicas, under `RUN_SECTION`)."""
  config = to_dict(model, optimizer, training)
  if run is not None:
    config[RUN_SECTION] = dict(run)
  dataset_writer.write_json(os.path.join(model_path, CONFIG_FILENAME), config)


def run_changes(saved: Optional[Dict[str, Any]],
                run: Dict[str, Any]) -> List[str]:
  """One line per run setting that differs from the saved config.json's
  (none when it has no run section: written before it existed)."""
  before = (saved or {}).get(RUN_SECTION)
  if not before:
    return []
  return [f"{name} is {run[name]!r} in this run, {before[name]!r} in the run "
          f"so far (config.json's {RUN_SECTION!r} section now says "
          f"{run[name]!r})" for name in run
          if name in before and before[name] != run[name]]


def load(model_path: str) -> Optional[Dict[str, Any]]:
  """Reads `{model_path}/config.json`; None when there is none."""
  path = os.path.join(model_path, CONFIG_FILENAME)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      saved = json.load(f)
    for section, cls in SECTIONS.items():
      if section != "training" or section in saved:
        cls(**saved[section])
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise ValueError(f"{path} is not a valid model config: {e}") from None
  return saved


# Options that change how a trained model is used, not what it learned: a
# model may be evaluated with another value than it was trained with.
EVALUATION_OPTIONS = ("clamp_to_bounds", "relaxation_steps",
                      "relaxation_step_size", "relaxation_rest_density")


def resolve(saved: Optional[Dict[str, Any]], section: str, cls,
            overrides: Dict[str, Any], path: str,
            evaluating: bool = False):
  """Merges flags given on the command line into a saved config section.

  Args:
    saved: the loaded config.json, or None.
    section: a key of `SECTIONS`.
    cls: its class.
    overrides: values the user set explicitly (flag name -> value).
    path: the model path, named in the error.
    evaluating: the config is for evaluation, so `EVALUATION_OPTIONS` may
      differ from the saved values.

  Returns:
    The config: saved values, or defaults when nothing was saved, with
    `overrides` applied.

  Raises:
    ValueError: an override differs from the saved value (the checkpoint
      was trained with other hyperparameters).
  """
  if saved is None:
    return cls(**overrides)
  # Keys a config.json of an earlier version lacks have their defaults: the
  # model was trained with them.
  values = {**dataclasses.asdict(cls()), **saved.get(section, {})}
  for name, value in overrides.items():
    if isinstance(values.get(name), list):  # JSON's form of a tuple.
      values[name] = tuple(values[name])
    if (name in values and values[name] != value and
        not (evaluating and name in EVALUATION_OPTIONS)):
      raise ValueError(
          f"--{name}={value} differs from the value {values[name]!r} the "
          f"model in {path} was trained with (see "
          f"{os.path.join(path, CONFIG_FILENAME)}); drop the flag or use "
          "another --model_path")
    values[name] = value
  return cls(**values)
