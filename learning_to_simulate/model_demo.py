"""Runs the learned simulator on dummy data: a forward pass, the training loss
and one optimizer step (arXiv:2002.09405). A smoke test of the install.

`python -m learning_to_simulate.model_demo`
"""

from absl import app
import numpy as np
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate.model import build
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import one_step
from learning_to_simulate.training import optimizers
from learning_to_simulate.training import train_step as train_step_lib

_DIM = 3
_BATCH_SIZE = 2
_NUM_PARTICLES_PER_EXAMPLE = 50
_METADATA = {
    "dim": _DIM,
    "bounds": [[0.0, 1.0]] * _DIM,
    "default_connectivity_radius": 0.2,
    "sequence_length": 10,
    "vel_mean": [0.0] * _DIM, "vel_std": [1.0] * _DIM,
    "acc_mean": [0.0] * _DIM, "acc_std": [1.0] * _DIM,
    "context_mean": [0.0, 0.0], "context_std": [1.0, 1.0],
}


def dummy_batch(rng: np.random.Generator) -> one_step.Batch:
  """A random batch of two examples with a 2-wide global context."""
  num_particles = _BATCH_SIZE * _NUM_PARTICLES_PER_EXAMPLE
  position = rng.uniform(size=[num_particles,
                               common.INPUT_SEQUENCE_LENGTH + 1, _DIM])
  features = {
      "position": tf.constant(position[:, :-1], tf.float32),
      "particle_type": tf.constant(rng.integers(
          0, common.NUM_PARTICLE_TYPES, [num_particles]), tf.int64),
      "n_particles_per_example": tf.constant(
          [_NUM_PARTICLES_PER_EXAMPLE] * _BATCH_SIZE, tf.int32),
      "step_context": tf.constant(rng.normal(size=[_BATCH_SIZE, 2]),
                                  tf.float32),
  }
  return features, tf.constant(position[:, -1], tf.float32)


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  tf.random.set_seed(0)
  model_config = config_lib.ModelConfig()
  simulator = build.build_simulator(_METADATA, model_config)
  optimizer = optimizers.make_optimizer(config_lib.OptimizerConfig(), simulator)
  features, target = dummy_batch(rng)

  next_position = simulator(
      features["position"],
      n_particles_per_example=features["n_particles_per_example"],
      particle_types=features["particle_type"],
      global_context=features["step_context"])
  print(f"Per-particle output tensor: {next_position.shape}")

  train_step = train_step_lib.loss_of(train_step_lib.make_train_step(
      simulator, optimizer, train_step_lib.OneStep(model_config.noise_std),
      _METADATA))
  loss = train_step((features, target))
  print(f"Loss before one Adam step: {float(loss):.4f}")
  num_params = sum(int(np.prod(v.shape))
                   for v in simulator.trainable_variables)
  print(f"Trainable parameters: {num_params}")


if __name__ == "__main__":
  app.run(main)
