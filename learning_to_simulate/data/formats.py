"""Other particle-dataset layouts, read a trajectory at a time; gns npz written.

Each reader yields `RawTrajectory` values, unchecked (`convert` checks them),
one trajectory in memory at a time:

- `npz`, the layout of gns (geoelements/gns, `docs/gns_data.md`):
  `{split}.npz`, one entry per trajectory, each a pickled object array
  `(positions [num_frames, num_particles, dim], particle_type [num_particles]
  or a scalar[, material_property])`; or one `gns_data` entry holding all of
  them (read whole). Pickles can run code when loaded: read files you trust.
- `hdf5`, the layout of LagrangeBench (tumaer/lagrangebench,
  `lagrangebench/data/data.py`): `{split}.h5` with one group per trajectory
  (`00000`, `00001`, ...), each holding `position` `[num_frames,
  num_particles, dim]` and `particle_type` `[num_particles]`.
- `folder`: `{split}/` directories of one `.npz` file per trajectory (plain
  arrays, no pickles), `positions` `[num_frames, num_particles, dim]`,
  `particle_types` `[num_particles]` and optionally `step_context`
  `[num_frames, context_size]`, taken in natural file-name order.
- `tfrecord`: this package's own (DeepMind) layout, through `reading_utils`.

`write_gns_npz` writes the gns layout back, streamed into the zip archive.
"""

import os
import pickle
import re
import zipfile
from typing import Any, Iterable, Iterator, List, NamedTuple

import h5py
import numpy as np
import tensorflow as tf

from learning_to_simulate.data import dataset_writer
from learning_to_simulate import reading_utils

FORMATS = ("npz", "hdf5", "folder", "tfrecord")
# Where each format keeps a split, `{split}` filled in.
SPLIT_PATTERNS = {"npz": "{split}.npz", "hdf5": "{split}.h5",
                  "folder": "{split}", "tfrecord": "{split}.tfrecord"}
# gns also accepts one entry holding every trajectory under this name.
GNS_DATA_KEY = "gns_data"
# Entry names `write_gns_npz` gives trajectories, `{index}` filled in.
GNS_TRAJECTORY_KEY = "simulation_trajectory_{index}"


class RawTrajectory(NamedTuple):
  """One trajectory as read, before any check.

  Attributes:
    source: the file it comes from (named in errors).
    name: its name in that file (entry, group, file stem or record index).
    positions: should be `[num_frames, num_particles, dim]`.
    particle_types: should be `[num_particles]` integers (a scalar: every
      particle has that type).
    step_context: `[num_frames, context_size]` when the format has one.
    material_property: gns's optional per-trajectory property (a scalar, or
      per particle and then the same for every particle).
  """
  source: str
  name: str
  positions: Any
  particle_types: Any
  step_context: Any = None
  material_property: Any = None


def split_path(input_path: str, input_format: str, split: str) -> str:
  """Path of a split in `input_format`; raises `ValueError` if it is missing."""
  if input_format not in FORMATS:
    raise ValueError(f"unknown format {input_format!r}; expected one of "
                     f"{', '.join(FORMATS)}")
  name = SPLIT_PATTERNS[input_format].format(split=split)
  path = os.path.join(input_path, name)
  exists = (os.path.isdir(path) if input_format == "folder"
            else os.path.isfile(path))
  if not exists:
    raise ValueError(f"{path} not found: {input_path} has no {split} split "
                     f"(expected {name} for --input_format={input_format})")
  return path


def read_split(input_path: str, input_format: str,
               split: str) -> Iterator[RawTrajectory]:
  """The trajectories of one split, one at a time."""
  path = split_path(input_path, input_format, split)
  if input_format == "npz":
    return read_gns_npz(path)
  if input_format == "hdf5":
    return read_lagrangebench_hdf5(path)
  if input_format == "folder":
    return read_folder(path)
  return read_tfrecord(input_path, split)


# ---------------------------------------------------------------------------
# gns npz.


def _unpack_gns_item(item: Any, path: str, name: str) -> RawTrajectory:
  if isinstance(item, np.ndarray) and item.dtype == object and item.ndim == 1:
    item = list(item)
  if not isinstance(item, (list, tuple)) or len(item) not in (2, 3):
    shape = getattr(item, "shape", None)
    raise ValueError(f"{path}: trajectory {name}: expected a (positions, "
                     "particle_type[, material_property]) tuple, got "
                     f"{type(item).__name__}"
                     + (f" of shape {shape}" if shape is not None else ""))
  material = item[2] if len(item) == 3 else None
  return RawTrajectory(path, name, item[0], item[1],
                       material_property=material)


def read_gns_npz(path: str) -> Iterator[RawTrajectory]:
  """Trajectories of a gns `.npz` file, one entry loaded at a time."""
  # Checked first: np.load would unpickle any other file.
  if not zipfile.is_zipfile(path):
    raise ValueError(f"{path} is not a readable npz file (a dict of "
                     "trajectories saved with np.savez)")
  try:
    archive = np.load(path, allow_pickle=True)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path} is not a readable npz file: {e}") from None
  with archive:
    if GNS_DATA_KEY in archive.files:
      entries = ((f"{GNS_DATA_KEY}[{i}]", item) for i, item in
                 enumerate(_load_entry(archive, GNS_DATA_KEY, path)))
    else:
      entries = ((key, _load_entry(archive, key, path))
                 for key in archive.files)
    for name, item in entries:
      yield _unpack_gns_item(item, path, name)


