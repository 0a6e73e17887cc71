"""Throughput benchmark of the learned simulator on a seeded synthetic workload.

Sanchez-Gonzalez et al. 2020 (arXiv:2002.09405) with the paper's default model
(latent 128, MLPs of 2 x 128 hidden, 10 message-passing steps). No dataset is
needed: each benchmark point is a batch of 2D (or 3D) water particles on a
jittered lattice, spaced so that a particle has ~17 neighbours within the
WaterDrop connectivity radius in 2D (about 21k edges for 2 x 600 particles).

For each point it measures train steps/s (the `train_step.make_train_step`
function, Adam), one-step inference steps/s and the steps/s of a 300-step
rollout (`rollout.make_rollout_fn`), with particle-steps/s and edge-steps/s;
the median of several runs after warm-up. Throughput is also given as
effective FLOP/s of the straightforward formulation (`model_flops`) against
this machine's measured fp32 matmul peak, so algorithmic savings show up as
speed. Peak RSS is the process peak (`ru_maxrss`); by default every point runs
in its own subprocess, so the number is that point's. Last, a few train,
inference and rollout steps are traced and their time is split by op type
(`--profile_steps`). The measurements are in `timing`, the report
in `report`, the workload in `workload`.

The default points, from the repository root (BENCHMARKS.md has the exact
commands of its numbers; training 32000x1 takes ~15 GiB, ~7 GiB with
`--recompute_grad`):
`python -m learning_to_simulate.benchmarks.throughput --output_json=/tmp/throughput.json`

The main point only, or a smoke test:
`python -m learning_to_simulate.benchmarks.throughput --points=600x2`
`python -m learning_to_simulate.benchmarks.throughput --quick`
"""

import dataclasses
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from learning_to_simulate.benchmarks import report as report_lib
from learning_to_simulate.benchmarks import timing
from learning_to_simulate.data import dataset_writer
from learning_to_simulate.model import build
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import devices
from learning_to_simulate.training import one_step
from learning_to_simulate.training import optimizers
from learning_to_simulate.training import rollout as rollout_lib
from learning_to_simulate.training import train_step as train_step_lib
from learning_to_simulate.benchmarks.workload import (
    Point, parse_point, parse_points, Workload, make_workload, count_edges,
    rollout_features, model_flops, ROLLOUT_ACC_STD, TRAIN_FLOP_FACTOR)

# Default benchmark points: `{particles per example}x{batch size}[x{dim}]`.
DEFAULT_POINTS = "600x2,2000x1,8000x1,32000x1,2000x1x3"
# `--quick`: tiny points, few short runs.
QUICK_POINTS = "60x2,40x1x3"
QUICK_OPTIONS = dict(repeats=2, warmup=1, min_run_seconds=0.0,
                     rollout_steps=5, rollout_repeats=2, profile_steps=1)


# ---------------------------------------------------------------------------
# Measurements.


@dataclasses.dataclass(frozen=True)
class Options:
  """What a benchmark run measures, and how long."""
  repeats: int = 5
  warmup: int = 2
  # A train or inference run repeats the step for at least this long.
  min_run_seconds: float = 1.0
  rollout_steps: int = 300
  rollout_repeats: int = 3
  # Rollouts of larger examples are skipped (they take long on a CPU).
  rollout_max_particles: int = 8000
  train: bool = True
  inference: bool = True
  rollout: bool = True
  # Steps traced for the op profile, after the timed runs (0: no profile).
  profile_steps: int = 3
  # Op types reported per profile, by self time (0: all of them).
  profile_top: int = 8
  seed: int = 0
  # Train with `--recompute_grad` (activations recomputed in the backward
  # pass: less memory, more compute).
  recompute_grad: bool = False
  # The GPU speed-ups of `train`, for their figures in BENCHMARKS.md: XLA
  # for the graph network, and matmuls in "bfloat16" or "float16" ("" for
  # float32, the default).
  jit_compile: bool = False
  mixed_precision: str = ""

  def validate(self) -> None:
    if self.mixed_precision not in ("", "bfloat16", "float16"):
      raise ValueError("--mixed_precision must be bfloat16 or float16, got "
                       f"{self.mixed_precision!r}")
    if self.repeats < 1 or self.rollout_repeats < 1:
      raise ValueError("repeats and rollout_repeats must be >= 1")
    if (self.warmup < 0 or self.min_run_seconds < 0 or self.profile_steps < 0
        or self.profile_top < 0):
      raise ValueError("warmup, min_run_seconds, profile_steps and "
                       "profile_top must be >= 0")
    if self.rollout_steps < 1:
      raise ValueError(f"rollout_steps must be >= 1, got "
                       f"{self.rollout_steps}")


