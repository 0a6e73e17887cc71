"""Writes trajectories in the DeepMind particle-dataset format.

One TFRecord record per trajectory, a serialized `tf.train.SequenceExample`
(see `reading_utils` for the reader and ../shared/FORMAT.md for the layout):
context `key` (int64) and `particle_type` (raw int64 bytes); feature lists
`position` (one raw float32 `[num_particles, dim]` frame per value) and, when
the dataset has a global context, `step_context` (raw float32 `[context_size]`).

Every file is written under a temporary name and moved into place only when
complete, so an interrupted write never leaves a half-written dataset.
"""

import contextlib
import json
import os
import shutil
import tempfile
from typing import (Any, Dict, Iterable, Iterator, List, Mapping, NamedTuple,
                    Optional)

import numpy as np
import tensorflow as tf

from learning_to_simulate.data import common


class Trajectory(NamedTuple):
  """One simulated trajectory.

  Attributes:
    positions: `[num_frames, num_particles, dim]` float32 positions; a dataset
      with `sequence_length` L stores L + 1 frames.
    particle_types: `[num_particles]` int64 particle types.
    step_context: optional `[num_frames, context_size]` float32 global context.
  """
  positions: np.ndarray
  particle_types: np.ndarray
  step_context: Optional[np.ndarray] = None


