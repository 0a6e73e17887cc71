"""The package from Python: load data and a simulator, roll out, score, plot.

Thin wrappers over what the command lines run, numpy in and out:

    from learning_to_simulate import api

    trajectories = api.load_trajectories(split="test")      # bundled sample
    simulator = api.load_simulator(pretrained=True)         # shipped model
    rollout = simulator.rollout(trajectories[0])            # the whole one
    scores = api.score(rollout)                             # vs baselines
    api.render(rollout, "rollout.gif")
    api.plot_physics(rollout, "physics.png")
    api.snapshots(rollout, "frames.png")                     # still frames

    # The three-material model, on its bundled test split:
    simulator = api.load_simulator(pretrained="multi_material")
    trajectories = api.load_trajectories(
        api.bundled_dataset_path("multi_material"))

A rollout is the dict of the original's pickles (`initial_positions`
`[6, num_particles, dim]`, `predicted_rollout` `[num_steps, num_particles,
dim]`, `ground_truth_rollout` `[steps with data, num_particles, dim]`,
`particle_types` `[num_particles]`, `metadata`), so `render_rollout` and the
metrics read it as they read `eval_rollout`'s. `train` trains in-process as
`python -m learning_to_simulate.train` does (the same `training.trainer`):

    model_path = api.train(api.bundled_dataset_path(), "/tmp/my_model",
                           num_steps=1000,
                           model=api.ModelConfig(latent_size=64))
    simulator = api.load_simulator(model_path)
"""

import dataclasses
import os
from typing import Any, Dict, List, Optional, Union

import numpy as np
import tensorflow as tf

from learning_to_simulate import reading_utils
from learning_to_simulate.data import common
from learning_to_simulate.data import convert as convert_lib
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import metrics as metrics_lib
from learning_to_simulate.training import rollout as rollout_lib
from learning_to_simulate.training import trainer
from learning_to_simulate.training import validation
from learning_to_simulate.visualization import animation
from learning_to_simulate.visualization import physics_plot as physics_plot_lib
from learning_to_simulate.visualization import snapshots as snapshots_lib


# The configuration objects of `train` (the CLI's flags, by section; see
# the flag tables of docs/train_cli.md): the model, the optimizer and
# learning-rate schedule, the opt-in training recipe, and validation during
# training.
ModelConfig = config_lib.ModelConfig
OptimizerConfig = config_lib.OptimizerConfig
TrainingConfig = config_lib.TrainingConfig
ValidationOptions = validation.ValidationOptions

# `bundled_dataset_path(name)`: the small datasets shipped in the package,
# `water_drop` (train, valid and test), `multi_material` and `water_walls`
# (test only).
bundled_dataset_path = reading_utils.bundled_dataset_path


@dataclasses.dataclass(frozen=True)
class Trajectory:
  """One trajectory of a dataset split.

  Attributes:
    positions: `[num_frames, num_particles, dim]` float32.
    particle_types: `[num_particles]` int64.
    context: `[num_frames, context_size]` float32 global context, or None.
    key: the record's key.
  """
  positions: np.ndarray
  particle_types: np.ndarray
  context: Optional[np.ndarray] = None
  key: int = 0


def load_trajectories(data_path: Optional[str] = None, split: str = "test",
                      limit: Optional[int] = None) -> List[Trajectory]:
  """The trajectories of a split (default: the bundled sample's test split).

  Raises:
    reading_utils.DatasetError: a missing or damaged file, one line.
  """
  data_path = data_path or reading_utils.bundled_dataset_path()
  metadata = reading_utils.read_metadata(data_path)
  dataset = reading_utils.load_trajectories(data_path, split, metadata)
  if limit is not None:
    dataset = dataset.take(limit)
  out = []
  for context, features in reading_utils.iterate(
      dataset, reading_utils.split_file(data_path, split)):
    step_context = features.get("step_context")
    out.append(Trajectory(
        features["position"].numpy(), context["particle_type"].numpy(),
        None if step_context is None else step_context.numpy(),
        int(context["key"].numpy())))
  return out


