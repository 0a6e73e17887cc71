# pylint: disable=line-too-long
"""Train, evaluate and roll out the GNS model (arXiv:2002.09405).

Train (from the repository root):
`python -m learning_to_simulate.train --data_path={DATA_PATH} --model_path={MODEL_PATH}`

One-step evaluation from the latest checkpoint:
`python -m learning_to_simulate.train --data_path={DATA_PATH} --model_path={MODEL_PATH} --mode=eval`

Rollouts, saved as `rollout_{split}_{i}.pkl`:
`python -m learning_to_simulate.train --data_path={DATA_PATH} --model_path={MODEL_PATH} --output_path={OUTPUT_PATH} --mode=eval_rollout`

The model as a TensorFlow SavedModel (signatures `one_step` and `rollout`):
`python -m learning_to_simulate.train --data_path={DATA_PATH} --model_path={MODEL_PATH} --output_path={SAVED_MODEL_DIR} --mode=export`

Without `--data_path`, the small dataset bundled with the package is used.

On all local GPUs, `--batch_size` being the global batch:
`python -m learning_to_simulate.train ... --distribution=mirrored`
On several hosts, one process each with its `TF_CONFIG`:
`python -m learning_to_simulate.train ... --distribution=multi_worker`
"""
# pylint: enable=line-too-long

import sys
import tempfile
from typing import Optional

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from learning_to_simulate import reading_utils
from learning_to_simulate.model import external_force
from learning_to_simulate.model import options as options_lib
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import devices
from learning_to_simulate.training import distribution
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import export as export_lib
from learning_to_simulate.training import trainer
from learning_to_simulate.training import validation

# The options of what a run trains and how: one flag per field of these
# classes (`model.options`), whose defaults are the paper's. The first three
# are saved in {model_path}/config.json. Among them are the original's
# --batch_size, --num_steps and --noise_std.
_OPTION_CLASSES = (config_lib.ModelConfig, config_lib.OptimizerConfig,
                   config_lib.TrainingConfig, trainer.TrainOptions,
                   validation.ValidationOptions)
for _cls in _OPTION_CLASSES:
  options_lib.define_flags(_cls, module_name=__name__)

# The original's flags, same names and defaults.
flags.DEFINE_enum("mode", "train", ["train", "eval", "eval_rollout", "export"],
                  help="Train model, one step evaluation or rollout "
                  "evaluation; export: write a SavedModel to --output_path.")
flags.DEFINE_enum("eval_split", "test", ["train", "valid", "test"],
                  help="Split to use when running evaluation.")
flags.DEFINE_string("data_path", None,
                    help="The dataset directory. Defaults to the small "
                    "dataset bundled with the package.")
flags.DEFINE_string("model_path", None,
                    help="The path for saving checkpoints of the model. "
                    "Defaults to a temporary directory.")
flags.DEFINE_string("output_path", None,
                    help="The path for saving outputs (e.g. rollouts; the "
                    "SavedModel directory for --mode=export).")

# Evaluation limits.
flags.DEFINE_integer("num_rollouts", None, lower_bound=1,
                     help="How many trajectories eval_rollout writes "
                     "(default: all of the split).")
flags.DEFINE_integer("rollout_steps", None, lower_bound=1,
                     help="Predicted steps per rollout (default: "
                     "sequence_length - 6; more extrapolates past the data).")
flags.DEFINE_integer("num_eval_steps", None, lower_bound=1,
                     help="Cap on batches for one-step eval (default: the "
                     "whole split).")


class _PretrainedParser(flags.ArgumentParser):
  """`--pretrained` alone (or `=true`) is the water model; `=NAME` picks a
  shipped model by name; `--nopretrained` (or `=false`) is none."""

  def parse(self, argument):
    return checkpoints.parse_pretrained(argument)

  def flag_type(self):
    return "pretrained model name"


flags.DEFINE_flag(flags.Flag(
    _PretrainedParser(), flags.ArgumentSerializer(), "pretrained", None,
    "eval, eval_rollout and export: use a model shipped with the package "
    f"instead of --model_path: {', '.join(checkpoints.PRETRAINED_MODELS)} "
    f"(bare --pretrained: {checkpoints.DEFAULT_PRETRAINED}); without "
    "--data_path it runs on the bundled dataset of the same name (see the "
    "model's PROVENANCE.md).", boolean=True))
