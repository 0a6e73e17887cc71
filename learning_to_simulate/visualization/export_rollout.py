"""Exports rollout pickles as VTK time series (ParaView) and npz arrays.

    python -m learning_to_simulate.visualization.export_rollout \
        --rollout_path=/tmp/rollouts/WaterDropSample/rollout_test_0.pkl \
        --output_path=/tmp/export

writes `/tmp/export/rollout_test_0/{predicted,ground_truth}.pvd` with one
`.vtu` file per frame, and `/tmp/export/rollout_test_0.npz`. Open a `.pvd`
in ParaView and show it with the "Point Gaussian" representation, coloured
by `particle_type`, `velocity` or `error`. `--rollout_path` may be a
directory: each `rollout_*.pkl` in it is exported. The layout is in
`rollout_export`.

Pickles can run arbitrary code when loaded: only export rollouts you trust.
"""

import os
import sys
from typing import Sequence

from absl import app
from absl import flags
from absl import logging

from learning_to_simulate.visualization import rollout_export
from learning_to_simulate.visualization import rollout_files

EXPORT_FORMATS = ("vtk", "npz")

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Registers the CLI flags, only when run as a program (so that
  importing the module next to other CLIs clashes with none)."""
  flags.DEFINE_string(
      "rollout_path", None,
      "Rollout pickle, or a directory of rollout_*.pkl files (each exported).")
  flags.DEFINE_string(
      "output_path", None,
      "Directory for <pickle stem>/ (VTK) and <pickle stem>.npz.")
  flags.DEFINE_multi_enum(
      "format", list(EXPORT_FORMATS), list(EXPORT_FORMATS),
      "What to write: vtk (a .pvd time series of .vtu frames per series), npz "
      "(the arrays); repeat the flag for both (the default).")
  flags.mark_flags_as_required(["rollout_path", "output_path"])


def export(rollout_path: str, output_path: str,
           export_formats: Sequence[str]) -> None:
  """Exports each rollout at `rollout_path` into `output_path`."""
  for path in rollout_files.find_rollouts(rollout_path):
    rollout = rollout_files.load_rollout(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    if "vtk" in export_formats:
      written = rollout_export.write_vtk(rollout,
                                         os.path.join(output_path, stem))
      logging.info("Wrote %s", ", ".join(written.values()))
    if "npz" in export_formats:
      npz_path = os.path.join(output_path, f"{stem}.npz")
      rollout_export.write_npz(rollout, npz_path)
      logging.info("Wrote %s", npz_path)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    export(FLAGS.rollout_path, FLAGS.output_path, FLAGS.format)
  except (OSError, ValueError) as e:
    # Bad input ends as one line on stderr and exit status 1, no traceback.
    sys.exit(f"export_rollout: error: {e}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
