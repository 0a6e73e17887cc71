"""Converters: gns npz, LagrangeBench HDF5, folders to TFRecords, and back."""

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import tensorflow as tf

from learning_to_simulate.benchmarks import convert_memory
from learning_to_simulate.data import common
from learning_to_simulate.data import convert
from learning_to_simulate.data import formats
from learning_to_simulate.data import neighbours
from learning_to_simulate.data import synthetic
from learning_to_simulate import reading_utils

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WATER = int(common.ParticleType.WATER)
KINEMATIC = int(common.ParticleType.KINEMATIC)
DT = 0.0025


def gns_item(*fields):
  """One gns trajectory: an object array `(positions, types[, property])`."""
  item = np.empty(len(fields), dtype=object)
  for i, field in enumerate(fields):
    item[i] = field
  return item


def random_trajectory(rng, num_frames=9, num_particles=6, dim=2,
                      num_kinematic=2):
  """float32 positions and int64 types (water, then kinematic particles)."""
  positions = rng.uniform(0.2, 0.8, [num_frames, num_particles, dim])
  types = np.array([WATER] * (num_particles - num_kinematic) +
                   [KINEMATIC] * num_kinematic, np.int64)
  return positions.astype(np.float32), types


def write_gns_dataset(path, splits):
  """`{split}.npz` as gns users save them: one object array per entry."""
  os.makedirs(path, exist_ok=True)
  for split, items in splits.items():
    np.savez_compressed(
        os.path.join(path, f"{split}.npz"),
        **{f"simulation_trajectory_{i}": gns_item(*item)
           for i, item in enumerate(items)})


def read_records(data_path, split):
  """`(positions, types, step_context or None)` of each record, numpy."""
  metadata = reading_utils.read_metadata(data_path)
  return [(f["position"].numpy(), c["particle_type"].numpy(),
           f["step_context"].numpy() if "step_context" in f else None)
          for c, f in reading_utils.load_trajectories(data_path, split,
                                                      metadata)]


def numpy_statistics(trajectories):
  """Velocity / acceleration mean and std over non-kinematic particles."""
  velocities, accelerations = [], []
  for positions, types in trajectories:
    moving = positions[:, types != KINEMATIC].astype(np.float64)
    velocity = np.diff(moving, axis=0)
    velocities.append(velocity.reshape(-1, positions.shape[-1]))
    accelerations.append(np.diff(velocity, axis=0).reshape(
        -1, positions.shape[-1]))
  velocities = np.concatenate(velocities)
  accelerations = np.concatenate(accelerations)
  return {"vel_mean": velocities.mean(0), "vel_std": velocities.std(0),
          "acc_mean": accelerations.mean(0), "acc_std": accelerations.std(0)}


def run_cli(*args, module="learning_to_simulate.data.convert_dataset"):
  env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run(
      [sys.executable, "-m", module, *args], cwd=_ROOT, env=env,
      capture_output=True, text=True, timeout=300)


class NeighboursTest(tf.test.TestCase):

  def test_counts_are_inclusive_and_exclude_the_particle_itself(self):
    line = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    self.assertAllEqual(neighbours.neighbour_counts(line, 1.0), [1, 2, 2, 1])
    self.assertAllEqual(neighbours.neighbour_counts(line, 0.99), [0] * 4)
    counts = neighbours.count_distribution([line, line[:2]], 1.0)
    self.assertEqual(counts.num_particles, 6)
    self.assertAllClose(counts.mean, 8 / 6)
    self.assertEqual((counts.minimum, counts.maximum), (1, 2))
    self.assertIn("mean 1.3  min 1", counts.describe())

  def test_spacing_and_suggested_radius(self):
    grid = np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1)
    lattice = grid.reshape(-1, 2) * 0.02
    self.assertAllClose(neighbours.particle_spacing([lattice]), 0.02)
    self.assertAllClose(neighbours.suggest_radius(0.02, 2), 0.05)
    self.assertAllClose(neighbours.suggest_radius(0.0123456, 3), 0.0222)
    self.assertEqual(neighbours.round_significant(0.015312), 0.0153)
    # 2.5 spacings: 20 neighbours inside the lattice (pi * 2.5^2).
    inside = neighbours.neighbour_counts(lattice, 0.05)[45]
    self.assertEqual(inside, 20)
    with self.assertRaisesRegex(ValueError, "cannot estimate"):
      neighbours.particle_spacing([np.zeros([3, 2])])


class GnsNpzTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path
    rng = np.random.default_rng(0)
    self.splits = {split: [random_trajectory(rng) + (np.float32(m),)
                           for m in (0.5, 1.5)]
                   for split in common.SPLITS}
    self.input_path = os.path.join(self.root, "gns")
    write_gns_dataset(self.input_path, self.splits)

  def test_npz_to_tfrecord_to_npz_is_bit_exact(self):
    tfrecord_path = os.path.join(self.root, "tfrecord")
    report = convert.convert(self.input_path, tfrecord_path,
                             convert.ConvertOptions("npz", dt=DT))
    self.assertEqual(report.num_trajectories,
                     {"train": 2, "valid": 2, "test": 2})
    back_path = os.path.join(self.root, "back")
    convert.convert(tfrecord_path, back_path, convert.ConvertOptions(
        "tfrecord", output_format="npz"))
    self.assertCountEqual(os.listdir(back_path),
                          ["metadata.json", "train.npz", "valid.npz",
                           "test.npz"])
    for split, items in self.splits.items():
      with np.load(os.path.join(back_path, f"{split}.npz"),
                   allow_pickle=True) as archive:
        self.assertEqual(archive.files, ["simulation_trajectory_0",
                                         "simulation_trajectory_1"])
        for key, (positions, types, material) in zip(archive.files, items):
          back_positions, back_types, back_material = archive[key]
          self.assertEqual(back_positions.dtype, np.float32)
          self.assertEqual(back_positions.tobytes(), positions.tobytes())
          self.assertEqual(back_types.dtype, np.int64)
          self.assertAllEqual(back_types, types)
          self.assertEqual(np.float32(back_material), material)
    # The npz output carries the dataset's metadata unchanged.
    with open(os.path.join(back_path, "metadata.json")) as f:
      self.assertEqual(json.load(f), report.metadata)

  def test_metadata_statistics_match_numpy(self):
    output_path = os.path.join(self.root, "tfrecord")
    report = convert.convert(self.input_path, output_path,
                             convert.ConvertOptions("npz", dt=DT))
    metadata = reading_utils.read_metadata(output_path)
    self.assertEqual(metadata, report.metadata)
    expected = numpy_statistics([item[:2] for item in self.splits["train"]])
    for key, value in expected.items():
      self.assertAllClose(metadata[key], value, rtol=1e-9, atol=0)
    # The material property becomes the global context: 0.5 and 1.5.
    self.assertAllClose(metadata["context_mean"], [1.0])
    self.assertAllClose(metadata["context_std"], [0.5])
    box = lambda items: np.stack([
        np.concatenate([item[0].reshape(-1, 2) for item in items]).min(0),
        np.concatenate([item[0].reshape(-1, 2) for item in items]).max(0)],
                                 1)
    everything = box([item for items in self.splits.values()
                      for item in items])
    train = box(self.splits["train"])
    self.assertNotAllEqual(train, everything)  # Valid and test go further.
    # The train split's box (the shortest decimals of the float32 extremes:
    # equal as float32): no valid or test position shapes the bounds.
    self.assertAllEqual(np.float32(metadata["bounds"]), train)
    self.assertAllEqual(np.float32(report.extent), everything)
    self.assertIn(f"the train split's {report.train_extent}",
                  convert.format_report(report, output_path))
    self.assertEqual(metadata["sequence_length"], 8)
    self.assertEqual(metadata["dt"], DT)
    self.assertEqual(metadata["default_connectivity_radius"],
                     report.suggested_radius)
    positions, types, context = read_records(output_path, "valid")[1]
    self.assertAllEqual(positions, self.splits["valid"][1][0])
    self.assertAllEqual(types, self.splits["valid"][1][1])
    self.assertAllEqual(context, np.full([9, 1], 1.5, np.float32))

  def test_given_bounds_radius_and_type_map(self):
    output_path = os.path.join(self.root, "tfrecord")
    convert.convert(self.input_path, output_path, convert.ConvertOptions(
        "npz", dt=DT, bounds=[[0.0, 1.0], [0.0, 2.0]],
        connectivity_radius=0.25, particle_type_map={WATER: 6}))
    metadata = reading_utils.read_metadata(output_path)
    self.assertEqual(metadata["bounds"], [[0.0, 1.0], [0.0, 2.0]])
    self.assertEqual(metadata["default_connectivity_radius"], 0.25)
    _, types, _ = read_records(output_path, "train")[0]
    self.assertAllEqual(types, [6, 6, 6, 6, KINEMATIC, KINEMATIC])

  def test_tfrecord_to_npz_to_tfrecord_gives_the_same_bytes(self):
    data_path = os.path.join(self.root, "tiny")
    synthetic.write_tiny_dataset(data_path, num_trajectories=2)
    npz_path = os.path.join(self.root, "npz")
    convert.convert(data_path, npz_path, convert.ConvertOptions(
        "tfrecord", output_format="npz"))
    again = os.path.join(self.root, "again")
    convert.convert(npz_path, again, convert.ConvertOptions("npz", dt=DT))
    for split in common.SPLITS:
      with open(os.path.join(data_path, f"{split}.tfrecord"), "rb") as f:
        original = f.read()
      with open(os.path.join(again, f"{split}.tfrecord"), "rb") as f:
        self.assertEqual(f.read(), original)
    # The statistics are recomputed from the same positions.
    before = reading_utils.read_metadata(data_path)
    after = reading_utils.read_metadata(again)
    for key in ("vel_mean", "vel_std", "acc_mean", "acc_std",
                "sequence_length", "dim"):
      self.assertEqual(after[key], before[key])

  def test_gns_data_entry_and_scalar_particle_type(self):
    rng = np.random.default_rng(1)
    path = os.path.join(self.root, "single")
    os.makedirs(path)
    for split in common.SPLITS:
      positions, _ = random_trajectory(rng)
      items = np.empty(1, dtype=object)
      items[0] = gns_item(positions, WATER)  # One type for all particles.
      np.savez(os.path.join(path, f"{split}.npz"), gns_data=items)
    output_path = os.path.join(self.root, "out")
    convert.convert(path, output_path, convert.ConvertOptions("npz", dt=DT))
    _, types, context = read_records(output_path, "test")[0]
    self.assertAllEqual(types, [WATER] * 6)
    self.assertIsNone(context)


