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

import dataclasses
import sys
import tempfile
from typing import Optional

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from learning_to_simulate import reading_utils
from learning_to_simulate.model import external_force
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import devices
from learning_to_simulate.training import distribution
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import export as export_lib
from learning_to_simulate.training import trainer
from learning_to_simulate.training import validation

_MODEL = config_lib.ModelConfig()
_OPTIMIZER = config_lib.OptimizerConfig()
_TRAIN = trainer.TrainOptions()
_VALID = validation.ValidationOptions()
_RECIPE = config_lib.TrainingConfig()

# The original's flags, same names and defaults.
flags.DEFINE_enum("mode", "train", ["train", "eval", "eval_rollout", "export"],
                  help="Train model, one step evaluation or rollout "
                  "evaluation; export: write a SavedModel to --output_path.")
flags.DEFINE_enum("eval_split", "test", ["train", "valid", "test"],
                  help="Split to use when running evaluation.")
flags.DEFINE_string("data_path", None,
                    help="The dataset directory. Defaults to the small "
                    "dataset bundled with the package.")
flags.DEFINE_integer("batch_size", _TRAIN.batch_size, help="The batch size.")
flags.DEFINE_integer("num_steps", _TRAIN.num_steps,
                     help="Number of steps of training (total, counting "
                     "steps of a resumed run).")
flags.DEFINE_float("noise_std", _MODEL.noise_std,
                   help="The std deviation of the noise.")
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
flags.DEFINE_string("warm_start", None,
                    help="train: a model directory without checkpoints "
                    "starts from these weights (a ckpt-N prefix or a "
                    "directory of them, e.g. a packaged model) at step N of "
                    "the learning-rate and pushforward schedules, with a "
                    "fresh optimizer state; ignored when --model_path has "
                    "checkpoints (it resumes from them).")
flags.DEFINE_string("checkpoint", "latest",
                    help="Checkpoint that eval, eval_rollout and export "
                    "restore: 'latest', 'best' (the best model by "
                    "validation) or a path (a ckpt-N prefix or a directory "
                    "of them).")

# Validation during training (on the valid split) and the best model.
flags.DEFINE_integer("eval_every_steps", _VALID.every_steps,
                     help="Validate every N training steps and at the last "
                     "one: one-step losses and rollouts on the valid split, "
                     "TensorBoard scalars and images under valid/, the best "
                     "model kept in {model_path}/best (0: off).")
flags.DEFINE_integer("eval_num_batches", _VALID.num_batches,
                     help="One-step batches per validation.")
flags.DEFINE_integer("eval_num_rollouts", _VALID.num_rollouts,
                     help="Valid trajectories rolled out per validation.")
flags.DEFINE_integer("eval_rollout_steps", None,
                     help="Steps of each validation rollout (default: the "
                     "whole trajectory).")
flags.DEFINE_enum("best_metric", _VALID.best_metric,
                  list(validation.BEST_METRICS),
                  help="Validation metric (lower is better) that picks the "
                  "best model.")
flags.DEFINE_boolean("skip_corrupt_records", False,
                     help="Skip damaged dataset records with a warning "
                     "instead of stopping: records that fail a check "
                     "(NaN position, particle type, shape) one by one; a "
                     "failed checksum ends the reading of the file there.")

# Model hyperparameters (saved in {model_path}/config.json).
flags.DEFINE_integer("latent_size", _MODEL.latent_size,
                     help="Size of node and edge latents.")
flags.DEFINE_integer("hidden_size", _MODEL.hidden_size,
                     help="Hidden layer size of every MLP.")
flags.DEFINE_integer("hidden_layers", _MODEL.hidden_layers,
                     help="Hidden layers of every MLP.")
flags.DEFINE_integer("message_passing_steps", _MODEL.message_passing_steps,
                     help="Number of message-passing steps.")
flags.DEFINE_boolean("clamp_to_bounds", _MODEL.clamp_to_bounds,
                     help="Beyond the paper (opt-in): clip predicted "
                     "positions to the dataset bounds, impermeable walls as "
                     "in the simulators that made the data. Saved with the "
                     "model; eval modes may switch it either way.")

flags.DEFINE_float("connectivity_radius", _MODEL.connectivity_radius,
                   help="Opt-in: the radius of the particle graph (and of "
                   "relaxation's kernel), in position units; default: the "
                   "metadata's default_connectivity_radius. Saved with the "
                   "model.")
