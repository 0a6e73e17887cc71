"""Converts a particle dataset to the DeepMind format (or TFRecords to gns npz).

    python -m learning_to_simulate.data.convert_dataset --input_format=npz \
        --input_path=/data/gns/Sand --output_path=/data/Sand --dt=0.0025

reads `{train,valid,test}.npz` (gns), `.h5` (LagrangeBench, `hdf5`) or
`{split}/` folders of per-trajectory `.npz` files (`folder`) and writes
`{train,valid,test}.tfrecord` and `metadata.json`; `--input_format=tfrecord
--output_format=npz` goes back to gns npz. Prints the particle spacing, the
suggested connectivity radius and the neighbour counts it gives. The layouts
are in `formats`, the conversion in `convert`.
"""

import json
import sys
from typing import Dict, List, Optional, Sequence

from absl import app
from absl import flags

from learning_to_simulate.data import convert
from learning_to_simulate.data import formats
from learning_to_simulate.data import neighbours

_INPUT_PATH = flags.DEFINE_string(
    "input_path", None, "Directory holding the train, valid and test splits.")
_INPUT_FORMAT = flags.DEFINE_enum(
    "input_format", None, list(formats.FORMATS),
    "npz (gns), hdf5 (LagrangeBench), folder (per-trajectory .npz files) or "
    "tfrecord (this package's format, to --output_format=npz).")
_OUTPUT_PATH = flags.DEFINE_string(
    "output_path", None, "Dataset directory to write.")
_OUTPUT_FORMAT = flags.DEFINE_enum(
    "output_format", "tfrecord", list(convert.OUTPUT_FORMATS),
    "tfrecord (DeepMind) or npz (gns).")
_DT = flags.DEFINE_float(
    "dt", None, "Time between frames (metadata dt); required unless the "
    "input is tfrecord.")
_BOUNDS = flags.DEFINE_string(
    "bounds", None, "Domain bounds as JSON, e.g. '[[0.1, 0.9], [0.1, 0.9]]' "
    "(default: the smallest box holding every position).")
_RADIUS = flags.DEFINE_float(
    "connectivity_radius", None,
    "default_connectivity_radius (default: the suggested radius).")
_TYPE_MAP = flags.DEFINE_string(
    "particle_type_map", None,
    "Input particle type -> DeepMind type, e.g. '0:5,1:3' (types not listed "
    "are kept; '' maps nothing). Default: none, but 0:5,1:3,2:3,3:0 for "
    "hdf5 (LagrangeBench fluid, walls, rigid bodies).")
flags.mark_flags_as_required(["input_path", "input_format", "output_path"])


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


def format_report(report: convert.ConversionReport, output_path: str) -> str:
  """The lines printed after a conversion."""
  metadata = report.metadata
  counts = ", ".join(f"{split} {count}"
                     for split, count in report.num_trajectories.items())
  low, high = report.num_particles
  particles = f"{low}" if low == high else f"{low} to {high}"
  radius = metadata["default_connectivity_radius"]
  lines = [
      f"wrote {output_path}: {counts} trajectories of {particles} particles, "
      f"{metadata['sequence_length'] + 1} frames, dim {metadata['dim']}",
      f"bounds {metadata['bounds']} (positions span {report.extent})",
      f"particle spacing {report.spacing:.4g} (median distance to the nearest"
      " particle, first/middle/last frame of the first "
      f"{convert.RADIUS_SAMPLE_TRAJECTORIES} train trajectories)",
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


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    options = convert.ConvertOptions(
        input_format=_INPUT_FORMAT.value, output_format=_OUTPUT_FORMAT.value,
        dt=_DT.value, bounds=parse_bounds(_BOUNDS.value),
        connectivity_radius=_RADIUS.value,
        particle_type_map=parse_type_map(_TYPE_MAP.value))
    report = convert.convert(_INPUT_PATH.value, _OUTPUT_PATH.value, options)
  except (OSError, ValueError) as e:
    # Bad input ends as one line on stderr and exit status 1, no traceback.
    sys.exit(f"convert_dataset: error: {e}")
  print(format_report(report, _OUTPUT_PATH.value))


if __name__ == "__main__":
  app.run(main)
