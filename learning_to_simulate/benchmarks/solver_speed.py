"""How fast is the learned simulator against the solver that made its data?

The paper's case for learned simulators is speed. This benchmark times, in one
process on one host, for the same test trajectories:

- the learned rollout: the model's `rollout` (`eval_rollout`'s, with the
  evaluation options the model was saved with: walls, relaxation), timed after
  an untimed rollout that traces it;
- the generator's MLS-MPM solver (`generation/mpm.py`, Taichi on CPU,
  single-threaded) simulating the same initial states, timed after an untimed
  short simulation that compiles its kernels.

The solver's initial states are drawn again from the generator's seed: the
test split is the trajectories after `num_train + num_valid` in the seed's
stream (`generate_dataset`'s order). Each resimulated trajectory is compared
with the dataset's (their largest position difference is reported), so the
two sides are known to simulate the same thing.

Both sides run the frames the learned model predicts (`num_steps`, by default
`sequence_length - 6`, after the solver's first frames up to the model's
input window). Times are per trajectory and per frame; run it with nothing
else on the machine, one core (`taskset -c 0`), TensorFlow on one thread:

  TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 taskset -c 0 \\
  python -m learning_to_simulate.benchmarks.solver_speed --pretrained=water_drop \\
      --scene=water_drop --seed=42 --num_train=22 --num_valid=2
"""

import json
import time
from typing import Any, Dict, List, Optional, Sequence

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from learning_to_simulate import reading_utils
from learning_to_simulate.data import common
from learning_to_simulate.generation import generate_dataset
from learning_to_simulate.generation import mpm
from learning_to_simulate.generation import scenes
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import rollout as rollout_lib

# Frames of the untimed simulation that compiles the solver's kernels.
WARM_UP_FRAMES = 3


def test_initial_states(scene: str, seed: int, num_train: int,
                        num_valid: int, num_test: int,
                        resolution: Optional[int] = None,
                        wall_layers: int = 0) -> List[scenes.InitialState]:
  """The test split's initial states, drawn as `generate_dataset` draws
  them (`generate_dataset.draw_initial_states`)."""
  spec = scenes.get_scene(scene)
  return generate_dataset.draw_initial_states(
      spec, seed, resolution or spec.default_resolution,
      {"train": num_train, "valid": num_valid, "test": num_test},
      wall_layers)["test"]


def _time_solver(scene: str, states: Sequence[scenes.InitialState],
                 num_frames: int, resolution: Optional[int]
                 ) -> Dict[str, Any]:
  """Seconds per state to simulate `num_frames` frames, and the frames."""
  spec = scenes.get_scene(scene)
  resolution = resolution or spec.default_resolution
  solver = scenes.make_solver(spec, states, resolution,
                              mpm.min_substeps(resolution), "cpu")
  start = time.perf_counter()
  scenes.simulate_state(solver, states[0], WARM_UP_FRAMES)
  compile_seconds = time.perf_counter() - start
  seconds, trajectories = [], []
  for state in states:
    start = time.perf_counter()
    trajectories.append(scenes.simulate_state(solver, state, num_frames))
    seconds.append(time.perf_counter() - start)
  return {"seconds": seconds, "compile_seconds": compile_seconds,
          "trajectories": trajectories,
          "substeps": mpm.min_substeps(resolution)}


def measure(model_path: str, data_path: str, scene: str, seed: int,
            num_train: int, num_valid: int,
            num_steps: Optional[int] = None,
            resolution: Optional[int] = None,
            bare: bool = False) -> Dict[str, Any]:
  """Times the learned rollout and the solver on the test split.

  Args:
    model_path: a model directory (its `config.json` sets the options).
    data_path: the dataset with the test split and metadata.
    scene, seed, num_train, num_valid, resolution: the generator's command
      that made `data_path` (the test split follows the train and valid
      splits; resolution None: the scene's default).
    num_steps: predicted frames per trajectory (default: sequence_length -
      6, as `eval_rollout`).
    bare: roll out with walls and relaxation off (the network alone, as the
      paper's model), instead of the options the model was saved with.

  Returns:
    Per test trajectory: particles, learned and solver seconds, and the
    largest position difference between the resimulated trajectory and the
    dataset's; and the totals.
  """
  metadata = reading_utils.read_metadata(data_path)
  options = {"clamp_to_bounds": False, "relaxation_steps": 0} if bare else {}
  model_config = config_lib.resolve(config_lib.load(model_path), "model",
                                    config_lib.ModelConfig, options,
                                    model_path, evaluating=True)
  _, simulator = evaluation.load_model(data_path, model_path, model_config)
  rollout_fn = rollout_lib.make_rollout_fn(simulator, metadata)
  features = [{k: v for k, v in f.items() if k != "key"}
              for f in reading_utils.get_rollout_dataset(data_path, "test",
                                                         metadata)]
  input_frames = common.INPUT_SEQUENCE_LENGTH
  num_steps = num_steps or metadata["sequence_length"] - input_frames
  num_frames = input_frames + num_steps  # The solver's, from frame 0.

  rollout_fn(features[0], tf.constant(num_steps))  # Traces.
  learned = []
  for inputs in features:
    start = time.perf_counter()
    output = rollout_fn(inputs, tf.constant(num_steps))
    output["predicted_rollout"].numpy()
    learned.append(time.perf_counter() - start)

  states = test_initial_states(scene, seed, num_train, num_valid,
                               len(features), resolution,
                               wall_layers=metadata.get(
                                   generate_dataset.WALL_LAYERS_KEY, 0))
  solver = _time_solver(scene, states, num_frames, resolution)
  # The solver also simulated the input window: count its time per frame
  # stepped (num_frames - 1) over the num_steps the model predicts.
  scale = num_steps / (num_frames - 1)
  per_trajectory = []
  for index, (inputs, trajectory) in enumerate(
      zip(features, solver["trajectories"])):
    truth = inputs["position"].numpy().transpose(1, 0, 2)[:num_frames]
    if truth.shape != trajectory.positions.shape:
      raise ValueError(f"test trajectory {index} of {data_path} has shape "
                       f"{list(truth.shape)}, the resimulated one "
                       f"{list(trajectory.positions.shape)}: --scene, "
                       "--seed, --num_train or --num_valid is not the "
                       "command that made the dataset")
    per_trajectory.append({
        "particles": int(truth.shape[1]),
        "learned_seconds": learned[index],
        "solver_seconds": solver["seconds"][index] * scale,
        "resimulated_max_difference": float(
            np.abs(truth - trajectory.positions).max()),
    })
  learned_total = sum(learned)
  solver_total = sum(row["solver_seconds"] for row in per_trajectory)
  return {
      "model_path": model_path, "data_path": data_path, "scene": scene,
      "num_steps": num_steps, "substeps_per_frame": solver["substeps"],
      "relaxation_steps": model_config.relaxation_steps,
      "clamp_to_bounds": model_config.clamp_to_bounds,
      "solver_compile_seconds": solver["compile_seconds"],
      "per_trajectory": per_trajectory,
      "learned_seconds": learned_total,
      "solver_seconds": solver_total,
      "learned_ms_per_frame": 1e3 * learned_total / (num_steps *
                                                     len(features)),
      "solver_ms_per_frame": 1e3 * solver_total / (num_steps * len(features)),
      "learned_over_solver": learned_total / solver_total,
  }


