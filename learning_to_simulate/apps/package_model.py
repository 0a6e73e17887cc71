"""Packages a trained model for shipping: weights, config, provenance.

  python -m learning_to_simulate.apps.package_model \\
      --model_path=/tmp/models/long_run --checkpoint=best \\
      --output_path=learning_to_simulate/pretrained/water_drop_sample \\
      --training_command="python -m learning_to_simulate.train ..." \\
      --training_seconds=12345

writes `--output_path` (replacing it only when complete) with
- the simulator's variables alone (no optimizer state), `ckpt-N.*`, and the
  `checkpoint` state file, so `train --mode=eval|eval_rollout|export
  --model_path=OUTPUT` use it as any model directory;
- `config.json` (the model's, with its training recipe);
- `metrics.json`: the test-split metrics it reaches, the baselines', and
  one-step metrics (computed here, by `evaluation`);
- `PROVENANCE.md`: the training command, steps, wall time, the
  configuration, the metrics table and the checksums;
- `SHA256SUMS` of the weight and config files.
"""

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence

from absl import app
from absl import flags
import tensorflow as tf

from learning_to_simulate.data import dataset_writer
from learning_to_simulate import reading_utils
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import evaluation

CHECKSUMMED = ("config.json",)


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def checksummed_files(model_path: str) -> List[str]:
  """The files a shipped model's SHA256SUMS covers: weights and config."""
  return sorted(name for name in os.listdir(model_path)
                if name.startswith(checkpoints.CHECKPOINT_NAME + "-") or
                name in CHECKSUMMED)


def verify_checksums(model_path: str) -> None:
  """Raises `ValueError` naming the first file that does not match."""
  with open(os.path.join(model_path, "SHA256SUMS")) as f:
    expected = dict(reversed(line.split()) for line in f if line.strip())
  if sorted(expected) != checksummed_files(model_path):
    raise ValueError(f"{model_path}/SHA256SUMS lists {sorted(expected)}, the "
                     f"directory holds {checksummed_files(model_path)}")
  for name, digest in expected.items():
    if sha256(os.path.join(model_path, name)) != digest:
      raise ValueError(f"{os.path.join(model_path, name)} does not match its "
                       "SHA256SUMS entry")


def _table(metrics: Dict[str, Any]) -> str:
  names = ["model", "constant_velocity", "frozen"]
  keys = ["mse_1", "mse_20", "mse_100", "mse_full", "emd",
          "kinetic_energy_mse", "out_of_domain", "rollout_error_mse"]
  lines = ["| metric | " + " | ".join(names) + " |",
           "|---|" + "---|" * len(names)]
  for key in keys:
    lines.append(f"| `{key}` | " + " | ".join(
        f"{metrics[name]['mean'][key]:.3e}" if key in metrics[name]["mean"]
        else "" for name in names) + " |")
  return "\n".join(lines)


