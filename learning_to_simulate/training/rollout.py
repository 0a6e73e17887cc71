"""Autoregressive rollouts of the learned simulator, in one TensorFlow graph.

From the first `INPUT_SEQUENCE_LENGTH` ground-truth frames the model's
predictions are fed back as inputs (Sanchez-Gonzalez et al. 2020, Sec. 4);
kinematic particles follow their ground-truth trajectory at every step. With
the opt-in density relaxation (`model.relaxation`), every predicted frame is
relaxed before it is fed back. The whole loop is a `tf.while_loop` inside one
`tf.function`.
"""

from typing import Any, Dict, Mapping

import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate import learned_simulator
from learning_to_simulate.model import relaxation as relaxation_lib
from learning_to_simulate.training import one_step


def rollout(simulator: learned_simulator.LearnedSimulator,
            features: Mapping[str, tf.Tensor],
            num_steps: int) -> Dict[str, tf.Tensor]:
  """Rolls out one trajectory.

  Args:
    simulator: the model.
    features: `position` `[num_particles, num_frames, dim]` with `num_frames
      >= INPUT_SEQUENCE_LENGTH`, `particle_type` `[num_particles]`,
      `n_particles_per_example` `[1]`, optional `step_context`
      `[num_frames, context_size]`.
    num_steps: number of predicted steps. Past the data (`num_frames -
      INPUT_SEQUENCE_LENGTH` steps) the model extrapolates: kinematic
      particles and the context then keep their last known values.

  Returns:
    `initial_positions` `[INPUT_SEQUENCE_LENGTH, num_particles, dim]`,
    `predicted_rollout` `[num_steps, num_particles, dim]`,
    `ground_truth_rollout` `[min(num_steps, num_frames -
    INPUT_SEQUENCE_LENGTH), num_particles, dim]`, `particle_types`
    `[num_particles]` and, with a context, `global_context` (the
    `step_context` given).
  """
  position = features["position"]
  dim = position.shape[-1]
  initial_positions = tf.reshape(position[:, :common.INPUT_SEQUENCE_LENGTH],
                                 [-1, common.INPUT_SEQUENCE_LENGTH, dim])
  # `[steps with data, num_particles, dim]`: one contiguous frame per step.
  ground_truth = tf.transpose(
      position[:, common.INPUT_SEQUENCE_LENGTH:
               common.INPUT_SEQUENCE_LENGTH + num_steps], [1, 0, 2])
  # Kinematic targets for every step: the last known frame past the data.
  num_missing = tf.maximum(num_steps - tf.shape(ground_truth)[0], 0)
  kinematic_targets = tf.concat(
      [ground_truth,
       tf.tile(position[tf.newaxis, :, -1], [num_missing, 1, 1])], axis=0)
  particle_types = features["particle_type"]
  kinematic = common.kinematic_mask(particle_types)[:, tf.newaxis]
  global_context = features.get("step_context")
  relaxation = simulator.relaxation
  if relaxation is not None and relaxation.num_steps > 0:
    movable = tf.logical_not(kinematic[:, 0])
    radius = simulator.connectivity_radius
    rest = (tf.constant(relaxation.rest_density, tf.float32)
            if relaxation.rest_density is not None else
            relaxation_lib.rest_density(initial_positions[:, -1], movable,
                                        radius))
  else:
    relaxation = None

  def step_fn(step, current_positions, predictions):
    context_step = None
    if global_context is not None:
      # The context of the last input frame (the last known past the data).
      context_step = global_context[tf.minimum(
          step + common.INPUT_SEQUENCE_LENGTH - 1,
          tf.shape(global_context)[0] - 1)][tf.newaxis]
    next_position = simulator(
        current_positions,
        n_particles_per_example=features["n_particles_per_example"],
        particle_types=particle_types,
        global_context=context_step)
    next_position = tf.where(kinematic, kinematic_targets[step],
                             next_position)
    if relaxation is not None:  # Opt-in; the paper has none.
      # The walls hold the relaxed particles; kinematic ones (walls made of
      # particles may lie outside the bounds) stay where the data puts them.
      next_position = tf.where(
          kinematic, kinematic_targets[step],
          simulator.constrain(relaxation_lib.relax(
              next_position, movable, radius, rest, relaxation.num_steps,
              relaxation.step_size, mirror_walls=relaxation.mirror_walls)))
    predictions = predictions.write(step, next_position)
    current_positions = tf.concat(
        [current_positions[:, 1:], next_position[:, tf.newaxis]], axis=1)
    return step + 1, current_positions, predictions

  predictions = tf.TensorArray(tf.float32, size=num_steps,
                               element_shape=initial_positions[:, 0].shape)
  _, _, predictions = tf.while_loop(
      cond=lambda step, *_: step < num_steps,
      body=step_fn,
      loop_vars=(tf.constant(0), initial_positions, predictions),
      parallel_iterations=1)
  output = {
      "initial_positions": tf.transpose(initial_positions, [1, 0, 2]),
      "predicted_rollout": predictions.stack(),
      "ground_truth_rollout": ground_truth,
      "particle_types": particle_types,
  }
  if global_context is not None:
    output["global_context"] = global_context
  return output


def make_rollout_fn(simulator: learned_simulator.LearnedSimulator,
                    metadata: Mapping[str, Any]):
  """`rollout` as a `tf.function` over any particle count and step count."""
  signature, _ = one_step.batch_signature(metadata, num_frames=None)

  @tf.function(input_signature=[signature, tf.TensorSpec([], tf.int32)])
  def rollout_fn(features, num_steps):
    return rollout(simulator, features, num_steps)

  return rollout_fn
