"""pytest setup: absl-based test cases expect parsed flags (temp dirs)."""

from absl import flags

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


def pytest_collection_modifyitems(items):
  """Drops `tf.test.TestCase.test_session`, which is no test of ours.

  TensorFlow's base class defines it (a deprecated context manager), so
  pytest collects it in every test class and reports it as skipped; without
  it the skip count shows only real skips.
  """
  items[:] = [item for item in items if item.name != "test_session"]
