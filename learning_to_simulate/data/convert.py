"""Converting particle datasets to the DeepMind format, and back to gns npz.

Reads a dataset in one of `formats.FORMATS` (gns npz, LagrangeBench HDF5, a
folder of per-trajectory arrays, or this package's TFRecords) and writes
`{train,valid,test}.tfrecord` and `metadata.json` (see ../shared/FORMAT.md;
Sanchez-Gonzalez et al. 2020, arXiv:2002.09405), or gns `{split}.npz` files
with the same `metadata.json`.

The input is read twice, one trajectory in memory at a time, so memory does
not grow with the dataset: a first pass checks every trajectory and computes
the metadata (bounds, the velocity and acceleration statistics of the train
split through `dataset_writer.compute_statistics`, the particle spacing and
neighbour counts), a second pass writes. Nothing is written when a check
fails, and the output directory is staged and moved into place only when
complete (`dataset_writer.staged_directory`).
"""

import dataclasses
import json
import os
from typing import (Any, Dict, Iterator, List, Mapping, NamedTuple, Optional,
                    Sequence, Tuple)

from absl import logging
import numpy as np

from learning_to_simulate.data import common
from learning_to_simulate.data import dataset_writer
from learning_to_simulate.data import formats
from learning_to_simulate.data import neighbours
from learning_to_simulate.data import trajectory_checks
from learning_to_simulate import reading_utils

OUTPUT_FORMATS = ("tfrecord", "npz")
# LagrangeBench particle tags (its `NodeType`: fluid 0, solid wall 1, moving
# wall 2, rigid body 3) as DeepMind types: walls are prescribed, kinematic.
LAGRANGEBENCH_TYPE_MAP = {0: int(common.ParticleType.WATER),
                          1: int(common.ParticleType.KINEMATIC),
                          2: int(common.ParticleType.KINEMATIC),
                          3: int(common.ParticleType.RIGID)}
DEFAULT_TYPE_MAPS = {"hdf5": LAGRANGEBENCH_TYPE_MAP}
# The radius is suggested and checked on the first, middle and last frame of
# this many train trajectories.
RADIUS_SAMPLE_TRAJECTORIES = 10


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
  """How to convert (the defaults are documented in one place: here).

  Attributes:
    input_format: one of `formats.FORMATS`.
    output_format: `tfrecord` (the DeepMind format) or `npz` (gns).
    dt: time between frames, stored as metadata `dt`; required unless the
      input is TFRecords (whose metadata is kept).
    bounds: `[[lo, hi]] * dim`; default: the smallest box holding every
      position of the train split, so that no valid or test position
      shapes the model's features or its walls (TFRecord input: its
      metadata's).
    connectivity_radius: `default_connectivity_radius`; default: the
      suggested one (TFRecord input: its metadata's).
    particle_type_map: input type -> DeepMind type, applied before the
      check that types lie in 0..8; types not in it are kept. None: the
      format's default (`DEFAULT_TYPE_MAPS`; none but for `hdf5`).
  """
  input_format: str
  output_format: str = "tfrecord"
  dt: Optional[float] = None
  bounds: Optional[Sequence[Sequence[float]]] = None
  connectivity_radius: Optional[float] = None
  particle_type_map: Optional[Mapping[int, int]] = None

  def validate(self) -> None:
    """Raises `ValueError` naming the flag of an invalid option."""
    if self.input_format not in formats.FORMATS:
      raise ValueError(f"--input_format must be one of "
                       f"{', '.join(formats.FORMATS)}, got "
                       f"{self.input_format!r}")
    if self.output_format not in OUTPUT_FORMATS:
      raise ValueError(f"--output_format must be one of "
                       f"{', '.join(OUTPUT_FORMATS)}, got "
                       f"{self.output_format!r}")
    if self.input_format == "tfrecord" and self.output_format == "tfrecord":
      raise ValueError("--input_format=tfrecord needs --output_format=npz "
                       "(the input is already in the DeepMind format)")
    if self.dt is None and self.input_format != "tfrecord":
      raise ValueError("--dt (time between frames) is required for "
                       f"--input_format={self.input_format}")
    if self.dt is not None and not self.dt > 0:
      raise ValueError(f"--dt must be positive, got {self.dt}")
    if self.connectivity_radius is not None and not (
        self.connectivity_radius > 0):
      raise ValueError("--connectivity_radius must be positive, got "
                       f"{self.connectivity_radius}")
    if self.bounds is not None:
      bounds = np.asarray(self.bounds, np.float64)
      if (bounds.ndim != 2 or bounds.shape[1] != 2 or
          bounds.shape[0] not in (2, 3) or
          not np.all(bounds[:, 0] < bounds[:, 1])):
        raise ValueError("--bounds must be [[lo, hi]] * dim with dim 2 or 3 "
                         f"and lo < hi, got {self.bounds!r}")
    for source, target in (self.particle_type_map or {}).items():
      if not 0 <= target < common.NUM_PARTICLE_TYPES:
        raise ValueError(f"--particle_type_map maps {source} to {target}, "
                         "outside the particle types 0.."
                         f"{common.NUM_PARTICLE_TYPES - 1}")

  def type_map(self) -> Mapping[int, int]:
    if self.particle_type_map is not None:
      return self.particle_type_map
    return DEFAULT_TYPE_MAPS.get(self.input_format, {})


