"""Device configuration: TensorFlow's own INFO lines are kept out of our log."""

import logging as std_logging
import os
import tempfile

from absl import logging
import tensorflow as tf

from learning_to_simulate.training import devices


class LogFilterTest(tf.test.TestCase):

  def test_checkpoint_info_lines_are_hidden_ours_are_kept(self):
    devices.configure_devices()
    devices.configure_devices()  # Twice: still one filter.
    absl_logger = std_logging.getLogger("absl")
    self.assertLen([f for f in absl_logger.filters
                    if isinstance(f, devices._HideTensorFlowInfo)], 1)
    with self.assertLogs(absl_logger, level="INFO") as logs:
      # TensorFlow logs "Sharding callback duration" through absl here.
      tf.train.Checkpoint(v=tf.Variable(1.0)).save(
          os.path.join(tempfile.mkdtemp(dir=self.get_temp_dir()), "c"))
      logging.info("our own line")
      logging.warning("a warning")
    messages = [record.getMessage() for record in logs.records]
    self.assertEqual(messages, ["our own line", "a warning"])

  def test_tensorflow_warnings_pass(self):
    record = std_logging.LogRecord(
        "absl", std_logging.WARNING,
        os.path.join(os.sep, "x", "tensorflow", "python", "y.py"), 1,
        "careful", None, None)
    self.assertTrue(devices._HideTensorFlowInfo().filter(record))
    record.levelno = std_logging.INFO
    self.assertFalse(devices._HideTensorFlowInfo().filter(record))


if __name__ == "__main__":
  tf.test.main()