def package(model_path: str, checkpoint: str, output_path: str,
            data_path: str, training_command: str,
            training_seconds: Optional[float],
            notes: str = "") -> Dict[str, Any]:
  """Writes the shipped model directory; returns its test metrics.

  Args:
    model_path: the trained model directory.
    checkpoint: which of its checkpoints (see `checkpoints.resolve`).
    output_path: the directory to write (replaced only when complete).
    data_path: the dataset it was trained on (its test split is scored).
    training_command: the command that trained it, for the provenance.
    training_seconds: its training wall time, if known.
    notes: more provenance (hardware, ...), a paragraph.
  """
  saved = config_lib.load(model_path)
  if saved is None:
    raise ValueError(f"--model_path {model_path!r} has no config.json")
  model_config = config_lib.ModelConfig(**saved["model"])
  source = checkpoints.resolve(model_path, checkpoint)
  step = int(tf.train.load_checkpoint(source).get_tensor(
      "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE")) if _has_optimizer(
          source) else checkpoints.number(source)
  last_step = _last_step(model_path)
  metadata, simulator = evaluation.load_model(data_path, model_path,
                                              model_config,
                                              checkpoint=checkpoint)
  del metadata
  parent = os.path.dirname(os.path.abspath(output_path))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".package-", dir=parent)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private.
  try:
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(simulator=simulator), staging, max_to_keep=1,
        checkpoint_name=checkpoints.CHECKPOINT_NAME)
    manager.save(checkpoint_number=step)
    dataset_writer.write_json(os.path.join(staging, "config.json"), saved)
    one_step = evaluation.evaluate(data_path, staging, model_config,
                                   split="test")
    with tempfile.TemporaryDirectory() as rollouts:
      results = evaluation.evaluate_rollouts(data_path, staging, rollouts,
                                             model_config, split="test")
    metrics = dict(results["metrics"], one_step=one_step, step=step)
    dataset_writer.write_json(os.path.join(staging, "metrics.json"), metrics)
    sums = {name: sha256(os.path.join(staging, name))
            for name in checksummed_files(staging)}
    with open(os.path.join(staging, "SHA256SUMS"), "w") as f:
      f.writelines(f"{digest}  {name}\n" for name, digest in sums.items())
    size = sum(os.path.getsize(os.path.join(staging, name)) for name in sums)
    hours = (f"{training_seconds / 3600:.2f} h ({training_seconds:.0f} s)"
             if training_seconds else "not recorded")
    if os.path.realpath(data_path) == os.path.realpath(
        reading_utils.bundled_dataset_path()):
      dataset = ("the bundled sample, `learning_to_simulate/data/"
                 "water_drop_sample` (the command has no `--data_path`)")
    else:
      dataset = f"`{data_path}`"
    provenance = f"""# Pretrained model: provenance

Trained with this package's own code on the train split of {dataset};
packaged by `python -m learning_to_simulate.apps.package_model` from the
`{checkpoint}` checkpoint, `{os.path.basename(source)}`, of that run.

- Training command:

      {training_command}

- Steps: {step}.{_run_end(step, last_step, training_command)} Training wall time: {hours}.
- Weights only (no optimizer state), {size / 1e6:.2f} MB with the config.
{notes}

## Configuration (`config.json`)

```json
{json.dumps(saved, indent=2)}
```

## Test split ({len(results['files'])} trajectories, {results['metrics']['steps_with_ground_truth']} steps)

One step: `one_step_position_mse` {one_step['one_step_position_mse']:.3e},
`loss_mse` {one_step['loss_mse']:.4g}. Rollouts (means over trajectories;
metrics over moving particles, see docs/metrics.md):

{_table(results['metrics'])}

## Checksums (`SHA256SUMS`)

```
{"".join(f"{digest}  {name}{chr(10)}" for name, digest in sums.items())}```
"""
    with open(os.path.join(staging, "PROVENANCE.md"), "w") as f:
      f.write(provenance)
    if os.path.exists(output_path):
      shutil.rmtree(output_path)
    os.replace(staging, output_path)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return metrics


def _last_step(model_path: str) -> Optional[int]:
  """The step of the run's newest checkpoint (None: it has none)."""
  numbers = checkpoints.numbers_on_disk(model_path)
  return numbers[-1] if numbers else None


def _run_end(step: int, last_step: Optional[int], command: str) -> str:
  """Sentences on where the run ended, when not at the packaged step or at
  the command's `--num_steps`, so that the command is not taken for what
  shipped ("" otherwise)."""
  end = last_step if last_step is not None else step
  sentences = []
  if end != step:
    sentences.append(f"The run's newest checkpoint is at step {end}.")
  planned = re.search(r"--num_steps[= ](\d+)", command)
  if planned and int(planned.group(1)) != end:
    sentences.append(
        f"The command's --num_steps={planned.group(1)} was not reached by "
        f"step {end} (a run done in pieces continues it with the same "
        f"command); to train only as far as this run, give it "
        f"--num_steps={end}.")
  return "".join(" " + sentence for sentence in sentences)


def _has_optimizer(path: str) -> bool:
  names = tf.train.load_checkpoint(path).get_variable_to_dtype_map()
  return "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE" in names


FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Registers the CLI flags, only when run as a program."""
  flags.DEFINE_string("model_path", None, "Trained model.")
  flags.DEFINE_string("checkpoint", "best", "latest, best or a ckpt-N path.")
  flags.DEFINE_string("output_path", None,
                      "Directory of the packaged model.")
  flags.DEFINE_string("data_path", None,
                      "Dataset (default: the bundled sample).")
  flags.DEFINE_string("training_command", "",
                      "The command that trained the model.")
  flags.DEFINE_float("training_seconds", None, "Training wall time, seconds.")
  flags.DEFINE_string("notes", "", "More provenance (hardware, ...).")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.model_path or not FLAGS.output_path:
    sys.exit("package_model: error: --model_path and --output_path are "
             "required")
  try:
    metrics = package(FLAGS.model_path, FLAGS.checkpoint, FLAGS.output_path,
                      FLAGS.data_path or reading_utils.bundled_dataset_path(),
                      FLAGS.training_command, FLAGS.training_seconds,
                      FLAGS.notes)
  except ValueError as error:
    sys.exit(f"package_model: error: {error}")
  print(evaluation.format_scores(metrics))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
