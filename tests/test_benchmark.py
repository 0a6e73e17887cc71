"""The benchmark's workload, FLOP count, timing helpers and a tiny run."""

import dataclasses
import json
import os
import subprocess
import time

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from learning_to_simulate.benchmarks import kernels
from learning_to_simulate.benchmarks import kinematic_edges
from learning_to_simulate.benchmarks import pipeline_memory
from learning_to_simulate.benchmarks import render_speed
from learning_to_simulate.benchmarks import report as report_lib
from learning_to_simulate.benchmarks import throughput
from learning_to_simulate.benchmarks import timing
from learning_to_simulate.benchmarks import workload as workload_lib
from learning_to_simulate.data import common
from learning_to_simulate.data import synthetic
from learning_to_simulate import reading_utils
from learning_to_simulate.training import config as config_lib

# latent 4, MLPs of one hidden layer of 5, 2 message-passing steps.
SMALL_MODEL = config_lib.ModelConfig(latent_size=4, hidden_size=5,
                                     hidden_layers=1, message_passing_steps=2)


class KinematicEdgesTest(tf.test.TestCase):

  def test_times_both_graphs_and_counts_their_edges(self):
    path = self.create_tempdir().full_path
    synthetic.write_tiny_dataset(path, num_particles=24, num_kinematic=12)
    result = kinematic_edges.measure(
        path, steps=1, rounds=1, model_config=config_lib.ModelConfig(
            latent_size=8, hidden_size=8, hidden_layers=1,
            message_passing_steps=1))
    self.assertGreater(result["seconds_per_step"]["all"], 0)
    self.assertGreater(result["seconds_per_step"]["kept"], 0)
    self.assertEqual(result["mean_kinematic"], 2 * 12)  # Batches of 2.
    # Every dropped edge joins two kinematic particles; at most all of
    # their ordered pairs go (self-edges stay).
    dropped = result["mean_edges"]["all"] - result["mean_edges"]["kept"]
    self.assertBetween(dropped, 1, 2 * 12 * 11)


class PointTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      ("600x2", workload_lib.Point(600, 2, 2), "600x2"),
      (" 2000x1x3", workload_lib.Point(2000, 1, 3), "2000x1x3"),
      ("8000x1x2", workload_lib.Point(8000, 1, 2), "8000x1"))
  def test_parse(self, spec, expected, name):
    point = workload_lib.parse_point(spec)
    self.assertEqual(point, expected)
    self.assertEqual(point.name, name)

  @parameterized.parameters(
      ("600", "PARTICLESxBATCH"), ("600x2x4", "dim must be 2 or 3"),
      ("0x2", "must be >= 1"), ("ax2", "PARTICLESxBATCH"))
  def test_parse_errors(self, spec, message):
    with self.assertRaisesRegex(ValueError, message):
      workload_lib.parse_point(spec)

  def test_parse_points(self):
    self.assertEqual(
        workload_lib.parse_points("600x2,2000x1x3,"),
        [workload_lib.Point(600, 2, 2), workload_lib.Point(2000, 1, 3)])
    with self.assertRaisesRegex(ValueError, "no benchmark points"):
      workload_lib.parse_points(" , ")


