"""Throughput benchmark of the learned simulator on a seeded synthetic workload.

Sanchez-Gonzalez et al. 2020 (arXiv:2002.09405) with the paper's default model
(latent 128, MLPs of 2 x 128 hidden, 10 message-passing steps). No dataset is
needed: each benchmark point is a batch of 2D (or 3D) water particles on a
jittered lattice, spaced so that a particle has ~17 neighbours within the
WaterDrop connectivity radius in 2D (about 21k edges for 2 x 600 particles).

For each point it measures train steps/s (the `training.make_train_step`
function, Adam), one-step inference steps/s and the steps/s of a 300-step
rollout (`rollout.make_rollout_fn`), with particle-steps/s and edge-steps/s;
the median of several runs after warm-up. Throughput is also given as
effective FLOP/s of the straightforward formulation (`model_flops`) against
this machine's measured fp32 matmul peak, so algorithmic savings show up as
speed. Peak RSS is the process peak (`ru_maxrss`); by default every point runs
in its own subprocess, so the number is that point's. Last, a few train,
inference and rollout steps are traced and their time is split by op type
(`--profile_steps`).

All points (the numbers in BENCHMARKS.md), from the repository root:
`python -m learning_to_simulate.benchmark --output_json=/tmp/benchmark.json`

The main point only, or a smoke test:
`python -m learning_to_simulate.benchmark --points=600x2`
`python -m learning_to_simulate.benchmark --quick`
"""

import collections
import dataclasses
import functools
import glob
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple)

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from learning_to_simulate import config as config_lib
from learning_to_simulate import device_utils
from learning_to_simulate import rollout as rollout_lib
from learning_to_simulate import training
from learning_to_simulate.benchmark_workload import (
    Point, parse_point, parse_points, Workload, make_workload, count_edges, rollout_features, model_flops, ROLLOUT_ACC_STD, TRAIN_FLOP_FACTOR)

# Targets of the benchmark (issue 6), checked in the report.
MAIN_POINT = "600x2"
PYTORCH_REFERENCE_TRAIN_STEPS_PER_S = 0.92  # On the MAIN_POINT workload.
TARGET_TRAIN_SPEEDUP = 1.5
TARGET_ROLLOUT_EDGE_STEPS_PER_S = 1e5
TARGET_TRAIN_RSS_MIB = 2048
# Default benchmark points: `{particles per example}x{batch size}[x{dim}]`.
DEFAULT_POINTS = "600x2,2000x1,8000x1,32000x1,2000x1x3"
# `--quick`: tiny points, few short runs.
QUICK_POINTS = "60x2,40x1x3"
QUICK_OPTIONS = dict(repeats=2, warmup=1, min_run_seconds=0.0,
                     rollout_steps=5, rollout_repeats=2, profile_steps=1)


# ---------------------------------------------------------------------------
# Measurements.


def _sync(result) -> None:
  """Waits for `result` (copies it to the host)."""
  for tensor in tf.nest.flatten(result):
    if isinstance(tensor, tf.Tensor):
      tensor.numpy()


def time_runs(fn: Callable[[], Any], repeats: int, warmup: int = 1,
              min_run_seconds: float = 0.0) -> List[float]:
  """Seconds per call of `fn`, one value per run.

  After `warmup` calls, each of the `repeats` runs calls `fn` (waiting for
  its result) until at least `min_run_seconds` have passed, at least once.
  """
  if repeats < 1:
    raise ValueError(f"repeats must be >= 1, got {repeats}")
  for _ in range(warmup):
    _sync(fn())
  per_call = []
  for _ in range(repeats):
    calls = 0
    start = time.perf_counter()
    while True:
      _sync(fn())
      calls += 1
      elapsed = time.perf_counter() - start
      if elapsed >= min_run_seconds:
        break
    per_call.append(elapsed / calls)
  return per_call