def _rate(seconds: Sequence[float], flops: Optional[float] = None,
          peak_gflops: Optional[float] = None) -> Dict[str, Any]:
  median = statistics.median(seconds)
  result = {"steps_per_s": 1 / median, "ms_per_step": 1e3 * median,
            "runs_ms": [1e3 * s for s in seconds]}
  if flops is not None:
    result["gflops"] = flops / median / 1e9
    result["percent_of_peak"] = (100 * result["gflops"] / peak_gflops
                                 if peak_gflops else None)
  return result


def run_point(point: Point, options: Options = Options(),
              model_config: config_lib.ModelConfig = config_lib.ModelConfig(),
              peak_gflops: Optional[float] = None) -> Dict[str, Any]:
  """Measures one point in this process.

  Training runs first, so `train_peak_rss_mib` is the process peak up to the
  end of training (it includes TensorFlow itself).

  Args:
    point: the workload size.
    options: what to measure.
    model_config: the model (default: the paper's).
    peak_gflops: the matmul peak, for `percent_of_peak`.

  Returns:
    A JSON-serializable dict: the point, `num_particles`, `num_edges`,
    `forward_gflop`, `train`, `inference` and `rollout` rates (each
    `steps_per_s`, `ms_per_step`, `runs_ms`, `gflops`, `percent_of_peak`;
    the rollout also `num_particles`, `num_edges`, `particle_steps_per_s`,
    `edge_steps_per_s`, `final_edges`), peak RSS, and with a profile the top
    ops of the train, inference and rollout steps.
  """
  options.validate()
  tf.random.set_seed(options.seed)
  workload = make_workload(point.particles_per_example, point.batch_size,
                           point.dim, options.seed)
  features, metadata = workload.features, workload.metadata
  last_positions = features["position"][:, -1]
  num_edges = count_edges(last_positions, features["n_particles_per_example"])
  forward = model_flops(point.num_particles, num_edges, point.dim,
                        model_config)
  result = {
      "point": point.name, "dim": point.dim,
      "particles_per_example": point.particles_per_example,
      "batch_size": point.batch_size, "num_particles": point.num_particles,
      "num_edges": num_edges,
      "neighbours_per_particle": num_edges / point.num_particles,
      "forward_gflop": forward / 1e9,
  }
  batch = (tf.nest.map_structure(tf.constant, features),
           tf.constant(workload.target))
  simulator = build.build_simulator(
      metadata, model_config, mixed_precision=options.mixed_precision or None,
      jit_compile=options.jit_compile, recompute_grad=options.recompute_grad)
  profiles = {}
  if options.train:
    optimizer = optimizers.make_optimizer(
        config_lib.OptimizerConfig(), simulator,
        loss_scaling=options.mixed_precision == "float16")
    train_step = train_step_lib.loss_of(train_step_lib.make_train_step(
        simulator, optimizer, train_step_lib.OneStep(model_config.noise_std),
        metadata))
    seconds = timing.time_runs(lambda: train_step(batch), options.repeats,
                               options.warmup, options.min_run_seconds)
    result["train"] = _rate(seconds, TRAIN_FLOP_FACTOR * forward, peak_gflops)
  # Before the profiler runs.
  result["train_peak_rss_mib"] = timing.peak_rss_mib()
  if options.train and options.profile_steps:
    profiles["train"] = timing.profile_ops(lambda: train_step(batch),
                                           options.profile_steps,
                                           top=options.profile_top)

  if options.inference:
    features_spec = one_step.batch_signature(metadata)[0]

    @tf.function(input_signature=[features_spec])
    def inference_step(inputs):
      return simulator(
          inputs["position"],
          n_particles_per_example=inputs["n_particles_per_example"],
          particle_types=inputs["particle_type"])

    seconds = timing.time_runs(lambda: inference_step(batch[0]),
                               options.repeats, options.warmup,
                               options.min_run_seconds)
    result["inference"] = _rate(seconds, forward, peak_gflops)
    if options.profile_steps:
      profiles["inference"] = timing.profile_ops(
          lambda: inference_step(batch[0]), options.profile_steps,
          top=options.profile_top)

  if (options.rollout and
      point.particles_per_example <= options.rollout_max_particles):
    result["rollout"] = _measure_rollout(workload, options, model_config,
                                         peak_gflops, profiles)
  if profiles:
    result["profile"] = profiles
  result["peak_rss_mib"] = timing.peak_rss_mib()
  return result