class Simulator:
  """A trained simulator with its metadata and evaluation options.

  Attributes:
    metadata: the dataset's `metadata.json` it normalizes with.
    model_config: its configuration, evaluation options included.
    model_path: the model directory it was restored from.
    network: the restored `learned_simulator.LearnedSimulator` (a
      `tf.Module`: its `trainable_variables`; called, one step).
  """

  def __init__(self, metadata: Dict[str, Any],
               model_config: config_lib.ModelConfig, simulator,
               model_path: str):
    self.metadata = metadata
    self.model_config = model_config
    self.model_path = model_path
    self.network = simulator
    self._rollout_fn = rollout_lib.make_rollout_fn(simulator, metadata)

  def rollout(self, trajectory: Any, num_steps: Optional[int] = None,
              particle_types: Optional[np.ndarray] = None,
              context: Optional[np.ndarray] = None) -> Dict[str, Any]:
    """Rolls the model out from the first 6 frames.

    Args:
      trajectory: a `Trajectory`, or positions `[num_frames, num_particles,
        dim]` with `num_frames >= 6` (frames after the 6th are the ground
        truth the rollout is compared with, and the positions kinematic
        particles follow).
      num_steps: predicted steps; default: as many as the frames after the
        first 6 (`sequence_length - 6` for a dataset trajectory, whose last
        frame is left out as the original does). Past the frames given,
        kinematic particles and the context keep their last values.
      particle_types: `[num_particles]`, with raw positions (required then).
      context: `[num_frames, context_size]`, with raw positions, for
        datasets with a global context.

    Returns:
      The rollout dict (see the module docstring), numpy arrays.
    """
    if isinstance(trajectory, Trajectory):
      # As `eval_rollout`: the last stored frame is not used.
      positions = trajectory.positions[:-1]
      particle_types = trajectory.particle_types
      context = trajectory.context
    else:
      positions = np.asarray(trajectory, np.float32)
      if particle_types is None:
        raise ValueError("particle_types is required with raw positions")
    dim = self.metadata["dim"]
    if positions.ndim != 3 or positions.shape[-1] != dim or (
        positions.shape[0] < common.INPUT_SEQUENCE_LENGTH):
      raise ValueError(
          f"positions must be [num_frames >= {common.INPUT_SEQUENCE_LENGTH},"
          f" num_particles, {dim}], got {list(positions.shape)}")
    if num_steps is None:
      num_steps = positions.shape[0] - common.INPUT_SEQUENCE_LENGTH
    if num_steps < 1:
      raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    features = {
        "position": tf.constant(np.transpose(positions, [1, 0, 2]),
                                tf.float32),
        "particle_type": tf.constant(np.asarray(particle_types), tf.int64),
        "n_particles_per_example": tf.constant([positions.shape[1]],
                                               tf.int32)}
    if reading_utils.has_context(self.metadata):
      if context is None:
        raise ValueError("this dataset has a global context: give context")
      features["step_context"] = tf.constant(context, tf.float32)
    output = {key: value.numpy() for key, value in
              self._rollout_fn(features, tf.constant(num_steps)).items()}
    output["metadata"] = dict(self.metadata)
    return output


def load_simulator(model_path: Optional[str] = None,
                   pretrained: Union[bool, str] = False,
                   data_path: Optional[str] = None,
                   checkpoint: str = "latest",
                   **evaluation_options: Any) -> Simulator:
  """A trained simulator, as `eval_rollout` loads it.

  Args:
    model_path: a model directory (with `config.json` and checkpoints).
    pretrained: a model shipped with the package instead: `True` (the water
      model) or its name, `water_drop`, `multi_material` or `water_walls`.
    data_path: the dataset whose `metadata.json` the model normalizes with
      (default: a pretrained model's bundled dataset; else the copy of its
      training dataset's metadata that training keeps in `model_path`).
    checkpoint: `latest`, `best` or a `ckpt-N` path.
    **evaluation_options: `clamp_to_bounds`, `relaxation_steps`,
      `relaxation_step_size`, `relaxation_rest_density`,
      `relaxation_mirror_walls`: other values than
      the model was saved with.

  Raises:
    ValueError: neither or both of `model_path` and `pretrained`, an unknown
      option, or a model directory without `config.json`.
  """
  if bool(model_path) == bool(pretrained):
    raise ValueError("give either model_path or pretrained=True")
  name = checkpoints.DEFAULT_PRETRAINED
  if pretrained:
    if isinstance(pretrained, str):
      name = checkpoints.pretrained_name(pretrained)
    model_path = checkpoints.pretrained_model_path(name)
  unknown = sorted(set(evaluation_options) -
                   set(config_lib.EVALUATION_OPTIONS))
  if unknown:
    raise ValueError(f"unknown evaluation option(s) {', '.join(unknown)}; "
                     f"known: {', '.join(config_lib.EVALUATION_OPTIONS)}")
  saved = config_lib.load(model_path)
  if saved is None:
    raise ValueError(f"{model_path} has no {config_lib.CONFIG_FILENAME}")
  model_config = config_lib.resolve(saved, "model", config_lib.ModelConfig,
                                    evaluation_options, model_path,
                                    evaluating=True)
  if not data_path:
    if pretrained:
      data_path = reading_utils.bundled_dataset_path(name)
    elif os.path.exists(os.path.join(model_path,
                                     reading_utils.METADATA_FILENAME)):
      data_path = model_path
    else:
      raise ValueError(f"{model_path} has no {reading_utils.METADATA_FILENAME}"
                       " (trained before models kept their dataset's): give "
                       "data_path, the dataset it was trained on")
  metadata, simulator = evaluation.load_model(data_path, model_path,
                                              model_config,
                                              checkpoint=checkpoint)
  return Simulator(dict(metadata), model_config, simulator, model_path)


