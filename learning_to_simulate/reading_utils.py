"""Reading the DeepMind particle datasets: metadata, records, input pipelines.

A dataset directory holds `metadata.json` and `{train,valid,test}.tfrecord`
(layout in ../shared/FORMAT.md; Sanchez-Gonzalez et al. 2020,
arXiv:2002.09405). Records are decoded in-graph with `tf.io.decode_raw`, and
training windows of `WINDOW_LENGTH` frames are sliced lazily from one
trajectory at a time, so memory does not grow with trajectory length or
dataset size.
"""

import json
import os
import re
from typing import Any, Dict, Iterator, Optional, Tuple

from absl import logging
import tensorflow as tf

from learning_to_simulate.data import common

Metadata = Dict[str, Any]
# `(num_shards, index)`: this reader's share of a split's records, those whose
# position in the file is `index` modulo `num_shards` (one input pipeline of
# a distributed run, see `training.distribution`).
Shard = Tuple[int, int]
_REQUIRED_KEYS = ("bounds", "sequence_length", "default_connectivity_radius",
                  "dim", "vel_mean", "vel_std", "acc_mean", "acc_std")


# A dataset's metadata file; training copies it into the model directory.
METADATA_FILENAME = "metadata.json"


def bundled_dataset_path(name: str = "water_drop") -> str:
  """A small dataset shipped inside the package: `water_drop` (2D water, with
  train, valid and test splits), `multi_material` (2D water, sand and goop)
  or `water_walls` (the water sample's test split with two layers of wall
  particles): the test split of the pretrained model of that name."""
  return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                      f"{name}_sample")


class DatasetError(ValueError):
  """A dataset file is missing or does not have the expected content."""


def read_metadata(data_path: str) -> Metadata:
  """Reads and validates `{data_path}/metadata.json`.

  Raises:
    DatasetError: the file is missing, is not JSON, or lacks a field or has
      one of the wrong shape.
  """
  path = os.path.join(data_path, "metadata.json")
  if not os.path.isdir(data_path):
    raise DatasetError(f"--data_path {data_path!r} is not a directory "
                       "(expected a dataset directory with metadata.json and "
                       "train/valid/test.tfrecord)")
  try:
    with open(path, "rt") as f:
      metadata = json.load(f)
  except FileNotFoundError:
    raise DatasetError(f"{path} not found: a dataset directory needs a "
                       "metadata.json") from None
  except json.JSONDecodeError as e:
    raise DatasetError(f"{path} is not valid JSON: {e}") from None
  validate_metadata(metadata, path)
  return metadata


def validate_metadata(metadata: Any, path: str = "metadata.json") -> None:
  """Checks the fields the model needs; raises `DatasetError` naming `path`."""
  if not isinstance(metadata, dict):
    raise DatasetError(f"{path}: expected a JSON object, got "
                       f"{type(metadata).__name__}")
  missing = [k for k in _REQUIRED_KEYS if k not in metadata]
  if missing:
    raise DatasetError(f"{path}: missing field(s) {', '.join(missing)}")
  dim = metadata["dim"]
  if not isinstance(dim, int) or dim < 1:
    raise DatasetError(f"{path}: 'dim' must be a positive integer, got {dim!r}")
  sequence_length = metadata["sequence_length"]
  if (not isinstance(sequence_length, int) or
      sequence_length < common.INPUT_SEQUENCE_LENGTH):
    raise DatasetError(
        f"{path}: 'sequence_length' must be an integer >= "
        f"{common.INPUT_SEQUENCE_LENGTH}, got {sequence_length!r}")
  radius = metadata["default_connectivity_radius"]
  if not isinstance(radius, (int, float)) or radius <= 0:
    raise DatasetError(f"{path}: 'default_connectivity_radius' must be a "
                       f"positive number, got {radius!r}")
  bounds = metadata["bounds"]
  if (not isinstance(bounds, list) or len(bounds) != dim or
      any(not isinstance(b, list) or len(b) != 2 for b in bounds)):
    raise DatasetError(f"{path}: 'bounds' must be [[lo, hi]] * dim (dim={dim}),"
                       f" got {bounds!r}")
  for key in ("vel_mean", "vel_std", "acc_mean", "acc_std"):
    value = metadata[key]
    if not isinstance(value, list) or len(value) != dim:
      raise DatasetError(f"{path}: '{key}' must be a list of {dim} numbers, "
                         f"got {value!r}")
  if ("context_mean" in metadata) != ("context_std" in metadata):
    raise DatasetError(f"{path}: 'context_mean' and 'context_std' must be "
                       "given together")
  if "context_mean" in metadata and (
      len(metadata["context_mean"]) != len(metadata["context_std"])):
    raise DatasetError(f"{path}: 'context_mean' and 'context_std' differ in "
                       "length")


