"""Timing, memory and profiling helpers of the benchmarks.

Wall-clock medians after warm-up (`time_runs`), the fp32 matmul peak of this
machine (`measure_matmul_peak`), the process's peak RSS (`peak_rss_mib`),
child processes (`module_command`) and their scratch space (`work_directory`),
and op self times from a TensorFlow profiler trace (`profile_ops`).
"""

import collections
import contextlib
import functools
import glob
import os
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2


def sync(result) -> None:
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
    sync(fn())
  per_call = []
  for _ in range(repeats):
    calls = 0
    start = time.perf_counter()
    while True:
      sync(fn())
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


def rss_mib(ru_maxrss: int) -> float:
  """A `ru_maxrss` value in MiB (Linux reports KiB, macOS bytes)."""
  return ru_maxrss / (1024**2 if sys.platform == "darwin" else 1024)


def peak_rss_mib() -> float:
  """Peak resident set size of this process so far, MiB.

  On Linux `VmHWM` of `/proc/self/status`, the high-water mark of this
  program's own memory: `ru_maxrss` also keeps, across `exec`, the peak of
  the process it was forked from, so a benchmark started by a large process
  (a test runner's worker) reported that process's peak. Elsewhere
  `ru_maxrss`.
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024  # kB
  except OSError:
    pass
  return rss_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def module_command(module: str, args: Sequence[str]
                   ) -> Tuple[List[str], Dict[str, str]]:
  """Command and environment to run `python -m learning_to_simulate.X`.

  The child imports this checkout of the package (its root goes first on
  `PYTHONPATH`, whatever the working directory) and logs quietly.
  """
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      [root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  return [sys.executable, "-m", f"learning_to_simulate.{module}",
          *args], env


@contextlib.contextmanager
def work_directory(work_dir: Optional[str], prefix: str) -> Iterator[str]:
  """`work_dir`, or a temporary directory removed at the end (`--work_dir`
  of the benchmarks: given, its datasets and models are kept)."""
  path = work_dir or tempfile.mkdtemp(prefix=prefix)
  try:
    yield path
  finally:
    if not work_dir:
      shutil.rmtree(path, ignore_errors=True)


_OP_EVENT = re.compile(r"^[^:]+:([A-Za-z_][A-Za-z0-9_]*)$")


def _op_self_times(xspace) -> Tuple[Dict[str, float], Dict[str, int]]:
  """Picoseconds of self time, and executions, by op type in a profiler
  `XSpace`.

  GPU kernels (the `Stream` lines of the device planes, named by their
  `tf_op` stat) when there is a device plane, else the TensorFlow op events
  (`scope/name:Type`) of every host thread; an op event nested in another
  (a function call) is subtracted from its parent.
  """
  device_planes = [p for p in xspace.planes
                   if p.name.startswith("/device:") and "CPU" not in p.name]
  host_planes = [p for p in xspace.planes if p.name == "/host:CPU"]
  totals = collections.Counter()
  counts = collections.Counter()
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
        counts[match.group(1)] += 1
        stack.append((event.offset_ps + event.duration_ps, match.group(1)))
  return dict(totals), dict(counts)


def profile_ops(fn: Callable[[], Any], calls: int, steps_per_call: int = 1,
                top: int = 8) -> List[Dict[str, Any]]:
  """Splits the time of `calls` calls of a warm `fn` by TensorFlow op type.

  Args:
    fn: the step (or a rollout of `steps_per_call` steps).
    calls: calls traced.
    steps_per_call: model steps in one call.
    top: op types returned (0: all of them).

  Returns:
    The `top` op types by self time: `op`, `ms_per_step`, `fraction` of
    the time of all ops (threads run ops in parallel, so the sum can exceed
    the wall time) and `calls_per_step`, how many times an op of the type
    ran (unlike the times, fixed by the graph that runs).
  """
  with tempfile.TemporaryDirectory(prefix="benchmark_profile_") as log_dir:
    tf.profiler.experimental.start(log_dir)
    try:
      for _ in range(calls):
        sync(fn())
    finally:
      tf.profiler.experimental.stop()
    totals = collections.Counter()
    counts = collections.Counter()
    for path in glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"),
                          recursive=True):
      xspace = xplane_pb2.XSpace()
      with open(path, "rb") as f:
        xspace.ParseFromString(f.read())
      times, executions = _op_self_times(xspace)
      totals.update(times)
      counts.update(executions)
  total = sum(totals.values()) or 1
  steps = calls * steps_per_call
  return [{"op": op, "ms_per_step": ps / steps / 1e9, "fraction": ps / total,
           "calls_per_step": counts[op] / steps}
          for op, ps in totals.most_common(top or None)]
