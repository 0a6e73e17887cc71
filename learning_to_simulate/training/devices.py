"""Device discovery and logging for training and evaluation."""

import logging as std_logging

from absl import logging
import tensorflow as tf


def configure_devices() -> str:
  """Enables GPU memory growth and logs which devices TensorFlow uses.

  Memory growth lets two jobs share one GPU. TensorFlow's own Python INFO
  lines (checkpoint sharding timings and such) are hidden, so the log shows
  this package's progress; its warnings still show. Returns a one-line
  summary.
  """
  tf.get_logger().setLevel(std_logging.WARNING)
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