class FlopsTest(tf.test.TestCase):

  def test_small_case_by_hand(self):
    # 3 nodes, 4 edges in 2D: node input 5*2 velocities + 2*2 boundary
    # distances + 16 embedding = 30; edge input 2 + 1 = 3.
    encoder_nodes = 3 * (30 * 5 + 5 * 4)  # 510
    encoder_edges = 4 * (3 * 5 + 5 * 4)  # 140
    processor_edges = 4 * (12 * 5 + 5 * 4)  # 320 a step: input 3 * 4
    processor_nodes = 3 * (8 * 5 + 5 * 4)  # 180 a step: input 2 * 4
    decoder = 3 * (4 * 5 + 5 * 2)  # 90
    macs = (encoder_nodes + encoder_edges +
            2 * (processor_edges + processor_nodes) + decoder)
    self.assertEqual(macs, 1740)
    self.assertEqual(workload_lib.model_flops(3, 4, 2, SMALL_MODEL), 2 * 1740)

  def test_no_embedding_and_context(self):
    # Node input 5*3 + 2*3 + 2 context = 23 (no embedding with one type).
    with_context = workload_lib.model_flops(
        1, 0, 3, SMALL_MODEL, num_particle_types=1, context_size=2)
    macs = (23 * 5 + 5 * 4) + 2 * (8 * 5 + 5 * 4) + (4 * 5 + 5 * 3)
    self.assertEqual(with_context, 2 * macs)

  def test_default_model_is_dominated_by_edges(self):
    model = config_lib.ModelConfig()
    per_edge = (workload_lib.model_flops(1, 1001, 2, model) -
                workload_lib.model_flops(1, 1, 2, model)) / 1000
    # Encoder (3 -> 128 -> 128 -> 128) + 10 x (384 -> 128 -> 128 -> 128).
    self.assertEqual(per_edge, 2 * (
        (3 * 128 + 2 * 128**2) + 10 * (384 * 128 + 2 * 128**2)))


class WorkloadTest(tf.test.TestCase):

  def test_batch_layout(self):
    workload = workload_lib.make_workload(50, 3, dim=2, seed=1)
    features = workload.features
    self.assertEqual(features["position"].shape,
                     (150, common.INPUT_SEQUENCE_LENGTH, 2))
    self.assertEqual(features["position"].dtype, np.float32)
    self.assertAllEqual(features["n_particles_per_example"], [50, 50, 50])
    self.assertEqual(features["n_particles_per_example"].dtype, np.int32)
    self.assertAllEqual(features["particle_type"],
                        [common.ParticleType.WATER] * 150)
    self.assertEqual(features["particle_type"].dtype, np.int64)
    self.assertEqual(workload.target.shape, (150, 2))
    metadata = workload.metadata
    self.assertEqual(metadata["dim"], 2)
    self.assertEqual(metadata["default_connectivity_radius"],
                     workload_lib.RADIUS)
    # Inside the bounds, with at least a margin of one radius.
    lower, upper = np.array(metadata["bounds"]).T
    positions = np.concatenate(
        [features["position"], workload.target[:, np.newaxis]], axis=1)
    self.assertAllGreater(positions - lower, workload_lib.RADIUS)
    self.assertAllGreater(upper - positions, workload_lib.RADIUS)

  def test_seeded(self):
    first = workload_lib.make_workload(30, 2, seed=3)
    self.assertAllEqual(first.features["position"],
                        workload_lib.make_workload(30, 2, seed=3)
                        .features["position"])
    self.assertNotAllClose(first.features["position"],
                           workload_lib.make_workload(30, 2, seed=4)
                           .features["position"])

  def test_small_motion(self):
    position = workload_lib.make_workload(100, 1, seed=0).features["position"]
    velocity = np.diff(position, axis=1)
    self.assertAllClose(velocity.std(), workload_lib.VEL_STD, rtol=0.3)
    # ~5 VEL_STD over the five input velocities: a small part of a spacing.
    displacement = position[:, -1] - position[:, 0]
    self.assertLess(np.sqrt(np.mean(displacement**2)),
                    0.15 * workload_lib.lattice_spacing(2))

  def test_main_point_neighbours(self):
    # Self edges included: ~17 neighbours, about 21k edges for 2 x 600.
    workload = workload_lib.make_workload(600, 2, dim=2, seed=0)
    edges = workload_lib.count_edges(
        workload.features["position"][:, -1],
        workload.features["n_particles_per_example"])
    self.assertBetween(edges, 18000, 24000)
    self.assertBetween(edges / 1200, 15, 19)

  def test_3d_neighbours(self):
    workload = workload_lib.make_workload(1000, 1, dim=3, seed=0)
    edges = workload_lib.count_edges(workload.features["position"][:, -1],
                                     [1000])
    self.assertBetween(edges / 1000, 20, 30)

  def test_large_block_grows_the_box(self):
    workload = workload_lib.make_workload(32000, 1, dim=2, seed=0)
    upper = workload.metadata["bounds"][0][1]
    self.assertGreater(upper, 1.0)
    self.assertLess(workload.features["position"].max(), upper)

  def test_rollout_features_rest_on_the_first_example(self):
    workload = workload_lib.make_workload(20, 2, seed=0)
    features = workload_lib.rollout_features(workload, num_steps=4)
    self.assertEqual(features["position"].shape,
                     (20, common.INPUT_SEQUENCE_LENGTH + 4, 2))
    for frame in range(features["position"].shape[1]):
      self.assertAllEqual(features["position"][:, frame],
                          workload.features["position"][:20, -1])
    self.assertAllEqual(features["n_particles_per_example"], [20])
    self.assertEqual(features["particle_type"].shape, (20,))

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, "must be >= 1"):
      workload_lib.make_workload(0, 2)
    with self.assertRaisesRegex(ValueError, "dim must be 2 or 3"):
      workload_lib.lattice_spacing(4)


