"""Stage 2, model: kernels of the graph network's fast path.

- `graph_ops`: LayerNorm with a hand-written gradient, sorted segment sums.

The model itself is the original's `graph_network` (encode-process-decode)
and `learned_simulator` (features, normalization, Euler integration), at the
top level.
"""