class LagrangeBenchHdf5Test(tf.test.TestCase):

  def test_hdf5_to_tfrecord(self):
    root = self.create_tempdir().full_path
    input_path = os.path.join(root, "2D_TEST")
    os.makedirs(input_path)
    rng = np.random.default_rng(2)
    written = {}
    for split in common.SPLITS:
      written[split] = []
      # LagrangeBench's layout: a group per trajectory, zero-padded.
      with h5py.File(os.path.join(input_path, f"{split}.h5"), "w") as h5:
        for index in range(2):
          positions = rng.uniform(0, 1, [10, 5, 2]).astype(np.float32)
          tags = np.array([0, 0, 0, 1, 2])  # Fluid, wall, moving wall.
          h5.create_dataset(f"{index:05d}/particle_type", data=tags)
          h5.create_dataset(f"{index:05d}/position", data=positions,
                            dtype=np.float32, compression="gzip")
          written[split].append(positions)
    with open(os.path.join(input_path, "metadata.json"), "w") as f:
      json.dump({"case": "TEST", "dim": 2, "dt": 0.0004}, f)
    output_path = os.path.join(root, "tfrecord")
    convert.convert(input_path, output_path,
                    convert.ConvertOptions("hdf5", dt=0.04))
    metadata = reading_utils.read_metadata(output_path)
    self.assertEqual(metadata["sequence_length"], 9)
    self.assertEqual(metadata["dt"], 0.04)
    for split in common.SPLITS:
      records = read_records(output_path, split)
      self.assertLen(records, 2)
      for (positions, types, context), expected in zip(records,
                                                       written[split]):
        self.assertAllEqual(positions, expected)
        self.assertAllEqual(types, [WATER, WATER, WATER, KINEMATIC,
                                    KINEMATIC])
        self.assertIsNone(context)
    # Fluid only (walls are kinematic) in the statistics.
    expected = numpy_statistics(
        [(p, np.array([5, 5, 5, 3, 3])) for p in written["train"]])
    self.assertAllClose(metadata["vel_std"], expected["vel_std"],
                        rtol=1e-9, atol=0)


