"""What validation during training costs, as a share of training time.

Times, in one process on one dataset (the bundled sample by default), the
paper's model at the defaults of `train`: training steps, and validations
with the default `ValidationOptions` (100 one-step batches and two full
rollouts of the valid split every 10000 steps). The share is
`validation / (every_steps * step + validation)`.

  python -m learning_to_simulate.benchmarks.validation_cost
"""

import os
import tempfile
import time
from typing import Any, Dict, Optional, Sequence

from absl import app
from absl import flags
import tensorflow as tf

from learning_to_simulate import reading_utils
from learning_to_simulate.model import build
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import optimizers
from learning_to_simulate.training import validation
from learning_to_simulate.training import train_step as train_step_lib


def measure(data_path: str, train_steps: int = 200, repeats: int = 2,
            model_config: config_lib.ModelConfig = config_lib.ModelConfig(),
            options: validation.ValidationOptions = (
                validation.ValidationOptions()),
            batch_size: int = 2) -> Dict[str, Any]:
  """Seconds per training step and per validation, and the share.

  Args:
    data_path: dataset directory.
    train_steps: training steps timed (after 20 untimed ones).
    repeats: validations timed (after an untimed one that traces).
    model_config: the model.
    options: the validation options (`every_steps` sets the share).
    batch_size: training batch size.
  """
  metadata = reading_utils.read_metadata(data_path)
  simulator = build.build_simulator(metadata, model_config)
  optimizer = optimizers.make_optimizer(config_lib.OptimizerConfig(),
                                        simulator)
  train_step = train_step_lib.loss_of(train_step_lib.make_train_step(
      simulator, optimizer, train_step_lib.OneStep(model_config.noise_std),
      metadata))
  dataset = iter(reading_utils.get_one_step_dataset(
      data_path, "train", batch_size, metadata, is_training=True, seed=0))
  for _ in range(20):
    train_step(next(dataset))
  float(train_step(next(dataset)))  # Waits for the warm-up steps.
  start = time.perf_counter()
  for _ in range(train_steps):
    loss = train_step(next(dataset))
  float(loss)
  step_seconds = (time.perf_counter() - start) / train_steps

  with tempfile.TemporaryDirectory() as model_path, \
      tf.summary.create_file_writer(os.path.join(model_path, "valid")
                                    ).as_default():
    validator = validation.Validator(data_path, model_path, metadata,
                                     simulator, model_config.noise_std,
                                     options, batch_size)
    first = validator(1)["seconds"]
    seconds = [validator(2 + i)["seconds"] for i in range(repeats)]
  validation_seconds = min(seconds)
  interval = options.every_steps * step_seconds
  return {
      "data_path": data_path,
      "step_seconds": step_seconds,
      "first_validation_seconds": first,
      "validation_seconds": validation_seconds,
      "every_steps": options.every_steps,
      "share": validation_seconds / (interval + validation_seconds),
  }


def format_result(result: Dict[str, Any]) -> str:
  return "\n".join([
      f"dataset: {result['data_path']}",
      f"train step: {result['step_seconds'] * 1e3:.1f} ms "
      f"({1 / result['step_seconds']:.2f} steps/s)",
      f"validation: {result['validation_seconds']:.1f} s (first, with "
      f"tracing: {result['first_validation_seconds']:.1f} s)",
      f"every {result['every_steps']} steps: validation takes "
      f"{100 * result['share']:.2f}% of training time",
  ])


FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Registers the CLI flags, only when run as a program."""
  flags.DEFINE_string("data_path", None,
                      "Dataset (default: the bundled sample).")
  flags.DEFINE_integer("train_steps", 200, "Training steps timed.",
                       lower_bound=1)
  flags.DEFINE_integer("eval_every_steps",
                       validation.ValidationOptions().every_steps,
                       "Validation interval the share is computed for.",
                       lower_bound=1)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  data_path: Optional[str] = (FLAGS.data_path or
                              reading_utils.bundled_dataset_path())
  result = measure(data_path, FLAGS.train_steps,
                   options=validation.ValidationOptions(
                       every_steps=FLAGS.eval_every_steps))
  print(format_result(result))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