class TimingTest(tf.test.TestCase):

  def test_time_runs(self):
    calls = []
    seconds = timing.time_runs(lambda: calls.append(1) or tf.constant(1),
                               repeats=3, warmup=2, min_run_seconds=0.0)
    self.assertLen(seconds, 3)
    self.assertLen(calls, 5)
    with self.assertRaisesRegex(ValueError, "repeats must be >= 1"):
      timing.time_runs(lambda: None, repeats=0)
    # A call that sleeps 20 ms takes at least that (a sleep never ends
    # early, whatever else runs), and runs of at least 50 ms average it.
    naps = []
    seconds = timing.time_runs(lambda: naps.append(time.sleep(0.02)),
                               repeats=2, warmup=0, min_run_seconds=0.05)
    self.assertAllGreaterEqual(seconds, 0.02)
    self.assertGreaterEqual(len(naps), 2 * 3)  # 3 calls per run at least.

  def test_matmul_peak(self):
    peak = timing.measure_matmul_peak([(64, 32, 16), (128, 128, 128)],
                                      repeats=1)
    self.assertEqual([(s["m"], s["k"], s["n"]) for s in peak["shapes"]],
                     [(64, 32, 16), (128, 128, 128)])
    self.assertEqual(peak["peak_gflops"],
                     max(s["gflops"] for s in peak["shapes"]))

  def test_peak_rss(self):
    # In a fresh process (this one's peak may be past anything new): 1 GiB
    # written raises the peak by most of that (the peak before it, while
    # TensorFlow was imported, was above what stays resident after, by a
    # few hundred MiB at most).
    script = ("import json, numpy as np; "
              "from learning_to_simulate.benchmarks import timing; "
              "before = timing.peak_rss_mib(); "
              "block = np.ones(2**30 // 8); "
              "print(json.dumps([before, timing.peak_rss_mib()]))")
    command, env = timing.module_command("benchmarks.timing", [])
    result = subprocess.run([command[0], "-c", script], env=env,
                            capture_output=True, text=True, timeout=120,
                            check=True)
    before, after = json.loads(result.stdout.strip().splitlines()[-1])
    self.assertGreater(before, 10.0)
    self.assertBetween(after - before, 600.0, 1100.0)