def _measure_rollout(workload: Workload, options: Options,
                     model_config: config_lib.ModelConfig,
                     peak_gflops: Optional[float],
                     profiles: Dict[str, Any]) -> Dict[str, Any]:
  """Rolls out the first example of the workload (see `ROLLOUT_ACC_STD`).

  With `options.profile_steps`, adds the op profile of a rollout of that
  many steps to `profiles["rollout"]`.
  """
  metadata = dict(workload.metadata)
  metadata["acc_std"] = [ROLLOUT_ACC_STD] * metadata["dim"]
  simulator = build.build_simulator(
      metadata, dataclasses.replace(model_config, noise_std=0.0),
      mixed_precision=options.mixed_precision or None,
      jit_compile=options.jit_compile)
  rollout_fn = rollout_lib.make_rollout_fn(simulator, metadata)
  features = rollout_features(workload, options.rollout_steps)
  inputs = tf.nest.map_structure(tf.constant, features)
  num_particles = int(features["n_particles_per_example"][0])
  num_edges = count_edges(features["position"][:, 0],
                          features["n_particles_per_example"])
  num_steps = tf.constant(options.rollout_steps)
  last = {}

  def run():
    output = rollout_fn(inputs, num_steps)["predicted_rollout"]
    last["output"] = output
    return output

  # A short rollout traces the function (the step count is an input).
  timing.sync(rollout_fn(inputs, tf.constant(1))["predicted_rollout"])
  seconds = timing.time_runs(run, options.rollout_repeats, warmup=0)
  if options.profile_steps:
    short = tf.constant(options.profile_steps)
    profiles["rollout"] = timing.profile_ops(
        lambda: rollout_fn(inputs, short)["predicted_rollout"], calls=1,
        steps_per_call=options.profile_steps, top=options.profile_top)
  steps_per_s = options.rollout_steps / statistics.median(seconds)
  gflops = steps_per_s * model_flops(num_particles, num_edges,
                                     metadata["dim"], model_config) / 1e9
  return {
      "steps": options.rollout_steps, "num_particles": num_particles,
      "num_edges": num_edges, "steps_per_s": steps_per_s,
      "ms_per_step": 1e3 / steps_per_s,
      "particle_steps_per_s": steps_per_s * num_particles,
      "edge_steps_per_s": steps_per_s * num_edges,
      "gflops": gflops,
      "percent_of_peak": 100 * gflops / peak_gflops if peak_gflops else None,
      "runs_ms": [1e3 * s for s in seconds],  # Whole rollouts.
      "final_edges": count_edges(last["output"][-1].numpy(),
                                 features["n_particles_per_example"]),
  }


