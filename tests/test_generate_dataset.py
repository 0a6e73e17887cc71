"""Tests for the MLS-MPM dataset generator and the bundled sample dataset."""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from learning_to_simulate import reading_utils
from learning_to_simulate.benchmarks import solver_speed
from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer
from learning_to_simulate.generation import generate_dataset
from learning_to_simulate.generation import mpm
from learning_to_simulate.generation import scenes
from learning_to_simulate.model import build
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_PATH = os.path.join(REPO_ROOT, "learning_to_simulate", "data",
                           "water_drop_sample")
# A tiny water_drop dataset: a coarse grid and a few frames.
TINY = dict(scene="water_drop", num_train=2, num_valid=1, num_test=1,
            num_frames=10, seed=3, resolution=12)
TINY_COUNTS = {"train": 2, "valid": 1, "test": 1}
SAMPLE_COUNTS = {"train": 22, "valid": 2, "test": 2}
SAMPLE_SEQUENCE_LENGTH = 200
SPLIT_FILES = ("metadata.json", "train.tfrecord", "valid.tfrecord",
               "test.tfrecord")


def taichi_available() -> bool:
  try:
    mpm.import_taichi()
  except mpm.TaichiNotFoundError:
    return False
  return True


def checksum_mismatches(path):
  """File name -> None if it matches its line in `path`'s SHA256SUMS, else
  its actual SHA-256, for every file that SHA256SUMS lists."""
  with open(os.path.join(path, "SHA256SUMS")) as f:
    sums = dict(reversed(line.split()) for line in f if line.strip())
  result = {}
  for name, digest in sums.items():
    actual = hashlib.sha256(file_bytes(os.path.join(path, name))).hexdigest()
    result[name] = None if actual == digest else actual
  return result


def read_metadata(path):
  with open(os.path.join(path, "metadata.json")) as f:
    return json.load(f)


def read_split(path, split):
  """`[(particle_types [N], positions [T, N, dim])]` of one split, numpy.

  Parses the records independently of the package's reader, checking the
  DeepMind layout on the way: context `key` (the record index) and
  `particle_type` (raw int64 bytes), feature list `position` (one raw
  float32 `[N, dim]` frame per value).
  """
  dim = read_metadata(path)["dim"]
  trajectories = []
  records = tf.data.TFRecordDataset(os.path.join(path, f"{split}.tfrecord"))
  for index, record in enumerate(records):
    example = tf.train.SequenceExample.FromString(record.numpy())
    context = example.context.feature
    if set(context) != {"key", "particle_type"}:
      raise AssertionError(f"context features {set(context)}")
    if list(context["key"].int64_list.value) != [index]:
      raise AssertionError(f"record {index} has key {context['key']}")
    particle_types = np.frombuffer(
        context["particle_type"].bytes_list.value[0], dtype=np.int64)
    feature_lists = example.feature_lists.feature_list
    if set(feature_lists) != {"position"}:
      raise AssertionError(f"feature lists {set(feature_lists)}")
    positions = np.stack([
        np.frombuffer(frame.bytes_list.value[0], dtype=np.float32).reshape(
            len(particle_types), dim)
        for frame in feature_lists["position"].feature])
    trajectories.append((particle_types, positions))
  return trajectories


def parse_in_graph(record, dim):
  """The same record decoded with `tf.io` ops: `(key, types, positions)`."""
  context, features = tf.io.parse_single_sequence_example(
      record,
      context_features={
          "key": tf.io.FixedLenFeature([], tf.int64),
          "particle_type": tf.io.FixedLenFeature([], tf.string),
      },
      sequence_features={
          "position": tf.io.FixedLenSequenceFeature([], tf.string),
      })
  particle_types = tf.io.decode_raw(context["particle_type"], tf.int64)
  positions = tf.io.decode_raw(features["position"], tf.float32)
  positions = tf.reshape(positions, [tf.shape(positions)[0], -1, dim])
  return context["key"], particle_types, positions


def file_bytes(path):
  with open(path, "rb") as f:
    return f.read()