class EndToEndTest(tf.test.TestCase):

  def test_quick_run(self):
    # The paper's model would take most of the time tracing: a small one.
    options = throughput.Options(repeats=1, warmup=1, min_run_seconds=0.0,
                                 rollout_steps=3, rollout_repeats=1,
                                 profile_steps=1)
    point = throughput.run_point(workload_lib.Point(12, 2, 2), options,
                                 model_config=SMALL_MODEL, peak_gflops=50.0)
    self.assertEqual(point["point"], "12x2")
    self.assertEqual(point["num_particles"], 24)
    self.assertGreater(point["num_edges"], 24)  # Self edges and neighbours.
    self.assertAllClose(point["forward_gflop"], workload_lib.model_flops(
        24, point["num_edges"], 2, SMALL_MODEL) / 1e9)
    for key in ("train", "inference", "rollout"):
      for rate in ("steps_per_s", "ms_per_step", "gflops",
                   "percent_of_peak"):
        self.assertGreater(point[key][rate], 0.0, msg=f"{key} {rate}")
    self.assertAllClose(point["train"]["gflops"], 3 * point["forward_gflop"]
                        * point["train"]["steps_per_s"])
    self.assertAllClose(point["inference"]["percent_of_peak"],
                        2 * point["inference"]["gflops"])  # Of 50 GFLOP/s.
    rollout = point["rollout"]
    self.assertEqual(rollout["num_particles"], 12)
    self.assertEqual(rollout["steps"], 3)
    self.assertAllClose(rollout["particle_steps_per_s"],
                        12 * rollout["steps_per_s"])
    self.assertAllClose(rollout["edge_steps_per_s"],
                        rollout["num_edges"] * rollout["steps_per_s"])
    # The particles stay at rest: the graph does not thin out.
    self.assertEqual(rollout["final_edges"], rollout["num_edges"])
    self.assertGreater(point["train_peak_rss_mib"], 0.0)
    self.assertGreaterEqual(point["peak_rss_mib"],
                            point["train_peak_rss_mib"])
    self.assertEqual(set(point["profile"]), {"train", "inference", "rollout"})
    self.assertIn("MatMul", " ".join(op["op"] for op in
                                     point["profile"]["train"]))
    results = {"machine": throughput.machine_info(),
               "matmul": timing.measure_matmul_peak([(64, 64, 64)], 1),
               "options": dataclasses.asdict(options), "points": [point]}
    self.assertGreater(results["matmul"]["peak_gflops"], 0.0)
    report = report_lib.format_report(results)
    self.assertIn("| 12x2 | 2 | 24 |", report)
    self.assertIn("train steps/s", report)
    self.assertIn("Profile 12x2 rollout step", report)

  def test_gpu_options_reach_the_model(self):
    # The XLA and bfloat16 figures of BENCHMARKS.md have a command: the
    # options change what the train step runs (its op profile). Op counts,
    # not times: which ops are the slowest varies from run to run (a float32
    # step's few integer casts entered the top 8 by time on one CI run).
    def train_ops(**options):
      point = throughput.run_point(
          workload_lib.Point(12, 2, 2),
          throughput.Options(repeats=1, warmup=0, min_run_seconds=0.0,
                             rollout=False, inference=False, profile_steps=1,
                             profile_top=0, **options),
          model_config=SMALL_MODEL, peak_gflops=50.0)
      return {op["op"]: op["calls_per_step"]
              for op in point["profile"]["train"]}

    matmuls = lambda ops: sum(n for op, n in ops.items() if "MatMul" in op)
    float32 = train_ops()
    bfloat16 = train_ops(mixed_precision="bfloat16")
    self.assertGreater(matmuls(float32), 0)
    self.assertEqual(matmuls(train_ops(jit_compile=True)), 0)  # Inside XLA.
    # Every dense layer casts its input and weights to bfloat16 and back.
    self.assertGreaterEqual(bfloat16.get("Cast", 0),
                            float32.get("Cast", 0) + matmuls(float32))
    with self.assertRaisesRegex(ValueError, "--mixed_precision must be"):
      throughput.Options(mixed_precision="int8").validate()
    self.assertIn("With --jit_compile", report_lib.format_report({
        "machine": {"cpu": "cpu", "cpu_count": 1, "gpus": [],
                    "tensorflow": "x", "tf32": False},
        "matmul": {"peak_gflops": 0.0, "shapes": []},
        "options": dataclasses.asdict(throughput.Options(jit_compile=True)),
        "points": []}))

  def test_point_in_subprocess(self):
    # The default run isolates points: the CLI runs one and writes JSON.
    options = throughput.Options(repeats=1, warmup=0, min_run_seconds=0.0,
                                 rollout=False, inference=False,
                                 profile_steps=0)
    point = throughput.run_point_in_subprocess(workload_lib.Point(10, 1, 2),
                                               options, peak_gflops=100.0)
    self.assertNotIn("error", point)
    self.assertEqual(point["point"], "10x1")
    self.assertGreater(point["train"]["steps_per_s"], 0.0)
    self.assertAllClose(point["train"]["percent_of_peak"],
                        point["train"]["gflops"])  # Of 100 GFLOP/s.
    self.assertNotIn("inference", point)
    self.assertNotIn("rollout", point)
    self.assertNotIn("profile", point)

  def test_targets(self):
    def point(name, particles, train_ms, rss, rollout=None, percent=61.0):
      result = {"point": name, "dim": 2, "num_particles": particles,
                "train": {"steps_per_s": 1e3 / train_ms,
                          "ms_per_step": train_ms,
                          "percent_of_peak": percent},
                "train_peak_rss_mib": rss}
      if rollout:
        result["rollout"] = {"num_particles": particles // 2,
                             "edge_steps_per_s": rollout}
      return result

    lines = report_lib.target_lines({"points": [
        point("600x2", 1200, 500.0, 1500.0, rollout=2e5),
        point("2000x1", 2000, 800.0, 1600.0, rollout=5e4),
        point("8000x1", 8000, 3600.0, 2100.0),
        {"point": "32000x1", "error": "killed"}]})
    self.assertEqual(lines, [
        "train 600x2: 2.00 steps/s = 61% of this host's matmul peak (target "
        ">= 50%): ok",
        "rollout 600x2 (600 particles): 200k edge-steps/s (target >= 100k): "
        "ok",
        "rollout 2000x1 (1000 particles): 50k edge-steps/s (target >= 100k): "
        "MISSED",
        "train peak RSS 600x2: 1500 MiB (target < 2048): ok",
        "train peak RSS 2000x1: 1600 MiB (target < 2048): ok",
        "train peak RSS 8000x1: 2100 MiB (target < 2048): MISSED",
        "train time per step, 2D: 2000 particles 800 ms, 8000 particles "
        "3600 ms; 4x the particles take 4.5x the time (linear: equal)"])
    slow = report_lib.target_lines({"points": [
        point("600x2", 1200, 500.0, 1500.0, percent=30.0)]})
    self.assertEqual(slow[0], "train 600x2: 2.00 steps/s = 30% of this "
                     "host's matmul peak (target >= 50%): MISSED")

  def test_report_marks_failures(self):
    results = {
        "machine": {"cpu": "cpu", "cpu_count": 1, "gpus": [],
                    "tensorflow": "x", "tf32": False},
        "matmul": {"peak_gflops": 0.0, "shapes": []},
        "options": dataclasses.asdict(throughput.Options()),
        "points": [{"point": "600x2", "error": "out of memory"}]}
    report = report_lib.format_report(results)
    self.assertIn("| 600x2 | failed |", report)
    self.assertIn("Point 600x2 failed: out of memory", report)
    self.assertIn("not measured", report)


