"""Micro-timings of the fast path's kernels against TensorFlow's own.

`model.graph_ops` replaces two pieces of the straightforward network with
exact-math kernels; this times each beside what it replaces, in one process
on the same inputs (medians of `--repeats` runs of at least
`--min_run_seconds`, after a warm-up), in ms per call:

- LayerNorm on `[rows, size]` (forward, and forward plus backward): the
  straightforward `tf.nn.moments` + `tf.nn.batch_normalization` (what
  `snt.LayerNorm` runs, with TensorFlow's automatic gradient) against
  `graph_ops.layer_norm` and its hand-written gradient;
- the sum of `[edges, size]` edge messages onto their receivers:
  `tf.math.unsorted_segment_sum` against the sorted `tf.math.segment_sum`
  that `graph_ops.sum_onto_receivers` runs when the receivers are sorted.

  python -m learning_to_simulate.benchmarks.kernels      # BENCHMARKS.md, 1.A
"""

import dataclasses
import statistics
import sys
from typing import Any, Callable, Dict, Sequence

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from learning_to_simulate.benchmarks import timing
from learning_to_simulate.data import dataset_writer
from learning_to_simulate.model import graph_ops

EPSILON = 1e-5


@dataclasses.dataclass(frozen=True)
class Options:
  """Sizes and how long to time."""
  # The sizes of BENCHMARKS.md's figures: LayerNorm on [10400, 128], and
  # 10k edges summed onto the 1200 nodes of a 2 x 600 batch.
  rows: int = 10400
  size: int = 128
  edges: int = 10400
  nodes: int = 1200
  repeats: int = 5
  warmup: int = 3
  min_run_seconds: float = 0.5
  seed: int = 0


def _median_ms(fn: Callable[[], Any], options: Options) -> float:
  return 1e3 * statistics.median(timing.time_runs(
      fn, options.repeats, options.warmup, options.min_run_seconds))


def _straightforward_layer_norm(x, scale, offset):
  mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
  return tf.nn.batch_normalization(x, mean, variance, offset, scale, EPSILON)


def _with_gradient(layer_norm, x, scale, offset):
  with tf.GradientTape() as tape:
    tape.watch([x, scale, offset])
    y = layer_norm(x, scale, offset)
    loss = tf.reduce_sum(y * y)
  grads = tape.gradient(loss, [x, scale, offset])
  return y[0, 0] + sum(g[0] if g.shape.rank == 1 else g[0, 0] for g in grads)


def run(options: Options = Options()) -> Dict[str, Any]:
  """Times the kernels; returns `{kernel: {baseline_ms, ours_ms,
  speedup}}` and the sizes, after checking both give the same values."""
  rng = np.random.default_rng(options.seed)
  x = tf.constant(rng.normal(size=[options.rows, options.size]), tf.float32)
  scale = tf.constant(rng.normal(1.0, 0.1, options.size), tf.float32)
  offset = tf.constant(rng.normal(0.0, 0.1, options.size), tf.float32)
  ours = lambda x, s, o: graph_ops.layer_norm(x, s, o, EPSILON)
  cases = {
      "layer_norm forward": (
          tf.function(lambda: _straightforward_layer_norm(x, scale, offset)),
          tf.function(lambda: ours(x, scale, offset))),
      "layer_norm forward + backward": (
          tf.function(lambda: _with_gradient(_straightforward_layer_norm, x,
                                             scale, offset)),
          tf.function(lambda: _with_gradient(ours, x, scale, offset))),
  }
  data = tf.constant(rng.normal(size=[options.edges, options.size]),
                     tf.float32)
  receivers = tf.constant(np.sort(rng.integers(0, options.nodes,
                                               options.edges)), tf.int32)
  nodes = tf.constant(options.nodes)
  cases["sum onto sorted receivers"] = (
      tf.function(lambda: tf.math.unsorted_segment_sum(data, receivers,
                                                       nodes)),
      tf.function(lambda: graph_ops.sum_onto_receivers(
          data, receivers, nodes, graph_ops.is_sorted(receivers))))
  results = {"options": dataclasses.asdict(options), "kernels": {}}
  for name, (baseline, fast) in cases.items():
    np.testing.assert_allclose(fast().numpy(), baseline().numpy(),
                               rtol=2e-4, atol=2e-3, err_msg=name)
    baseline_ms = _median_ms(baseline, options)
    ours_ms = _median_ms(fast, options)
    results["kernels"][name] = {"baseline_ms": baseline_ms,
                                "ours_ms": ours_ms,
                                "speedup": baseline_ms / ours_ms}
  return results


def format_results(results: Dict[str, Any]) -> str:
  options = results["options"]
  lines = [f"LayerNorm on [{options['rows']}, {options['size']}]; sums of "
           f"[{options['edges']}, {options['size']}] onto {options['nodes']} "
           "nodes; median ms per call",
           "| kernel | TensorFlow's | graph_ops | speed-up |",
           "|---|---|---|---|"]
  for name, kernel in results["kernels"].items():
    lines.append(f"| {name} | {kernel['baseline_ms']:.3g} | "
                 f"{kernel['ours_ms']:.3g} | {kernel['speedup']:.2f}x |")
  return "\n".join(lines)


def _define_flags() -> None:
  defaults = Options()
  for field in dataclasses.fields(Options):
    define = (flags.DEFINE_float if field.type is float else
              flags.DEFINE_integer)
    define(field.name, getattr(defaults, field.name), f"Options.{field.name}")
  flags.DEFINE_string("output_json", None, "Also write the results here.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  values = {field.name: flags.FLAGS[field.name].value
            for field in dataclasses.fields(Options)}
  try:
    results = run(Options(**values))
  except ValueError as error:
    sys.exit(f"kernels: error: {error}")
  if flags.FLAGS.output_json:
    dataset_writer.write_json(flags.FLAGS.output_json, results)
  print(format_results(results))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