class ConversionReport(NamedTuple):
  """What a conversion wrote and found.

  Attributes:
    metadata: the `metadata.json` written.
    num_trajectories: split -> trajectories.
    num_particles: smallest and largest particle count of a trajectory.
    extent: `[[lo, hi]] * dim`, the box holding every position.
    train_extent: the box holding every position of the train split.
    spacing: median distance between nearest particles (sampled frames).
    suggested_radius: a connectivity radius from that spacing.
    neighbours: neighbour counts at the metadata's radius (sampled frames).
    suggested_neighbours: neighbour counts at the suggested radius.
  """
  metadata: Dict[str, Any]
  num_trajectories: Dict[str, int]
  num_particles: Tuple[int, int]
  extent: List[List[float]]
  train_extent: List[List[float]]
  spacing: float
  suggested_radius: float
  neighbours: neighbours.NeighbourCounts
  suggested_neighbours: neighbours.NeighbourCounts


def _trajectories(input_path: str, options: ConvertOptions, split: str,
                  checker: trajectory_checks.LayoutChecker
                  ) -> Iterator[dataset_writer.Trajectory]:
  count = 0
  for raw in formats.read_split(input_path, options.input_format, split):
    yield checker(raw)
    count += 1
  if not count:
    path = formats.split_path(input_path, options.input_format, split)
    raise ValueError(f"{path}: no trajectories in the {split} split")


# ---------------------------------------------------------------------------
# The first pass: checks and metadata.