def split_file(data_path: str, split: str) -> str:
  """Path of a split's TFRecord; raises `DatasetError` if it is missing."""
  if split not in common.SPLITS:
    raise DatasetError(f"unknown split {split!r}; expected one of "
                       f"{common.SPLITS}")
  path = os.path.join(data_path, f"{split}.tfrecord")
  if not os.path.isfile(path):
    raise DatasetError(f"{path} not found: --data_path {data_path!r} has no "
                       f"{split} split (expected {split}.tfrecord)")
  return path


# TFRecord framing: uint64 length, uint32 masked CRC of the length, the data,
# uint32 masked CRC of the data.
_HEADER_BYTES = 12
_FRAMING_BYTES = 16


def record_offsets(path: str) -> Iterator[Tuple[int, int]]:
  """`(byte offset, data length)` of each record, read from the framing.

  Only the 8-byte length fields are read (no decoding, no checksums), so this
  seeks from header to header. The last record yielded may run past the end
  of a truncated file; a header cut short is not yielded.
  """
  size = os.path.getsize(path)
  offset = 0
  with open(path, "rb") as f:
    while offset + _HEADER_BYTES <= size:
      f.seek(offset)
      length = int.from_bytes(f.read(8), "little")
      yield offset, length
      offset += _FRAMING_BYTES + length


def count_records(data_path: str, split: str) -> int:
  """Trajectories in a split, from the TFRecord framing (no decoding)."""
  return sum(1 for _ in record_offsets(split_file(data_path, split)))


def check_split(data_path: str, split: str,
                skip_corrupt_records: bool = False) -> int:
  """Checks a split file's framing; returns its number of complete records.

  Reads only the length fields, so a truncated file (an interrupted
  download or copy) is caught before any training step; flipped bytes are
  caught by the record checksums while reading (see `iterate`).

  Raises:
    DatasetError: the file is missing or holds no trajectory, or (unless
      `skip_corrupt_records`) its last record runs past the end of the file.
  """
  path = split_file(data_path, split)
  size = os.path.getsize(path)
  count, end = 0, 0  # Complete records, and where the last one ends.
  for offset, length in record_offsets(path):
    if offset + _FRAMING_BYTES + length > size:
      break
    count += 1
    end = offset + _FRAMING_BYTES + length
  if end != size:  # A record runs past the end, or a header is cut short.
    message = (f"{path}: record {count} at byte offset {end} runs past the "
               f"end of the file ({size} bytes): the file is truncated")
    if not skip_corrupt_records:
      raise DatasetError(f"{message}; download or copy it again, or pass "
                         "--skip_corrupt_records to read the complete "
                         "records only")
    logging.warning("%s; --skip_corrupt_records: reading its %d complete "
                    "records.", message, count)
  if not count:
    raise DatasetError(f"{path} holds no trajectories")
  return count


def verify_split(data_path: str, split: str) -> int:
  """Reads every record of a split file with its checksums; returns how many.

  The framing first (`check_split`: a truncated file), then each record's
  bytes through TensorFlow's reader, which checks the CRCs (a flipped byte),
  without decoding them. For a download, before anything trains on it.

  Raises:
    DatasetError: the file is missing, truncated or damaged (one line, with
      the byte offset of the bad record).
  """
  count = check_split(data_path, split)
  path = split_file(data_path, split)
  try:
    for _ in tf.data.TFRecordDataset([path]):
      pass
  except tf.errors.DataLossError as error:
    raise DatasetError(describe_data_loss(path, error.message)) from None
  return count


_DATA_LOSS = re.compile(r"(corrupted|truncated) record at (\d+)")


def describe_data_loss(path: str, message: str) -> str:
  """One line naming the damaged record of `path` from a `DataLossError`.

  Args:
    path: the TFRecord file the dataset reads.
    message: the error's message, e.g. `corrupted record at 3111`.
  """
  match = _DATA_LOSS.search(message)
  if match is None:
    first = next((line for line in message.splitlines() if line.strip()), "")
    return f"{path}: unreadable: {first.strip()}"
  kind, offset = match.group(1), int(match.group(2))
  # TensorFlow names the offset of the record's header or of its data.
  index, start = -1, offset
  for record_start, _ in record_offsets(path):
    if record_start > offset:
      break
    index, start = index + 1, record_start
  reason = ("its checksum does not match (a damaged byte)"
            if kind == "corrupted" else "the file ends inside it")
  return (f"{path}: record {index} at byte offset {start} is damaged: "
          f"{reason}; restore the file, or pass --skip_corrupt_records to "
          "skip damaged records")


