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

import sys
from typing import Sequence

from absl import app
from absl import flags

from learning_to_simulate.data import convert
from learning_to_simulate.data import formats

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Registers the CLI flags, only when run as a program (so that
  importing the module next to other CLIs clashes with none)."""
  flags.DEFINE_string(
      "input_path", None, "Directory holding the train, valid and test splits.")
  flags.DEFINE_enum(
      "input_format", None, list(formats.FORMATS),
      "npz (gns), hdf5 (LagrangeBench), folder (per-trajectory .npz files) or "
      "tfrecord (this package's format, to --output_format=npz).")
  flags.DEFINE_string(
      "output_path", None, "Dataset directory to write.")
  flags.DEFINE_enum(
      "output_format", "tfrecord", list(convert.OUTPUT_FORMATS),
      "tfrecord (DeepMind) or npz (gns).")
  flags.DEFINE_float(
      "dt", None, "Time between frames (metadata dt); required unless the "
      "input is tfrecord.")
  flags.DEFINE_string(
      "bounds", None, "Domain bounds as JSON, e.g. '[[0.1, 0.9], [0.1, 0.9]]' "
      "(default: the smallest box holding every position of the train "
      "split).")
  flags.DEFINE_float(
      "connectivity_radius", None,
      "default_connectivity_radius (default: the suggested radius).")
  flags.DEFINE_string(
      "particle_type_map", None,
      "Input particle type -> DeepMind type, e.g. '0:5,1:3' (types not listed "
      "are kept; '' maps nothing). Default: none, but 0:5,1:3,2:3,3:0 for "
      "hdf5 (LagrangeBench fluid, walls, rigid bodies).")
  flags.mark_flags_as_required(["input_path", "input_format", "output_path"])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    options = convert.ConvertOptions(
        input_format=FLAGS.input_format, output_format=FLAGS.output_format,
        dt=FLAGS.dt, bounds=convert.parse_bounds(FLAGS.bounds),
        connectivity_radius=FLAGS.connectivity_radius,
        particle_type_map=convert.parse_type_map(FLAGS.particle_type_map))
    report = convert.convert(FLAGS.input_path, FLAGS.output_path, options)
  except (OSError, ValueError) as e:
    # Bad input ends as one line on stderr and exit status 1, no traceback.
    sys.exit(f"convert_dataset: error: {e}")
  print(convert.format_report(report, FLAGS.output_path))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