class FolderTest(tf.test.TestCase):

  def test_folder_with_step_context_in_3d(self):
    root = self.create_tempdir().full_path
    input_path = os.path.join(root, "folder")
    rng = np.random.default_rng(3)
    contexts = []
    for split in common.SPLITS:
      os.makedirs(os.path.join(input_path, split))
      for index in (2, 10):  # Natural order: 2 before 10.
        positions, types = random_trajectory(rng, dim=3)
        context = rng.normal(size=[9, 2]).astype(np.float32)
        if split == "train":
          contexts.append(context)
        np.savez(os.path.join(input_path, split, f"{index}.npz"),
                 positions=positions, particle_types=types,
                 step_context=context)
    output_path = os.path.join(root, "tfrecord")
    convert.convert(input_path, output_path,
                    convert.ConvertOptions("folder", dt=DT))
    metadata = reading_utils.read_metadata(output_path)
    self.assertEqual(metadata["dim"], 3)
    everything = np.concatenate(contexts).astype(np.float64)
    self.assertAllClose(metadata["context_mean"], everything.mean(0))
    self.assertAllClose(metadata["context_std"], everything.std(0))
    _, _, context = read_records(output_path, "train")[1]
    self.assertAllEqual(context, contexts[1])


class BadInputTest(tf.test.TestCase):
  """Each bad input: one line naming file and trajectory, nothing written."""

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path
    self.rng = np.random.default_rng(4)
    self.input_path = os.path.join(self.root, "gns")
    self.output_path = os.path.join(self.root, "out")

  def good(self):
    return random_trajectory(self.rng)

  def assert_fails(self, splits, pattern, options=None):
    write_gns_dataset(self.input_path, splits)
    with self.assertRaisesRegex(ValueError, pattern) as raised:
      convert.convert(self.input_path, self.output_path,
                      options or convert.ConvertOptions("npz", dt=DT))
    self.assertNotIn("\n", str(raised.exception))
    # Nothing half-written: no output, no staging directory left behind.
    self.assertEqual(sorted(os.listdir(self.root)), ["gns"])

  def test_mismatched_particle_types(self):
    positions, types = self.good()
    self.assert_fails(
        {"train": [self.good()], "valid": [self.good()],
         "test": [self.good(), (positions, types[:5])]},
        r"gns/test\.npz: trajectory simulation_trajectory_1: particle_type "
        r"has shape \(5,\) but positions have 6 particles")

  def test_positions_not_three_dimensional(self):
    positions, types = self.good()
    self.assert_fails(
        {"train": [(positions[0], types)], "valid": [self.good()],
         "test": [self.good()]},
        r"train\.npz: trajectory simulation_trajectory_0: positions must be "
        r"numeric \[num_frames, num_particles, dim\] with dim 2 or 3, got "
        r"float32 shape \(6, 2\)")

  def test_trajectories_with_different_frame_counts(self):
    self.assert_fails(
        {"train": [self.good()], "valid": [random_trajectory(self.rng, 12)],
         "test": [self.good()]},
        r"valid\.npz: trajectory simulation_trajectory_0: 12 frames, but "
        r".*train\.npz: trajectory simulation_trajectory_0 has 9")

  def test_nan_positions(self):
    positions, types = self.good()
    positions[3, 2, 1] = np.nan
    self.assert_fails(
        {"train": [self.good(), (positions, types)], "valid": [self.good()],
         "test": [self.good()]},
        r"train\.npz: trajectory simulation_trajectory_1: positions hold 1 "
        r"NaN or infinite value\(s\), the first at frame 3, particle 2")

  def test_too_few_frames(self):
    self.assert_fails(
        {"train": [self.good()], "valid": [self.good()],
         "test": [random_trajectory(self.rng, num_frames=6)]},
        r"test\.npz: trajectory simulation_trajectory_0: 6 frames, fewer "
        r"than the 7 a training example needs")

  def test_particle_types_outside_range(self):
    positions, types = self.good()
    types[0] = 9
    self.assert_fails(
        {"train": [(positions, types)], "valid": [self.good()],
         "test": [self.good()]},
        r"train\.npz: trajectory simulation_trajectory_0: particle types "
        r"\[9\] are outside 0\.\.8 \(map them with --particle_type_map\)")

  def test_missing_split(self):
    self.assert_fails({"train": [self.good()], "valid": [self.good()]},
                      r"gns/test\.npz not found: .* has no test split")

  def test_material_property_that_differs_between_particles(self):
    positions, types = self.good()
    self.assert_fails(
        {"train": [(positions, types, np.arange(6.0))],
         "valid": [self.good()], "test": [self.good()]},
        r"trajectory simulation_trajectory_0: material_property differs "
        "between particles")

  def test_options_name_their_flag(self):
    for options, pattern in (
        (convert.ConvertOptions("npz"), "--dt .* is required"),
        (convert.ConvertOptions("npz", dt=DT, bounds=[[1.0, 0.0]] * 2),
         "--bounds must be"),
        (convert.ConvertOptions("tfrecord"), "needs --output_format=npz"),
        (convert.ConvertOptions("npz", dt=DT, particle_type_map={1: 9}),
         "--particle_type_map maps 1 to 9")):
      with self.assertRaisesRegex(ValueError, pattern):
        options.validate()
    self.assertEqual(convert.parse_type_map("0:5, 1:3"),
                     {0: 5, 1: 3})
    self.assertEqual(convert.parse_type_map(""), {})
    with self.assertRaisesRegex(ValueError, "--particle_type_map must be"):
      convert.parse_type_map("0-5")
    self.assertEqual(convert.parse_bounds("[[0, 1], [0, 2]]"),
                     [[0.0, 1.0], [0.0, 2.0]])

  def test_unreadable_files(self):
    os.makedirs(self.input_path)
    for split in common.SPLITS:
      with open(os.path.join(self.input_path, f"{split}.npz"), "w") as f:
        f.write("not a zip")
    with self.assertRaisesRegex(ValueError, r"train\.npz is not a readable "
                                "npz file"):
      convert.convert(self.input_path, self.output_path,
                      convert.ConvertOptions("npz", dt=DT))
    with self.assertRaisesRegex(ValueError, r"train\.h5 is not a readable "
                                "HDF5 file"):
      list(formats.read_lagrangebench_hdf5(
          os.path.join(self.input_path, "train.h5")))


