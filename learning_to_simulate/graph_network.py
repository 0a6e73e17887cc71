"""The learnable part of the simulator: an Encode-Process-Decode graph network.

Sanchez-Gonzalez et al. 2020 (arXiv:2002.09405), Sec. 3 and Appendix B.
The encoder embeds node and edge features independently with MLP+LayerNorm;
the processor applies `num_message_passing_steps` InteractionNetworks with
unshared weights and residual connections on nodes and edges; the decoder
MLP maps the final node latents to the output (a normalized acceleration).
Feature engineering and normalization live in `learned_simulator`.
"""

from typing import Optional, Tuple

import graph_nets as gn
import numpy as np
import sonnet as snt
import tensorflow as tf

from learning_to_simulate.model import graph_ops

LAYER_NORM_EPSILON = 1e-5  # Added to the variance, as Sonnet's default.


def build_mlp(hidden_size: int, num_hidden_layers: int,
              output_size: int, name: str = "mlp") -> snt.Module:
  """MLP with ReLU between layers and a linear last layer."""
  return snt.nets.MLP(
      output_sizes=[hidden_size] * num_hidden_layers + [output_size],
      activation=tf.nn.relu, activate_final=False, name=name)


def build_mlp_with_layer_norm(hidden_size: int, num_hidden_layers: int,
                              output_size: int) -> snt.Module:
  """MLP followed by LayerNorm over the last axis (learned scale/offset)."""
  return snt.Sequential([
      build_mlp(hidden_size, num_hidden_layers, output_size),
      snt.LayerNorm(axis=-1, create_scale=True, create_offset=True,
                    eps=LAYER_NORM_EPSILON),
  ])


