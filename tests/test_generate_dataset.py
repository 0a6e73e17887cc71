"""Tests for the MLS-MPM dataset generator and the bundled sample dataset."""

import hashlib
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

from learning_to_simulate import common
from learning_to_simulate import dataset_writer
from learning_to_simulate import generate_dataset
from learning_to_simulate import mpm
from learning_to_simulate import reading_utils
from learning_to_simulate import scenes

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny water_drop dataset: a coarse grid and a few frames.
TINY = dict(scene="water_drop", num_train=2, num_valid=1, num_test=1,
            num_frames=10, seed=3, resolution=12)
TINY_COUNTS = {"train": 2, "valid": 1, "test": 1}
SAMPLE_COUNTS = {"train": 8, "valid": 2, "test": 2}
SAMPLE_SEQUENCE_LENGTH = 200
SPLIT_FILES = ("metadata.json", "train.tfrecord", "valid.tfrecord",
               "test.tfrecord")


def taichi_available() -> bool:
  try:
    mpm.import_taichi()
  except mpm.TaichiNotFoundError:
    return False
  return True


def read_split(path, split):
  """`[(particle_types [N], positions [T, N, dim])]` of one split, numpy."""
  return [(context["particle_type"].numpy(), features["position"].numpy())
          for context, features in reading_utils.load_trajectories(path, split)]


def file_bytes(path):
  with open(path, "rb") as f:
    return f.read()


def run_cli(args, preamble=""):
  """Runs the CLI in a subprocess; returns `(returncode, stderr)`."""
  code = (f"import runpy, sys\n{preamble}\n"
          f"sys.argv = ['generate_dataset'] + {args!r}\n"
          "runpy.run_module('learning_to_simulate.generate_dataset', "
          "run_name='__main__')\n")
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True,
                          timeout=120, check=False)
  return result.returncode, result.stderr


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
    metadata = reading_utils.read_metadata(self.path)
    self.assertEqual(metadata, self.metadata)
    self.assertEqual(metadata["sequence_length"], TINY["num_frames"] - 1)
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

  def test_cli_errors_are_one_line(self):
    output_path = os.path.join(self.get_temp_dir(), "cli")
    cli_flags = types.SimpleNamespace(
        output_path=output_path, substeps=None, arch="cpu",
        **dict(TINY, num_frames=3))
    with mock.patch.object(generate_dataset, "FLAGS", cli_flags):
      with self.assertRaises(SystemExit) as raised:
        generate_dataset.main(["generate_dataset"])
    self.assertEqual(raised.exception.code,
                     "generate_dataset: error: --num_frames must be >= 8 (6 "
                     "input frames and 2 targets), got 3")
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

  def test_mean_neighbour_count(self):
    # Ends have one neighbour within radius 1 (inclusive), the middle two.
    line = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    self.assertAllClose(generate_dataset.mean_neighbour_count(line, 1.0),
                        4.0 / 3.0)
    self.assertAllClose(generate_dataset.mean_neighbour_count(line, 0.5), 0.0)

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
    ramp = mpm.Capsule(np.array([0.2, 0.4]), np.array([0.8, 0.4]),
                       1.0 / resolution)
    spacing = mpm.particle_spacing(resolution)
    grid = np.arange(0.45, 0.6, spacing)
    positions = np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2)
    frames = solver.simulate(
        positions, np.zeros_like(positions),
        np.full(len(positions), int(common.ParticleType.WATER)),
        num_frames=120, capsules=[ramp])
    # Free fall would reach the floor (0.1) in 0.3 s; the ramp holds it.
    self.assertGreater(frames[-1, :, 1].min(), 0.4)
    self.assertLess(frames[-1, :, 1].min(), positions[:, 1].min())

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
    before = generate_dataset.mean_neighbour_count(frames[0], radius)
    after = generate_dataset.mean_neighbour_count(frames[-1], radius)
    self.assertLess(frames[-1, :, 1].max(), positions[:, 1].max())  # Fell.
    # Plastic flow is isochoric: the paste neither compacts nor scatters.
    self.assertBetween(after, 0.6 * before, 1.3 * before)


class BundledSampleTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.path = reading_utils.bundled_dataset_path()

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
    metadata = reading_utils.read_metadata(self.path)
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


if __name__ == "__main__":
  tf.test.main()
