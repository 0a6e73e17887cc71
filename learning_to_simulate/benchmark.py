# pylint: disable=line-too-long
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
in its own subprocess, so the number is that point's. With `--profile` the
train and inference steps are traced once and the time is split by op type.

All points (the numbers in BENCHMARKS.md), from the repository root:
`python -m learning_to_simulate.benchmark --output_json=/tmp/benchmark.json`

The main point only, or a smoke test:
`python -m learning_to_simulate.benchmark --points=600x2`
`python -m learning_to_simulate.benchmark --quick`
"""
# pylint: enable=line-too-long

import collections
import dataclasses
import glob
import json
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from learning_to_simulate import common
from learning_to_simulate import config as config_lib
from learning_to_simulate import connectivity_utils
from learning_to_simulate import device_utils
from learning_to_simulate import rollout as rollout_lib
from learning_to_simulate import synthetic
from learning_to_simulate import training

# WaterDrop's connectivity radius, in a unit box.
RADIUS = 0.015
# Expected particles (self included) in a ball of the radius at the lattice
# density: `pi r**2 / spacing**2` in 2D, `4/3 pi r**3 / spacing**3` in 3D.
# Particles near the edge of a block have fewer: 2 x 600 particles get ~17.3
# on average (20.8k edges), 2 x 1000 particles in 3D ~23.
NEIGHBOURS_PER_PARTICLE = {2: 17.5, 3: 30.0}
# Lattice jitter, in spacings.
JITTER = 0.1
# Free space around the lattice, on each side of the box.
MARGIN = 0.1
# Per-frame motion of the input frames: velocity and acceleration stds (also
# the metadata statistics). Small against the spacing (~6e-3), so the
# neighbour counts stay those of the lattice.
VEL_STD = 1e-4
ACC_STD = 1e-5
# Acceleration std of the rollout model (no training noise folded in): an
# untrained model would push the particles apart within a few dozen steps and
# later steps would see a thinner graph (cheaper than a real rollout); with
# this std and the inputs at rest the particles move less than 1e-3 radius in
# 300 steps, so every step sees the initial graph (checked: `final_edges`).
ROLLOUT_ACC_STD = 1e-9
# Backward pass ~ 2 x forward: a train step counts as 3 forward passes.
TRAIN_FLOP_FACTOR = 3
# Default benchmark points: `{particles per example}x{batch size}[x{dim}]`.
DEFAULT_POINTS = "600x2,2000x1,8000x1,32000x1,2000x1x3"
QUICK_POINTS = "60x2,40x1x3"


class Point(NamedTuple):
  """One workload size."""
  particles_per_example: int
  batch_size: int
  dim: int = 2

  @property
  def num_particles(self) -> int:
    return self.particles_per_example * self.batch_size

  @property
  def name(self) -> str:
    name = f"{self.particles_per_example}x{self.batch_size}"
    return name if self.dim == 2 else f"{name}x{self.dim}"


def parse_point(spec: str) -> Point:
  """`"600x2"` -> 2 examples of 600 particles in 2D; `"2000x1x3"`: 3D.

  Raises:
    ValueError: the spec is malformed or a size is out of range.
  """
  match = re.fullmatch(r"\s*(\d+)x(\d+)(?:x(\d+))?\s*", spec)
  if not match:
    raise ValueError(f"point {spec!r} is not PARTICLESxBATCH[xDIM], e.g. "
                     "600x2 or 2000x1x3")
  particles, batch_size = int(match.group(1)), int(match.group(2))
  dim = int(match.group(3) or 2)
  if particles < 1 or batch_size < 1:
    raise ValueError(f"point {spec!r}: particles and batch size must be >= 1")
  if dim not in NEIGHBOURS_PER_PARTICLE:
    raise ValueError(f"point {spec!r}: dim must be 2 or 3, got {dim}")
  return Point(particles, batch_size, dim)


def parse_points(specs: str) -> List[Point]:
  """Comma-separated `parse_point` specs."""
  points = [parse_point(spec) for spec in specs.split(",") if spec.strip()]
  if not points:
    raise ValueError("no benchmark points given")
  return points


# ---------------------------------------------------------------------------
# Workload.


class Workload(NamedTuple):
  """A train batch and the metadata of its synthetic dataset.

  `features`: `position` `[num_particles, INPUT_SEQUENCE_LENGTH, dim]`
  float32, `particle_type` `[num_particles]` int64 (all water),
  `n_particles_per_example` `[batch_size]` int32. `target`:
  `[num_particles, dim]` float32 next positions.
  """
  features: Dict[str, np.ndarray]
  target: np.ndarray
  metadata: Dict[str, Any]


def lattice_spacing(dim: int, radius: float = RADIUS) -> float:
  """Spacing with `NEIGHBOURS_PER_PARTICLE[dim]` particles per radius ball."""
  if dim not in NEIGHBOURS_PER_PARTICLE:
    raise ValueError(f"dim must be 2 or 3, got {dim}")
  ball = math.pi * radius**2 if dim == 2 else 4 / 3 * math.pi * radius**3
  return (ball / NEIGHBOURS_PER_PARTICLE[dim]) ** (1 / dim)


def make_workload(num_particles_per_example: int, batch_size: int,
                  dim: int = 2, seed: int = 0) -> Workload:
  """A seeded batch of water particles on jittered lattices.

  Each example is a lattice block (`synthetic.jittered_lattice`, spacing
  `lattice_spacing(dim)`) centred in the box `[0, extent]**dim`, extent >= 1,
  moving by a random walk with the `VEL_STD` / `ACC_STD` statistics over
  `INPUT_SEQUENCE_LENGTH + 1` frames.

  Args:
    num_particles_per_example: particles of one example.
    batch_size: examples in the batch.
    dim: 2 or 3.
    seed: seed of the lattice jitter and the motion.

  Returns:
    The batch and its metadata (WaterDrop radius, `bounds` `[dim, 2]`,
    velocity and acceleration statistics).
  """
  if num_particles_per_example < 1 or batch_size < 1:
    raise ValueError("num_particles_per_example and batch_size must be >= 1, "
                     f"got {num_particles_per_example} and {batch_size}")
  spacing = lattice_spacing(dim)
  side = math.ceil(num_particles_per_example ** (1 / dim) - 1e-9)
  extent = max(1.0, (side - 1) * spacing + 2 * MARGIN)
  origin = (extent - (side - 1) * spacing) / 2
  rng = np.random.default_rng(seed)
  num_frames = common.WINDOW_LENGTH
  examples = []
  for _ in range(batch_size):
    start = synthetic.jittered_lattice(num_particles_per_example, dim,
                                       spacing, rng, origin=origin,
                                       jitter=JITTER)
    velocity = rng.normal(0.0, VEL_STD, [1, num_particles_per_example, dim])
    acceleration = rng.normal(0.0, ACC_STD,
                              [num_frames - 2, num_particles_per_example,
                               dim])
    # x[t + 1] = x[t] + v[t], v[t + 1] = v[t] + a[t]  (dt = 1 frame).
    velocities = np.cumsum(np.concatenate([velocity, acceleration]), axis=0)
    displacement = np.concatenate(
        [np.zeros([1, num_particles_per_example, dim]),
         np.cumsum(velocities, axis=0)])
    examples.append(start[np.newaxis] + displacement)
  trajectory = np.concatenate(examples, axis=1).astype(np.float32)
  trajectory = np.transpose(trajectory, [1, 0, 2])  # [N, frames, dim]
  num_particles = num_particles_per_example * batch_size
  features = {
      "position": trajectory[:, :common.INPUT_SEQUENCE_LENGTH],
      "particle_type": np.full([num_particles], common.ParticleType.WATER,
                               np.int64),
      "n_particles_per_example": np.full([batch_size],
                                         num_particles_per_example, np.int32),
  }
  metadata = {
      "dim": dim,
      "bounds": [[0.0, extent]] * dim,
      "default_connectivity_radius": RADIUS,
      "sequence_length": num_frames - 1,
      "dt": 0.0025,
      "vel_mean": [0.0] * dim, "vel_std": [VEL_STD] * dim,
      "acc_mean": [0.0] * dim, "acc_std": [ACC_STD] * dim,
  }
  return Workload(features, trajectory[:, common.INPUT_SEQUENCE_LENGTH],
                  metadata)


def count_edges(positions: np.ndarray, n_particles_per_example: np.ndarray,
                radius: float = RADIUS) -> int:
  """Edges of the model's radius graph (self edges included), numpy reference.

  Args:
    positions: `[num_particles, dim]` positions.
    n_particles_per_example: `[batch_size]`.
    radius: connectivity radius.
  """
  _, _, n_edge = connectivity_utils.compute_connectivity_for_batch(
      positions, n_particles_per_example, radius, add_self_edges=True)
  return int(n_edge.sum())


def rollout_features(workload: Workload, num_steps: int
                     ) -> Dict[str, np.ndarray]:
  """The first example, at rest, as `rollout.rollout` inputs.

  Its last input frame is repeated `INPUT_SEQUENCE_LENGTH + num_steps`
  times: `position` `[particles_per_example, 6 + num_steps, dim]`.
  """
  count = int(workload.features["n_particles_per_example"][0])
  last = workload.features["position"][:count, -1:]
  return {
      "position": np.repeat(last, common.INPUT_SEQUENCE_LENGTH + num_steps,
                            axis=1),
      "particle_type": workload.features["particle_type"][:count],
      "n_particles_per_example": np.array([count], np.int32),
  }


# ---------------------------------------------------------------------------
# FLOP counting.


def mlp_macs(input_size: int, hidden_size: int, num_hidden_layers: int,
             output_size: int) -> int:
  """Multiply-accumulates of one MLP application (weights only)."""
  sizes = [input_size] + [hidden_size] * num_hidden_layers + [output_size]
  return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def model_flops(num_nodes: int, num_edges: int, dim: int,
                model_config: config_lib.ModelConfig,
                num_particle_types: int = common.NUM_PARTICLE_TYPES,
                embedding_size: int = common.PARTICLE_TYPE_EMBEDDING_SIZE,
                context_size: int = 0) -> int:
  """Forward FLOPs of the straightforward formulation: 2 x the Linear MACs.

  Encoder: a node MLP on `5 dim` velocities + `2 dim` boundary distances
  (+ the type embedding, + the context) and an edge MLP on `dim + 1`
  features, both to the latent size. Each message-passing step: an edge MLP
  on `[edge, receiver, sender]` latents (`3 latent`) per edge, a node MLP on
  `[aggregated edges, node]` (`2 latent`) per node. Decoder: latent -> `dim`
  per node. Biases, activations, LayerNorm, gathers and the aggregation are
  not counted; an implementation that saves work counts as faster.

  Args:
    num_nodes: particles in the batch.
    num_edges: edges in the batch, self edges included.
    dim: spatial dimension.
    model_config: latent and MLP sizes, message-passing steps.
    num_particle_types: the type embedding is an input when > 1.
    embedding_size: width of the type embedding.
    context_size: width of the global context appended to the nodes.

  Returns:
    FLOPs of one forward pass (a train step: `TRAIN_FLOP_FACTOR` x this).
  """
  latent = model_config.latent_size
  mlp = lambda n_in, n_out: mlp_macs(n_in, model_config.hidden_size,
                                     model_config.hidden_layers, n_out)
  velocities = (common.INPUT_SEQUENCE_LENGTH - 1) * dim
  node_input = velocities + 2 * dim + context_size
  if num_particle_types > 1:
    node_input += embedding_size
  encoder = num_nodes * mlp(node_input, latent) + num_edges * mlp(dim + 1,
                                                                  latent)
  processor = model_config.message_passing_steps * (
      num_edges * mlp(3 * latent, latent) + num_nodes * mlp(2 * latent,
                                                            latent))
  decoder = num_nodes * mlp(latent, dim)
  return 2 * (encoder + processor + decoder)


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
  shapes = []
  for m, k, n in sizes:
    a = tf.random.normal([m, k])
    b = tf.random.normal([k, n])
    matmul = tf.function(lambda a, b: tf.linalg.matmul(a, b)[0, 0])
    seconds = time_runs(lambda: matmul(a, b), repeats, warmup=2,  # pylint: disable=cell-var-from-loop
                        min_run_seconds=0.2)
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

  Device planes (GPU kernels, named by their `tf_op` stat) when there are
  any, else the host's TensorFlow thread-pool lines; an op event nested in
  another (a function call) is subtracted from its parent.
  """
  device_planes = [p for p in xspace.planes
                   if p.name.startswith("/device:") and "CPU" not in p.name]
  totals = collections.Counter()
  for plane in device_planes or [p for p in xspace.planes
                                 if p.name == "/host:CPU"]:
    tf_op_stat = [k for k, m in plane.stat_metadata.items()
                  if m.name == "tf_op"]
    for line in plane.lines:
      if not device_planes and not line.name.startswith("tf_"):
        continue
      stack = []  # [end_ps, op type]
      for event in sorted(line.events, key=lambda e: e.offset_ps):
        name = plane.event_metadata[event.metadata_id].name
        for stat in event.stats:
          if tf_op_stat and stat.metadata_id == tf_op_stat[0]:
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


