"""SavedModel export: loads without the package, matches the in-package one."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate.data import synthetic
from learning_to_simulate import reading_utils
from learning_to_simulate.model import build
from learning_to_simulate.training import checkpoints
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import export as export_lib
from learning_to_simulate.training import rollout as rollout_lib

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = config_lib.ModelConfig(latent_size=8, hidden_size=8,
                               message_passing_steps=2)
NUM_STEPS = 4

# Runs where this package cannot be imported: `python -I` (no PYTHONPATH, no
# user site, no current directory on the path), started outside the
# repository, and the package's name blocked in case an installed copy is
# on the path. Calls each SavedModel's signatures on the saved inputs.
_CHILD = textwrap.dedent("""
    import sys
    sys.modules["learning_to_simulate"] = None  # `import` now fails.
    import numpy as np
    import tensorflow as tf
    try:
      import learning_to_simulate  # pylint: disable=unused-import
      raise SystemExit("the package is importable")
    except ImportError:
      pass
    inputs = dict(np.load("inputs.npz"))
    outputs = {}
    for name in ("context", "plain"):
      model = tf.saved_model.load(name)
      for signature in ("one_step", "rollout"):
        prefix = f"{name}/{signature}/"
        args = {key[len(prefix):]: tf.constant(value)
                for key, value in inputs.items() if key.startswith(prefix)}
        for key, value in model.signatures[signature](**args).items():
          outputs[prefix + key] = value.numpy()
    np.savez("outputs.npz", **outputs)
    print(sorted(m for m in sys.modules if m.startswith("learning_to")))
