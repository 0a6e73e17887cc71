"""Hyperparameters, their defaults, and the copy saved beside checkpoints.

Defaults are the paper's (Sanchez-Gonzalez et al. 2020, Appendix B and the
original code): the model's (`model.config.ModelConfig`, also importable
from here), Adam with the learning rate decaying from 1e-4 to 1e-6 (factor
0.1 every 5e6 steps), batch size 2.

`{model_path}/config.json` records the configuration a model was trained
with, so evaluation rebuilds the same model without repeating flags.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from learning_to_simulate.data import dataset_writer
from learning_to_simulate.model.config import ModelConfig  # The model's own.
from learning_to_simulate.model.options import option

CONFIG_FILENAME = "config.json"
OPTIMIZERS = ("adam", "rmsprop", "sgd", "adadelta")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Optimizer and learning-rate schedule.

  lr(step) = (lr - min_lr) * lr_decay_rate ** (step / lr_decay_steps) + min_lr
  """
  optimizer: str = option("adam", "Optimizer.", choices=OPTIMIZERS)
  lr: float = option(1e-4, "Initial learning rate.")
  min_lr: float = option(1e-6, "Final learning rate.")
  lr_decay_steps: int = option(
      int(5e6), "Steps over which (lr - min_lr) decays by lr_decay_rate.")
  lr_decay_rate: float = option(0.1, "Learning-rate decay factor.")

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
  pushforward_max_unroll: int = option(
      0, "Pushforward training: the model rolls itself forward up to this "
      "many steps (without gradient) before the trained step (0: off, the "
      "paper's training).")
  pushforward_phase_steps: int = option(
      20000, "Unroll length k becomes available after k times this many "
      "training steps.")
  pushforward_probability: float = option(
      0.2, "Share of training steps that unroll, once unrolls are "
      "available.")
  pushforward_relaxation: bool = option(
      False, "Pushforward's unrolled steps are relaxed as a rollout relaxes "
      "them (--relaxation_steps > 0), so the model learns from the inputs it "
      "meets in a relaxed rollout.")
  multistep_loss_steps: int = option(
      1, "Multi-step loss: the mean of the paper's loss over this many "
      "steps of the model's own rollout, with gradient through them (1: the "
      "paper's one-step loss; K costs about K times the compute and "
      "activation memory of a step).")

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
    if self.pushforward_relaxation and not self.pushforward_max_unroll:
      raise ValueError("--pushforward_relaxation relaxes pushforward's "
                       "unrolled steps: give --pushforward_max_unroll > 0")

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
         run: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
  """Writes `{model_path}/config.json` atomically (with `run`: e.g. batch
  size, seed, precision and replicas, under `RUN_SECTION`); returns what it
  wrote."""
  config = to_dict(model, optimizer, training)
  if run is not None:
    config[RUN_SECTION] = dict(run)
  dataset_writer.write_json(os.path.join(model_path, CONFIG_FILENAME), config)
  return config


def describe(config: Dict[str, Any]) -> List[str]:
  """One line per section of a `config.json` dict: its settings that differ
  from the defaults (the paper's), or `the paper's` when none does; the run
  section in full; names in the file's (sorted) order."""
  lines = []
  for section, cls in SECTIONS.items():
    defaults = dataclasses.asdict(cls())
    changed = {name: value for name, value in
               sorted(config.get(section, {}).items())
               if defaults.get(name) != value}
    settings = ", ".join(f"{name}={value!r}" for name, value in
                         changed.items()) or "the paper's"
    lines.append(f"{section}: {settings}")
  if RUN_SECTION in config:
    lines.append(f"{RUN_SECTION}: " + ", ".join(
        f"{name}={value!r}" for name, value in
        sorted(config[RUN_SECTION].items())))
  return lines


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
                      "relaxation_step_size", "relaxation_rest_density",
                      "relaxation_mirror_walls")


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