if __name__ == "__main__":
  tf.test.main()


class KernelsBenchmarkTest(tf.test.TestCase):

  def test_tiny_run(self):
    results = kernels.run(kernels.Options(rows=64, size=8, edges=50, nodes=9,
                                          repeats=1, warmup=1,
                                          min_run_seconds=0.0))
    self.assertEqual(list(results["kernels"]), [
        "layer_norm forward", "layer_norm forward + backward",
        "sum onto sorted receivers"])
    for kernel in results["kernels"].values():
      self.assertAllClose(kernel["speedup"],
                          kernel["baseline_ms"] / kernel["ours_ms"])
    table = kernels.format_results(results)
    self.assertIn("LayerNorm on [64, 8]; sums of [50, 8] onto 9 nodes", table)
    self.assertRegex(table, r"\| layer_norm forward \| [0-9.e-]+ \| "
                     r"[0-9.e-]+ \| [0-9.]+x \|")


class RenderSpeedTest(tf.test.TestCase):

  def test_every_particle_moves_every_frame_inside_the_bounds(self):
    rollout = render_speed.synthetic_rollout(num_frames=30, num_particles=7)
    frames = np.concatenate([rollout["initial_positions"],
                             rollout["predicted_rollout"]])
    self.assertEqual(frames.shape, (30, 7, 2))
    self.assertEqual(rollout["ground_truth_rollout"].shape, (24, 7, 2))
    self.assertTrue(np.all(np.any(np.diff(frames, axis=0) != 0, axis=-1)))
    self.assertTrue(np.all((frames >= 0.1) & (frames <= 0.9)))

  def test_renders_a_gif_and_reports_its_size(self):
    result = render_speed.measure(num_frames=12, num_particles=5,
                                  step_stride=3, formats=("gif",))
    self.assertEqual(result["rendered_frames"], 4)
    gif = result["formats"]["gif"]
    self.assertGreater(gif["megabytes"], 0.001)  # A file of 4 frames.
    # The render process imports TensorFlow (hundreds of MiB).
    self.assertBetween(gif["peak_rss_gib"], 0.1, 8.0)