def _load_entry(archive, key: str, path: str) -> Any:
  try:
    return archive[key]
  except (OSError, ValueError, EOFError, zipfile.BadZipFile,
          pickle.UnpicklingError) as e:
    raise ValueError(f"{path}: trajectory {key}: unreadable entry: "
                     f"{e}") from None


def _gns_item(trajectory: dataset_writer.Trajectory, path: str,
              name: str) -> np.ndarray:
  """`(positions, particle_type[, material_property])` as an object array."""
  fields = [trajectory.positions, trajectory.particle_types]
  context = trajectory.step_context
  if context is not None:
    if not np.all(context == context[:1]):
      raise ValueError(f"{path}: trajectory {name}: its step_context changes "
                       "over time; gns npz holds one material property per "
                       "trajectory")
    # One value: a scalar, as gns stores it; several: one row per particle.
    fields.append(context[0, 0] if context.shape[1] == 1 else
                  np.tile(context[0], (len(trajectory.particle_types), 1)))
  item = np.empty(len(fields), dtype=object)  # Never a ragged-array guess.
  for i, field in enumerate(fields):
    item[i] = field
  return item


def write_gns_npz(path: str,
                  trajectories: Iterable[dataset_writer.Trajectory]) -> int:
  """Writes trajectories as a gns `.npz`, atomically; returns their number.

  Entries are `simulation_trajectory_{index}`, each an object array
  `(positions, particle_types[, material_property])` written straight into
  the (uncompressed, like `np.savez`) archive, so one trajectory is in memory
  at a time. A trajectory's `step_context` must be constant over time: it
  becomes the material property (a scalar for one value, `[num_particles,
  context_size]` rows otherwise).
  """
  count = 0
  with dataset_writer.atomic_file(path) as tmp_path:
    with zipfile.ZipFile(tmp_path, "w", zipfile.ZIP_STORED,
                         allowZip64=True) as archive:
      for index, trajectory in enumerate(trajectories):
        key = GNS_TRAJECTORY_KEY.format(index=index)
        item = _gns_item(trajectory, path, key)
        with archive.open(f"{key}.npy", "w", force_zip64=True) as f:
          np.lib.format.write_array(f, item, allow_pickle=True)
        count += 1
  return count


# ---------------------------------------------------------------------------
# LagrangeBench HDF5.


def read_lagrangebench_hdf5(path: str) -> Iterator[RawTrajectory]:
  """Trajectories of a LagrangeBench `.h5` file, in group-name order."""
  try:
    h5 = h5py.File(path, "r")
  except OSError as e:
    raise ValueError(f"{path} is not a readable HDF5 file: {e}") from None
  with h5:
    for key in sorted(h5.keys()):
      group = h5[key]
      if (not isinstance(group, h5py.Group) or "position" not in group or
          "particle_type" not in group):
        raise ValueError(f"{path}: trajectory {key}: expected a group with "
                         "datasets 'position' and 'particle_type'")
      yield RawTrajectory(path, key, group["position"][()],
                          group["particle_type"][()])


# ---------------------------------------------------------------------------
# A folder of per-trajectory arrays.


def _natural_key(name: str) -> List[Any]:
  # "10.npz" after "9.npz": digit runs compare as numbers.
  return [(0, int(part)) if part.isdigit() else (1, part)
          for part in re.split(r"(\d+)", name)]


def read_folder(path: str) -> Iterator[RawTrajectory]:
  """Trajectories of a split folder: its `.npz` files in natural order."""
  names = sorted((name for name in os.listdir(path)
                  if name.endswith(".npz") and not name.startswith(".")),
                 key=_natural_key)
  for name in names:
    file_path = os.path.join(path, name)
    try:
      with np.load(file_path, allow_pickle=False) as arrays:
        missing = [key for key in ("positions", "particle_types")
                   if key not in arrays.files]
        if missing:
          raise ValueError(f"{file_path}: trajectory {name[:-4]}: missing "
                           f"array(s) {', '.join(missing)} (it has "
                           f"{', '.join(arrays.files) or 'none'})")
        context = (arrays["step_context"] if "step_context" in arrays.files
                   else None)
        trajectory = RawTrajectory(file_path, name[:-4], arrays["positions"],
                                   arrays["particle_types"], context)
    except (OSError, EOFError, zipfile.BadZipFile) as e:
      raise ValueError(f"{file_path} is not a readable npz file: "
                       f"{e}") from None
    except ValueError as e:
      if str(e).startswith(file_path):
        raise
      raise ValueError(f"{file_path}: {e}") from None  # E.g. pickled arrays.
    yield trajectory


# ---------------------------------------------------------------------------
# DeepMind TFRecords.


def read_tfrecord(data_path: str, split: str) -> Iterator[RawTrajectory]:
  """Trajectories of a split of a dataset in this package's format."""
  metadata = reading_utils.read_metadata(data_path)
  filename = reading_utils.split_file(data_path, split)
  dataset = reading_utils.load_trajectories(data_path, split, metadata)
  iterator = iter(dataset)
  index = 0
  while True:
    try:
      context, features = next(iterator)
    except StopIteration:
      return
    except tf.errors.OpError as e:
      lines = [line for line in e.message.splitlines() if filename in line]
      detail = lines[0] if lines else e.message.splitlines()[0]
      raise ValueError(
          f"{filename}: record {index}: {detail.strip()}") from None
    step_context = features.get("step_context")
    yield RawTrajectory(
        filename, str(index), features["position"].numpy(),
        context["particle_type"].numpy(),
        None if step_context is None else step_context.numpy())
    index += 1