def train(data_path: str, model_path: str, num_steps: int,
          model: ModelConfig = ModelConfig(),
          optimizer: OptimizerConfig = OptimizerConfig(),
          training: TrainingConfig = TrainingConfig(),
          validation_options: ValidationOptions = ValidationOptions(),
          seed: Optional[int] = None, **options: Any) -> str:
  """Trains (or resumes) a model in-process, as `train --mode=train` does.

  Args:
    data_path: the dataset directory (train split; valid for validation).
    model_path: the model directory: created, or resumed from its newest
      checkpoint (with the same configuration, else a ValueError).
    num_steps: train until this step.
    model, optimizer, training, validation_options: the configuration (the
      defaults are the paper's model and recipe, and the CLI's validation).
    seed: seeds the initialization, noise and shuffling (`--seed`).
    **options: more of `training.trainer.TrainOptions`: `batch_size`,
      `log_every_steps`, `checkpoint_every_steps`, `warm_start`, ...

  Returns:
    `model_path`, for `load_simulator`.

  Raises:
    ValueError: a bad option, dataset or model directory (one line).
  """
  known = {field.name for field in dataclasses.fields(trainer.TrainOptions)}
  unknown = sorted(set(options) - known - {"num_steps", "seed"})
  if unknown:
    raise ValueError(f"unknown training option(s) {', '.join(unknown)}; "
                     f"known: {', '.join(sorted(known))}")
  if seed is not None:
    tf.random.set_seed(seed)
  trainer.train(data_path, model_path, model, optimizer,
                trainer.TrainOptions(num_steps=num_steps, seed=seed,
                                     **options),
                validation_options, training)
  return model_path


def convert_dataset(input_path: str, output_path: str, input_format: str,
                    dt: Optional[float] = None, **options: Any) -> str:
  """Converts your own data to the DeepMind format, as `convert_dataset`'s
  command line does (`data.convert.convert`: everything is checked before
  anything is written), and returns the report it prints: trajectory and
  particle counts, the bounds, the statistics and the suggested
  connectivity radius with its neighbour counts.

  Args:
    input_path: a directory with the three splits in `input_format`: `npz`
      (gns), `hdf5` (LagrangeBench), `folder` (`{split}/*.npz` holding
      `positions` `[num_frames, num_particles, dim]` and `particle_types`
      `[num_particles]`) or `tfrecord`.
    output_path: the dataset directory to write.
    dt: the time between frames (required but for `tfrecord`).
    **options: more of `data.convert.ConvertOptions`: `bounds`,
      `connectivity_radius`, `particle_type_map`, `output_format`.

  Raises:
    ValueError: one line naming the file, trajectory or option at fault.
  """
  report = convert_lib.convert(
      input_path, output_path,
      convert_lib.ConvertOptions(input_format=input_format, dt=dt, **options))
  return convert_lib.format_report(report, output_path)


def score(rollout: Dict[str, Any]) -> Dict[str, Dict[str, float]]:
  """The rollout metrics of the model and of the physics-free baselines.

  Returns:
    `{"model", "constant_velocity", "frozen"}` -> metric -> value (see the
    docs/metrics.md); the model's also has the physics summary
    (`kinetic_energy_ratio`, `centre_of_mass_error`, ...).
  """
  return evaluation.score_rollout(rollout)


def render(rollout: Dict[str, Any], output_path: str, **kwargs: Any) -> int:
  """The ground truth beside the prediction, as a `.gif` or `.mp4`; returns
  the number of frames (`visualization.animation.render_animation`)."""
  return animation.render_animation(rollout, output_path, **kwargs)


def snapshots(rollouts: Any, output_path: str, num_columns: int = 4) -> None:
  """Still frames to a `.png`, `.pdf` or `.svg`: the ground truth above the
  prediction at `num_columns` steps; `rollouts` a rollout dict, or a list of
  `(name, rollout)` pairs of models rolled out from the same trajectory (a
  row each, under the first one's ground truth), as `render_rollout
  --snapshots_path --compare` draws them."""
  named = ([("Prediction", rollouts)] if isinstance(rollouts, dict)
           else list(rollouts))
  snapshots_lib.write_comparison(named, output_path, num_columns)


def plot_physics(rollout: Dict[str, Any], output_path: str,
                 title: str = "") -> Dict[str, np.ndarray]:
  """Centre-of-mass height, kinetic energy and density over time, prediction
  against ground truth, to a `.png`, `.pdf` or `.svg`; returns the plotted
  series."""
  return physics_plot_lib.plot_physics(metrics_lib.physics_curves(rollout),
                                       rollout["metadata"], output_path,
                                       title)