class PipelineBenchmarkTest(tf.test.TestCase):

  def test_datasets_differ_only_in_train_trajectories(self):
    root = self.get_temp_dir()
    sizes, first_positions = {}, []
    for count in (1, 3):
      path = os.path.join(root, f"data_{count}")
      sizes[count] = pipeline_memory.write_dataset(path, count, 20, 9)
      metadata = reading_utils.read_metadata(path)
      self.assertEqual(metadata["sequence_length"], 8)
      trajectories = list(reading_utils.get_rollout_dataset(
          path, "train", metadata))
      self.assertLen(trajectories, count)
      self.assertEqual(trajectories[0]["position"].shape[0], 20)
      first_positions.append(trajectories[0]["position"])
    # Same seed: the first trajectory is the same in both sizes.
    self.assertAllEqual(first_positions[0], first_positions[1])
    self.assertBetween(sizes[3] / sizes[1], 2.9, 3.1)

  def test_oscillating_trajectory_keeps_its_neighbours(self):
    rng = np.random.default_rng(0)
    positions = pipeline_memory.oscillating_trajectory(300, 120, rng)
    self.assertEqual(positions.shape, (120, 300, 2))
    n_node = np.array([300])
    counts = [workload_lib.count_edges(positions[frame], n_node)
              for frame in (0, 37, 119)]
    self.assertBetween(counts[0] / 300, 14, 19)  # ~17 with the block edges.
    self.assertBetween(max(counts) / min(counts), 1.0, 1.02)
    velocity = np.diff(positions, axis=0)
    self.assertBetween(float(velocity.std()), 3e-5, 3e-4)

  def test_failed_training_reports_its_error(self):
    missing = os.path.join(self.get_temp_dir(), "no_such_dataset")
    with self.assertRaisesRegex(RuntimeError, "no_such_dataset"):
      pipeline_memory.train_and_measure(
          missing, os.path.join(self.get_temp_dir(), "model"), 1, 1)

  def test_format_table(self):
    table = pipeline_memory.format_table([
        {"train_trajectories": 8, "train_file_mib": 18.31, "num_steps": 30,
         "peak_rss_mib": 1402.4, "seconds": 41.2}])
    self.assertEqual(table.splitlines()[-1], "| 8 | 18.3 | 30 | 1402 | 41 |")