class CommandLineTest(tf.test.TestCase):

  def test_converts_and_reports_the_radius(self):
    root = self.create_tempdir().full_path
    rng = np.random.default_rng(5)
    write_gns_dataset(os.path.join(root, "gns"), {
        split: [random_trajectory(rng, num_particles=40, num_kinematic=0)]
        for split in common.SPLITS})
    result = run_cli(f"--input_path={root}/gns", "--input_format=npz",
                     f"--output_path={root}/out", f"--dt={DT}",
                     "--connectivity_radius=0.2")
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertRegex(result.stdout, r"wrote .*/out: train 1, valid 1, test 1 "
                     r"trajectories of 40 particles, 9 frames, dim 2")
    self.assertRegex(result.stdout, r"suggested connectivity radius "
                     r"[0-9.]+ \(2.5 spacings\); neighbours within it: mean "
                     r"[0-9.]+  min \d+  p5 ")
    self.assertRegex(result.stdout, r"connectivity radius 0.2 \(metadata\); "
                     r"neighbours within it: mean [0-9.]+")
    self.assertEqual(
        reading_utils.read_metadata(f"{root}/out")[
            "default_connectivity_radius"], 0.2)

    # Bad input: one line on stderr, exit status 1, nothing written.
    os.remove(f"{root}/gns/valid.npz")
    result = run_cli(f"--input_path={root}/gns", "--input_format=npz",
                     f"--output_path={root}/bad", f"--dt={DT}")
    self.assertEqual(result.returncode, 1)
    self.assertRegex(result.stderr.strip().splitlines()[-1],
                     r"^convert_dataset: error: .*/gns/valid\.npz not found")
    self.assertFalse(os.path.exists(f"{root}/bad"))


def drifting_lattice(rng, num_frames=9, side=8):
  """A water block on a lattice of spacing 0.05 drifting with small noise:
  the suggested radius (2.5 spacings) holds about 20 neighbours."""
  grid = np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1)
  start = 0.3 + 0.05 * grid.reshape(-1, 2)
  steps = rng.normal(0, 1e-3, [num_frames, side * side, 2]).cumsum(axis=0)
  return ((start + steps).astype(np.float32),
          np.full(side * side, WATER, np.int64))


class CheckDatasetTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    root = self.create_tempdir().full_path
    rng = np.random.default_rng(2)
    write_gns_dataset(os.path.join(root, "gns"), {
        split: [drifting_lattice(rng) for _ in range(2)]
        for split in common.SPLITS})
    self.path = os.path.join(root, "data")
    convert.convert(os.path.join(root, "gns"), self.path,
                    convert.ConvertOptions(input_format="npz", dt=DT))

  def _rewrite_metadata(self, **changes):
    with open(os.path.join(self.path, "metadata.json")) as f:
      metadata = json.load(f)
    metadata.update(changes)
    with open(os.path.join(self.path, "metadata.json"), "w") as f:
      json.dump(metadata, f)
    return metadata

  def test_a_converted_dataset_has_no_warning(self):
    report, warnings = convert.check_dataset(self.path)
    self.assertEqual(warnings, [])
    self.assertEqual(report.num_trajectories,
                     {"train": 2, "valid": 2, "test": 2})
    self.assertBetween(report.neighbours.mean, 10, 25)
    result = run_cli(f"--data_path={self.path}",
                     module="learning_to_simulate.data.check_dataset")
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertRegex(result.stdout, r"^checked .*/data: train 2, valid 2, "
                     r"test 2 trajectories of 64 particles, 9 frames, dim 2")
    self.assertIn("no problem found", result.stdout)

  def test_metadata_that_disagrees_with_the_data_is_named(self):
    metadata = reading_utils.read_metadata(self.path)
    self._rewrite_metadata(
        vel_std=[2 * v for v in metadata["vel_std"]],
        bounds=[[0.35, 0.9], [0.1, 0.9]],
        default_connectivity_radius=0.01)
    _, warnings = convert.check_dataset(self.path)
    self.assertLen(warnings, 3)
    self.assertRegex(warnings[0], r"vel_mean/vel_std are .* the train "
                     r"split's .* \([0-9.]+ of a std off\)")
    self.assertRegex(warnings[1], r"bounds \[\[0.35, 0.9\], \[0.1, 0.9\]\], "
                     r"but positions span \[\[0.2")
    self.assertRegex(warnings[2], r"default_connectivity_radius 0.01 gives "
                     r"0.0 neighbours .* --connectivity_radius")

  def test_a_damaged_record_is_one_line(self):
    path = os.path.join(self.path, "valid.tfrecord")
    with open(path, "r+b") as f:
      f.seek(40)
      byte = f.read(1)
      f.seek(40)
      f.write(bytes([byte[0] ^ 0xFF]))
    with self.assertRaisesRegex(ValueError, r"valid\.tfrecord"):
      convert.check_dataset(self.path)
    result = run_cli(f"--data_path={self.path}",
                     module="learning_to_simulate.data.check_dataset")
    self.assertEqual(result.returncode, 1)
    self.assertRegex(result.stderr.strip().splitlines()[-1],
                     r"^check_dataset: error: .*valid\.tfrecord")


class ConvertMemoryBenchmarkTest(tf.test.TestCase):

  def test_writes_the_input_and_measures_a_conversion(self):
    work_dir = self.create_tempdir().full_path
    size = convert_memory.write_input(work_dir, 2, particles=30, frames=8)
    self.assertEqual(size, sum(os.path.getsize(os.path.join(work_dir, f))
                               for f in os.listdir(work_dir)))
    with np.load(os.path.join(work_dir, "train.npz"),
                 allow_pickle=True) as archive:
      self.assertLen(archive.files, 2)
      positions, types = archive["simulation_trajectory_1"]
      self.assertEqual(positions.shape, (8, 30, 2))
      self.assertAllEqual(types, [WATER] * 30)
    work_dir = self.create_tempdir().full_path
    results = convert_memory.run([1], particles=30, frames=8,
                                 work_dir=work_dir)
    self.assertLen(results, 1)
    self.assertEqual(results[0]["train_trajectories"], 1)
    self.assertGreater(results[0]["peak_rss_mib"], 50)
    self.assertEqual(os.listdir(work_dir), [])  # Inputs and outputs removed.
    self.assertIn("| 1 |", convert_memory.format_table(results))


if __name__ == "__main__":
  tf.test.main()