def machine_info() -> Dict[str, Any]:
  """Devices and library versions, for the record."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = re.findall(r"model name\s*:\s*(.*)", f.read())
    if names:
      cpu = names[0].strip()
  except OSError:
    pass
  gpus = []
  for gpu in tf.config.list_physical_devices("GPU"):
    details = tf.config.experimental.get_device_details(gpu)
    gpus.append(details.get("device_name", gpu.name))
  return {
      "cpu": cpu, "cpu_count": os.cpu_count(), "gpus": gpus,
      "tensorflow": tf.__version__, "python": platform.python_version(),
      "tf32": tf.config.experimental.tensor_float_32_execution_enabled(),
  }


def matmul_sizes(quick: bool) -> List[Tuple[int, int, int]]:
  """Square products, and one of the processor's edge MLP (~20k edges)."""
  if quick:
    return [(256, 256, 256)]
  return [(2048, 2048, 2048), (4096, 4096, 4096), (20480, 384, 128)]


def run_point_in_subprocess(point: Point, options: Options,
                            peak_gflops: Optional[float]) -> Dict[str, Any]:
  """`run_point` in a fresh Python process, so its peak RSS is its own."""
  with tempfile.TemporaryDirectory() as tmp:
    output = os.path.join(tmp, "point.json")
    command, env = timing.module_command(
        "benchmarks.throughput",
        [f"--point={point.name}", f"--output_json={output}",
         f"--peak_gflops={peak_gflops or 0}"] + _option_flags(options))
    process = subprocess.run(command, env=env, capture_output=True,
                             text=True, check=False)
    if process.returncode != 0 or not os.path.exists(output):
      tail = (process.stderr or process.stdout)[-2000:]
      if process.returncode == -signal.SIGKILL:
        hint = "killed (SIGKILL), most likely out of memory"
        if not options.recompute_grad:
          hint += "; --recompute_grad trains large graphs in less memory"
        tail = f"{hint}\n{tail}"
      return {"point": point.name, "error":
              f"exit status {process.returncode}: {tail}"}
    with open(output) as f:
      return json.load(f)["points"][0]


def _option_flags(options: Options) -> List[str]:
  """`options` as command-line flags (each field has a flag of its name)."""
  args = []
  for field in dataclasses.fields(options):
    value = getattr(options, field.name)
    if isinstance(value, bool):
      args.append(f"--{'' if value else 'no'}{field.name}")
    else:
      args.append(f"--{field.name}={value}")
  return args


def run_benchmark(points: Sequence[Point], options: Options = Options(),
                  isolate: bool = True,
                  matmul: Optional[Sequence[Tuple[int, int, int]]] = None,
                  peak_gflops: Optional[float] = None) -> Dict[str, Any]:
  """Measures the matmul peak, then every point.

  Args:
    points: workload sizes.
    options: what to measure.
    isolate: run each point in its own subprocess (per-point peak RSS).
    matmul: `[m, k, n]` sizes for the peak (default: `matmul_sizes`; empty:
      no peak, no `percent_of_peak`).
    peak_gflops: a known peak, instead of measuring one.

  Returns:
    `machine`, `matmul` (with `peak_gflops`), `model`, `options` and
    `points` (the `run_point` dicts, or `{point, error}` for a failure).
  """
  options.validate()
  if peak_gflops or (matmul is not None and not matmul):
    matmul_result = {"peak_gflops": peak_gflops, "shapes": []}
  else:
    matmul_result = timing.measure_matmul_peak(
        matmul or matmul_sizes(quick=False), repeats=options.repeats)
  peak = matmul_result["peak_gflops"]
  results = []
  for point in points:
    start = time.perf_counter()
    logging.info("Benchmark point %s ...", point.name)
    if isolate:
      result = run_point_in_subprocess(point, options, peak)
    else:
      result = run_point(point, options, peak_gflops=peak)
    logging.info("Point %s done in %.0f s.", point.name,
                 time.perf_counter() - start)
    results.append(result)
  return {"machine": machine_info(), "matmul": matmul_result,
          "model": dataclasses.asdict(config_lib.ModelConfig()),
          "options": dataclasses.asdict(options), "points": results}