def measure_matmul_peak(sizes: Sequence[Tuple[int, int, int]],
                        repeats: int = 5) -> Dict[str, Any]:
  """fp32 `tf.linalg.matmul` FLOP/s of `[m, k] x [k, n]` products.

  Returns:
    `peak_gflops` (the best median) and `shapes`: per shape `m, k, n` and
    its median `gflops`.
  """
  # Fetching one element waits for the product without copying it.
  matmul = tf.function(lambda a, b: tf.linalg.matmul(a, b)[0, 0])
  shapes = []
  for m, k, n in sizes:
    call = functools.partial(matmul, tf.random.normal([m, k]),
                             tf.random.normal([k, n]))
    seconds = time_runs(call, repeats, warmup=2, min_run_seconds=0.2)
    shapes.append({"m": m, "k": k, "n": n,
                   "gflops": 2 * m * k * n / statistics.median(seconds) / 1e9})
  return {"peak_gflops": max(s["gflops"] for s in shapes), "shapes": shapes}


def peak_rss_mib() -> float:
  """Peak resident set size of this process so far (`ru_maxrss`), MiB."""
  kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  # Linux reports KiB, macOS bytes.
  return kib / (1024**2 if sys.platform == "darwin" else 1024)


_OP_EVENT = re.compile(r"^[^:]+:([A-Za-z_][A-Za-z0-9_]*)$")


def _op_self_times(xspace) -> Dict[str, float]:
  """Picoseconds of self time by op type in a profiler `XSpace`.

  GPU kernels (the `Stream` lines of the device planes, named by their
  `tf_op` stat) when there is a device plane, else the TensorFlow op events
  (`scope/name:Type`) of every host thread; an op event nested in another
  (a function call) is subtracted from its parent.
  """
  device_planes = [p for p in xspace.planes
                   if p.name.startswith("/device:") and "CPU" not in p.name]
  host_planes = [p for p in xspace.planes if p.name == "/host:CPU"]
  totals = collections.Counter()
  for plane in device_planes or host_planes:
    tf_op = [k for k, m in plane.stat_metadata.items() if m.name == "tf_op"]
    for line in plane.lines:
      # Device planes also hold derived lines ("TensorFlow Ops", ...) that
      # repeat the kernels.
      if device_planes and not line.name.startswith("Stream"):
        continue
      stack = []  # (end_ps, op type) of the enclosing op events.
      for event in sorted(line.events, key=lambda e: e.offset_ps):
        name = plane.event_metadata[event.metadata_id].name
        for stat in event.stats:
          if tf_op and stat.metadata_id == tf_op[0]:
            name = stat.str_value or plane.stat_metadata[stat.ref_value].name
        match = _OP_EVENT.match(name)
        if not match:
          continue
        while stack and stack[-1][0] <= event.offset_ps:
          stack.pop()
        if stack:
          totals[stack[-1][1]] -= event.duration_ps
        totals[match.group(1)] += event.duration_ps
        stack.append((event.offset_ps + event.duration_ps, match.group(1)))
  return dict(totals)


