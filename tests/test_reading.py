"""Dataset writing and reading: bit-exact round trips, windows, bad input."""

import json
import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer
from learning_to_simulate.data import synthetic
from learning_to_simulate import reading_utils


def metadata_for(dim, sequence_length, context_size=None):
  metadata = {"bounds": [[0.0, 1.0]] * dim, "sequence_length": sequence_length,
              "default_connectivity_radius": 0.1, "dim": dim, "dt": 0.01,
              "vel_mean": [0.0] * dim, "vel_std": [1.0] * dim,
              "acc_mean": [0.0] * dim, "acc_std": [1.0] * dim}
  if context_size:
    metadata["context_mean"] = [0.0] * context_size
    metadata["context_std"] = [1.0] * context_size
  return metadata


class ReadWriteTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.rng = np.random.default_rng(7)
    self.data_path = self.create_tempdir().full_path

  def _write(self, dim, num_frames, context_size=None, num_particles=(5, 8)):
    trajectories = []
    for n in num_particles:
      context = None
      if context_size:
        context = self.rng.normal(size=[num_frames, context_size]).astype(
            np.float32)
      trajectories.append(dataset_writer.Trajectory(
          self.rng.normal(size=[num_frames, n, dim]).astype(np.float32),
          self.rng.integers(0, 9, [n]).astype(np.int64), context))
    metadata = metadata_for(dim, num_frames - 1, context_size)
    dataset_writer.write_dataset(
        self.data_path, {s: trajectories for s in common.SPLITS},
        metadata)
    return trajectories, metadata

  @parameterized.product(dim=[2, 3], context_size=[None, 3])
  def test_round_trip_is_bit_exact(self, dim, context_size):
    trajectories, metadata = self._write(dim, 9, context_size)
    self.assertEqual(reading_utils.read_metadata(self.data_path), metadata)
    read = list(reading_utils.load_trajectories(self.data_path, "valid"))
    self.assertLen(read, len(trajectories))
    for key, ((context, features), expected) in enumerate(
        zip(read, trajectories)):
      self.assertEqual(int(context["key"]), key)
      self.assertEqual(context["particle_type"].dtype, tf.int64)
      self.assertAllEqual(context["particle_type"], expected.particle_types)
      self.assertEqual(features["position"].dtype, tf.float32)
      self.assertAllEqual(features["position"], expected.positions)
      if context_size:
        self.assertAllEqual(features["step_context"], expected.step_context)
      else:
        self.assertNotIn("step_context", features)

  def test_count_records(self):
    self._write(2, 9, num_particles=(5, 8, 3))
    self.assertEqual(reading_utils.count_records(self.data_path, "test"), 3)
    empty = self.create_tempdir().full_path
    open(os.path.join(empty, "train.tfrecord"), "wb").close()
    self.assertEqual(reading_utils.count_records(empty, "train"), 0)

  def test_windows_and_batches(self):
    trajectories, metadata = self._write(2, 9, context_size=2)
    dataset = reading_utils.get_one_step_dataset(
        self.data_path, "test", batch_size=2, metadata=metadata,
        is_training=False)
    batches = list(dataset)
    # 9 frames -> 3 windows of 7 per trajectory; 6 windows -> 3 batches.
    self.assertLen(batches, 3)
    features, target = batches[0]
    first = second = trajectories[0]  # Windows 0 and 1 of trajectory 0.
    self.assertAllEqual(features["n_particles_per_example"], [5, 5])
    self.assertEqual(features["position"].shape, (10, 6, 2))
    self.assertAllEqual(features["position"][:5],
                        np.transpose(first.positions[0:6], [1, 0, 2]))
    self.assertAllEqual(features["position"][5:],
                        np.transpose(second.positions[1:7], [1, 0, 2]))
    self.assertAllEqual(target[:5], first.positions[6])
    self.assertAllEqual(target[5:], second.positions[7])
    self.assertAllEqual(features["particle_type"][:5], first.particle_types)
    # The context of the last input frame.
    self.assertAllEqual(features["step_context"],
                        first.step_context[[5, 6]])
    # The second batch mixes the end of trajectory 0 and the start of 1.
    self.assertAllEqual(batches[1][0]["n_particles_per_example"], [5, 8])

  def test_rollout_inputs(self):
    trajectories, metadata = self._write(3, 10, context_size=1)
    element = next(iter(reading_utils.get_rollout_dataset(
        self.data_path, "train", metadata)))
    positions = trajectories[0].positions
    self.assertAllEqual(element["position"],
                        np.transpose(positions[:-1], [1, 0, 2]))
    self.assertAllEqual(element["n_particles_per_example"], [5])
    self.assertAllEqual(element["step_context"], trajectories[0].step_context)

  def test_statistics_match_numpy(self):
    rng = np.random.default_rng(3)
    trajectories = [synthetic.ballistic_trajectory(10, 8, 2, rng,
                                                   num_kinematic=3)
                    for _ in range(2)]
    stats = dataset_writer.compute_statistics(trajectories)
    moving = [t.positions[:, t.particle_types != common.ParticleType.KINEMATIC]
              .astype(np.float64) for t in trajectories]
    velocities = np.concatenate([np.diff(p, axis=0).reshape(-1, 2)
                                 for p in moving])
    accelerations = np.concatenate([np.diff(p, n=2, axis=0).reshape(-1, 2)
                                    for p in moving])
    self.assertAllClose(stats["vel_mean"], velocities.mean(0))
    self.assertAllClose(stats["vel_std"], velocities.std(0))
    self.assertAllClose(stats["acc_mean"], accelerations.mean(0))
    self.assertAllClose(stats["acc_std"], accelerations.std(0), atol=1e-12)


class BadInputTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.data_path = self.create_tempdir().full_path

  def _write_metadata(self, content):
    with open(os.path.join(self.data_path, "metadata.json"), "w") as f:
      f.write(content if isinstance(content, str) else json.dumps(content))

  def test_missing_metadata(self):
    with self.assertRaisesRegex(reading_utils.DatasetError,
                                r"metadata\.json not found"):
      reading_utils.read_metadata(self.data_path)

  def test_data_path_is_not_a_directory(self):
    with self.assertRaisesRegex(reading_utils.DatasetError,
                                "is not a directory"):
      reading_utils.read_metadata(os.path.join(self.data_path, "nope"))

  def test_malformed_metadata(self):
    self._write_metadata("{not json")
    with self.assertRaisesRegex(reading_utils.DatasetError,
                                r"metadata\.json is not valid JSON"):
      reading_utils.read_metadata(self.data_path)

  def test_metadata_missing_field(self):
    metadata = metadata_for(2, 10)
    del metadata["acc_std"]
    self._write_metadata(metadata)
    with self.assertRaisesRegex(reading_utils.DatasetError,
                                r"metadata\.json: missing field\(s\) acc_std"):
      reading_utils.read_metadata(self.data_path)

  def test_metadata_wrong_shape(self):
    self._write_metadata(dict(metadata_for(2, 10), vel_mean=[0.0]))
    with self.assertRaisesRegex(reading_utils.DatasetError,
                                "'vel_mean' must be a list of 2 numbers"):
      reading_utils.read_metadata(self.data_path)

  def test_missing_split(self):
    self._write_metadata(metadata_for(2, 10))
    with self.assertRaisesRegex(reading_utils.DatasetError,
                                r"valid\.tfrecord not found"):
      reading_utils.split_file(self.data_path, "valid")

  def test_position_bytes_that_do_not_fit(self):
    metadata = metadata_for(2, 8)
    # 9 frames of 5 particles in 3D: the bytes are no [9, -1, 2] array of
    # the 5 particles the particle_type says.
    trajectory = dataset_writer.Trajectory(
        np.zeros([9, 5, 3], np.float32), np.zeros([5], np.int64))
    dataset_writer.write_dataset(self.data_path, {"train": [trajectory]},
                                 metadata)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                r"train\.tfrecord: each record must hold 9 "
                                r"position frames"):
      list(reading_utils.load_trajectories(self.data_path, "train"))

  def test_wrong_number_of_frames(self):
    metadata = metadata_for(2, 10)
    trajectory = dataset_writer.Trajectory(
        np.zeros([9, 5, 2], np.float32), np.zeros([5], np.int64))
    dataset_writer.write_dataset(self.data_path, {"test": [trajectory]},
                                 metadata)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                r"test\.tfrecord: each record must hold 11"):
      list(reading_utils.load_trajectories(self.data_path, "test"))

  def _write_split(self, trajectories):
    metadata = metadata_for(2, 8)
    dataset_writer.write_dataset(self.data_path, {"train": trajectories},
                                 metadata)
    return os.path.join(self.data_path, "train.tfrecord")

  def test_values_are_checked_per_trajectory(self):
    good = dataset_writer.Trajectory(np.zeros([9, 5, 2], np.float32),
                                     np.full([5], 5, np.int64))
    bad_position = np.zeros([9, 5, 2], np.float32)
    bad_position[4, 1, 0] = np.inf
    bad_type = np.full([5], 5, np.int64)
    bad_type[3] = -1
    for trajectory, message in (
        (good._replace(positions=bad_position),
         r"has a non-finite position \(NaN or inf\)"),
        (good._replace(particle_types=bad_type),
         "has particle type -1; types must be in 0..8")):
      path = self._write_split([good, good, trajectory])
      with self.assertRaisesRegex(
          reading_utils.DatasetError,
          f"^{path}: trajectory 2 \\(record 2\\) {message}$"):
        list(reading_utils.iterate(
            reading_utils.load_trajectories(self.data_path, "train"), path))
      # Opt-in: skipped, the others are read.
      self.assertLen(list(reading_utils.load_trajectories(
          self.data_path, "train", skip_corrupt_records=True)), 2)

  def test_framing(self):
    good = dataset_writer.Trajectory(np.zeros([9, 5, 2], np.float32),
                                     np.full([5], 5, np.int64))
    path = self._write_split([good] * 3)
    offsets = list(reading_utils.record_offsets(path))
    length = offsets[0][1]
    self.assertEqual(offsets, [(i * (length + 16), length) for i in range(3)])
    self.assertEqual(reading_utils.check_split(self.data_path, "train"), 3)
    # TensorFlow names the header or the data of the damaged record.
    for offset in (offsets[1][0], offsets[1][0] + 12):
      self.assertEqual(
          reading_utils.describe_data_loss(
              path, f"{{node}} corrupted record at {offset} [Op:Next]"),
          f"{path}: record 1 at byte offset {offsets[1][0]} is damaged: its "
          "checksum does not match (a damaged byte); restore the file, or "
          "pass --skip_corrupt_records to skip damaged records")
    # A header cut short is a truncated file too.
    with open(path, "r+b") as f:
      f.truncate(offsets[2][0] + 5)
    with self.assertRaisesRegex(
        reading_utils.DatasetError,
        f"^{path}: record 2 at byte offset {offsets[2][0]} runs past the end "
        "of the file"):
      reading_utils.check_split(self.data_path, "train")


if __name__ == "__main__":
  tf.test.main()