class _Scan:
  """What the first pass gathers besides the velocity statistics."""

  def __init__(self):
    self.lower = None
    self.upper = None
    self.train_lower = None
    self.train_upper = None
    self.counts = {split: 0 for split in common.SPLITS}
    self.num_particles = []
    self.frames = []  # Sampled frames for the spacing and neighbour counts.
    self.context_sum = None
    self.context_squares = None
    self.context_count = 0

  def observe(self, split: str,
              trajectory: dataset_writer.Trajectory) -> None:
    positions = trajectory.positions
    lower = positions.min(axis=(0, 1)).astype(np.float64)
    upper = positions.max(axis=(0, 1)).astype(np.float64)
    self.lower = lower if self.lower is None else np.minimum(self.lower, lower)
    self.upper = upper if self.upper is None else np.maximum(self.upper, upper)
    self.counts[split] += 1
    self.num_particles.append(positions.shape[1])
    if split != "train":
      return
    self.train_lower = lower if self.train_lower is None else np.minimum(
        self.train_lower, lower)
    self.train_upper = upper if self.train_upper is None else np.maximum(
        self.train_upper, upper)
    if self.counts[split] <= RADIUS_SAMPLE_TRAJECTORIES:
      last = len(positions) - 1
      self.frames += [positions[i].copy() for i in (0, last // 2, last)]
    if trajectory.step_context is not None:
      context = trajectory.step_context.astype(np.float64)
      if self.context_sum is None:
        self.context_sum = np.zeros(context.shape[1])
        self.context_squares = np.zeros(context.shape[1])
      self.context_sum += context.sum(axis=0)
      self.context_squares += (context ** 2).sum(axis=0)
      self.context_count += len(context)

  def observed(self, split: str, trajectories):
    for trajectory in trajectories:
      self.observe(split, trajectory)
      yield trajectory

  def context_statistics(self) -> Dict[str, List[float]]:
    if self.context_sum is None:
      return {}
    mean = self.context_sum / self.context_count
    var = np.maximum(self.context_squares / self.context_count - mean ** 2, 0)
    return {"context_mean": mean.tolist(), "context_std": np.sqrt(var).tolist()}


def _extent(lower: np.ndarray, upper: np.ndarray) -> List[List[float]]:
  """`[[lo, hi]] * dim` of the box, each the shortest decimal that is the
  float32 value (0.1, not 0.10000000149011612)."""
  return [[float(str(np.float32(lo))), float(str(np.float32(hi)))]
          for lo, hi in zip(lower, upper)]


def _metadata(input_path: str, options: ConvertOptions, scan: _Scan,
              statistics: Mapping[str, Any], dim: int, num_frames: int,
              radius: float) -> Dict[str, Any]:
  if options.input_format == "tfrecord":
    metadata = dict(reading_utils.read_metadata(input_path))
    if options.dt is not None:
      metadata["dt"] = options.dt
    if options.bounds is not None:
      metadata["bounds"] = [list(map(float, b)) for b in options.bounds]
    if options.connectivity_radius is not None:
      metadata["default_connectivity_radius"] = options.connectivity_radius
    return metadata
  if options.bounds is not None:
    bounds = [[float(lo), float(hi)] for lo, hi in options.bounds]
  else:
    bounds = _extent(scan.train_lower, scan.train_upper)
  metadata = {
      "bounds": bounds,
      "sequence_length": num_frames - 1,
      "default_connectivity_radius": float(radius),
      "dim": dim,
      "dt": float(options.dt),
  }
  metadata.update(statistics)
  metadata.update(scan.context_statistics())
  return metadata


def _check_all(input_path: str, options: ConvertOptions,
               statistics_of_tfrecords: bool = False
               ) -> Tuple[_Scan, Dict[str, Any], int]:
  """Pass 1: every trajectory checked; the scan, statistics, frame count."""
  checker, scan = trajectory_checks.LayoutChecker(options.type_map()), _Scan()
  read = lambda split: scan.observed(
      split, _trajectories(input_path, options, split, checker))
  if options.input_format == "tfrecord" and not statistics_of_tfrecords:
    statistics = {}  # Its metadata's are kept.
    rest = common.SPLITS
  else:
    statistics = dataset_writer.compute_statistics(read("train"))
    rest = common.SPLITS[1:]
  for split in rest:
    for _ in read(split):
      pass
  return scan, statistics, checker.num_frames


def _write(input_path: str, output_path: str, options: ConvertOptions,
           metadata: Mapping[str, Any]) -> None:
  """Pass 2: reads, checks and writes one trajectory at a time."""
  checker = trajectory_checks.LayoutChecker(options.type_map())
  splits = {split: _trajectories(input_path, options, split, checker)
            for split in common.SPLITS}
  if options.output_format == "tfrecord":
    dataset_writer.write_dataset(output_path, splits, metadata)
    return
  with dataset_writer.staged_directory(output_path) as staging:
    for split, trajectories in splits.items():
      formats.write_gns_npz(os.path.join(staging, f"{split}.npz"),
                            trajectories)
    dataset_writer.write_json(os.path.join(staging, "metadata.json"),
                              metadata)


def convert(input_path: str, output_path: str,
            options: ConvertOptions) -> ConversionReport:
  """Converts a dataset, checking it whole before writing anything.

  Args:
    input_path: directory holding the three splits in
      `options.input_format` (see `formats`).
    output_path: dataset directory to write (staged, moved into place when
      complete; existing split files and `metadata.json` are replaced, other
      files kept).
    options: see `ConvertOptions`.

  Returns:
    A `ConversionReport`.

  Raises:
    ValueError: one line naming the file (and the trajectory) for a missing
      split, an unreadable file or a trajectory that fails
      `trajectory_checks.check_trajectory`, or naming the flag for an
      invalid option.
  """
  options.validate()
  for split in common.SPLITS:  # A missing split fails before any reading.
    formats.split_path(input_path, options.input_format, split)

  scan, statistics, num_frames = _check_all(input_path, options)
  dim = len(scan.lower)
  if options.bounds is not None and len(options.bounds) != dim:
    raise ValueError(f"--bounds has {len(options.bounds)} dimensions, the "
                     f"data {dim}")
  spacing = neighbours.particle_spacing(scan.frames)
  suggested = neighbours.suggest_radius(spacing, dim)
  radius = (options.connectivity_radius
            if options.connectivity_radius is not None else suggested)
  metadata = _metadata(input_path, options, scan, statistics, dim, num_frames,
                       radius)
  logging.info("Checked %s: %s trajectories; writing %s.", input_path,
               scan.counts, output_path)
  _write(input_path, output_path, options, metadata)
  return _report(metadata, scan, spacing, suggested)


def _report(metadata: Dict[str, Any], scan: _Scan, spacing: float,
            suggested: float) -> ConversionReport:
  """The report of a scanned dataset with `metadata` (its radius counted)."""
  return ConversionReport(
      metadata=metadata, num_trajectories=dict(scan.counts),
      num_particles=(min(scan.num_particles), max(scan.num_particles)),
      extent=_extent(scan.lower, scan.upper),
      train_extent=_extent(scan.train_lower, scan.train_upper),
      spacing=spacing, suggested_radius=suggested,
      neighbours=neighbours.count_distribution(
          scan.frames, metadata["default_connectivity_radius"]),
      suggested_neighbours=neighbours.count_distribution(scan.frames,
                                                         suggested))


# How far a `metadata.json` statistic may be from the train split's before
# `check_dataset` warns (relative to the statistic's std, per dimension).
STATISTICS_TOLERANCE = 0.05
# Mean neighbour counts outside this range get a warning (the paper's
# datasets have about 10 to 20).
NEIGHBOURS_RANGE = (5.0, 40.0)


def _short(values: np.ndarray) -> str:
  return "[" + ", ".join(f"{value:.3g}" for value in values) + "]"


def check_dataset(data_path: str) -> Tuple[ConversionReport, List[str]]:
  """Reads a dataset in this package's format as training would, and says
  what would go wrong.

  Every record of every split is decoded (at the metadata's sequence length
  and dim) and checked as `convert` checks its input (shapes, NaN, particle
  types); then the metadata is compared with the data: the velocity and
  acceleration statistics recomputed over the train split, the bounds
  against where the particles are, and the neighbour counts the
  connectivity radius gives.

  Returns:
    The report `convert` would print for it (nothing is written) and the
    warnings, one line each (none: it looks right).

  Raises:
    ValueError: one line naming the file (and the record) that cannot be
      read or fails a check.
  """
  metadata = dict(reading_utils.read_metadata(data_path))
  options = ConvertOptions(input_format="tfrecord", output_format="npz")
  # The reader already holds every record to the metadata's frame count.
  scan, statistics, _ = _check_all(data_path, options,
                                   statistics_of_tfrecords=True)
  spacing = neighbours.particle_spacing(scan.frames)
  suggested = neighbours.suggest_radius(spacing, len(scan.lower))
  radius = metadata["default_connectivity_radius"]
  report = _report(metadata, scan, spacing, suggested)
  warnings = []
  for kind in ("vel", "acc"):
    mean, std = (np.asarray(metadata[f"{kind}_{s}"]) for s in ("mean", "std"))
    true_mean, true_std = (np.asarray(statistics[f"{kind}_{s}"])
                           for s in ("mean", "std"))
    scale = np.maximum(true_std, 1e-12)
    off = max(np.max(np.abs(mean - true_mean) / scale),
              np.max(np.abs(std - true_std) / scale))
    if off > STATISTICS_TOLERANCE:
      warnings.append(
          f"metadata.json: {kind}_mean/{kind}_std are {_short(mean)} / "
          f"{_short(std)}, the train split's {_short(true_mean)} / "
          f"{_short(true_std)} ({off:.2g} of a std off): the model "
          "normalizes with them")
  bounds = np.asarray(metadata["bounds"], np.float64)
  outside = np.maximum(bounds[:, 0] - scan.lower, 0) + np.maximum(
      scan.upper - bounds[:, 1], 0)
  if np.any(outside > radius):
    warnings.append(
        f"metadata.json: bounds {metadata['bounds']}, but positions span "
        f"{report.extent} (up to {outside.max():.3g} outside, more than the "
        f"connectivity radius {radius:g}): the distance-to-wall features "
        "are clipped there and --clamp_to_bounds would move those particles")
  low, high = NEIGHBOURS_RANGE
  mean_count = report.neighbours.mean
  if not low <= mean_count <= high:
    warnings.append(
        f"metadata.json: default_connectivity_radius {radius:g} gives "
        f"{mean_count:.1f} neighbours per particle on average (the paper's "
        f"datasets: about 10 to 20); the particle spacing suggests "
        f"{suggested:.3g} ({report.suggested_neighbours.mean:.1f}); train "
        "with --connectivity_radius to try another")
  return report, warnings


# ---------------------------------------------------------------------------
# Flag values and the report, for the command line.


def parse_bounds(text: Optional[str]) -> Optional[List[List[float]]]:
  """`--bounds` JSON as `[[lo, hi]] * dim` (checked by `ConvertOptions`)."""
  if text is None:
    return None
  try:
    bounds = json.loads(text)
    return [[float(lo), float(hi)] for lo, hi in bounds]
  except (json.JSONDecodeError, TypeError, ValueError):
    raise ValueError("--bounds must be JSON [[lo, hi], ...], got "
                     f"{text!r}") from None


def parse_type_map(text: Optional[str]) -> Optional[Dict[int, int]]:
  """`--particle_type_map` `'0:5,1:3'` as `{0: 5, 1: 3}`."""
  if text is None:
    return None
  mapping = {}
  for item in filter(None, (part.strip() for part in text.split(","))):
    try:
      source, target = (int(value) for value in item.split(":"))
    except ValueError:
      raise ValueError("--particle_type_map must be SOURCE:TARGET pairs "
                       f"separated by commas, e.g. '0:5,1:3', got "
                       f"{text!r}") from None
    mapping[source] = target
  return mapping


def format_report(report: ConversionReport, output_path: str,
                  verb: str = "wrote") -> str:
  """The lines printed after a conversion (`verb`: or after a check)."""
  metadata = report.metadata
  counts = ", ".join(f"{split} {count}"
                     for split, count in report.num_trajectories.items())
  low, high = report.num_particles
  particles = f"{low}" if low == high else f"{low} to {high}"
  radius = metadata["default_connectivity_radius"]
  lines = [
      f"{verb} {output_path}: {counts} trajectories of {particles} particles, "
      f"{metadata['sequence_length'] + 1} frames, dim {metadata['dim']}",
      f"bounds {metadata['bounds']} (positions span {report.extent}; the "
      f"train split's {report.train_extent})",
      f"particle spacing {report.spacing:.4g} (median distance to the nearest"
      " particle, first/middle/last frame of the first "
      f"{RADIUS_SAMPLE_TRAJECTORIES} train trajectories)",
      f"suggested connectivity radius {report.suggested_radius:g} "
      f"({neighbours.RADIUS_SPACINGS[metadata['dim']]} spacings); "
      f"neighbours within it: {report.suggested_neighbours.describe()}",
  ]
  if radius != report.suggested_radius:
    lines.append(f"connectivity radius {radius:g} (metadata); neighbours "
                 f"within it: {report.neighbours.describe()}")
  lines.append("(the paper's datasets have roughly 10 to 20 neighbours per "
               "particle)")
  return "\n".join(lines)