def profile_ops(fn: Callable[[], Any], calls: int, steps_per_call: int = 1,
                top: int = 8) -> List[Dict[str, Any]]:
  """Splits the time of `calls` calls of a warm `fn` by TensorFlow op type.

  Args:
    fn: the step (or a rollout of `steps_per_call` steps).
    calls: calls traced.
    steps_per_call: model steps in one call.
    top: op types returned.

  Returns:
    The `top` op types by self time: `op`, `ms_per_step` and `fraction` of
    the time of all ops (threads run ops in parallel, so the sum can exceed
    the wall time).
  """
  with tempfile.TemporaryDirectory(prefix="benchmark_profile_") as log_dir:
    tf.profiler.experimental.start(log_dir)
    try:
      for _ in range(calls):
        _sync(fn())
    finally:
      tf.profiler.experimental.stop()
    totals = collections.Counter()
    for path in glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"),
                          recursive=True):
      xspace = xplane_pb2.XSpace()
      with open(path, "rb") as f:
        xspace.ParseFromString(f.read())
      totals.update(_op_self_times(xspace))
  total = sum(totals.values()) or 1
  steps = calls * steps_per_call
  return [{"op": op, "ms_per_step": ps / steps / 1e9, "fraction": ps / total}
          for op, ps in totals.most_common(top)]


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
  seed: int = 0
  # Train with `--recompute_grad` (activations recomputed in the backward
  # pass: less memory, more compute).
  recompute_grad: bool = False

  def validate(self) -> None:
    if self.repeats < 1 or self.rollout_repeats < 1:
      raise ValueError("repeats and rollout_repeats must be >= 1")
    if self.warmup < 0 or self.min_run_seconds < 0 or self.profile_steps < 0:
      raise ValueError("warmup, min_run_seconds and profile_steps must be "
                       ">= 0")
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
  simulator = training.build_simulator(
      metadata, model_config, recompute_grad=options.recompute_grad)
  profiles = {}
  if options.train:
    optimizer = training.make_optimizer(config_lib.OptimizerConfig(),
                                        simulator)
    train_step = training.make_train_step(simulator, optimizer,
                                          model_config.noise_std, metadata)
    seconds = time_runs(lambda: train_step(batch), options.repeats,
                        options.warmup, options.min_run_seconds)
    result["train"] = _rate(seconds, TRAIN_FLOP_FACTOR * forward, peak_gflops)
  result["train_peak_rss_mib"] = peak_rss_mib()  # Before the profiler runs.
  if options.train and options.profile_steps:
    profiles["train"] = profile_ops(lambda: train_step(batch),
                                    options.profile_steps)

  if options.inference:
    features_spec = training.batch_signature(metadata)[0]

    @tf.function(input_signature=[features_spec])
    def inference_step(inputs):
      return simulator(
          inputs["position"],
          n_particles_per_example=inputs["n_particles_per_example"],
          particle_types=inputs["particle_type"])

    seconds = time_runs(lambda: inference_step(batch[0]), options.repeats,
                        options.warmup, options.min_run_seconds)
    result["inference"] = _rate(seconds, forward, peak_gflops)
    if options.profile_steps:
      profiles["inference"] = profile_ops(lambda: inference_step(batch[0]),
                                          options.profile_steps)

  if (options.rollout and
      point.particles_per_example <= options.rollout_max_particles):
    result["rollout"] = _measure_rollout(workload, options, model_config,
                                         peak_gflops, profiles)
  if profiles:
    result["profile"] = profiles
  result["peak_rss_mib"] = peak_rss_mib()
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
  simulator = training.build_simulator(
      metadata, dataclasses.replace(model_config, noise_std=0.0))
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
  _sync(rollout_fn(inputs, tf.constant(1))["predicted_rollout"])
  seconds = time_runs(run, options.rollout_repeats, warmup=0)
  if options.profile_steps:
    short = tf.constant(options.profile_steps)
    profiles["rollout"] = profile_ops(
        lambda: rollout_fn(inputs, short)["predicted_rollout"], calls=1,
        steps_per_call=options.profile_steps)
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
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with tempfile.TemporaryDirectory() as tmp:
    output = os.path.join(tmp, "point.json")
    command = [sys.executable, "-m", "learning_to_simulate.benchmark",
               f"--point={point.name}", f"--output_json={output}",
               f"--peak_gflops={peak_gflops or 0}"] + _option_flags(options)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    process = subprocess.run(command, env=env, capture_output=True,
                             text=True, check=False)
    if process.returncode != 0 or not os.path.exists(output):
      tail = (process.stderr or process.stdout)[-2000:]
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
    matmul_result = measure_matmul_peak(
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
# Report.


def _fmt(value: Optional[float], digits: int = 3) -> str:
  """Three significant digits, thousands as `k` / `M`."""
  if value is None:
    return "-"
  for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
    if abs(value) >= scale:
      return f"{value / scale:.{digits}g}{suffix}"
  return f"{value:.{digits}g}"


def _plain(value: Optional[float]) -> str:
  """Three significant digits, or the integer part of larger values."""
  if value is None:
    return "-"
  return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _percent(value: Optional[float]) -> str:
  return "-" if value is None else f"{value:.0f}%"


def report_rows(results: Mapping[str, Any]) -> Tuple[List[str],
                                                     List[List[str]]]:
  """Header and rows of the summary table."""
  header = ["point", "dim", "particles", "edges", "train steps/s",
            "train ms/step", "train GFLOP/s", "% peak", "infer steps/s",
            "rollout particles", "rollout steps/s", "particle-steps/s",
            "edge-steps/s", "train RSS MiB", "peak RSS MiB"]
  rows = []
  for point in results["points"]:
    if "error" in point:
      rows.append([point["point"], "failed"] + ["-"] * (len(header) - 2))
      continue
    train = point.get("train", {})
    infer = point.get("inference", {})
    roll = point.get("rollout", {})
    rows.append([
        point["point"], str(point["dim"]), str(point["num_particles"]),
        str(point["num_edges"]), _fmt(train.get("steps_per_s")),
        _plain(train.get("ms_per_step")), _fmt(train.get("gflops")),
        _percent(train.get("percent_of_peak")),
        _fmt(infer.get("steps_per_s")),
        str(roll["num_particles"]) if roll else "-",
        _fmt(roll.get("steps_per_s")), _fmt(roll.get("particle_steps_per_s")),
        _fmt(roll.get("edge_steps_per_s")),
        f"{point['train_peak_rss_mib']:.0f}",
        f"{point['peak_rss_mib']:.0f}"])
  return header, rows


def scaling_rows(results: Mapping[str, Any]) -> Tuple[List[str],
                                                      List[List[str]]]:
  """Time per step against size: linear scaling keeps us/particle flat."""
  header = ["point", "particles", "edges", "train ms/step",
            "train us/particle", "infer ms/step", "infer us/particle",
            "rollout ms/step", "rollout us/particle"]
  rows = []
  for point in results["points"]:
    if "error" in point:
      continue
    row = [point["point"], str(point["num_particles"]),
           str(point["num_edges"])]
    for key in ("train", "inference", "rollout"):
      rate = point.get(key)
      if not rate:
        row += ["-", "-"]
        continue
      # A rollout moves only the first example.
      particles = rate.get("num_particles", point["num_particles"])
      row += [_plain(rate["ms_per_step"]),
              _plain(1e3 * rate["ms_per_step"] / particles)]
    rows.append(row)
  return header, rows


def format_text_table(header: Sequence[str],
                      rows: Sequence[Sequence[str]]) -> str:
  widths = [max(len(r[i]) for r in [header, *rows])
            for i in range(len(header))]
  lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths))
           for r in [header, *rows]]
  return "\n".join(lines)


