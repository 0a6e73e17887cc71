"""pytest setup: absl-based test cases expect parsed flags (temp dirs)."""

from absl import flags

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()
