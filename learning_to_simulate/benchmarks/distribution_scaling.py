"""Training throughput on 1 and 2 workers, each pinned to one CPU core.

Data-parallel scaling of `--distribution=multi_worker` at a fixed
per-replica batch (weak scaling): one process trains on one core with the
single-device code (`--distribution=none`), one with a one-worker
`MultiWorkerMirroredStrategy` (the strategy's own cost), then two
`MultiWorkerMirroredStrategy` processes on 127.0.0.1, worker i pinned to
core i, train on twice the global batch. Scaling efficiency is the two
workers' examples/s over twice those of `--distribution=none` on one core.
Each configuration runs `--repeats` times, in turn, so that load from other
jobs hits all of them.

    python -m learning_to_simulate.benchmarks.distribution_scaling

The workload is `pipeline_memory`'s dataset (lattice blocks of
`--particles` particles at WaterDrop's radius, ~17 neighbours each) and the
paper's model (latent 128, 10 message-passing steps, Adam).
"""

import json
import os
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from absl import app
from absl import flags
import tensorflow as tf

from learning_to_simulate.benchmarks import pipeline_memory
from learning_to_simulate.benchmarks import report as report_lib
from learning_to_simulate.benchmarks import timing
from learning_to_simulate.data import dataset_writer
from learning_to_simulate import reading_utils
from learning_to_simulate.model import build
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import distribution
from learning_to_simulate.training import optimizers
from learning_to_simulate.training import train_step as train_step_lib

FLAGS = flags.FLAGS


def _define_flags() -> None:
  flags.DEFINE_integer("per_replica_batch", 2,
                       "Examples per replica and step (the global batch is "
                       "this times the workers).")
  flags.DEFINE_integer("particles", 600, "Particles per example.")
  flags.DEFINE_integer("frames", 60, "Frames per trajectory.")
  flags.DEFINE_integer("trajectories", 8, "Train trajectories.")
  flags.DEFINE_integer("warmup_steps", 3, "Untimed steps (tracing).")
  flags.DEFINE_integer("steps", 20, "Timed steps per run.")
  flags.DEFINE_integer("repeats", 2, "Runs of each configuration.")
  flags.DEFINE_list("cores", ["0", "1"], "The CPU core of each worker.")
  flags.DEFINE_string("work_dir", None, "Dataset directory (default: a "
                      "temporary one, removed at the end).")
  flags.DEFINE_string("output_json", None, "Also write the results here.")
  # Internal: one worker of a run (the parent starts these).
  flags.DEFINE_string("worker", None, "Internal: run one worker of "
                      "'none' or 'multi_worker' on --data_path.")
  flags.DEFINE_string("data_path", None, "Internal: the dataset.")


def worker(kind: str, data_path: str, per_replica_batch: int,
           warmup_steps: int, steps: int) -> Dict[str, Any]:
  """Trains `warmup_steps + steps` steps; the timed steps' throughput.

  Runs in a worker process, after the parent pinned it to a core.
  """
  workers = distribution.make_workers(kind)
  metadata = reading_utils.read_metadata(data_path)
  model = config_lib.ModelConfig()
  num_replicas = workers.num_replicas
  batch_size = per_replica_batch * num_replicas
  with distribution.scope(workers):
    simulator = build.build_simulator(metadata, model)
    optimizer = optimizers.make_optimizer(config_lib.OptimizerConfig(),
                                          simulator)
  dataset = train_step_lib.make_dataset(workers, data_path, metadata,
                                       batch_size, seed=0)
  run_step = train_step_lib.loss_of(train_step_lib.make_train_step(
      simulator, optimizer, train_step_lib.OneStep(model.noise_std), metadata,
      workers, dataset.element_spec))
  iterator = iter(dataset)
  for _ in range(warmup_steps):
    float(run_step(next(iterator)))
  start = time.perf_counter()
  for _ in range(steps):
    loss = run_step(next(iterator))
  float(loss)
  seconds = time.perf_counter() - start
  result = {"kind": kind, "workers": workers.num_workers,
            "replicas": num_replicas, "global_batch": batch_size,
            "steps": steps, "seconds": seconds,
            "steps_per_s": steps / seconds,
            "examples_per_s": steps * batch_size / seconds}
  if not workers.one_device:
    result["all_reduce_ms"] = 1e3 * _all_reduce_seconds(
        workers, simulator.trainable_variables, steps)
  return result