def format_markdown_table(header: Sequence[str],
                          rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(r) + " |" for r in rows]
  return "\n".join(lines)


def target_lines(results: Mapping[str, Any]) -> List[str]:
  """The benchmark's targets against the measured numbers."""
  ok = lambda passed: "ok" if passed else "MISSED"
  lines = []
  points = [p for p in results["points"] if "error" not in p]
  for point in points:
    if point["point"] == MAIN_POINT and "train" in point:
      speedup = (point["train"]["steps_per_s"] /
                 PYTORCH_REFERENCE_TRAIN_STEPS_PER_S)
      lines.append(
          f"train {MAIN_POINT}: {point['train']['steps_per_s']:.2f} steps/s "
          f"= {speedup:.2f}x the PyTorch reference's "
          f"{PYTORCH_REFERENCE_TRAIN_STEPS_PER_S} (target >= "
          f"{TARGET_TRAIN_SPEEDUP}x): {ok(speedup >= TARGET_TRAIN_SPEEDUP)}")
  for point in points:
    if "rollout" in point:
      rate = point["rollout"]["edge_steps_per_s"]
      lines.append(
          f"rollout {point['point']} ({point['rollout']['num_particles']} "
          f"particles): {_fmt(rate)} edge-steps/s (target >= "
          f"{_fmt(TARGET_ROLLOUT_EDGE_STEPS_PER_S)}): "
          f"{ok(rate >= TARGET_ROLLOUT_EDGE_STEPS_PER_S)}")
  for point in points:
    if "train" in point:
      rss = point["train_peak_rss_mib"]
      lines.append(f"train peak RSS {point['point']}: {rss:.0f} MiB (target "
                   f"< {TARGET_TRAIN_RSS_MIB}): "
                   f"{ok(rss < TARGET_TRAIN_RSS_MIB)}")
  curve = sorted((p["num_particles"], p["train"]["ms_per_step"], p["point"])
                 for p in points if "train" in p and p["dim"] == 2 and
                 p["num_particles"] >= 2000)
  if len(curve) > 1:
    (n0, t0, _), (n1, t1, _) = curve[0], curve[-1]
    lines.append(
        "train time per step, 2D: " + ", ".join(
            f"{n} particles {_plain(t)} ms" for n, t, _ in curve) +
        f"; {n1 / n0:.3g}x the particles take {t1 / t0:.3g}x the time "
        "(linear: equal)")
  return lines


