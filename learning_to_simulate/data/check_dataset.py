"""Checks a dataset before training on it.

    python -m learning_to_simulate.data.check_dataset --data_path=/data/Mine

reads every record of `{train,valid,test}.tfrecord` as training would, checks
each trajectory as `convert_dataset` checks its input, and compares
`metadata.json` with the data (`convert.check_dataset`): the velocity and
acceleration statistics recomputed over the train split, the bounds against
where the particles are, and the neighbour counts of the connectivity radius. Prints the same report as `convert_dataset`, then one
line per warning. A record that cannot be read or fails a check is one line
on stderr and exit status 1.
"""

import sys
from typing import Sequence

from absl import app
from absl import flags

from learning_to_simulate.data import convert

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Registers the CLI flags, only when run as a program."""
  flags.DEFINE_string("data_path", None,
                      "Dataset directory (metadata.json and the three "
                      "splits' .tfrecord files).")
  flags.mark_flags_as_required(["data_path"])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    report, warnings = convert.check_dataset(FLAGS.data_path)
  except (OSError, ValueError) as e:
    sys.exit(f"check_dataset: error: {e}")
  print(convert.format_report(report, FLAGS.data_path, verb="checked"))
  for warning in warnings:
    print(f"warning: {warning}")
  print(f"{len(warnings)} warning(s)" if warnings else
        "no problem found: the metadata matches the data")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
