"""The benchmark's report: tables, targets and profiles, from its results."""

from typing import Any, List, Mapping, Optional, Sequence, Tuple

from learning_to_simulate.benchmarks.workload import TRAIN_FLOP_FACTOR

# Targets of the benchmark (issue 6), checked in the report. The train
# target is a ratio to this host's fp32 matmul peak measured in the same run
# (straightforward-formulation FLOPs): a figure from another host divides
# nothing here.
MAIN_POINT = "600x2"
TARGET_TRAIN_PERCENT_OF_PEAK = 50.0
TARGET_ROLLOUT_EDGE_STEPS_PER_S = 1e5
TARGET_TRAIN_RSS_MIB = 2048


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
      percent = point["train"].get("percent_of_peak")
      if percent is None:  # No matmul peak measured: no ratio.
        lines.append(f"train {MAIN_POINT}: "
                     f"{point['train']['steps_per_s']:.2f} steps/s (no "
                     "matmul peak measured: target not checked)")
        continue
      lines.append(
          f"train {MAIN_POINT}: {point['train']['steps_per_s']:.2f} steps/s "
          f"= {percent:.0f}% of this host's matmul peak (target >= "
          f"{TARGET_TRAIN_PERCENT_OF_PEAK:.0f}%): "
          f"{ok(percent >= TARGET_TRAIN_PERCENT_OF_PEAK)}")
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
  if options.get("jit_compile"):
    lines += ["With --jit_compile (XLA for the graph network)."]
  if options.get("mixed_precision"):
    lines += [f"With --mixed_precision={options['mixed_precision']} "
              "(matmuls in that dtype; FLOPs counted as float32's)."]
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