def format_report(results: Mapping[str, Any]) -> str:
  """Machine, matmul peak, the summary (text and markdown) and profiles."""
  machine, matmul = results["machine"], results["matmul"]
  options = results["options"]
  lines = [
      f"Machine: {machine['cpu']} ({machine['cpu_count']} CPUs); GPUs: "
      f"{', '.join(machine['gpus']) or 'none'}; TensorFlow "
      f"{machine['tensorflow']} (TF32 {'on' if machine['tf32'] else 'off'})",
      f"fp32 matmul peak: {matmul['peak_gflops']:.1f} GFLOP/s" + "".join(
          f"; [{s['m']}x{s['k']}]x[{s['k']}x{s['n']}]: {s['gflops']:.1f}"
          for s in matmul["shapes"]) if matmul["peak_gflops"] else
      "fp32 matmul peak: not measured",
      "FLOPs: straightforward formulation, 2 x Linear MACs; train = "
      f"{TRAIN_FLOP_FACTOR} x forward. Medians over {options['repeats']} "
      "timed runs" + (f" (rollouts: {options['rollout_repeats']} of "
                      f"{options['rollout_steps']} steps)."
                      if options["rollout"] else ".")]
  if options.get("recompute_grad"):
    lines += ["Training with --recompute_grad (activations recomputed in the "
              "backward pass)."]
  lines += [""]
  for table in (report_rows(results), scaling_rows(results)):
    lines += [format_text_table(*table), "", format_markdown_table(*table),
              ""]
  lines += target_lines(results) + [""]
  for point in results["points"]:
    for name, ops in point.get("profile", {}).items():
      lines += [f"Profile {point['point']} {name} step (op self time):"]
      lines += [f"  {op['op']:<28} {op['ms_per_step']:9.2f} ms/step "
                f"{100 * op['fraction']:5.1f}%" for op in ops]
    if "error" in point:
      lines += [f"Point {point['point']} failed: {point['error']}"]
  return "\n".join(lines)


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
  flags.DEFINE_integer("seed", defaults.seed, "Workload and model seed.")
  flags.DEFINE_boolean("recompute_grad", defaults.recompute_grad,
                       "Train with --recompute_grad (less memory).")
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
  device_utils.configure_devices()
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
  results["command"] = " ".join(["python -m learning_to_simulate.benchmark"]
                                + list(sys.argv[1:]))
  if f.output_json:
    with open(f.output_json, "w") as out:
      json.dump(results, out, indent=1)
  print(format_report(results))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