flags.DEFINE_string("checkpoint", "latest",
                    help="Checkpoint that eval, eval_rollout and export "
                    "restore: 'latest', 'best' (the best model by "
                    "validation) or a path (a ckpt-N prefix or a directory "
                    "of them).")

flags.DEFINE_boolean("deterministic", False,
                     help="TensorFlow's op determinism (tf.config."
                     "experimental.enable_op_determinism; needs --seed): "
                     "two runs with the same seed and thread count give the "
                     "same weights, also when one was interrupted and "
                     "resumed. Slower, mostly on GPU.")

# Scaling out (tf.distribute; the default trains on one device, as before).
flags.DEFINE_enum("distribution", "none", list(distribution.DISTRIBUTIONS),
                  help="none: one device; mirrored: all local GPUs (on a "
                  "CPU host its logical CPU devices); multi_worker: the "
                  "hosts of TF_CONFIG, each with its GPUs; tpu: a TPU "
                  "system (untested). --batch_size is then the global "
                  "batch, split over the replicas.")
flags.DEFINE_string("tpu", "",
                    help="The TPU for --distribution=tpu (a name or "
                    "grpc:// address; empty: from the environment, 'local' "
                    "on a TPU VM).")

FLAGS = flags.FLAGS


def _explicit_model(data_path):
  """The model options the user set, `--external_acceleration` resolved
  against the dataset's metadata."""
  overrides = options_lib.from_flags(config_lib.ModelConfig, only_given=True)
  if "external_acceleration" in overrides:
    overrides["external_acceleration"] = external_force.resolve(
        overrides["external_acceleration"],
        reading_utils.read_metadata(data_path),
        f"{data_path}/metadata.json")
  return overrides


def _configs(model_path, data_path):
  """Model, optimizer and training configs: config.json and the flags."""
  saved = config_lib.load(model_path)
  if (saved is not None and FLAGS.mode == "train" and
      not checkpoints.numbers_on_disk(model_path)):
    # No checkpoint was trained with it (say a run that diverged at once):
    # flags such as a lower --lr may differ.
    logging.info("%s has no checkpoint yet: its config.json is replaced.",
                 model_path)
    saved = None
  return tuple(
      config_lib.resolve(
          saved, section, cls,
          _explicit_model(data_path) if section == "model" else
          options_lib.from_flags(cls, only_given=True),
          model_path, evaluating=FLAGS.mode != "train")
      for section, cls in config_lib.SECTIONS.items())


def _pretrained() -> Optional[str]:
  """The name of the shipped model --pretrained selects, or None."""
  return checkpoints.parse_pretrained(FLAGS.pretrained)


def _eval_model_path() -> str:
  """The model of the eval modes: --model_path, or the shipped one."""
  name = _pretrained()
  if name:
    if FLAGS.model_path:
      raise ValueError("give either --pretrained or --model_path, not both")
    path = checkpoints.pretrained_model_path(name)
    logging.info("--pretrained=%s: using the model shipped with the package, "
                 "%s (see its PROVENANCE.md).", name, path)
    return path
  if not FLAGS.model_path:
    raise ValueError(f"--model_path (or --pretrained) is required for "
                     f"--mode={FLAGS.mode}")
  return FLAGS.model_path


def _data_path():
  if FLAGS.data_path:
    return FLAGS.data_path
  name = (_pretrained() if FLAGS.mode != "train" else None) or "water_drop"
  path = reading_utils.bundled_dataset_path(name)
  logging.info("No --data_path given: using the bundled dataset %s.", path)
  return path