def _all_reduce_seconds(workers: distribution.Workers, variables,
                        repeats: int) -> float:
  """Median time of one all-reduce of tensors shaped like `variables` (the
  dense gradients of a step; the step also gathers the embedding's sparse
  gradient and sums two scalars)."""
  strategy = workers.strategy
  values = [tf.ones(v.shape, v.dtype) for v in variables]

  @tf.function
  def all_reduce():
    return strategy.run(lambda: tf.distribute.get_replica_context(
    ).all_reduce(tf.distribute.ReduceOp.SUM, values))

  all_reduce()  # Tracing.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    reduced = strategy.experimental_local_results(all_reduce())
    tf.nest.map_structure(lambda t: t.numpy(), reduced)
    times.append(time.perf_counter() - start)
  return float(sorted(times)[len(times) // 2])


def free_ports(count: int) -> List[int]:
  """`count` TCP ports of 127.0.0.1 that were free a moment ago."""
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def run_config(kind: str, num_workers: int, data_path: str,
               cores: Sequence[int]) -> Dict[str, Any]:
  """One run: `num_workers` worker processes, worker i on `cores[i]`."""
  ports = free_ports(num_workers)
  processes = []
  for index in range(num_workers):
    command, env = timing.module_command(
        "benchmarks.distribution_scaling", [
            f"--worker={kind}", f"--data_path={data_path}",
            f"--per_replica_batch={FLAGS.per_replica_batch}",
            f"--warmup_steps={FLAGS.warmup_steps}", f"--steps={FLAGS.steps}"])
    if kind == "multi_worker":
      env["TF_CONFIG"] = json.dumps({
          "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
          "task": {"type": "worker", "index": index}})
    core = cores[index]
    processes.append(subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda core=core: os.sched_setaffinity(
            0, {core})))
  outputs = [process.communicate() for process in processes]
  for process, (_, err) in zip(processes, outputs):
    if process.returncode != 0:
      raise RuntimeError(f"a {kind} worker failed:\n{err[-3000:]}")
  result = json.loads(outputs[0][0].strip().splitlines()[-1])
  result["load_average"] = os.getloadavg()[0]
  return result


CONFIGS = (("none", 1), ("multi_worker", 1), ("multi_worker", 2))


def run(data_path: str, cores: Sequence[int],
        repeats: int) -> List[Dict[str, Any]]:
  """`repeats` x each of `CONFIGS`, in turn."""
  results = []
  for _ in range(repeats):
    for kind, num_workers in CONFIGS:
      results.append(run_config(kind, num_workers, data_path, cores))
  return results


def summarize(results: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
  """Best examples/s of each configuration, and the scaling efficiency.

  Returns:
    `best`: `{"kind/workers": run}`; `scaling_efficiency`: the best
    2-worker examples/s over twice the best of `none` (when both ran).
  """
  best = {}
  for result in results:
    key = f"{result['kind']}/{result['workers']}"
    if key not in best or result["examples_per_s"] > best[key][
        "examples_per_s"]:
      best[key] = result
  summary = {"best": best}
  if "none/1" in best and "multi_worker/2" in best:
    summary["scaling_efficiency"] = best["multi_worker/2"][
        "examples_per_s"] / (2 * best["none/1"]["examples_per_s"])
  return summary


def format_table(results: Sequence[Dict[str, Any]]) -> str:
  header = ["workers", "--distribution", "global batch", "steps/s",
            "examples/s", "gradient all-reduce ms", "load average"]
  rows = [[str(r["workers"]), r["kind"], str(r["global_batch"]),
           f"{r['steps_per_s']:.3g}", f"{r['examples_per_s']:.3g}",
           f"{r['all_reduce_ms']:.3g}" if "all_reduce_ms" in r else "-",
           f"{r['load_average']:.1f}"] for r in results]
  return report_lib.format_markdown_table(header, rows)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.worker:
    print(json.dumps(worker(FLAGS.worker, FLAGS.data_path,
                            FLAGS.per_replica_batch, FLAGS.warmup_steps,
                            FLAGS.steps)))
    return
  cores = [int(core) for core in FLAGS.cores]
  if len(cores) < 2 or any(c not in os.sched_getaffinity(0) for c in cores):
    sys.exit(f"distribution_scaling: error: --cores must name 2 cores of "
             f"this machine, got {','.join(FLAGS.cores)}")
  with timing.work_directory(FLAGS.work_dir, "lts_scaling_") as work_dir:
    data_path = os.path.join(work_dir, "data")
    if not os.path.exists(os.path.join(data_path, "metadata.json")):
      pipeline_memory.write_dataset(data_path, FLAGS.trajectories,
                                    FLAGS.particles, FLAGS.frames)
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    results = run(data_path, cores, FLAGS.repeats)
  summary = summarize(results)
  if FLAGS.output_json:
    dataset_writer.write_json(FLAGS.output_json,
                              {"runs": results, **summary})
  print(format_table(results))
  efficiency: Optional[float] = summary.get("scaling_efficiency")
  if efficiency is not None:
    print(f"scaling efficiency (best 2-worker examples/s over twice the best "
          f"of --distribution=none): {efficiency:.0%}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