flags.DEFINE_integer("grid_resolution", _MODEL.grid_resolution,
                     help="Opt-in grid branch: latents scattered onto a grid "
                     "of this many nodes per axis over the bounds, a small "
                     "multi-resolution CNN, gathered back before decoding "
                     "(0: off, the paper's network). Saved with the model.")
flags.DEFINE_integer("grid_channels", _MODEL.grid_channels,
                     help="Channels of the grid branch's CNN.")
flags.DEFINE_integer("grid_levels", _MODEL.grid_levels,
                     help="Resolution levels of the grid branch's CNN "
                     "(--grid_resolution must be a multiple of "
                     "2^(levels - 1)).")
flags.DEFINE_list("external_acceleration", None,
                  help="Beyond the paper (opt-in): the known external "
                  "acceleration (gravity) in positions per frame squared, "
                  "one number per dimension, or 'auto' for the dataset "
                  "metadata's external_acceleration (the generator writes "
                  "it). The network predicts the acceleration minus it; it "
                  "is added back before integration. Saved with the model.")
flags.DEFINE_integer("relaxation_steps", _MODEL.relaxation_steps,
                     help="Beyond the paper (opt-in): density relaxation "
                     "steps after each rollout step, pushing particles out "
                     "of regions denser than the rest density "
                     "(model/relaxation.py); 0: none. An evaluation option "
                     "like --clamp_to_bounds: eval modes may change it.")
flags.DEFINE_float("relaxation_step_size", _MODEL.relaxation_step_size,
                   help="Scale of each relaxation correction, in "
                   "connectivity radii per unit of density excess (0.1 and "
                   "--relaxation_steps=3: chosen on water's valid split; "
                   "1.0 is unstable).")
flags.DEFINE_float("relaxation_rest_density",
                   _MODEL.relaxation_rest_density,
                   help="Rest density of the relaxation, in kernel units "
                   "(a lone particle has 1); default: the 90th percentile "
                   "of the movable particles' densities in the last input "
                   "frame of each rollout.")
# Optimizer (saved in {model_path}/config.json).
flags.DEFINE_enum("optimizer", _OPTIMIZER.optimizer,
                  list(config_lib.OPTIMIZERS), help="Optimizer.")
flags.DEFINE_float("lr", _OPTIMIZER.lr, help="Initial learning rate.")
flags.DEFINE_float("min_lr", _OPTIMIZER.min_lr, help="Final learning rate.")
flags.DEFINE_integer("lr_decay_steps", _OPTIMIZER.lr_decay_steps,
                     help="Steps over which (lr - min_lr) decays by "
                     "lr_decay_rate.")
flags.DEFINE_float("lr_decay_rate", _OPTIMIZER.lr_decay_rate,
                   help="Learning-rate decay factor.")

# Run control.
flags.DEFINE_integer("seed", None, help="Random seed of every draw of a run: "
                     "initial weights, input noise, shuffle, pushforward "
                     "unrolls, validation noise (default: unseeded).")
flags.DEFINE_boolean("deterministic", False,
                     help="TensorFlow's op determinism (tf.config."
                     "experimental.enable_op_determinism; needs --seed): "
                     "two runs with the same seed and thread count give the "
                     "same weights, also when one was interrupted and "
                     "resumed. Slower, mostly on GPU.")
flags.DEFINE_integer("log_every_steps", _TRAIN.log_every_steps,
                     help="Log loss, steps/s and ETA every N steps.")
flags.DEFINE_integer("checkpoint_every_steps", _TRAIN.checkpoint_every_steps,
                     help="Save a checkpoint every N steps.")
flags.DEFINE_float("checkpoint_every_secs", _TRAIN.checkpoint_every_secs,
                   help="Also save a checkpoint every N seconds (0: off).")
flags.DEFINE_integer("keep_checkpoints", _TRAIN.keep_checkpoints,
                     help="How many recent checkpoints to keep.")
flags.DEFINE_integer("shuffle_buffer_size", _TRAIN.shuffle_buffer_size,
                     help="Shuffle buffer of training windows.")
flags.DEFINE_boolean("save_input_position", _TRAIN.save_input_position,
                     help="Save the input's position (its shuffle buffer) "
                     "in checkpoints, so that a resumed run goes on with "
                     "the batches it would have had; off: smaller "
                     "checkpoints, and a resumed run starts a new shuffle.")

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