def profile_ops(fn: Callable[[], Any], steps: int,
                top: int = 8) -> List[Dict[str, Any]]:
  """Splits the time of `steps` calls of a warm `fn` by TensorFlow op type.

  Returns:
    The `top` op types by self time: `op`, `ms_per_step` and `fraction` of
    the time of all ops (threads run ops in parallel, so the sum can exceed
    the wall time).
  """
  log_dir = tempfile.mkdtemp(prefix="benchmark_profile_")
  tf.profiler.experimental.start(log_dir)
  try:
    for _ in range(steps):
      _sync(fn())
  finally:
    tf.profiler.experimental.stop()
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  totals = collections.Counter()
  for path in glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"),
                        recursive=True):
    xspace = xplane_pb2.XSpace()
    with open(path, "rb") as f:
      xspace.ParseFromString(f.read())
    totals.update(_op_self_times(xspace))
  total = sum(totals.values()) or 1
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
  # Steps traced for the op profile (0: no profile).
  profile_steps: int = 0
  seed: int = 0

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
    ops of the train and inference steps.
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
  simulator = training.build_simulator(metadata, model_config)
  profiles = {}
  if options.train:
    optimizer = training.make_optimizer(config_lib.OptimizerConfig(),
                                        simulator)
    train_step = training.make_train_step(simulator, optimizer,
                                          model_config.noise_std, metadata)
    seconds = time_runs(lambda: train_step(batch), options.repeats,
                        options.warmup, options.min_run_seconds)
    result["train"] = _rate(seconds, TRAIN_FLOP_FACTOR * forward, peak_gflops)
    if options.profile_steps:
      profiles["train"] = profile_ops(lambda: train_step(batch),
                                      options.profile_steps)
  result["train_peak_rss_mib"] = peak_rss_mib()

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
                                         peak_gflops)
  if profiles:
    result["profile"] = profiles
  result["peak_rss_mib"] = peak_rss_mib()
  return result