def iterate(dataset: tf.data.Dataset, path: str) -> Iterator[Any]:
  """Iterates `dataset`, read from `path`, with one-line errors.

  Raises:
    DatasetError: a record is damaged (`tf.errors.DataLossError`: named with
      its byte offset) or fails a check of
      `parse_serialized_simulation_example` (the check's message).
  """
  try:
    yield from dataset
  except tf.errors.DataLossError as error:
    raise DatasetError(describe_data_loss(path, error.message)) from None
  except tf.errors.InvalidArgumentError as error:
    start = error.message.find(f"{path}: ")
    if start < 0:
      raise
    line = error.message[start:].splitlines()[0]
    raise DatasetError(line.split("]")[0].strip()) from None


def has_context(metadata: Metadata) -> bool:
  return "context_mean" in metadata


def parse_serialized_simulation_example(
    example_proto: tf.Tensor, metadata: Metadata,
    filename: str = "<tfrecord>",
    record_index: Optional[tf.Tensor] = None
) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
  """Decodes one trajectory record in-graph.

  Args:
    example_proto: scalar string, a serialized `tf.train.SequenceExample`.
    metadata: the dataset metadata.
    filename: named in the error raised for a malformed record.
    record_index: optional int64 scalar, the record's position in the file
      (named in the errors next to the trajectory's `key`).

  Returns:
    context: `key` (int64 scalar) and `particle_type` (`[num_particles]`
      int64).
    features: `position` (`[sequence_length + 1, num_particles, dim]`
      float32) and, with a global context, `step_context`
      (`[sequence_length + 1, context_size]` float32).

  Raises:
    tf.errors.InvalidArgumentError (when run) naming `filename` if a record
    does not fit `[sequence_length + 1, -1, dim]`, and naming `filename`
    and the trajectory if it has a non-finite position or context or a
    particle type outside `0..NUM_PARTICLE_TYPES - 1`.
  """
  num_frames = metadata["sequence_length"] + 1
  dim = metadata["dim"]
  sequence_features = {
      "position": tf.io.FixedLenSequenceFeature([], tf.string)}
  if has_context(metadata):
    sequence_features["step_context"] = tf.io.FixedLenSequenceFeature(
        [], tf.string)
  context_features = {
      "key": tf.io.FixedLenFeature([], tf.int64, default_value=0),
      "particle_type": tf.io.FixedLenFeature([], tf.string),
  }
  context, features = tf.io.parse_single_sequence_example(
      example_proto, context_features=context_features,
      sequence_features=sequence_features)

  frames = features["position"]
  frame_bytes = tf.strings.length(frames)
  num_particle_bytes = tf.strings.length(context["particle_type"])
  expected = (f"{filename}: each record must hold {num_frames} position "
              f"frames (sequence_length + 1) of float32 [num_particles, {dim}]"
              " matching its int64 particle_type")
  checks = [
      tf.debugging.assert_equal(tf.size(frames), num_frames, message=expected),
      tf.debugging.assert_equal(frame_bytes, frame_bytes[0], message=expected),
      tf.debugging.assert_equal(
          tf.math.floormod(frame_bytes[0], 4 * dim), 0, message=expected),
      tf.debugging.assert_equal(
          frame_bytes[0] // (4 * dim), num_particle_bytes // 8,
          message=expected),
      tf.debugging.assert_equal(tf.math.floormod(num_particle_bytes, 8), 0,
                                message=expected),
  ]
  with tf.control_dependencies(checks):
    position = tf.io.decode_raw(frames, tf.float32)
    particle_type = tf.io.decode_raw(context["particle_type"], tf.int64)
  out_features = {
      "position": tf.reshape(position, [num_frames, -1, dim])}
  if has_context(metadata):
    context_size = len(metadata["context_mean"])
    step_context = features["step_context"]
    with tf.control_dependencies([tf.debugging.assert_equal(
        tf.size(step_context), num_frames,
        message=f"{filename}: each record must hold {num_frames} "
        "step_context frames")]):
      step_context = tf.io.decode_raw(step_context, tf.float32)
    out_features["step_context"] = tf.reshape(
        step_context, [num_frames, context_size])
  out_context = {"key": context["key"],
                 "particle_type": tf.reshape(particle_type, [-1])}
  return out_context, _checked_values(out_context, out_features, filename,
                                      record_index)