def serialize_trajectory(trajectory: Trajectory, key: int) -> bytes:
  """Serializes one trajectory as a `tf.train.SequenceExample`."""
  positions = np.asarray(trajectory.positions, dtype=np.float32)
  particle_types = np.asarray(trajectory.particle_types, dtype=np.int64)
  if positions.ndim != 3:
    raise ValueError("positions must be [num_frames, num_particles, dim], got "
                     f"shape {positions.shape}")
  if particle_types.shape != (positions.shape[1],):
    raise ValueError(f"particle_types must be [{positions.shape[1]}], got "
                     f"shape {particle_types.shape}")

  def bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

  context = tf.train.Features(feature={
      "key": tf.train.Feature(int64_list=tf.train.Int64List(value=[key])),
      "particle_type": bytes_feature(particle_types.tobytes()),
  })
  feature_lists = {
      "position": tf.train.FeatureList(
          feature=[bytes_feature(frame.tobytes()) for frame in positions]),
  }
  if trajectory.step_context is not None:
    step_context = np.asarray(trajectory.step_context, dtype=np.float32)
    if step_context.ndim != 2 or step_context.shape[0] != positions.shape[0]:
      raise ValueError("step_context must be [num_frames, context_size] with "
                       f"num_frames={positions.shape[0]}, got shape "
                       f"{step_context.shape}")
    feature_lists["step_context"] = tf.train.FeatureList(
        feature=[bytes_feature(frame.tobytes()) for frame in step_context])
  example = tf.train.SequenceExample(
      context=context,
      feature_lists=tf.train.FeatureLists(feature_list=feature_lists))
  # Deterministic: the context map is written in a fixed order, so the
  # same trajectory gives the same bytes in every process.
  return example.SerializeToString(deterministic=True)


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_file(path: str) -> Iterator[str]:
  """Yields a temporary path beside `path`; moves it to `path` on success.

  The file gets the permissions a plain `open` would give (0666 less the
  umask); on an exception it is removed and `path` is left untouched.
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  stem, extension = os.path.splitext(os.path.basename(path))
  # The extension stays last: writers such as ffmpeg pick the format by it.
  fd, tmp_path = tempfile.mkstemp(prefix=f".{stem}.",
                                  suffix=f".tmp{extension}", dir=directory)
  os.close(fd)
  try:
    yield tmp_path
    os.chmod(tmp_path, 0o666 & ~_umask())
    os.replace(tmp_path, path)
  finally:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)


def make_directory(path: str, flag: str) -> None:
  """Creates the directory `path` if needed; `flag` names it in errors.

  Raises:
    ValueError: `path` is an existing file, cannot be created, or is not
      writable.
  """
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"{flag} {path!r} is an existing file, not a directory")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as error:
    raise ValueError(f"cannot create {flag} {path!r}: "
                     f"{error.strerror or error}") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise ValueError(f"{flag} {path!r} is not writable")


def write_tfrecord(path: str, trajectories: Iterable[Trajectory]) -> int:
  """Writes `trajectories` (keys 0, 1, ...) to `path`; returns their number."""
  count = 0
  with atomic_file(path) as tmp_path:
    with tf.io.TFRecordWriter(tmp_path) as writer:
      for key, trajectory in enumerate(trajectories):
        writer.write(serialize_trajectory(trajectory, key))
        count += 1
  return count


def write_json(path: str, value: Any) -> None:
  """Writes `value` as indented JSON to `path`, atomically."""
  with atomic_file(path) as tmp_path:
    with open(tmp_path, "w") as f:
      json.dump(value, f, indent=2, sort_keys=True)
      f.write("\n")


def compute_statistics(trajectories: Iterable[Trajectory]) -> Dict[str, List[float]]:
  """Velocity and acceleration statistics, as the metadata stores them.

  Velocities are first differences of positions and accelerations second
  differences, in position units per frame (no division by `dt`). Statistics
  are per dimension, over every frame of every non-kinematic particle
  (kinematic particles are prescribed, so they do not describe the dynamics
  the model learns). Accumulated in float64.

  Returns:
    Dict with `vel_mean`, `vel_std`, `acc_mean`, `acc_std`, each `[dim]`.
  """
  sums = {"vel": None, "acc": None}
  squares = {"vel": None, "acc": None}
  counts = {"vel": 0, "acc": 0}
  for trajectory in trajectories:
    positions = np.asarray(trajectory.positions, dtype=np.float64)
    moving = np.asarray(trajectory.particle_types) != common.ParticleType.KINEMATIC
    positions = positions[:, moving]
    velocities = np.diff(positions, axis=0)
    accelerations = np.diff(velocities, axis=0)
    for name, values in (("vel", velocities), ("acc", accelerations)):
      flat = values.reshape(-1, values.shape[-1])
      if sums[name] is None:
        sums[name] = np.zeros(flat.shape[-1])
        squares[name] = np.zeros(flat.shape[-1])
      sums[name] += flat.sum(axis=0)
      squares[name] += (flat ** 2).sum(axis=0)
      counts[name] += flat.shape[0]
  stats = {}
  for name in ("vel", "acc"):
    if not counts[name]:
      raise ValueError("need at least one non-kinematic particle and three "
                       "frames to compute statistics")
    mean = sums[name] / counts[name]
    var = np.maximum(squares[name] / counts[name] - mean ** 2, 0.0)
    stats[f"{name}_mean"] = mean.tolist()
    stats[f"{name}_std"] = np.sqrt(var).tolist()
  return stats


@contextlib.contextmanager
def staged_directory(output_path: str, replace: bool = False) -> Iterator[str]:
  """Yields an empty temporary directory that becomes `output_path` on success.

  The directory is made beside `output_path` (same file system, so moving it
  is a rename) with the permissions a plain `mkdir` would give. On an
  exception it is removed and `output_path` is left untouched.

  Args:
    output_path: the directory to create.
    replace: if `output_path` exists, replace it whole (it is renamed aside,
      the new one renamed into place, then the old one removed). Otherwise
      the staged entries are moved into the existing directory one by one,
      replacing those of the same name and keeping the others.
  """
  output_path = os.path.abspath(output_path)
  parent = os.path.dirname(output_path)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix="." + os.path.basename(output_path) + ".",
                             dir=parent)
  os.chmod(staging, 0o777 & ~_umask())
  try:
    yield staging
    if not os.path.exists(output_path):
      os.replace(staging, output_path)
    elif replace:
      old = tempfile.mkdtemp(prefix="." + os.path.basename(output_path) +
                             ".old.", dir=parent)
      os.replace(output_path, os.path.join(old, "previous"))
      os.replace(staging, output_path)
      shutil.rmtree(old, ignore_errors=True)
    else:
      for name in os.listdir(staging):
        os.replace(os.path.join(staging, name),
                   os.path.join(output_path, name))
  finally:
    shutil.rmtree(staging, ignore_errors=True)


def write_dataset(output_path: str,
                  splits: Mapping[str, Iterable[Trajectory]],
                  metadata: Mapping[str, Any]) -> None:
  """Writes a complete dataset directory, moved into place only when done.

  Args:
    output_path: the dataset directory to create. If it exists, its
      `metadata.json` and split files are replaced; other files stay.
    splits: split name (`train`, `valid`, `test`) -> trajectories (any
      iterable: a generator streams them, one in memory at a time).
    metadata: the `metadata.json` content.
  """
  with staged_directory(output_path) as staging:
    for split, trajectories in splits.items():
      write_tfrecord(os.path.join(staging, f"{split}.tfrecord"), trajectories)
    write_json(os.path.join(staging, "metadata.json"), dict(metadata))