class EncodeProcessDecode(snt.Module):
  """Encode-Process-Decode function approximator for the learned simulator."""

  def __init__(self,
               latent_size: int,
               mlp_hidden_size: int,
               mlp_num_hidden_layers: int,
               num_message_passing_steps: int,
               output_size: int,
               compute_dtype: tf.DType = tf.float32,
               jit_compile: bool = False,
               recompute_grad: bool = False,
               grid_branch: Optional[snt.Module] = None,
               name: str = "EncodeProcessDecode"):
    """Builds the networks.

    Args:
      latent_size: size of the node and edge latents.
      mlp_hidden_size: hidden layer size of every MLP.
      mlp_num_hidden_layers: hidden layers of every MLP.
      num_message_passing_steps: number of InteractionNetwork steps.
      output_size: size of the decoded per-node output (the dimension).
      compute_dtype: dtype of the matrix products (float32, or bfloat16 /
        float16 for mixed precision). Variables, LayerNorm, the residual
        stream, the aggregation and the output stay float32.
      jit_compile: run the network with XLA, on inputs padded to a few
        bucketed sizes so that varying particle and edge counts compile a
        bounded number of times.
      recompute_grad: keep only each message-passing step's input latents
        for the backward pass and recompute the step's activations there
        (`tf.recompute_grad`): about a third more compute for a fraction of
        the training memory of large graphs. Same results.
      grid_branch: beyond the paper, opt-in: a `model.grid_branch.GridBranch`
        whose per-node update is added to the processed node latents before
        decoding (a global view of the scene); the calls must then give the
        particles' positions. None: the paper's network.
      name: module name.
    """
    super().__init__(name=name)
    self._compute_dtype = tf.as_dtype(compute_dtype)
    self._jit_compile = jit_compile
    self._recompute_grad = recompute_grad
    self._jit_forward = tf.function(self._forward_arrays, jit_compile=True)

    def latent_mlp():
      return build_mlp_with_layer_norm(
          mlp_hidden_size, mlp_num_hidden_layers, latent_size)

    self._encoder_network = gn.modules.GraphIndependent(
        edge_model_fn=latent_mlp, node_model_fn=latent_mlp)
    # Unshared parameters: one InteractionNetwork per message-passing step.
    self._processor_networks = [
        gn.modules.InteractionNetwork(
            edge_model_fn=latent_mlp, node_model_fn=latent_mlp,
            reducer=tf.math.unsorted_segment_sum)  # The paper's sum.
        for _ in range(num_message_passing_steps)
    ]
    self._decoder_network = build_mlp(
        mlp_hidden_size, mlp_num_hidden_layers, output_size)
    self._grid_branch = grid_branch
    if grid_branch is not None and jit_compile:
      raise ValueError("--jit_compile does not support the grid branch "
                       "(--grid_resolution) yet")

  def _with_grid(self, node_latents: tf.Tensor,
                 positions: Optional[tf.Tensor],
                 n_node: tf.Tensor) -> tf.Tensor:
    """Node latents plus the grid branch's update (none without a branch)."""
    if self._grid_branch is None:
      return node_latents
    if positions is None:
      raise ValueError("the grid branch needs the particles' positions")
    return node_latents + tf.cast(
        self._grid_branch(node_latents, positions, n_node),
        node_latents.dtype)

  def __call__(self, input_graph: gn.graphs.GraphsTuple,
               positions: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Maps a graph of normalized features to `[num_nodes, output_size]`.

    The one forward pass is `_forward_arrays` (under XLA, `_call_padded`);
    the first call creates the variables (`_create_variables`).

    `positions` `[num_nodes, dim]`: the particles' (most recent) positions,
    used by the grid branch only.
    """
    nodes, edges = self._input_features(input_graph)
    if not self._built():
      self._create_variables(nodes, edges, positions, input_graph.n_node)
    if not self._jit_compile:
      return self._forward_arrays(nodes, edges, input_graph.senders,
                                  input_graph.receivers, positions,
                                  input_graph.n_node)
    return self._call_padded(nodes, edges, input_graph.senders,
                             input_graph.receivers)

  def _create_variables(self, nodes: tf.Tensor, edges: tf.Tensor,
                        positions: Optional[tf.Tensor],
                        n_node: tf.Tensor) -> None:
    """Creates every variable, in the order (and so, under a seed, with the
    values) of the `graph_nets` formulation's first call: the encoder's edge
    then node MLP, each processor step's edge then node MLP, the grid
    branch, the decoder.

    The `graph_nets` modules hold the variables, so checkpoints keep the
    original's layout; their own call (the reference formulation) is what
    the tests compare the forward pass against.
    """
    # pylint: disable=protected-access
    encoder = self._encoder_network
    encoder._edge_model._model(tf.zeros([1, edges.shape[-1]]))
    latent = int(encoder._node_model._model(
        tf.zeros([1, nodes.shape[-1]])).shape[-1])
    for network in self._processor_networks:
      network._edge_block._edge_model(tf.zeros([1, 3 * latent]))
      network._node_block._node_model(tf.zeros([1, 2 * latent]))
    # pylint: enable=protected-access
    if self._grid_branch is not None:
      self._with_grid(tf.zeros([tf.shape(nodes)[0], latent]), positions,
                      n_node)
    self._decoder_network(tf.zeros([1, latent]))

  @staticmethod
  def _input_features(input_graph: gn.graphs.GraphsTuple):
    """Node features with the global context appended, and edge features."""
    nodes = input_graph.nodes
    if input_graph.globals is not None:
      broadcast_globals = gn.blocks.broadcast_globals_to_nodes(input_graph)
      nodes = tf.concat([nodes, broadcast_globals], axis=-1)
    return nodes, input_graph.edges

  def forward_flops(self, num_nodes: int, num_edges: int) -> int:
    """FLOPs of one forward pass in the paper's formulation (each edge MLP on
    `concat([edge, receiver, sender])`), read
    from the network's own layers (its variables must exist).

    2 x the multiply-accumulates of every linear layer's weights, each MLP
    applied once per node (encoder node MLP, processor node MLPs, decoder)
    or per edge (encoder edge MLP, processor edge MLPs). Biases,
    activations, LayerNorm, gathers, the aggregation and the grid branch
    are not counted. The forward pass (`_forward_arrays`) splits the
    processor's first layers and does fewer: it counts as faster.
    """
    # pylint: disable=protected-access
    encoder = self._encoder_network
    per_node = [encoder._node_model._model, self._decoder_network]
    per_edge = [encoder._edge_model._model]
    for network in self._processor_networks:
      per_node.append(network._node_block._node_model)
      per_edge.append(network._edge_block._edge_model)
    # pylint: enable=protected-access
    macs = lambda modules: sum(
        int(layer.w.shape[0]) * int(layer.w.shape[1]) for module in modules
        for layer in (module, *module.submodules)
        if isinstance(layer, snt.Linear))
    return 2 * (num_nodes * macs(per_node) + num_edges * macs(per_edge))

  def _built(self) -> bool:
    """Whether every variable exists."""
    return hasattr(_mlp_layers(self._decoder_network)[0], "w")

  def _forward_arrays(self, nodes: tf.Tensor, edges: tf.Tensor,
                      senders: tf.Tensor, receivers: tf.Tensor,
                      positions: Optional[tf.Tensor] = None,
                      n_node: Optional[tf.Tensor] = None) -> tf.Tensor:
    """The network on plain tensors, with the processor's first layers split.

    The edge MLP input is `concat([edge, node[receiver], node[sender]])`, so
    its first layer equals `edge @ W_e + (node @ W_r + b)[receiver] +
    (node @ W_s)[sender]`: the node terms are computed once per node and
    gathered, instead of once per edge (10-20 edges per node). The node MLP
    input `concat([aggregated, node])` is split the same way (no concat).
    LayerNorm, the sum aggregation and the receiver gather use the kernels
    of `graph_ops` (sorted segment sums when the receivers are sorted).

    Args:
      nodes: `[num_nodes, node_features]` (global context appended).
      edges: `[num_edges, edge_features]`.
      senders, receivers: `[num_edges]` int32.
      positions, n_node: `[num_nodes, dim]` and `[num_graphs]`, for the grid
        branch only.

    Returns:
      `[num_nodes, output_size]` float32.
    """
    dtype = self._compute_dtype
    # pylint: disable=protected-access
    encoder = self._encoder_network
    node_latents = _mlp_with_layer_norm(encoder._node_model._model, nodes,
                                        dtype)
    edge_latents = _mlp_with_layer_norm(encoder._edge_model._model, edges,
                                        dtype)
    # pylint: enable=protected-access
    receivers_sorted = (None if self._jit_compile
                        else graph_ops.is_sorted(receivers))
    for processor_network in self._processor_networks:
      def step(node_latents, edge_latents, network=processor_network):
        return self._process_step_arrays(network, node_latents, edge_latents,
                                         senders, receivers, receivers_sorted)
      if self._recompute_grad:
        step = tf.recompute_grad(step)
      node_latents, edge_latents = step(node_latents, edge_latents)
    node_latents = self._with_grid(node_latents, positions, n_node)
    return tf.cast(_mlp(self._decoder_network, node_latents, dtype),
                   tf.float32)

  def _process_step_arrays(self, processor_network: snt.Module,
                           node_latents: tf.Tensor, edge_latents: tf.Tensor,
                           senders: tf.Tensor, receivers: tf.Tensor,
                           receivers_sorted: Optional[tf.Tensor]
                           ) -> Tuple[tf.Tensor, tf.Tensor]:
    """One message-passing step of `_forward_arrays`, with its residuals.

    Args:
      processor_network: the step's `InteractionNetwork` (its variables).
      node_latents: `[num_nodes, latent]` float32.
      edge_latents: `[num_edges, latent]` float32.
      senders, receivers: `[num_edges]` int32.
      receivers_sorted: `graph_ops.is_sorted(receivers)`, or None (XLA).

    Returns:
      The updated `(node_latents, edge_latents)`.
    """
    dtype = self._compute_dtype
    num_nodes = tf.shape(node_latents)[0]
    # pylint: disable=protected-access
    edge_model = processor_network._edge_block._edge_model
    node_model = processor_network._node_block._node_model
    # pylint: enable=protected-access
    first = _mlp_layers(edge_model._layers[0])[0]  # pylint: disable=protected-access
    latent = node_latents.shape[-1]
    w_edge, w_receiver, w_sender = tf.split(
        tf.cast(first.w, dtype), [edge_latents.shape[-1], latent, latent])
    node_terms = tf.matmul(tf.cast(node_latents, dtype),
                           tf.concat([w_receiver, w_sender], axis=1))
    receiver_terms, sender_terms = tf.split(node_terms, 2, axis=1)
    # The bias joins the receiver terms: added per node, not per edge.
    receiver_terms = tf.nn.bias_add(receiver_terms, tf.cast(first.b, dtype))
    hidden = tf.add_n([
        tf.matmul(tf.cast(edge_latents, dtype), w_edge),
        graph_ops.gather_receivers(receiver_terms, receivers,
                                   receivers_sorted),
        tf.gather(sender_terms, senders)])
    new_edges = _mlp_with_layer_norm(edge_model, hidden, dtype,
                                     first_layer_done=True)

    aggregated = graph_ops.sum_onto_receivers(new_edges, receivers,
                                              num_nodes, receivers_sorted)
    first = _mlp_layers(node_model._layers[0])[0]  # pylint: disable=protected-access
    w_aggregated, w_node = tf.split(tf.cast(first.w, dtype),
                                    [aggregated.shape[-1], latent])
    hidden = tf.nn.bias_add(
        tf.matmul(tf.cast(aggregated, dtype), w_aggregated) +
        tf.matmul(tf.cast(node_latents, dtype), w_node),
        tf.cast(first.b, dtype))
    new_nodes = _mlp_with_layer_norm(node_model, hidden, dtype,
                                     first_layer_done=True)
    # Residual connections on nodes and edges.
    node_latents = node_latents + new_nodes
    edge_latents = edge_latents + new_edges
    return node_latents, edge_latents

  def _call_padded(self, nodes, edges, senders, receivers) -> tf.Tensor:
    """`_forward_arrays` under XLA on inputs padded to bucketed sizes.

    Padding edges join a padding node to itself, so they never touch a real
    node; the padding rows are dropped from the output.
    """
    num_nodes = tf.shape(nodes)[0]
    num_edges = tf.shape(edges)[0]
    padded_nodes = bucket_size(num_nodes + 1)
    padded_edges = bucket_size(num_edges)
    pad_index = padded_nodes - 1
    nodes = tf.pad(nodes, [[0, padded_nodes - num_nodes], [0, 0]])
    edges = tf.pad(edges, [[0, padded_edges - num_edges], [0, 0]])
    fill = tf.fill([padded_edges - num_edges], pad_index)
    senders = tf.concat([tf.cast(senders, tf.int32), fill], axis=0)
    receivers = tf.concat([tf.cast(receivers, tf.int32), fill], axis=0)
    return self._jit_forward(nodes, edges, senders, receivers)[:num_nodes]


def bucket_size(n: tf.Tensor, granularity: int = 64) -> tf.Tensor:
  """Smallest size >= n of the form ceil(2**(k/4) / granularity) * granularity.

  Sizes grow by about 19% per bucket, so padding wastes at most ~19% and a
  range of sizes from 1k to 100k maps to ~27 buckets (XLA compilations).
  """
  n = tf.maximum(tf.cast(n, tf.float64), 1.0)
  k = tf.math.ceil(4.0 * tf.math.log(n) / np.log(2.0))
  size = tf.math.ceil(tf.pow(tf.constant(2.0, tf.float64), k / 4.0) /
                      granularity) * granularity
  return tf.cast(tf.maximum(size, n), tf.int32)


def _mlp_layers(mlp: snt.Module):
  return mlp._layers  # pylint: disable=protected-access


def _linear(layer: snt.Module, x: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
  return tf.nn.bias_add(tf.matmul(x, tf.cast(layer.w, dtype)),
                        tf.cast(layer.b, dtype))


def _mlp(mlp: snt.Module, x: tf.Tensor, dtype: tf.DType,
         first_layer_done: bool = False) -> tf.Tensor:
  """`build_mlp`'s function: ReLU between linear layers, none after the last.

  With `first_layer_done`, `x` is already the first layer's output.
  """
  layers = _mlp_layers(mlp)
  hidden = x if first_layer_done else _linear(layers[0], tf.cast(x, dtype),
                                              dtype)
  for layer in layers[1:]:
    hidden = _linear(layer, tf.nn.relu(hidden), dtype)
  return hidden


def _mlp_with_layer_norm(model: snt.Sequential, x: tf.Tensor,
                         dtype: tf.DType,
                         first_layer_done: bool = False) -> tf.Tensor:
  """`build_mlp_with_layer_norm`'s function; LayerNorm in float32.

  LayerNorm: `(h - mean) / sqrt(var + 1e-5) * scale + offset` over the last
  axis with the biased variance, as `snt.LayerNorm`.
  """
  mlp, layer_norm = model._layers  # pylint: disable=protected-access
  hidden = tf.cast(_mlp(mlp, x, dtype, first_layer_done), tf.float32)
  return graph_ops.layer_norm(hidden, layer_norm.scale, layer_norm.offset,
                              LAYER_NORM_EPSILON)