def _checked_values(context: Dict[str, tf.Tensor],
                    features: Dict[str, tf.Tensor], filename: str,
                    record_index: Optional[tf.Tensor]
                    ) -> Dict[str, tf.Tensor]:
  """`features`, once the trajectory's values are known to be usable.

  A NaN position would train to NaN weights and a type out of range would
  fail deep in the embedding lookup, so both fail here, naming the file and
  the trajectory. One reduction per trajectory (not per training window).
  """
  trajectory = ["trajectory ", tf.strings.as_string(context["key"])]
  if record_index is not None:
    trajectory += [" (record ", tf.strings.as_string(record_index), ")"]

  def message(*parts):
    return tf.strings.join([f"{filename}: ", *trajectory, *parts])

  particle_type = context["particle_type"]
  valid_type = (particle_type >= 0) & (
      particle_type < common.NUM_PARTICLE_TYPES)
  first_invalid = tf.boolean_mask(particle_type, ~valid_type)[:1]
  checks = [tf.debugging.Assert(tf.reduce_all(valid_type), [message(
      " has particle type ",
      tf.strings.reduce_join(tf.strings.as_string(first_invalid)),
      f"; types must be in 0..{common.NUM_PARTICLE_TYPES - 1}")])]
  for name, value in features.items():
    checks.append(tf.debugging.Assert(
        tf.reduce_all(tf.math.is_finite(value)),
        [message(f" has a non-finite {name} (NaN or inf)")]))
  with tf.control_dependencies(checks):
    return {name: tf.identity(value) for name, value in features.items()}