def format_result(result: Dict[str, Any]) -> str:
  lines = [f"model {result['model_path']} (walls "
           f"{'on' if result['clamp_to_bounds'] else 'off'}, relaxation steps "
           f"{result['relaxation_steps']}) on {result['data_path']} (test), "
           f"{result['num_steps']} predicted frames per trajectory; solver: "
           f"MLS-MPM, {result['substeps_per_frame']} substeps per frame "
           f"(kernels compiled in {result['solver_compile_seconds']:.1f} s, "
           "not counted)",
           f"{'trajectory':>10} {'particles':>9} {'learned s':>10} "
           f"{'solver s':>9} {'resimulated max |dx|':>21}"]
  for index, row in enumerate(result["per_trajectory"]):
    lines.append(f"{index:>10} {row['particles']:>9} "
                 f"{row['learned_seconds']:>10.2f} "
                 f"{row['solver_seconds']:>9.2f} "
                 f"{row['resimulated_max_difference']:>21.2e}")
  lines.append(f"per frame: learned {result['learned_ms_per_frame']:.2f} ms, "
               f"solver {result['solver_ms_per_frame']:.2f} ms: the learned "
               f"rollout takes {result['learned_over_solver']:.2f}x the "
               "solver's time")
  return "\n".join(lines)


FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Registers the CLI flags, only when run as a program."""
  flags.DEFINE_string("model_path", None, "A model directory.")
  flags.DEFINE_enum("pretrained", None, list(checkpoints.PRETRAINED_MODELS),
                    "A shipped model instead of --model_path (its bundled "
                    "dataset is the default --data_path).")
  flags.DEFINE_string("data_path", None, "The dataset (test split).")
  flags.DEFINE_string("scene", None, "The generator's --scene.")
  flags.DEFINE_integer("seed", None, "The generator's --seed.")
  flags.DEFINE_integer("num_train", None, "The generator's --num_train.",
                       lower_bound=0)
  flags.DEFINE_integer("num_valid", None, "The generator's --num_valid.",
                       lower_bound=0)
  flags.DEFINE_integer("resolution", None, "The generator's --resolution "
                       "(default: the scene's).", lower_bound=1)
  flags.DEFINE_integer("num_steps", None, "Predicted frames (default: "
                       "sequence_length - 6).", lower_bound=1)
  flags.DEFINE_boolean("bare", False, "Walls and relaxation off (the "
                       "network alone) instead of the model's saved options.")
  flags.DEFINE_string("output", None, "Also write the result as JSON here.")
  flags.mark_flags_as_required(["scene", "seed", "num_train", "num_valid"])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if bool(FLAGS.model_path) == bool(FLAGS.pretrained):
    raise app.UsageError("give either --model_path or --pretrained")
  model_path = FLAGS.model_path or checkpoints.pretrained_model_path(
      FLAGS.pretrained)
  data_path = FLAGS.data_path or reading_utils.bundled_dataset_path(
      FLAGS.pretrained or "water_drop")
  result = measure(model_path, data_path, FLAGS.scene, FLAGS.seed,
                   FLAGS.num_train, FLAGS.num_valid, FLAGS.num_steps,
                   FLAGS.resolution, FLAGS.bare)
  print(format_result(result))
  if FLAGS.output:
    with open(FLAGS.output + ".tmp", "w") as f:
      json.dump(result, f, indent=2)
    tf.io.gfile.rename(FLAGS.output + ".tmp", FLAGS.output, overwrite=True)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