def _measure_rollout(workload: Workload, options: Options,
                     model_config: config_lib.ModelConfig,
                     peak_gflops: Optional[float]) -> Dict[str, Any]:
  """Rolls out the first example of the workload (see `ROLLOUT_ACC_STD`)."""
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
  return [f"--repeats={options.repeats}", f"--warmup={options.warmup}",
          f"--min_run_seconds={options.min_run_seconds}",
          f"--rollout_steps={options.rollout_steps}",
          f"--rollout_repeats={options.rollout_repeats}",
          f"--rollout_max_particles={options.rollout_max_particles}",
          f"--{'' if options.train else 'no'}train",
          f"--{'' if options.inference else 'no'}inference",
          f"--{'' if options.rollout else 'no'}rollout",
          f"--profile_steps={options.profile_steps}",
          f"--seed={options.seed}"]


def run_benchmark(points: Sequence[Point], options: Options = Options(),
                  isolate: bool = True,
                  matmul: Optional[Sequence[Tuple[int, int, int]]] = None,
                  peak_gflops: Optional[float] = None) -> Dict[str, Any]:
  """Measures the matmul peak, then every point.

  Args:
    points: workload sizes.
    options: what to measure.
    isolate: run each point in its own subprocess (per-point peak RSS).
    matmul: `[m, k, n]` sizes for the peak (default: `matmul_sizes`).
    peak_gflops: a known peak, instead of measuring one.

  Returns:
    `machine`, `matmul` (with `peak_gflops`), `model`, `options` and
    `points` (the `run_point` dicts, or `{point, error}` for a failure).
  """
  options.validate()
  if peak_gflops:
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
        _fmt(train.get("ms_per_step")), _fmt(train.get("gflops")),
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
      row += [_fmt(rate["ms_per_step"]),
              _fmt(1e3 * rate["ms_per_step"] / particles)]
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