def run():
  """Runs the mode selected by the flags."""
  if FLAGS.deterministic and FLAGS.seed is None:
    raise ValueError("--deterministic needs --seed (every random draw of a "
                     "deterministic run follows from it)")
  devices.configure_devices()
  if FLAGS.deterministic:
    tf.config.experimental.enable_op_determinism()
  # Before any TensorFlow op: collectives are set up when the runtime starts.
  workers = distribution.make_workers(FLAGS.distribution, FLAGS.tpu)
  if FLAGS.seed is not None:
    # Each worker its own noise: the chief's seed is --seed.
    tf.random.set_seed(distribution.worker_seed(FLAGS.seed, workers))
  data_path = _data_path()
  if FLAGS.mode == "train":
    if _pretrained():
      raise ValueError("--pretrained is for --mode=eval, eval_rollout and "
                       "export; to train, give a new --model_path")
    model_path = FLAGS.model_path
    if not model_path and workers.num_workers > 1:
      raise ValueError(f"--distribution={FLAGS.distribution} needs "
                       "--model_path, a directory that every worker shares")
    if not model_path:
      model_path = tempfile.mkdtemp(prefix="learning_to_simulate_model_")
      logging.info("No --model_path given: saving checkpoints in %s.",
                   model_path)
    model, optimizer, recipe = _configs(model_path, data_path)
    options = trainer.TrainOptions(
        **options_lib.from_flags(trainer.TrainOptions))
    validation_options = validation.ValidationOptions(
        **options_lib.from_flags(validation.ValidationOptions))
    trainer.train(data_path, model_path, model, optimizer, options,
                  validation_options, recipe, workers)
    return
  model_path = _eval_model_path()
  model = _configs(model_path, data_path)[0]
  if FLAGS.mode == "export":
    if not workers.one_device:
      raise ValueError("--mode=export runs in one process: drop "
                       f"--distribution={FLAGS.distribution}")
    if not FLAGS.output_path:
      raise ValueError("--output_path (the SavedModel directory) is required "
                       "for --mode=export")
    exported = export_lib.export(data_path, model_path,
                                 FLAGS.output_path, model,
                                 checkpoint=FLAGS.checkpoint)
    print(f"saved_model: {exported['output_path']} (signatures: "
          f"{', '.join(exported['signatures'])})")
    return
  if FLAGS.mode == "eval":
    metrics = evaluation.evaluate(
        data_path, model_path, model, split=FLAGS.eval_split,
        batch_size=FLAGS.batch_size, num_eval_steps=FLAGS.num_eval_steps,
        mixed_precision=FLAGS.mixed_precision, jit_compile=FLAGS.jit_compile,
        checkpoint=FLAGS.checkpoint,
        skip_corrupt_records=FLAGS.skip_corrupt_records, workers=workers)
    logging.info("Evaluation metrics (%s): %s", FLAGS.eval_split, metrics)
    print(f"loss_mse: {metrics['loss_mse']:.8g}")
    print(f"one_step_position_mse: {metrics['one_step_position_mse']:.8g}")
    if "one_step_position_mse_moving" in metrics:
      print("one_step_position_mse_moving: "
            f"{metrics['one_step_position_mse_moving']:.8g}")
    return
  if not FLAGS.output_path:
    raise ValueError("A rollout path must be provided: --output_path is "
                     "required for --mode=eval_rollout")
  results = evaluation.evaluate_rollouts(
      data_path, model_path, FLAGS.output_path, model,
      split=FLAGS.eval_split, num_rollouts=FLAGS.num_rollouts,
      rollout_steps=FLAGS.rollout_steps,
      mixed_precision=FLAGS.mixed_precision, jit_compile=FLAGS.jit_compile,
      checkpoint=FLAGS.checkpoint,
      skip_corrupt_records=FLAGS.skip_corrupt_records, workers=workers)
  for index, error in enumerate(results["per_trajectory"]):
    print(f"rollout_error_mse[{index}]: {error:.8g}")
  print(f"rollout_error_mse: {results['rollout_error_mse']:.8g}")
  print(f"\nMeans over {len(results['files'])} rollouts (moving particles; "
        f"per trajectory in {results['metrics_path']}):")
  print(evaluation.format_scores(results["metrics"]))


def _one_line(error: Exception) -> str:
  message = getattr(error, "message", None) or str(error)
  lines = [line for line in message.splitlines() if line.strip()]
  for line in lines:  # tf.debugging assertions quote our message first.
    if "must hold" in line or "tfrecord" in line:
      return line.strip().removeprefix("assertion failed: ").strip("[] ")
  return lines[0] if lines else type(error).__name__


def _os_error_line(error: OSError) -> str:
  if error.filename and error.strerror:
    return f"{error.filename}: {error.strerror}"
  return str(error)


def main(argv):
  """Runs the CLI: every expected failure is one line on stderr.

  Exit status 1 for an error (`train: error: ...`), 130 for Ctrl-C outside
  the training loop (`train: interrupted...`; in the loop, Ctrl-C saves a
  checkpoint and exits 0).
  """
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    run()
  except KeyboardInterrupt as error:
    print(f"train: {str(error) or 'interrupted'}", file=sys.stderr)
    sys.exit(130)
  except (ValueError, tf.errors.InvalidArgumentError) as error:
    sys.exit(f"train: error: {_one_line(error)}")
  except OSError as error:
    sys.exit(f"train: error: {_os_error_line(error)}")


if __name__ == "__main__":
  app.run(main)
