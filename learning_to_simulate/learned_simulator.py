"""The learned simulator: features, normalization and Euler integration.

Sanchez-Gonzalez et al. 2020, "Learning to Simulate Complex Physics with
Graph Networks" (arXiv:2002.09405), Sec. 3. The model sees the last
`INPUT_SEQUENCE_LENGTH` positions of every particle, builds a radius graph,
predicts a normalized acceleration with `graph_network.EncodeProcessDecode`
and integrates it with semi-implicit Euler (dt = 1 frame).
"""

from typing import Mapping, Optional, Sequence, Tuple

import graph_nets as gn
import numpy as np
import sonnet as snt
import tensorflow as tf

from learning_to_simulate import connectivity_utils
from learning_to_simulate.data import common
from learning_to_simulate import graph_network
from learning_to_simulate.model import grid_branch as grid_branch_lib
from learning_to_simulate.model import relaxation as relaxation_lib


class LearnedSimulator(snt.Module):
  """Learned simulator from https://arxiv.org/abs/2002.09405."""

  def __init__(self,
               num_dimensions: int,
               connectivity_radius: float,
               graph_network_kwargs: Mapping[str, int],
               boundaries: Sequence[Sequence[float]],
               normalization_stats: Mapping[str, common.Stats],
               num_particle_types: int = common.NUM_PARTICLE_TYPES,
               particle_type_embedding_size: int = (
                   common.PARTICLE_TYPE_EMBEDDING_SIZE),
               compute_dtype: tf.DType = tf.float32,
               jit_compile: bool = False,
               recompute_grad: bool = False,
               clamp_to_bounds: bool = False,
               kinematic_pair_edges: bool = True,
               external_acceleration: Optional[Sequence[float]] = None,
               relaxation: Optional[relaxation_lib.Relaxation] = None,
               grid: Optional[Mapping[str, int]] = None,
               name: str = "LearnedSimulator"):
    """Builds the simulator.

    Args:
      num_dimensions: spatial dimension (2 or 3).
      connectivity_radius: radius of the particle graph.
      graph_network_kwargs: `latent_size`, `mlp_hidden_size`,
        `mlp_num_hidden_layers`, `num_message_passing_steps` of
        `EncodeProcessDecode`.
      boundaries: `[dim, 2]` lower and upper bounds of the domain.
      normalization_stats: `velocity` and `acceleration` (and `context` when
        the dataset has a global context) `Stats`, with the noise already
        folded into the std (see `training.get_normalization_stats`).
      num_particle_types: number of particle types; a learned embedding of
        the type is a node feature when it is greater than 1.
      particle_type_embedding_size: width of that embedding.
      compute_dtype: matmul dtype of the graph network (mixed precision
        with bfloat16 / float16); features, variables and outputs stay
        float32.
      jit_compile: compile the graph network with XLA (bucketed padding).
      recompute_grad: recompute each message-passing step's activations in
        the backward pass instead of storing them (less training memory).
      clamp_to_bounds: beyond the paper, opt-in: clip predicted positions
        to `boundaries` (impermeable walls, as this package's MPM generator
        enforces after each substep). Training targets are unchanged.
      kinematic_pair_edges: False, beyond the paper, opt-in: leave out the
        edges between two kinematic particles (`connectivity_utils.
        drop_pairs`; self-edges stay), so that wall and obstacle particles
        hear only from moving ones.
      external_acceleration: beyond the paper, opt-in: `[dim]` known
        external acceleration (gravity; positions per frame squared). The
        network then predicts `(a - external_acceleration) / acc_std`, and
        the acceleration is added back before integration
        (`model.external_force`). None: the paper's `(a - acc_mean) /
        acc_std`.
      relaxation: beyond the paper, opt-in: density relaxation that
        rollouts apply after each predicted step (`model.relaxation`;
        `training.rollout` runs it). None: none.
      grid: beyond the paper, opt-in: `resolution`, `channels` and `levels`
        of a grid branch (`model.grid_branch.GridBranch` over `boundaries`)
        that adds a global view to the processed node latents, and
        optionally `margin_radii`, its margin in connectivity radii. None:
        none.
      name: module name.
    """
    super().__init__(name=name)
    self._num_dimensions = num_dimensions
    self._connectivity_radius = float(connectivity_radius)
    self._num_particle_types = num_particle_types
    self._clamp_to_bounds = clamp_to_bounds
    self._kinematic_pair_edges = kinematic_pair_edges
    self._relaxation = relaxation
    self._boundaries = np.asarray(boundaries, dtype=np.float32)
    if self._boundaries.shape != (num_dimensions, 2):
      raise ValueError(f"boundaries must be [{num_dimensions}, 2], got shape "
                       f"{self._boundaries.shape}")
    self._normalization_stats = {
        key: common.Stats(np.asarray(s.mean, np.float32),
                          np.asarray(s.std, np.float32))
        for key, s in normalization_stats.items()}
    if external_acceleration is not None:
      external = np.asarray(external_acceleration, np.float32)
      if external.shape != (num_dimensions,):
        raise ValueError(f"external_acceleration must have {num_dimensions} "
                         f"components, got {list(external_acceleration)}")
      # The network's zero is free fall: the target's offset is the force.
      self._normalization_stats["acceleration"] = common.Stats(
          external, self._normalization_stats["acceleration"].std)
    branch = None
    if grid:
      grid = dict(grid)
      margin = grid.pop("margin_radii", None)
      branch = grid_branch_lib.GridBranch(
          num_dimensions, graph_network_kwargs["latent_size"],
          bounds=self._boundaries,
          margin=None if margin is None else margin * connectivity_radius,
          **grid)
    self._graph_network = graph_network.EncodeProcessDecode(
        output_size=num_dimensions, compute_dtype=compute_dtype,
        jit_compile=jit_compile, recompute_grad=recompute_grad,
        grid_branch=branch, **graph_network_kwargs)
    if num_particle_types > 1:
      # Same shape and initializer as the original's `particle_embedding`.
      self._particle_type_embedding = tf.Variable(
          tf.keras.initializers.GlorotUniform()(
              [num_particle_types, particle_type_embedding_size]),
          name="particle_embedding")

  @property
  def num_dimensions(self) -> int:
    return self._num_dimensions

  @property
  def connectivity_radius(self) -> float:
    return self._connectivity_radius

  @property
  def relaxation(self) -> Optional[relaxation_lib.Relaxation]:
    return self._relaxation

  @property
  def graph_network(self) -> graph_network.EncodeProcessDecode:
    """The learnable network (`forward_flops` counts its work)."""
    return self._graph_network

  def constrain(self, positions: tf.Tensor) -> tf.Tensor:
    """`[num_particles, dim]` positions behind the walls when the simulator
    has them (`clamp_to_bounds`), else unchanged."""
    if not self._clamp_to_bounds:
      return positions
    return tf.clip_by_value(positions, self._boundaries[:, 0],
                            self._boundaries[:, 1])

  def __call__(self,
               position_sequence: tf.Tensor,
               n_particles_per_example: tf.Tensor,
               global_context: Optional[tf.Tensor] = None,
               particle_types: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Predicts the next position of every particle.

    Args:
      position_sequence: `[num_particles_in_batch, INPUT_SEQUENCE_LENGTH, dim]`.
      n_particles_per_example: `[batch_size]` particles per example.
      global_context: optional `[batch_size, context_size]`.
      particle_types: `[num_particles_in_batch]` int types.

    Returns:
      `[num_particles_in_batch, dim]` next positions.
    """
    input_graph = self._encoder_preprocessor(
        position_sequence, n_particles_per_example, global_context,
        particle_types)
    normalized_acceleration = self._graph_network(
        input_graph, positions=position_sequence[:, -1])
    return self._decoder_postprocessor(normalized_acceleration,
                                       position_sequence)

  def get_predicted_and_target_normalized_accelerations(
      self,
      next_position: tf.Tensor,
      position_sequence_noise: tf.Tensor,
      position_sequence: tf.Tensor,
      n_particles_per_example: tf.Tensor,
      global_context: Optional[tf.Tensor] = None,
      particle_types: Optional[tf.Tensor] = None
  ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Predicted and target normalized accelerations for noisy inputs.

    The target takes the noisy last input position to
    `next_position + position_sequence_noise[:, -1]`: the noise in the input
    velocity is corrected exactly (the target next velocity equals the true
    one), the noise in the last position is not.

    Args:
      next_position: `[num_particles_in_batch, dim]` true next positions.
      position_sequence_noise: noise with the shape of `position_sequence`.
      position_sequence, n_particles_per_example, global_context,
        particle_types: as in `__call__`.

    Returns:
      predicted, target: `[num_particles_in_batch, dim]` each.
    """
    noisy_position_sequence = position_sequence + position_sequence_noise
    input_graph = self._encoder_preprocessor(
        noisy_position_sequence, n_particles_per_example, global_context,
        particle_types)
    predicted = self._graph_network(
        input_graph, positions=noisy_position_sequence[:, -1])
    next_position_adjusted = next_position + position_sequence_noise[:, -1]
    target = self._inverse_decoder_postprocessor(next_position_adjusted,
                                                 noisy_position_sequence)
    return predicted, target

  def next_position(self, normalized_acceleration: tf.Tensor,
                    position_sequence: tf.Tensor) -> tf.Tensor:
    """`[num_particles_in_batch, dim]` positions after a predicted
    normalized acceleration (as `__call__` integrates it) from
    `position_sequence` `[num_particles_in_batch, INPUT_SEQUENCE_LENGTH,
    dim]`."""
    return self._decoder_postprocessor(normalized_acceleration,
                                       position_sequence)

  def _encoder_preprocessor(self, position_sequence, n_node, global_context,
                            particle_types) -> gn.graphs.GraphsTuple:
    """Builds the input graph of normalized node and edge features."""
    most_recent_position = position_sequence[:, -1]
    velocity_sequence = common.time_diff(position_sequence)
    senders, receivers, n_edge = (
        connectivity_utils.compute_connectivity_for_batch_tf(
            most_recent_position, n_node, self._connectivity_radius))
    if not self._kinematic_pair_edges and particle_types is not None:
      senders, receivers, n_edge = connectivity_utils.drop_pairs(
          senders, receivers, n_node, common.kinematic_mask(particle_types))

    node_features = []
    velocity_stats = self._normalization_stats["velocity"]
    normalized_velocity_sequence = (
        velocity_sequence - velocity_stats.mean) / velocity_stats.std
    # Row-major merge [N, 5, dim] -> [N, 5 * dim]: column t * dim + d.
    num_velocities = velocity_sequence.shape[1]
    node_features.append(tf.reshape(
        normalized_velocity_sequence,
        [-1, num_velocities * self._num_dimensions]))

    # Distances to the lower and upper bounds, in radii, clipped to [-1, 1].
    lower = most_recent_position - self._boundaries[:, 0]
    upper = self._boundaries[:, 1] - most_recent_position
    node_features.append(tf.clip_by_value(
        tf.concat([lower, upper], axis=1) / self._connectivity_radius,
        -1., 1.))

    if self._num_particle_types > 1:
      node_features.append(tf.nn.embedding_lookup(
          self._particle_type_embedding, particle_types))

    relative_displacements = (
        tf.gather(most_recent_position, senders) -
        tf.gather(most_recent_position, receivers)
    ) / self._connectivity_radius
    relative_distances = _norm(relative_displacements)
    edge_features = tf.concat([relative_displacements, relative_distances],
                              axis=-1)

    if global_context is not None:
      context_stats = self._normalization_stats["context"]
      global_context = (global_context - context_stats.mean) / tf.maximum(
          context_stats.std, common.STD_EPSILON)

    return gn.graphs.GraphsTuple(
        nodes=tf.concat(node_features, axis=-1),
        edges=edge_features,
        globals=global_context,  # Appended to the nodes by the encoder.
        n_node=tf.cast(n_node, tf.int32),
        n_edge=n_edge,
        senders=senders,
        receivers=receivers)

  def _decoder_postprocessor(self, normalized_acceleration: tf.Tensor,
                             position_sequence: tf.Tensor) -> tf.Tensor:
    """De-normalizes the acceleration and integrates it (semi-implicit Euler)."""
    acceleration_stats = self._normalization_stats["acceleration"]
    acceleration = (normalized_acceleration * acceleration_stats.std +
                    acceleration_stats.mean)
    most_recent_position = position_sequence[:, -1]
    most_recent_velocity = most_recent_position - position_sequence[:, -2]
    new_velocity = most_recent_velocity + acceleration  # * dt = 1
    new_position = most_recent_position + new_velocity  # * dt = 1
    return self.constrain(new_position)  # Opt-in walls; the paper has none.

  def _inverse_decoder_postprocessor(self, next_position: tf.Tensor,
                                     position_sequence: tf.Tensor
                                     ) -> tf.Tensor:
    """Inverse of `_decoder_postprocessor`: position -> normalized accel."""
    previous_position = position_sequence[:, -1]
    previous_velocity = previous_position - position_sequence[:, -2]
    next_velocity = next_position - previous_position
    acceleration = next_velocity - previous_velocity
    acceleration_stats = self._normalization_stats["acceleration"]
    return (acceleration - acceleration_stats.mean) / acceleration_stats.std


def _norm(vectors: tf.Tensor) -> tf.Tensor:
  """`[num_edges, 1]` Euclidean norms of `[num_edges, dim]` vectors.

  The values of `tf.norm` (the same ops), with a gradient of 0 instead of NaN
  at the zero vector (a particle's edge to itself), for training through
  the model's own positions (the multi-step loss).
  """
  squared = tf.reduce_sum(vectors * vectors, axis=-1, keepdims=True)
  positive = squared > 0
  return tf.where(positive, tf.sqrt(tf.where(positive, squared, 1.)), 0.)