def run_cli(args, preamble=""):
  """Runs the CLI in a subprocess; returns `(returncode, stderr)`."""
  code = (f"import runpy, sys\n{preamble}\n"
          f"sys.argv = ['generate_dataset'] + {args!r}\n"
          "runpy.run_module('learning_to_simulate.generation.generate_dataset', "
          "run_name='__main__')\n")
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True,
                          timeout=120, check=False)
  return result.returncode, result.stderr


def _untrained_model(data_path: str, model_path: str) -> None:
  """A small model directory with a checkpoint of untrained weights."""
  metadata = reading_utils.read_metadata(data_path)
  model = config_lib.ModelConfig(latent_size=8, hidden_size=8,
                                 message_passing_steps=1)
  simulator = build.build_simulator(metadata, model)
  config_lib.save(model_path, model, config_lib.OptimizerConfig())
  manager = checkpoints.make_manager(model_path, simulator)
  manager.save(checkpoint_number=1)


class GenerateDatasetTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.path = os.path.join(cls.tmp, "tiny")
    cls.metadata = None
    if taichi_available():
      cls.metadata = generate_dataset.generate_dataset(output_path=cls.path,
                                                       **TINY)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp, ignore_errors=True)
    super().tearDownClass()

  def setUp(self):
    super().setUp()
    np.random.seed(0)

  def require_taichi(self):
    if self.metadata is None:
      self.skipTest("needs Taichi (pip install taichi==1.7.4)")

  def test_format_reads_back(self):
    self.require_taichi()
    metadata = read_metadata(self.path)
    self.assertEqual(metadata, self.metadata)
    self.assertCountEqual(
        metadata, ["bounds", "sequence_length", "default_connectivity_radius",
                   "dim", "dt", "vel_mean", "vel_std", "acc_mean", "acc_std",
                   "external_acceleration"])
    self.assertEqual(metadata["sequence_length"], TINY["num_frames"] - 1)
    # Gravity, 9.8 down y, in positions per frame squared.
    self.assertAllClose(metadata["external_acceleration"],
                        [0.0, -9.8 * 0.0025**2])
    self.assertEqual(metadata["dim"], 2)
    self.assertEqual(metadata["bounds"], [[0.1, 0.9], [0.1, 0.9]])
    self.assertEqual(metadata["dt"], mpm.FRAME_DT)
    self.assertAllClose(metadata["default_connectivity_radius"],
                        2.5 / (TINY["resolution"] * mpm.PARTICLES_PER_CELL))
    for split, count in TINY_COUNTS.items():
      trajectories = read_split(self.path, split)
      self.assertLen(trajectories, count)
      for particle_types, positions in trajectories:
        self.assertEqual(particle_types.dtype, np.int64)
        self.assertEqual(positions.dtype, np.float32)
        self.assertEqual(positions.shape,
                         (TINY["num_frames"], particle_types.shape[0], 2))
        self.assertTrue(np.all(particle_types == common.ParticleType.WATER))

  @parameterized.parameters("train", "valid", "test")
  def test_records_decode_in_graph(self, split):
    self.require_taichi()
    records = tf.data.TFRecordDataset(
        os.path.join(self.path, f"{split}.tfrecord"))
    expected = read_split(self.path, split)
    self.assertLen(expected, TINY_COUNTS[split])
    for index, record in enumerate(records):
      key, particle_types, positions = parse_in_graph(record, 2)
      self.assertEqual(key, index)
      self.assertEqual(particle_types.dtype, tf.int64)
      self.assertEqual(positions.dtype, tf.float32)
      self.assertEqual(positions.shape[0], self.metadata["sequence_length"] + 1)
      self.assertAllEqual(particle_types, expected[index][0])
      self.assertAllEqual(positions, expected[index][1])

  def test_statistics_are_those_of_the_train_split(self):
    self.require_taichi()
    train = read_split(self.path, "train")
    velocities = np.concatenate(
        [np.diff(p.astype(np.float64), axis=0).reshape(-1, 2)
         for _, p in train])
    accelerations = np.concatenate(
        [np.diff(p.astype(np.float64), n=2, axis=0).reshape(-1, 2)
         for _, p in train])
    self.assertAllClose(self.metadata["vel_mean"], velocities.mean(0))
    self.assertAllClose(self.metadata["vel_std"], velocities.std(0))
    self.assertAllClose(self.metadata["acc_mean"], accelerations.mean(0))
    self.assertAllClose(self.metadata["acc_std"], accelerations.std(0))
    expected = dataset_writer.compute_statistics(
        [dataset_writer.Trajectory(p, t) for t, p in train])
    for key, value in expected.items():
      self.assertAllClose(self.metadata[key], value)

  def test_particles_stay_inside_bounds_and_fall(self):
    self.require_taichi()
    lo, hi = mpm.BOUNDS
    for split in TINY_COUNTS:
      for _, positions in read_split(self.path, split):
        self.assertAllInRange(positions, np.float32(lo), np.float32(hi))
    # Gravity: by the last frame, the fluid has accelerated downwards.
    _, positions = read_split(self.path, "train")[0]
    velocity = np.diff(positions, axis=0).mean(axis=1)[:, 1]
    self.assertLess(velocity[-1], velocity[0])

  def test_same_seed_same_bytes_other_seed_other_bytes(self):
    self.require_taichi()
    again = os.path.join(self.tmp, "again")
    generate_dataset.generate_dataset(output_path=again, **TINY)
    for name in SPLIT_FILES:
      self.assertEqual(file_bytes(os.path.join(self.path, name)),
                       file_bytes(os.path.join(again, name)), name)
    other = os.path.join(self.tmp, "other")
    generate_dataset.generate_dataset(output_path=other,
                                      **dict(TINY, seed=TINY["seed"] + 1))
    self.assertNotEqual(file_bytes(os.path.join(self.path, "train.tfrecord")),
                        file_bytes(os.path.join(other, "train.tfrecord")))

  def test_solver_speed_resimulates_the_test_split(self):
    self.require_taichi()
    model_path = os.path.join(self.get_temp_dir(), "untrained")
    _untrained_model(self.path, model_path)
    counts = dict(scene=TINY["scene"], seed=TINY["seed"],
                  num_train=TINY["num_train"], num_valid=TINY["num_valid"],
                  resolution=TINY["resolution"])
    result = solver_speed.measure(model_path, self.path, num_steps=2,
                                  **counts)
    self.assertEqual(result["num_steps"], 2)
    (row,) = result["per_trajectory"]  # The one test trajectory.
    # The same initial state, solver and frames: the same positions.
    self.assertEqual(row["resimulated_max_difference"], 0.0)
    self.assertGreater(row["learned_seconds"], 0)
    self.assertGreater(row["solver_seconds"], 0)
    self.assertAllClose(result["learned_over_solver"],
                        row["learned_seconds"] / row["solver_seconds"])
    self.assertIn("the learned rollout takes",
                  solver_speed.format_result(result))
    bare = solver_speed.measure(model_path, self.path, num_steps=2,
                                bare=True, **counts)
    self.assertEqual((bare["clamp_to_bounds"], bare["relaxation_steps"]),
                     (False, 0))
    # Another command's test split is another trajectory (here, another
    # particle count).
    with self.assertRaisesRegex(ValueError, "has shape .* the resimulated "
                                "one .* is not the command that made"):
      solver_speed.measure(model_path, self.path, num_steps=2,
                           **dict(counts, num_train=1))

  def test_cli_reproduces_the_library_in_another_process(self):
    self.require_taichi()
    output_path = os.path.join(self.get_temp_dir(), "cli_tiny")
    args = [f"--output_path={output_path}"] + [
        f"--{key}={value}" for key, value in TINY.items()]
    returncode, stderr = run_cli(args)
    self.assertEqual(returncode, 0, stderr)
    self.assertIn("trajectory 4/4 (test)", stderr)
    self.assertIn("mean neighbour count", stderr)
    self.assertEqual(file_bytes(os.path.join(self.path, "metadata.json")),
                     file_bytes(os.path.join(output_path, "metadata.json")))
    # Single-threaded Taichi: bit-identical trajectories across processes.
    for split in TINY_COUNTS:
      for (particle_types, positions), (cli_types, cli_positions) in zip(
          read_split(self.path, split), read_split(output_path, split)):
        self.assertAllEqual(particle_types, cli_types)
        self.assertAllEqual(positions, cli_positions)

  @parameterized.named_parameters(
      ("unknown_scene", dict(scene="lava"), r"--scene must be one of .*'lava'"),
      ("few_frames", dict(num_frames=7), r"--num_frames must be >= 8"),
      ("no_train", dict(num_train=0), r"--num_train must be >= 1"),
      ("negative_valid", dict(num_valid=-1), r"--num_valid must be >= 0"),
      ("negative_test", dict(num_test=-2), r"--num_test must be >= 0"),
      ("negative_seed", dict(seed=-1), r"--seed must be >= 0, got -1"),
      ("coarse_grid", dict(resolution=4), r"--resolution must be >= 8"),
      ("unstable_substeps", dict(substeps=1),
       r"--substeps must be >= \d+ at this resolution \(CFL limit\), got 1"),
      ("bad_arch", dict(arch="tpu"), r"--arch must be one of"),
  )
  def test_bad_arguments(self, overrides, message):
    output_path = os.path.join(self.get_temp_dir(), "bad")
    with self.assertRaisesRegex(ValueError, message):
      generate_dataset.generate_dataset(
          output_path=output_path, **dict(TINY, **overrides))
    self.assertFalse(os.path.exists(output_path))

  def test_output_path_is_a_file(self):
    path = os.path.join(self.get_temp_dir(), "a_file")
    with open(path, "w") as f:
      f.write("not a dataset")
    with self.assertRaisesRegex(ValueError,
                                r"--output_path .* is an existing file"):
      generate_dataset.generate_dataset(output_path=path, **TINY)

  def test_missing_taichi(self):
    output_path = os.path.join(self.get_temp_dir(), "no_taichi")
    with mock.patch.dict(sys.modules, {"taichi": None}):
      with self.assertRaisesRegex(mpm.TaichiNotFoundError,
                                  re.escape(mpm.MISSING_TAICHI_MESSAGE)):
        generate_dataset.generate_dataset(output_path=output_path, **TINY)
    self.assertFalse(os.path.exists(output_path))

  def test_taichi_without_its_system_library(self):
    # A bare system (Debian minbase) has Taichi's wheel but not libX11.
    error = ImportError("libX11.so.6: cannot open shared object file: No "
                        "such file or directory")
    real_import = __import__

    def failing_import(name, *args, **kwargs):
      if name == "taichi":
        raise error
      return real_import(name, *args, **kwargs)

    with mock.patch("builtins.__import__", failing_import):
      with self.assertRaisesRegex(
          mpm.TaichiNotFoundError,
          r"^Taichi is installed but cannot load libX11\.so\.6, .*"
          r"apt-get install libx11-6\)$"):
        mpm.import_taichi()

  def test_cli_errors_are_one_line(self):
    output_path = os.path.join(self.get_temp_dir(), "cli")
    cli_flags = types.SimpleNamespace(
        output_path=output_path, substeps=None, arch="cpu", wall_layers=0,
        **dict(TINY, num_frames=3))
    with mock.patch.object(generate_dataset, "FLAGS", cli_flags):
      with self.assertRaises(SystemExit) as raised:
        generate_dataset.main(["generate_dataset"])
    self.assertEqual(raised.exception.code,
                     "generate_dataset: error: --num_frames must be >= 8 (6 "
                     "input frames and 2 targets), got 3")
    cli_flags.num_frames, cli_flags.wall_layers = 8, -1
    with mock.patch.object(generate_dataset, "FLAGS", cli_flags):
      with self.assertRaises(SystemExit) as raised:
        generate_dataset.main(["generate_dataset"])
    self.assertEqual(raised.exception.code,
                     "generate_dataset: error: --wall_layers must be >= 0, "
                     "got -1")
    returncode, stderr = run_cli([f"--output_path={output_path}"],
                                 preamble="sys.modules['taichi'] = None")
    self.assertNotEqual(returncode, 0)
    self.assertEqual(stderr.strip().splitlines()[-1],
                     "generate_dataset needs Taichi: pip install "
                     "'learning_to_simulate[datagen]' (or pip install "
                     "taichi==1.7.4)")
    self.assertFalse(os.path.exists(output_path))

  @parameterized.parameters("sand", "goop", "multi_material", "water_ramps",
                            "water_3d")
  def test_scene(self, scene):
    self.require_taichi()
    path = os.path.join(self.get_temp_dir(), scene)
    metadata = generate_dataset.generate_dataset(
        scene, path, num_train=1, num_valid=0, num_test=0, num_frames=8,
        seed=1, resolution=8 if scene == "water_3d" else 12)
    expected_dim = 3 if scene == "water_3d" else 2
    self.assertEqual(metadata["dim"], expected_dim)
    (particle_types, positions), = read_split(path, "train")
    self.assertEqual(positions.shape[-1], expected_dim)
    self.assertAllInRange(positions, np.float32(0.1), np.float32(0.9))
    expected_types = {
        "sand": {common.ParticleType.SAND},
        "goop": {common.ParticleType.GOOP},
        "water_ramps": {common.ParticleType.WATER,
                        common.ParticleType.KINEMATIC},
        "water_3d": {common.ParticleType.WATER},
    }
    if scene == "multi_material":
      self.assertContainsSubset(set(particle_types.tolist()),
                                {int(t) for t in mpm.SIMULATED_TYPES})
    else:
      self.assertEqual(set(particle_types.tolist()), expected_types[scene])
    kinematic = particle_types == common.ParticleType.KINEMATIC
    self.assertAllEqual(positions[:, kinematic],
                        np.broadcast_to(positions[:1, kinematic],
                                        positions[:, kinematic].shape))

  def test_wall_particles(self):
    spacing = mpm.particle_spacing(12)
    lo, hi = mpm.BOUNDS
    # 0.8 / (1/24) = 19.2 spacings: 20 evenly spaced points along a wall.
    along = 20
    for dim, layers in ((2, 1), (2, 2), (3, 1)):
      walls = scenes.wall_particles(dim, 12, layers)
      side = along + 2 * layers
      self.assertEqual(walls.shape, (side**dim - along**dim, dim))
      self.assertLen(np.unique(walls, axis=0), len(walls))
      # Outside the box, within `layers` spacings of it.
      outside = np.maximum(lo - walls, walls - hi).max(axis=-1)
      self.assertAllInRange(outside, 0.99 * spacing, layers * spacing * 1.01)
      # The nearest neighbour of each, a spacing away (within 2%).
      nearest = np.sort(np.linalg.norm(walls[:, None] - walls[None], axis=-1),
                        axis=1)[:, 1]
      self.assertAllInRange(nearest, 0.98 * spacing, 1.02 * spacing)
    self.assertEqual(scenes.wall_particles(2, 12, 0).shape, (0, 2))

  def test_a_dataset_with_walls_moves_as_without(self):
    self.require_taichi()
    path = os.path.join(self.get_temp_dir(), "walls")
    metadata = generate_dataset.generate_dataset(output_path=path,
                                                 **dict(TINY, wall_layers=2))
    self.assertEqual(metadata["wall_layers"], 2)
    self.assertNotIn("wall_layers", self.metadata)
    walls = scenes.wall_particles(2, TINY["resolution"], 2)
    for split in TINY_COUNTS:
      for (types, positions), (plain_types, plain) in zip(
          read_split(path, split), read_split(self.path, split)):
        moving = len(plain_types)
        # The material is the one simulated without walls, bit for bit.
        self.assertAllEqual(types[:moving], plain_types)
        self.assertAllEqual(positions[:, :moving], plain)
        self.assertAllEqual(types[moving:], np.full(
            len(walls), common.ParticleType.KINEMATIC))
        self.assertAllEqual(positions[:, moving:],
                            np.broadcast_to(walls, (len(positions),) +
                                            walls.shape))
    with self.assertRaisesRegex(ValueError, "^--wall_layers must be >= 0"):
      generate_dataset.generate_dataset(output_path=path + "_bad",
                                        **dict(TINY, wall_layers=-1))

  def test_mean_neighbour_count(self):
    # Ends have one neighbour within radius 1 (inclusive), the middle two.
    line = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    self.assertAllClose(scenes.mean_neighbour_count(line, 1.0), 4.0 / 3.0)
    self.assertAllClose(scenes.mean_neighbour_count(line, 0.5), 0.0)
    # Over frames: the line, then the same points collapsed to one place.
    trajectory = dataset_writer.Trajectory(
        np.stack([line, np.zeros_like(line)]).astype(np.float32),
        np.full(3, int(common.ParticleType.WATER)))
    self.assertAllClose(
        generate_dataset.mean_neighbour_count([trajectory], 1.0),
        (4.0 / 3.0 + 2.0) / 2)

  @parameterized.parameters((2, 20), (3, 26))
  def test_radius_holds_the_lattice_neighbours(self, dim, expected):
    # Inside the seeding lattice every particle has `expected` neighbours.
    resolution = 16
    spacing = mpm.particle_spacing(resolution)
    axis = np.arange(-3, 4) * spacing
    lattice = np.stack(np.meshgrid(*[axis] * dim), -1).reshape(-1, dim)
    radius = scenes.connectivity_radius(dim, resolution)
    distances = np.linalg.norm(lattice, axis=-1)
    self.assertEqual(np.sum(distances <= radius) - 1, expected)

  def test_generated_data_has_10_to_25_neighbours(self):
    self.require_taichi()
    train = [dataset_writer.Trajectory(p, t)
             for t, p in read_split(self.path, "train")]
    count = generate_dataset.mean_neighbour_count(
        train, self.metadata["default_connectivity_radius"])
    # The tiny grid leaves many particles on a free surface: a bit fewer.
    self.assertBetween(count, 8.0, 25.0)

  def test_bundled_sample_has_10_to_25_neighbours(self):
    metadata = read_metadata(SAMPLE_PATH)
    train = [dataset_writer.Trajectory(p, t)
             for t, p in read_split(SAMPLE_PATH, "train")]
    count = generate_dataset.mean_neighbour_count(
        train, metadata["default_connectivity_radius"])
    self.assertBetween(count, 10.0, 25.0)

  def test_generate_trajectory(self):
    self.require_taichi()
    trajectory = scenes.generate_trajectory(
        "water_drop", 9, np.random.default_rng(5), resolution=12)
    again = scenes.generate_trajectory(
        "water_drop", 9, np.random.default_rng(5), resolution=12)
    num_particles = len(trajectory.particle_types)
    self.assertEqual(trajectory.positions.shape, (9, num_particles, 2))
    self.assertEqual(trajectory.positions.dtype, np.float32)
    self.assertEqual(trajectory.particle_types.dtype, np.int64)
    self.assertAllEqual(trajectory.positions, again.positions)
    with self.assertRaisesRegex(ValueError, r"--scene must be one of"):
      scenes.generate_trajectory("lava", 9, np.random.default_rng(5))

  def test_progress_logs_each_trajectory(self):
    stream = io.StringIO()  # Not a terminal: no bar, log lines only.
    progress = generate_dataset.Progress(2, 3, stream=stream)
    with self.assertLogs(level="INFO") as logs:
      for _ in range(2):
        progress.frame_done()
      progress.trajectory_done("train", 17)
    self.assertEqual(stream.getvalue(), "")
    self.assertRegex(logs.output[0], r"trajectory 1/2 \(train\): 17 "
                     r"particles, \d+ frames/s, ETA \d+ s")

  def test_progress_bar_on_a_terminal(self):
    stream = io.StringIO()
    stream.isatty = lambda: True
    progress = generate_dataset.Progress(2, 3, stream=stream)
    # tqdm's bar: description, percentage, frames done / total, rate.
    self.assertRegex(stream.getvalue(), r"^\r0/2 trajectories: +0%.*\| 0/4 ")
    progress.frame_done()
    progress.frame_done()
    with self.assertLogs(level="INFO"):
      progress.trajectory_done("train", 17)
    self.assertRegex(stream.getvalue(),
                     r"\r1/2 trajectories: +50%.*\| 2/4 \[.*frame/s\]$")

  def test_scenes_are_seeded_and_inside_the_walls(self):
    for name, spec in scenes.SCENES.items():
      first = spec.build(np.random.default_rng(7), 16)
      again = spec.build(np.random.default_rng(7), 16)
      self.assertAllEqual(first.positions, again.positions, msg=name)
      self.assertAllEqual(first.velocities, again.velocities, msg=name)
      self.assertEqual(first.positions.shape[-1], spec.dim)
      self.assertAllInRange(first.positions, 0.1, 0.9)
      self.assertAllInRange(first.kinematic_positions, 0.1, 0.9)

  def test_multi_material_mixes_types(self):
    rng = np.random.default_rng(0)
    spec = scenes.get_scene("multi_material")
    kinds = set()
    for _ in range(5):
      kinds |= set(spec.build(rng, 16).particle_types.tolist())
    self.assertEqual(kinds, {int(t) for t in mpm.SIMULATED_TYPES})

  def test_obstacle_stops_water(self):
    self.require_taichi()
    resolution = 16
    solver = mpm.Solver(mpm.SolverConfig(
        dim=2, resolution=resolution,
        substeps=mpm.min_substeps(resolution)), capacity=64)
    ramp = mpm.Capsule(np.array([0.15, 0.4]), np.array([0.85, 0.4]),
                       1.0 / resolution)
    spacing = mpm.particle_spacing(resolution)
    grid = np.arange(0.5, 0.65, spacing)  # A block above the ramp.
    positions = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    frames = solver.simulate(
        positions, np.zeros_like(positions),
        np.full(len(positions), int(common.ParticleType.WATER)),
        num_frames=81, capsules=[ramp])
    # In 0.2 s free fall would take the block below 0.31; the ramp holds it.
    self.assertGreater(frames[-1, :, 1].min(), 0.4)
    self.assertLess(frames[-1, :, 1].min(), positions[:, 1].min())
    # No particle ever enters the capsule (up to float32 rounding).
    distance, _ = mpm.capsule_distance(
        frames.reshape(-1, 2).astype(np.float64), ramp)
    self.assertGreater(distance.min(), -1e-6)

  def test_capsule_particles_fill_the_capsule(self):
    resolution = 16
    spacing = mpm.particle_spacing(resolution)
    ramp = mpm.Capsule(np.array([0.3, 0.3]), np.array([0.6, 0.5]),
                       1.0 / resolution)
    points = scenes.capsule_particles(ramp, spacing)
    distance, _ = mpm.capsule_distance(points.astype(np.float64), ramp)
    self.assertAllInRange(distance, -ramp.radius, 0.0)
    # Rows about one spacing apart, as the material's lattice.
    nearest = [np.sort(np.linalg.norm(points - p, axis=-1))[1] for p in points]
    self.assertAllClose(nearest, np.full(len(points), spacing), rtol=0.1)

  def test_goop_keeps_its_volume(self):
    self.require_taichi()
    resolution = 16
    solver = mpm.Solver(mpm.SolverConfig(
        dim=2, resolution=resolution,
        substeps=mpm.min_substeps(resolution)), capacity=64,
        materials=[common.ParticleType.GOOP])
    spacing = mpm.particle_spacing(resolution)
    grid = (np.arange(8) + 0.5) * spacing + 0.4
    positions = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    frames = solver.simulate(
        positions, np.zeros_like(positions),
        np.full(len(positions), int(common.ParticleType.GOOP)),
        num_frames=120)
    radius = 1.5 * spacing
    before = scenes.mean_neighbour_count(frames[0], radius)
    after = scenes.mean_neighbour_count(frames[-1], radius)
    self.assertLess(frames[-1, :, 1].max(), positions[:, 1].max())  # Fell.
    # Plastic flow is isochoric: the paste neither compacts nor scatters.
    self.assertBetween(after, 0.6 * before, 1.3 * before)


class BundledSampleTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.path = SAMPLE_PATH

  def test_files_match_sha256sums(self):
    with open(os.path.join(self.path, "SHA256SUMS")) as f:
      lines = f.read().split("\n")
    sums = dict(reversed(line.split()) for line in lines if line.strip())
    self.assertCountEqual(sums, SPLIT_FILES)
    for name, digest in sums.items():
      self.assertEqual(
          hashlib.sha256(file_bytes(os.path.join(self.path, name))).hexdigest(),
          digest, name)

  def test_metadata_and_splits(self):
    metadata = read_metadata(self.path)
    self.assertEqual(metadata["dim"], 2)
    self.assertEqual(metadata["sequence_length"], SAMPLE_SEQUENCE_LENGTH)
    self.assertEqual(metadata["bounds"], [[0.1, 0.9], [0.1, 0.9]])
    train = []
    for split, count in SAMPLE_COUNTS.items():
      trajectories = read_split(self.path, split)
      self.assertLen(trajectories, count)
      for particle_types, positions in trajectories:
        self.assertEqual(
            positions.shape,
            (SAMPLE_SEQUENCE_LENGTH + 1, particle_types.shape[0], 2))
        self.assertTrue(np.all(particle_types == common.ParticleType.WATER))
        self.assertAllInRange(positions, np.float32(0.1), np.float32(0.9))
        if split == "train":
          train.append(dataset_writer.Trajectory(positions, particle_types))
    for key, value in dataset_writer.compute_statistics(train).items():
      self.assertAllClose(metadata[key], value)


