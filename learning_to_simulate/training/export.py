"""The trained simulator as a TensorFlow SavedModel, usable without the package.

`train --mode=export` restores a checkpoint (`evaluation.load_model`) and
saves the learned simulator (Sanchez-Gonzalez et al. 2020, arXiv:2002.09405)
with two signatures that load with plain `tf.saved_model.load`:

- `one_step`: `position` `[num_particles, INPUT_SEQUENCE_LENGTH, dim]`
  float32 (the last 6 positions of every particle of a batch),
  `particle_type` `[num_particles]` int64, `n_particles_per_example`
  `[batch_size]` int32 and, for datasets with a global context,
  `global_context` `[batch_size, context_size]` float32 -> `next_position`
  `[num_particles, dim]` float32.
- `rollout`: `position` `[num_particles, num_frames, dim]` float32 with
  `num_frames >= INPUT_SEQUENCE_LENGTH + num_steps`, `particle_type`,
  `num_steps` (int32 scalar) and, with a context, `step_context`
  `[num_frames, context_size]` -> the rollout of `training.rollout`:
  `initial_positions` `[6, N, dim]`, `predicted_rollout` and
  `ground_truth_rollout` `[num_steps, N, dim]`, `particle_types` (and
  `global_context`). The first 6 frames start the rollout; later frames are
  read only for kinematic particles (type 3), whose positions are
  prescribed.

The dataset's `metadata.json` and the model's `config.json` are copied to
`assets.extra/` beside the model.
"""

import os
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer
from learning_to_simulate import learned_simulator
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import rollout as rollout_lib

SIGNATURES = ("one_step", "rollout")
EXTRA_DIR = "assets.extra"


def _context_size(metadata: Mapping[str, Any]) -> Optional[int]:
  if "context_mean" not in metadata:
    return None
  return len(metadata["context_mean"])


class ExportedSimulator(tf.Module):
  """The simulator with the two exported functions (see the module doc)."""

  def __init__(self, simulator: learned_simulator.LearnedSimulator,
               metadata: Mapping[str, Any]):
    super().__init__(name="exported_simulator")
    self.simulator = simulator
    dim = metadata["dim"]
    context_size = _context_size(metadata)
    types = tf.TensorSpec([None], tf.int64, name="particle_type")
    window = tf.TensorSpec([None, common.INPUT_SEQUENCE_LENGTH, dim],
                           tf.float32, name="position")
    counts = tf.TensorSpec([None], tf.int32, name="n_particles_per_example")
    trajectory = tf.TensorSpec([None, None, dim], tf.float32, name="position")
    num_steps = tf.TensorSpec([], tf.int32, name="num_steps")

    def one_step(position, particle_type, n_particles_per_example,
                 global_context=None):
      next_position = simulator(
          position, n_particles_per_example=n_particles_per_example,
          global_context=global_context, particle_types=particle_type)
      return {"next_position": next_position}

    def rollout(position, particle_type, num_steps, step_context=None):
      checks = [tf.debugging.assert_greater_equal(
          tf.shape(position)[1], common.INPUT_SEQUENCE_LENGTH + num_steps,
          message="position must hold at least 6 + num_steps frames")]
      features = {"position": position, "particle_type": particle_type,
                  "n_particles_per_example": tf.shape(position)[:1]}
      if step_context is not None:
        # The context of the last input frame drives each step.
        checks.append(tf.debugging.assert_greater_equal(
            tf.shape(step_context)[0],
            common.INPUT_SEQUENCE_LENGTH - 1 + num_steps,
            message="step_context must hold at least 5 + num_steps frames"))
        features["step_context"] = step_context
      with tf.control_dependencies(checks):
        return rollout_lib.rollout(simulator, features, num_steps)

    if context_size is None:
      self.one_step = tf.function(
          lambda position, particle_type, n_particles_per_example: one_step(
              position, particle_type, n_particles_per_example),
          input_signature=[window, types, counts])
      self.rollout = tf.function(
          lambda position, particle_type, num_steps: rollout(
              position, particle_type, num_steps),
          input_signature=[trajectory, types, num_steps])
    else:
      self.one_step = tf.function(
          one_step, input_signature=[
              window, types, counts,
              tf.TensorSpec([None, context_size], tf.float32,
                            name="global_context")])
      self.rollout = tf.function(
          rollout, input_signature=[
              trajectory, types, num_steps,
              tf.TensorSpec([None, context_size], tf.float32,
                            name="step_context")])


def save(simulator: learned_simulator.LearnedSimulator,
         metadata: Mapping[str, Any], output_path: str,
         extra_files: Optional[Mapping[str, Any]] = None) -> str:
  """Saves `simulator` as a SavedModel at `output_path`, atomically.

  Args:
    simulator: a built (restored) simulator.
    metadata: its dataset's metadata.
    output_path: the SavedModel directory (replaced whole if it exists).
    extra_files: file name -> JSON content, written to `assets.extra/`.

  Returns:
    `output_path`.
  """
  module = ExportedSimulator(simulator, metadata)
  signatures = {"one_step": module.one_step.get_concrete_function(),
                "rollout": module.rollout.get_concrete_function()}
  with dataset_writer.staged_directory(output_path, replace=True) as staging:
    tf.saved_model.save(module, staging, signatures=signatures)
    for name, content in (extra_files or {}).items():
      dataset_writer.write_json(os.path.join(staging, EXTRA_DIR, name),
                                content)
  return output_path


def export(data_path: str, model_path: str, output_path: str,
           model_config: config_lib.ModelConfig,
           checkpoint: str = "latest") -> Dict[str, Any]:
  """Restores a checkpoint of `model_path` and saves it as a SavedModel.

  Args:
    data_path: the dataset the model was trained on (its metadata holds the
      normalization statistics, bounds and radius the model uses).
    model_path: the model directory (`ckpt-N` files, `config.json`).
    output_path: the SavedModel directory to write.
    model_config: the model's hyperparameters.
    checkpoint: "latest", "best" or a path (see `checkpoints.resolve`).

  Returns:
    `output_path`, the `signatures` and the dataset `metadata`.
  """
  metadata, simulator = evaluation.load_model(data_path, model_path,
                                              model_config,
                                              checkpoint=checkpoint)
  config = config_lib.load(model_path) or {
      "model": config_lib.to_dict(model_config,
                                  config_lib.OptimizerConfig())["model"]}
  save(simulator, metadata, output_path,
       extra_files={"metadata.json": dict(metadata), "config.json": config})
  return {"output_path": output_path, "signatures": SIGNATURES,
          "metadata": metadata}