def load_trajectories(data_path: str, split: str,
                      metadata: Optional[Metadata] = None,
                      skip_corrupt_records: bool = False,
                      shard: Optional[Shard] = None) -> tf.data.Dataset:
  """Dataset of `(context, features)` trajectories of one split.

  With `skip_corrupt_records`, a record that fails a check of
  `parse_serialized_simulation_example` is skipped with a warning; a record
  whose checksum fails ends the reading of the file (TensorFlow's TFRecord
  reader moves on to the next file), so the records after it are lost too.
  With `shard=(num_shards, index)` only records `index`, `index +
  num_shards`, ... are decoded (the others are read and dropped undecoded).
  """
  if metadata is None:
    metadata = read_metadata(data_path)
  filename = split_file(data_path, split)
  dataset = tf.data.TFRecordDataset([filename]).enumerate()
  if shard is not None:
    dataset = dataset.shard(*shard)
  dataset = dataset.map(
      lambda index, proto: parse_serialized_simulation_example(
          proto, metadata, filename, index),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if skip_corrupt_records:
    dataset = dataset.ignore_errors(log_warning=True)
  return dataset


def split_trajectory(context: Dict[str, tf.Tensor],
                     features: Dict[str, tf.Tensor],
                     window_length: int = common.WINDOW_LENGTH
                     ) -> tf.data.Dataset:
  """Lazily slices a trajectory into all windows of `window_length` frames.

  Returns:
    Dataset of dicts: `position` `[window_length, num_particles, dim]`,
    `particle_type` `[num_particles]` and, with a global context,
    `step_context` `[window_length, context_size]`.
  """
  num_frames = tf.shape(features["position"], out_type=tf.int64)[0]

  def window(start):
    position = features["position"][start:start + window_length]
    out = {"particle_type": context["particle_type"],
           "position": tf.ensure_shape(
               position, [window_length] + position.shape[1:])}
    if "step_context" in features:
      step_context = features["step_context"][start:start + window_length]
      out["step_context"] = tf.ensure_shape(
          step_context, [window_length] + step_context.shape[1:])
    return out

  return tf.data.Dataset.range(num_frames - window_length + 1).map(window)


def prepare_inputs(window: Dict[str, tf.Tensor]
                   ) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
  """Splits a window into model inputs and the target next position.

  Returns:
    features: `position` `[num_particles, INPUT_SEQUENCE_LENGTH, dim]`,
      `particle_type` `[num_particles]` and optionally `step_context`
      `[context_size]` (the context of the last input frame).
    target_position: `[num_particles, dim]`.
  """
  position = tf.transpose(window["position"], [1, 0, 2])
  features = {"position": position[:, :-1],
              "particle_type": window["particle_type"]}
  if "step_context" in window:
    features["step_context"] = window["step_context"][-2]
  return features, position[:, -1]


def _concat_examples(features: Dict[str, tf.RaggedTensor]
                     ) -> Dict[str, tf.Tensor]:
  """Ragged batch -> examples concatenated on the particle axis."""
  position = features["position"]
  out = {"position": position.values,
         "particle_type": features["particle_type"].values,
         "n_particles_per_example": tf.cast(position.row_lengths(), tf.int32)}
  if "step_context" in features:
    out["step_context"] = features["step_context"]
  return out


def _concat_batch(features, target):
  return _concat_examples(features), target.values


def get_one_step_dataset(data_path: str, split: str, batch_size: int,
                         metadata: Metadata, is_training: bool,
                         shuffle_buffer_size: int = 512,
                         seed: Optional[int] = None,
                         skip_corrupt_records: bool = False,
                         shard: Optional[Shard] = None
                         ) -> tf.data.Dataset:
  """Batches of one-step examples (`features`, `target_position`).

  Examples are concatenated on the particle axis; `n_particles_per_example`
  `[batch_size]` marks where each one starts. In training the windows repeat
  forever and are shuffled with a buffer of `shuffle_buffer_size`, as in the
  original. `skip_corrupt_records`, `shard`: see `load_trajectories`.
  """
  ds = load_trajectories(data_path, split, metadata, skip_corrupt_records,
                         shard)
  ds = ds.flat_map(split_trajectory)
  ds = ds.map(prepare_inputs, num_parallel_calls=tf.data.AUTOTUNE)
  if is_training:
    ds = ds.repeat()
    ds = ds.shuffle(shuffle_buffer_size, seed=seed)
  ds = ds.ragged_batch(batch_size)
  ds = ds.map(_concat_batch)
  return ds.prefetch(tf.data.AUTOTUNE)


def _window_inputs(window: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """`position` `[window_length, N, dim]` -> `[N, window_length, dim]`."""
  return dict(window, position=tf.transpose(window["position"], [1, 0, 2]))


def get_window_dataset(data_path: str, split: str, batch_size: int,
                       metadata: Metadata, window_length: int,
                       shuffle_buffer_size: int = 512,
                       seed: Optional[int] = None,
                       skip_corrupt_records: bool = False,
                       shard: Optional[Shard] = None
                       ) -> tf.data.Dataset:
  """Training batches of whole windows, for training through unrolls.

  Like `get_one_step_dataset(is_training=True)`, but each example keeps all
  `window_length` frames: `position` `[num_particles_in_batch,
  window_length, dim]`, `particle_type`, `n_particles_per_example`
  `[batch_size]` and, with a global context, `step_context` `[batch_size,
  window_length, context_size]`. `skip_corrupt_records`, `shard`: see
  `load_trajectories`.
  """
  ds = load_trajectories(data_path, split, metadata, skip_corrupt_records,
                         shard)
  ds = ds.flat_map(lambda context, features: split_trajectory(
      context, features, window_length))
  ds = ds.map(_window_inputs, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.repeat().shuffle(shuffle_buffer_size, seed=seed)
  ds = ds.ragged_batch(batch_size).map(_concat_examples)
  return ds.prefetch(tf.data.AUTOTUNE)


def prepare_rollout_inputs(context: Dict[str, tf.Tensor],
                           features: Dict[str, tf.Tensor]
                           ) -> Dict[str, tf.Tensor]:
  """A whole trajectory as rollout inputs.

  Returns:
    Dict with `position` `[num_particles, sequence_length, dim]` (the
    original drops the last stored frame), `particle_type`, `key`,
    `n_particles_per_example` `[1]` and, with a global context,
    `step_context` `[sequence_length + 1, context_size]`.
  """
  position = tf.transpose(features["position"], [1, 0, 2])
  out = {"key": context["key"],
         "particle_type": context["particle_type"],
         "position": position[:, :-1],
         "n_particles_per_example": tf.shape(position)[:1]}
  if "step_context" in features:
    out["step_context"] = features["step_context"]
  return out


def get_rollout_dataset(data_path: str, split: str, metadata: Metadata,
                        skip_corrupt_records: bool = False,
                        shard: Optional[Shard] = None) -> tf.data.Dataset:
  """One element per trajectory of `split`, see `prepare_rollout_inputs`.

  `skip_corrupt_records`, `shard`: see `load_trajectories`.
  """
  return load_trajectories(data_path, split, metadata,
                           skip_corrupt_records, shard).map(
      prepare_rollout_inputs).prefetch(1)