# ---------------------------------------------------------------------------
# Command line (flags are defined only when this module is the program).


def _define_flags() -> None:
  defaults = Options()
  flags.DEFINE_string("points", DEFAULT_POINTS,
                      "Comma-separated points PARTICLESxBATCH[xDIM]: "
                      "particles per example, batch size, dim (default 2).")
  flags.DEFINE_string("point", None,
                      "Run this one point in this process (no subprocess).")
  flags.DEFINE_integer("repeats", defaults.repeats,
                       "Timed runs per measurement (the median is reported).")
  flags.DEFINE_integer("warmup", defaults.warmup, "Untimed calls first.")
  flags.DEFINE_float("min_run_seconds", defaults.min_run_seconds,
                     "A train or inference run lasts at least this long.")
  flags.DEFINE_integer("rollout_steps", defaults.rollout_steps,
                       "Steps of the timed rollouts.")
  flags.DEFINE_integer("rollout_repeats", defaults.rollout_repeats,
                       "Timed rollouts per point.")
  flags.DEFINE_integer("rollout_max_particles",
                       defaults.rollout_max_particles,
                       "No rollout for points with more particles per "
                       "example.")
  flags.DEFINE_boolean("train", defaults.train, "Time the train step.")
  flags.DEFINE_boolean("inference", defaults.inference,
                       "Time one-step inference.")
  flags.DEFINE_boolean("rollout", defaults.rollout, "Time rollouts.")
  flags.DEFINE_integer("profile_steps", defaults.profile_steps,
                       "Trace this many train, inference and rollout steps "
                       "per point and report the top ops (0: no profile).")
  flags.DEFINE_integer("profile_top", defaults.profile_top,
                       "Op types reported per profile, by self time (0: "
                       "all).")
  flags.DEFINE_integer("seed", defaults.seed, "Workload and model seed.")
  flags.DEFINE_boolean("recompute_grad", defaults.recompute_grad,
                       "Train with --recompute_grad (less memory).")
  flags.DEFINE_boolean("jit_compile", defaults.jit_compile,
                       "The graph network with XLA, as train --jit_compile.")
  flags.DEFINE_string("mixed_precision", defaults.mixed_precision,
                      "bfloat16 or float16 matmuls, as train "
                      "--mixed_precision (empty: float32).")
  flags.DEFINE_boolean("isolate", True,
                       "Run every point in its own subprocess, so peak RSS "
                       "is per point.")
  flags.DEFINE_float("peak_gflops", 0.0,
                     "Use this matmul peak instead of measuring it.")
  flags.DEFINE_boolean("quick", False,
                       f"Smoke test: points {QUICK_POINTS}, a small matmul "
                       f"and {QUICK_OPTIONS} unless given.")
  flags.DEFINE_string("output_json", None, "Also write the results here.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  f = flags.FLAGS
  values = {field.name: f[field.name].value
            for field in dataclasses.fields(Options)}
  if f.quick:  # Flags given explicitly still win.
    values.update({name: value for name, value in QUICK_OPTIONS.items()
                   if not f[name].present})
  specs = f.points
  if f.quick and not f["points"].present:
    specs = QUICK_POINTS
  devices.configure_devices()
  try:
    options = Options(**values)
    if f.point:  # One point, in this process; no matmul unless one is given.
      results = run_benchmark([parse_point(f.point)], options, isolate=False,
                              matmul=[], peak_gflops=f.peak_gflops or None)
    else:
      results = run_benchmark(parse_points(specs), options, f.isolate,
                              matmul=matmul_sizes(f.quick),
                              peak_gflops=f.peak_gflops or None)
  except ValueError as error:
    sys.exit(f"benchmark: error: {error}")
  results["command"] = " ".join(
      ["python -m learning_to_simulate.benchmarks.throughput"] +
      list(sys.argv[1:]))
  if f.output_json:
    dataset_writer.write_json(f.output_json, results)
  print(report_lib.format_report(results))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
