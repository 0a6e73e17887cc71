"""The paper's formulation of the graph network, written with the original's
`graph_nets` modules (the holders of `EncodeProcessDecode`'s variables): the
reference that the one forward pass, `_forward_arrays`, is compared against
in the tests (outputs and gradients)."""

from typing import Optional

import graph_nets as gn
import tensorflow as tf

from learning_to_simulate import graph_network


def graph_nets_forward(network: graph_network.EncodeProcessDecode,
                       graph: gn.graphs.GraphsTuple,
                       positions: Optional[tf.Tensor] = None) -> tf.Tensor:
  """`[num_nodes, output_size]`: encoder, processor steps with residuals on
  nodes and edges (each edge MLP on `concat([edge, receiver, sender])`, sum
  aggregation), the grid branch if any, decoder; in float32."""
  # pylint: disable=protected-access
  nodes, edges = network._input_features(graph)
  latent = network._encoder_network(
      graph.replace(nodes=nodes, edges=edges, globals=None))
  for processor_network in network._processor_networks:
    updated = processor_network(latent)
    latent = updated.replace(nodes=updated.nodes + latent.nodes,
                             edges=updated.edges + latent.edges)
  node_latents = latent.nodes
  if network._grid_branch is not None:
    node_latents += network._grid_branch(node_latents, positions,
                                         graph.n_node)
  return network._decoder_network(node_latents)