class BundledMultiMaterialTest(tf.test.TestCase):
  """The pretrained multi_material model's test split (its README)."""

  def test_checksums_and_trajectories(self):
    path = reading_utils.bundled_dataset_path("multi_material")
    self.assertEqual(checksum_mismatches(path),
                     {"metadata.json": None, "test.tfrecord": None})
    metadata = read_metadata(path)
    pairs = []
    for particle_types, positions in read_split(path, "test"):
      self.assertEqual(positions.shape, (metadata["sequence_length"] + 1,
                                         particle_types.shape[0], 2))
      self.assertAllInRange(positions, np.float32(0.1), np.float32(0.9))
      pairs.append(tuple(np.unique(particle_types)))
    water, sand, goop = (int(common.ParticleType.WATER),
                         int(common.ParticleType.SAND),
                         int(common.ParticleType.GOOP))
    self.assertEqual(pairs, [(water, sand), (water, goop), (sand, goop),
                             (sand, goop)])



class BundledWaterWallsTest(tf.test.TestCase):
  """The pretrained water_walls model's test split (its README): the water of
  water_drop_sample's test split, bit for bit, and 432 static wall particles
  outside the box."""

  def test_checksums_and_trajectories(self):
    path = reading_utils.bundled_dataset_path("water_walls")
    self.assertEqual(checksum_mismatches(path),
                     {"metadata.json": None, "test.tfrecord": None})
    metadata = read_metadata(path)
    self.assertEqual(metadata["wall_layers"], 2)
    plain_path = reading_utils.bundled_dataset_path("water_drop")
    plain_metadata = read_metadata(plain_path)
    for key in ("vel_mean", "vel_std", "acc_mean", "acc_std", "bounds", "dt"):
      self.assertAllClose(metadata[key], plain_metadata[key], msg=key)
    walls = read_split(path, "test")
    plain = read_split(plain_path, "test")
    self.assertLen(walls, 2)
    kinematic = int(common.ParticleType.KINEMATIC)
    for (types, positions), (plain_types, plain_positions) in zip(walls,
                                                                  plain):
      n = len(plain_types)
      self.assertAllEqual(types[:n], plain_types)
      self.assertAllEqual(positions[:, :n], plain_positions)
      self.assertTrue(np.all(types[n:] == kinematic))
      self.assertLen(types[n:], 432)
      self.assertAllEqual(positions[:, n:],
                          np.broadcast_to(positions[:1, n:],
                                          positions[:, n:].shape))
      lo, hi = np.asarray(metadata["bounds"]).T
      outside = np.any((positions[0, n:] < lo) | (positions[0, n:] > hi), -1)
      self.assertTrue(np.all(outside))

if __name__ == "__main__":
  tf.test.main()