""")


def write_model(data_path, model_path):
  """A checkpoint of an untrained small model, and its config.json."""
  metadata = reading_utils.read_metadata(data_path)
  simulator = build.build_simulator(metadata, MODEL)
  checkpoints.make_manager(model_path, simulator).save(checkpoint_number=1)
  config_lib.save(model_path, MODEL, config_lib.OptimizerConfig())


def trajectory_inputs(data_path, metadata):
  """Rollout inputs from the first test trajectory, as numpy."""
  features = next(iter(reading_utils.get_rollout_dataset(
      data_path, "test", metadata)))
  return {k: v.numpy() for k, v in features.items() if k != "key"}


class SavedModelExportTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path

  def in_package(self, name, data_path, model_path):
    """Inputs and outputs of the restored in-package model."""
    metadata, simulator = evaluation.load_model(data_path, model_path, MODEL)
    trajectory = trajectory_inputs(data_path, metadata)
    rng = np.random.default_rng(0)
    # One step on a batch of two examples, 14 and 10 particles.
    position = trajectory["position"][:, :common.INPUT_SEQUENCE_LENGTH]
    window = np.concatenate([position[:14], position[-10:]])
    types = np.concatenate([trajectory["particle_type"][:14],
                            trajectory["particle_type"][-10:]])
    one_step = {"position": window, "particle_type": types,
                "n_particles_per_example": np.array([14, 10], np.int32)}
    rollout = {"position": trajectory["position"],
               "particle_type": trajectory["particle_type"],
               "num_steps": np.array(NUM_STEPS, np.int32)}
    context = "step_context" in trajectory
    if context:
      one_step["global_context"] = rng.normal(size=[2, 2]).astype(np.float32)
      rollout["step_context"] = trajectory["step_context"]
    expected = {"one_step/next_position": simulator(
        tf.constant(window), n_particles_per_example=tf.constant([14, 10]),
        global_context=(tf.constant(one_step["global_context"]) if context
                        else None),
        particle_types=tf.constant(types)).numpy()}
    features = {k: v for k, v in trajectory.items()}
    rolled = rollout_lib.make_rollout_fn(simulator, metadata)(
        features, tf.constant(NUM_STEPS))
    for key, value in rolled.items():
      expected[f"rollout/{key}"] = value.numpy()
    inputs = {f"{name}/one_step/{k}": v for k, v in one_step.items()}
    inputs.update({f"{name}/rollout/{k}": v for k, v in rollout.items()})
    return inputs, {f"{name}/{k}": v for k, v in expected.items()}

  def test_loads_without_the_package_and_matches(self):
    # With a global context, through `train --mode=export`.
    context_data = os.path.join(self.root, "context_data")
    synthetic.write_tiny_dataset(context_data, num_particles=20,
                                 num_kinematic=4, context_size=2, seed=1)
    context_model = os.path.join(self.root, "context_model")
    write_model(context_data, context_model)
    exported = os.path.join(self.root, "child", "context")
    env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "learning_to_simulate.train", "--mode=export",
         f"--data_path={context_data}", f"--model_path={context_model}",
         f"--output_path={exported}"], cwd=_ROOT, env=env,
        capture_output=True, text=True, timeout=300)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertEqual(result.stdout.strip(), f"saved_model: {exported} "
                     "(signatures: one_step, rollout)")
    with open(os.path.join(exported, "assets.extra", "metadata.json")) as f:
      self.assertEqual(json.load(f),
                       reading_utils.read_metadata(context_data))
    with open(os.path.join(exported, "assets.extra", "config.json")) as f:
      self.assertEqual(json.load(f)["model"]["latent_size"], 8)

    # Without one, through the library.
    plain_data = os.path.join(self.root, "plain_data")
    synthetic.write_tiny_dataset(plain_data, dim=3, num_particles=20,
                                 num_kinematic=4, seed=2)
    plain_model = os.path.join(self.root, "plain_model")
    write_model(plain_data, plain_model)
    export_lib.export(plain_data, plain_model,
                      os.path.join(self.root, "child", "plain"), MODEL)

    inputs, expected = self.in_package("context", context_data,
                                       context_model)
    plain_inputs, plain_expected = self.in_package("plain", plain_data,
                                                   plain_model)
    inputs.update(plain_inputs)
    expected.update(plain_expected)
    child = os.path.join(self.root, "child")
    np.savez(os.path.join(child, "inputs.npz"), **inputs)
    with open(os.path.join(child, "load.py"), "w") as f:
      f.write(_CHILD)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run([sys.executable, "-I", "load.py"], cwd=child,
                            env=env, capture_output=True, text=True,
                            timeout=300)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    # Nothing of the package was imported (the name holds the blocker).
    self.assertEqual(result.stdout.strip(), "['learning_to_simulate']")
    with np.load(os.path.join(child, "outputs.npz")) as outputs:
      self.assertCountEqual(outputs.files, expected.keys())
      for key, value in expected.items():
        self.assertAllClose(outputs[key], value, rtol=1e-5, atol=1e-6,
                            msg=key)
    self.assertEqual(expected["context/rollout/predicted_rollout"].shape,
                     (NUM_STEPS, 24, 2))
    self.assertEqual(expected["plain/one_step/next_position"].shape, (24, 3))

  def test_errors(self):
    data_path = os.path.join(self.root, "data")
    synthetic.write_tiny_dataset(data_path)
    with self.assertRaisesRegex(checkpoints.CheckpointError,
                                "has no checkpoint"):
      export_lib.export(data_path, os.path.join(self.root, "none"),
                        os.path.join(self.root, "out"), MODEL)
    self.assertFalse(os.path.exists(os.path.join(self.root, "out")))
    model_path = os.path.join(self.root, "model")
    write_model(data_path, model_path)
    output_path = os.path.join(self.root, "out")
    export_lib.export(data_path, model_path, output_path, MODEL)
    model = tf.saved_model.load(output_path)
    position = tf.zeros([3, common.INPUT_SEQUENCE_LENGTH + 1, 2])
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                "at least 6 \\+ num_steps frames"):
      model.signatures["rollout"](
          position=position, particle_type=tf.constant([5, 5, 3], tf.int64),
          num_steps=tf.constant(2))
    # Exporting again replaces the directory whole.
    open(os.path.join(output_path, "stale"), "w").close()
    export_lib.export(data_path, model_path, output_path, MODEL)
    self.assertNotIn("stale", os.listdir(output_path))
    self.assertEqual(sorted(os.listdir(self.root)),
                     ["data", "model", "out"])
    env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "learning_to_simulate.train", "--mode=export",
         f"--data_path={data_path}", f"--model_path={model_path}"],
        cwd=_ROOT, env=env, capture_output=True, text=True, timeout=300)
    self.assertEqual(result.returncode, 1)
    self.assertEqual(result.stderr.strip().splitlines()[-1],
                     "train: error: --output_path (the SavedModel directory) "
                     "is required for --mode=export")


if __name__ == "__main__":
  tf.test.main()