def format_report(results: Mapping[str, Any]) -> str:
  """Machine, matmul peak, the summary (text and markdown) and profiles."""
  machine = results["machine"]
  matmul = results["matmul"]
  lines = [
      f"Machine: {machine['cpu']} ({machine['cpu_count']} CPUs); GPUs: "
      f"{', '.join(machine['gpus']) or 'none'}; TensorFlow "
      f"{machine['tensorflow']} (TF32 {'on' if machine['tf32'] else 'off'})",
      f"fp32 matmul peak: {matmul['peak_gflops']:.1f} GFLOP/s" + "".join(
          f"; [{s['m']}x{s['k']}]x[{s['k']}x{s['n']}]: {s['gflops']:.1f}"
          for s in matmul["shapes"]) if matmul["peak_gflops"] else
      "fp32 matmul peak: not measured",
      "FLOPs: straightforward formulation, 2 x Linear MACs; train = "
      f"{TRAIN_FLOP_FACTOR} x forward. Medians of "
      f"{results['options']['repeats']} runs (rollouts: "
      f"{results['options']['rollout_repeats']} of "
      f"{results['options']['rollout_steps']} steps).", ""]
  for table in (report_rows(results), scaling_rows(results)):
    lines += [format_text_table(*table), "", format_markdown_table(*table),
              ""]
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
  flags.DEFINE_integer("profile_steps", 0,
                       "Trace this many train and inference steps per point "
                       "and report the top ops (0: no profile).")
  flags.DEFINE_integer("seed", defaults.seed, "Workload and model seed.")
  flags.DEFINE_boolean("isolate", True,
                       "Run every point in its own subprocess, so peak RSS "
                       "is per point.")
  flags.DEFINE_float("peak_gflops", 0.0,
                     "Use this matmul peak instead of measuring it.")
  flags.DEFINE_boolean("quick", False,
                       f"Smoke test: points {QUICK_POINTS}, 2 repeats, "
                       "5-step rollouts, a small matmul.")
  flags.DEFINE_string("output_json", None, "Also write the results here.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  f = flags.FLAGS
  options = Options(
      repeats=f.repeats, warmup=f.warmup, min_run_seconds=f.min_run_seconds,
      rollout_steps=f.rollout_steps, rollout_repeats=f.rollout_repeats,
      rollout_max_particles=f.rollout_max_particles, train=f.train,
      inference=f.inference, rollout=f.rollout,
      profile_steps=f.profile_steps, seed=f.seed)
  specs = f.points
  if f.quick:
    options = dataclasses.replace(
        options, repeats=2, warmup=1, min_run_seconds=0.0, rollout_steps=5,
        rollout_repeats=2)
    if not f["points"].present:
      specs = QUICK_POINTS
  device_utils.configure_devices()
  try:
    if f.point:
      point = parse_point(f.point)
      peak = f.peak_gflops or None
      results = {"machine": machine_info(),
                 "matmul": {"peak_gflops": peak or 0.0, "shapes": []},
                 "model": dataclasses.asdict(config_lib.ModelConfig()),
                 "options": dataclasses.asdict(options),
                 "points": [run_point(point, options, peak_gflops=peak)]}
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
