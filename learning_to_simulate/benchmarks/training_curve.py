"""A training run's curves, from its TensorBoard summaries, as a small JSON.

    python -m learning_to_simulate.benchmarks.training_curve \
        --model_path=/tmp/models/water --output=curve.json

Reads the scalars that training writes to `{model_path}/train` (the loss,
learning rate and steps/s every `--log_every_steps`; the validation metrics,
`valid/...`, every `--eval_every_steps`) and the best model's record
(`best/best.json`). A run resumed from a checkpoint writes again the steps
after that checkpoint: the value written last for a step is the one kept, so
the curve is the run's as its checkpoints continue it. The JSON is small
enough to commit beside a run that lasts longer than a machine does.
"""

import glob
import os
from typing import Any, Dict, List, Sequence

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from learning_to_simulate.data import dataset_writer
from learning_to_simulate.training import checkpoints

TRAIN_TAGS = ("loss", "learning_rate", "steps_per_sec")
VALID_PREFIX = "valid/"


def _scalar(value) -> float:
  if value.HasField("tensor"):
    return float(tf.make_ndarray(value.tensor))
  return float(value.simple_value)


def read_scalars(summary_dir: str) -> Dict[str, Dict[int, float]]:
  """`{tag: {step: value}}` of every scalar in a directory's event files.

  Files are read in the order they were started (the wall time of their
  first event), so a step written again by a resumed run keeps its last
  value.
  Images and other non-scalar summaries are left out.
  """
  files = [list(tf.compat.v1.train.summary_iterator(path))
           for path in sorted(glob.glob(os.path.join(summary_dir,
                                                     "events.out.*")))]
  files.sort(key=lambda events: events[0].wall_time if events else 0.0)
  scalars: Dict[str, Dict[int, float]] = {}
  for events in files:
    for event in events:
      for value in event.summary.value:
        if value.HasField("tensor") and value.tensor.tensor_shape.dim:
          continue  # An image (or another non-scalar tensor).
        if not value.HasField("tensor") and not value.HasField(
            "simple_value"):
          continue
        scalars.setdefault(value.tag, {})[int(event.step)] = _scalar(value)
  return scalars


def _rows(scalars: Dict[str, Dict[int, float]],
          names: Sequence[str], prefix: str = "") -> List[Dict[str, Any]]:
  steps = sorted({step for name in names
                  for step in scalars.get(prefix + name, {})})
  rows = []
  for step in steps:
    row: Dict[str, Any] = {"step": step}
    for name in names:
      value = scalars.get(prefix + name, {}).get(step)
      if value is not None:
        row[name] = float(np.float32(value))  # No spurious digits.
    rows.append(row)
  return rows


def training_curve(model_path: str) -> Dict[str, Any]:
  """The run's curves.

  Returns:
    `train`: rows `{step, loss, learning_rate, steps_per_sec}`; `valid`:
    rows `{step, <every validation metric>}`; `best`: the best model's
    record (`checkpoints.read_best`) or None.

  Raises:
    ValueError: `{model_path}/train` holds no summaries.
  """
  summary_dir = os.path.join(model_path, "train")
  scalars = read_scalars(summary_dir)
  if not scalars:
    raise ValueError(f"--model_path: no training summaries in {summary_dir} "
                     "(written by --mode=train)")
  valid_names = sorted(tag[len(VALID_PREFIX):] for tag in scalars
                       if tag.startswith(VALID_PREFIX))
  return {"train": _rows(scalars, TRAIN_TAGS),
          "valid": _rows(scalars, valid_names, VALID_PREFIX),
          "best": checkpoints.read_best(model_path)}


def _define_flags() -> None:
  flags.DEFINE_string("model_path", None, "The training run's directory.")
  flags.DEFINE_string("output", None, "The JSON file to write.")
  flags.mark_flags_as_required(["model_path", "output"])


def main(argv: Sequence[str]) -> None:
  del argv
  try:
    curve = training_curve(flags.FLAGS.model_path)
  except ValueError as error:
    raise SystemExit(f"training_curve: error: {error}") from None
  dataset_writer.write_json(flags.FLAGS.output, curve)
  valid = curve["valid"]
  print(f"{len(curve['train'])} training log points, {len(valid)} "
        f"validations{' up to step ' + str(valid[-1]['step']) if valid else ''}"
        f" -> {flags.FLAGS.output}")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
