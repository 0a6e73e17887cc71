"""Device discovery and logging for training and evaluation."""

import logging as std_logging
import os

from absl import logging
import tensorflow as tf


class _HideTensorFlowInfo(std_logging.Filter):
  """Drops INFO records that TensorFlow's own modules send through absl
  (checkpoint sharding timings and such); keeps their warnings."""

  _TENSORFLOW = os.sep + "tensorflow" + os.sep

  def filter(self, record: std_logging.LogRecord) -> bool:
    return (record.levelno >= std_logging.WARNING or
            self._TENSORFLOW not in record.pathname)


_HIDE_TENSORFLOW_INFO = _HideTensorFlowInfo()


def configure_devices() -> str:
  """Enables GPU memory growth and logs which devices TensorFlow uses.

  Memory growth lets two jobs share one GPU. TensorFlow's own Python INFO
  lines (checkpoint sharding timings and such) are hidden, so the log shows
  this package's progress; its warnings still show. Returns a one-line
  summary.
  """
  tf.get_logger().setLevel(std_logging.WARNING)
  std_logging.getLogger("absl").addFilter(_HIDE_TENSORFLOW_INFO)  # Once.
  gpus = tf.config.list_physical_devices("GPU")
  for gpu in gpus:
    try:
      tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # Already initialized: growth cannot change now.
      pass
  if gpus:
    names = []
    for gpu in gpus:
      details = tf.config.experimental.get_device_details(gpu)
      names.append(f"{gpu.name} ({details.get('device_name', 'unknown')})")
    summary = "GPU: " + ", ".join(names) + "; running on /GPU:0"
  else:
    summary = "no GPU found, running on CPU"
  logging.info(summary)
  return summary