# GPU speed-ups (off by default: the default is the paper's float32 model).
flags.DEFINE_enum("mixed_precision", None, ["bfloat16", "float16"],
                  help="Matmuls of the graph network in this dtype; "
                  "variables, LayerNorm, loss and outputs stay float32 "
                  "(float16 adds dynamic loss scaling).")
flags.DEFINE_boolean("jit_compile", False,
                     help="Compile the graph network with XLA, on inputs "
                     "padded to bucketed sizes (for GPUs; slower on CPU).")
flags.DEFINE_boolean("recompute_grad", False,
                     help="Keep only each message-passing step's inputs for "
                     "the backward pass and recompute the rest there: about "
                     "1/3 more compute, a fraction of the training memory "
                     "(for graphs that do not fit otherwise).")

# Training recipe beyond the paper (opt-in; saved in config.json).
flags.DEFINE_integer("pushforward_max_unroll",
                     _RECIPE.pushforward_max_unroll,
                     help="Pushforward training: the model rolls itself "
                     "forward up to this many steps (without gradient) "
                     "before the trained step (0: off, the paper's training).")
flags.DEFINE_integer("pushforward_phase_steps",
                     _RECIPE.pushforward_phase_steps,
                     help="Unroll length k becomes available after k times "
                     "this many training steps.")
flags.DEFINE_float("pushforward_probability",
                   _RECIPE.pushforward_probability,
                   help="Share of training steps that unroll, once unrolls "
                   "are available.")
flags.DEFINE_integer("multistep_loss_steps", _RECIPE.multistep_loss_steps,
                     help="Multi-step loss: the mean of the paper's loss over "
                     "this many steps of the model's own rollout, with "
                     "gradient through them (1: the paper's one-step loss; "
                     "K costs about K times the compute and activation "
                     "memory of a step).")

FLAGS = flags.FLAGS


def _section_flags(cls):
  return [field.name for field in dataclasses.fields(cls)]


def _explicit(names):
  """Values of the flags among `names` that the user set."""
  return {name: FLAGS[name].value for name in names if FLAGS[name].present}


def _explicit_model(data_path):
  """`_explicit` of the model section, `--external_acceleration` resolved
  against the dataset's metadata."""
  overrides = _explicit(_section_flags(config_lib.ModelConfig))
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
          _explicit(_section_flags(cls)),
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
    if not model_path and workers is not None and workers.num_workers > 1:
      raise ValueError(f"--distribution={FLAGS.distribution} needs "
                       "--model_path, a directory that every worker shares")
    if not model_path:
      model_path = tempfile.mkdtemp(prefix="learning_to_simulate_model_")
      logging.info("No --model_path given: saving checkpoints in %s.",
                   model_path)
    model, optimizer, recipe = _configs(model_path, data_path)
    options = trainer.TrainOptions(
        num_steps=FLAGS.num_steps, batch_size=FLAGS.batch_size,
        seed=FLAGS.seed, log_every_steps=FLAGS.log_every_steps,
        checkpoint_every_steps=FLAGS.checkpoint_every_steps,
        checkpoint_every_secs=FLAGS.checkpoint_every_secs,
        keep_checkpoints=FLAGS.keep_checkpoints,
        shuffle_buffer_size=FLAGS.shuffle_buffer_size,
        mixed_precision=FLAGS.mixed_precision,
        jit_compile=FLAGS.jit_compile,
        recompute_grad=FLAGS.recompute_grad,
        skip_corrupt_records=FLAGS.skip_corrupt_records,
        save_input_position=FLAGS.save_input_position,
        warm_start=FLAGS.warm_start)
    validation_options = validation.ValidationOptions(
        every_steps=FLAGS.eval_every_steps,
        num_batches=FLAGS.eval_num_batches,
        num_rollouts=FLAGS.eval_num_rollouts,
        rollout_steps=FLAGS.eval_rollout_steps,
        best_metric=FLAGS.best_metric)
    trainer.train(data_path, model_path, model, optimizer, options,
                  validation_options, recipe, workers)
    return
  model_path = _eval_model_path()
  model = _configs(model_path, data_path)[0]
  if FLAGS.mode == "export":
    if workers is not None:
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
