"""Building the simulator for a dataset: normalization statistics and variables.

Sanchez-Gonzalez et al. 2020 (arXiv:2002.09405), Sec. 3 and Appendix B: the
velocity and acceleration statistics of the dataset, with the training noise
folded into their std, normalize the model's inputs and outputs.
"""

from typing import Any, Dict, Mapping, Optional

import numpy as np
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate import learned_simulator
from learning_to_simulate.model import config as config_lib


def _combine_std(std_x, std_y):
  return np.sqrt(std_x**2 + std_y**2)


def get_normalization_stats(metadata: Mapping[str, Any],
                            noise_std: float) -> Dict[str, common.Stats]:
  """Velocity/acceleration stats with the noise folded into the std.

  `std_eff = sqrt(std**2 + noise_std**2)` (metadata taken as float32 first);
  the context stats, when present, are not combined with the noise.
  """
  cast = lambda v: np.asarray(v, dtype=np.float32)
  stats = {
      "acceleration": common.Stats(
          cast(metadata["acc_mean"]),
          _combine_std(cast(metadata["acc_std"]), noise_std)),
      "velocity": common.Stats(
          cast(metadata["vel_mean"]),
          _combine_std(cast(metadata["vel_std"]), noise_std)),
  }
  if "context_mean" in metadata:
    stats["context"] = common.Stats(cast(metadata["context_mean"]),
                                    cast(metadata["context_std"]))
  return stats


def connectivity_radius(metadata: Mapping[str, Any],
                        model_config: config_lib.ModelConfig) -> float:
  """The model's `--connectivity_radius`, else the metadata's default."""
  if model_config.connectivity_radius is not None:
    return float(model_config.connectivity_radius)
  return float(metadata["default_connectivity_radius"])


def build_simulator(metadata: Mapping[str, Any],
                    model_config: config_lib.ModelConfig,
                    mixed_precision: Optional[str] = None,
                    jit_compile: bool = False,
                    recompute_grad: bool = False
                    ) -> learned_simulator.LearnedSimulator:
  """The simulator for a dataset, with its variables created.

  Args:
    metadata: dataset metadata.
    model_config: hyperparameters.
    mixed_precision: None (float32), "bfloat16" or "float16": the dtype of
      the graph network's matrix products.
    jit_compile: compile the graph network with XLA.
    recompute_grad: recompute activations in the backward pass (memory).
  """
  simulator = learned_simulator.LearnedSimulator(
      num_dimensions=metadata["dim"],
      connectivity_radius=connectivity_radius(metadata, model_config),
      graph_network_kwargs=model_config.graph_network_kwargs(),
      boundaries=metadata["bounds"],
      normalization_stats=get_normalization_stats(metadata,
                                                  model_config.noise_std),
      num_particle_types=common.NUM_PARTICLE_TYPES,
      particle_type_embedding_size=common.PARTICLE_TYPE_EMBEDDING_SIZE,
      compute_dtype=mixed_precision or tf.float32,
      jit_compile=jit_compile,
      recompute_grad=recompute_grad,
      clamp_to_bounds=model_config.clamp_to_bounds,
      kinematic_pair_edges=model_config.kinematic_pair_edges,
      external_acceleration=model_config.external_acceleration,
      relaxation=model_config.relaxation(),
      grid=model_config.grid())
  # Sonnet creates variables on the first call: make them now, on one
  # particle, so checkpoints can be restored and optimizers built.
  dim = metadata["dim"]
  context = None
  if "context_mean" in metadata:
    context = tf.zeros([1, len(metadata["context_mean"])])
  simulator(tf.zeros([1, common.INPUT_SEQUENCE_LENGTH, dim]),
            n_particles_per_example=tf.constant([1]),
            global_context=context,
            particle_types=tf.zeros([1], tf.int64))
  return simulator
