"""Rollout export: VTK series read back with meshio, npz arrays, the CLI."""

import json
import os
import pickle
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

from absl.testing import parameterized
import meshio
import numpy as np
import tensorflow as tf

from learning_to_simulate.visualization import rollout_export
from learning_to_simulate.visualization import rollout_files

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 3
NUM_PARTICLES = 4
DT = 0.5


def make_rollout(dim, seed=0, context=False):
  rng = np.random.default_rng(seed)
  positions = lambda frames: rng.uniform(
      0.2, 0.8, [frames, NUM_PARTICLES, dim]).astype(np.float32)
  rollout = {
      "initial_positions": positions(6),
      "predicted_rollout": positions(NUM_STEPS),
      "ground_truth_rollout": positions(NUM_STEPS),
      "particle_types": np.array([5, 5, 3, 6], np.int64),
      "metadata": {"bounds": [[0.1, 0.9]] * dim, "dt": DT, "dim": dim},
  }
  if context:
    rollout["global_context"] = rng.normal(size=[10, 2]).astype(np.float32)
  return rollout


def read_pvd(path):
  """`(time, file)` of each data set of a `.pvd` collection."""
  root = ElementTree.parse(path).getroot()
  return [(float(d.get("timestep")), d.get("file"))
          for d in root.iter("DataSet")]


class RolloutExportTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(2, 3)
  def test_vtk_frames_read_back_with_meshio(self, dim):
    rollout = make_rollout(dim)
    output_dir = os.path.join(self.create_tempdir().full_path, "out")
    written = rollout_export.write_vtk(rollout, output_dir)
    self.assertEqual(written, {
        "predicted": os.path.join(output_dir, "predicted.pvd"),
        "ground_truth": os.path.join(output_dir, "ground_truth.pvd")})
    for name, key in rollout_export.SERIES.items():
      frames = np.concatenate([rollout["initial_positions"], rollout[key]])
      series = read_pvd(written[name])
      self.assertEqual([t for t, _ in series],
                       [i * DT for i in range(6 + NUM_STEPS)])
      self.assertEqual(series[0][1], f"{name}/frame_00000.vtu")
      for index, (_, filename) in enumerate(series):
        mesh = meshio.read(os.path.join(output_dir, filename))
        points = mesh.points
        self.assertEqual(points.shape, (NUM_PARTICLES, 3))
        self.assertAllEqual(points[:, :dim], frames[index])
        if dim == 2:
          self.assertAllEqual(points[:, 2], np.zeros(NUM_PARTICLES))
        self.assertEqual(mesh.cells[0].type, "vertex")
        self.assertAllEqual(mesh.point_data["particle_type"].ravel(),
                            rollout["particle_types"])
        # Backward differences over dt; the first frame takes the second's.
        previous = frames[max(index - 1, 0)]
        current = frames[max(index, 1)]
        velocity = (current.astype(np.float64) - previous) / DT
        self.assertAllClose(mesh.point_data["velocity"][:, :dim], velocity,
                            rtol=1e-6)
        if name == "predicted":
          truth = np.concatenate([rollout["initial_positions"],
                                  rollout["ground_truth_rollout"]])[index]
          self.assertAllClose(mesh.point_data["error"].ravel(),
                              np.linalg.norm(frames[index] - truth, axis=-1),
                              rtol=1e-6)
        else:
          self.assertNotIn("error", mesh.point_data)

  def test_replaces_an_existing_export_whole(self):
    output_dir = os.path.join(self.create_tempdir().full_path, "out")
    os.makedirs(os.path.join(output_dir, "predicted"))
    stale = os.path.join(output_dir, "predicted", "frame_00099.vtu")
    open(stale, "w").close()
    rollout_export.write_vtk(make_rollout(2), output_dir)
    self.assertFalse(os.path.exists(stale))
    self.assertLen(os.listdir(os.path.join(output_dir, "predicted")),
                   6 + NUM_STEPS)
    self.assertEqual(os.listdir(os.path.dirname(output_dir)), ["out"])

  def test_npz_holds_the_arrays_and_the_metadata(self):
    rollout = rollout_files.check_rollout(make_rollout(3, context=True))
    path = os.path.join(self.create_tempdir().full_path, "r.npz")
    names = rollout_export.write_npz(rollout, path)
    self.assertEqual(names, ["global_context", "ground_truth_rollout",
                             "initial_positions", "metadata",
                             "particle_types", "predicted_rollout"])
    with np.load(path, allow_pickle=False) as arrays:
      for key in names:
        if key != "metadata":
          self.assertAllEqual(arrays[key], rollout[key])
      metadata = json.loads(str(arrays["metadata"]))
    self.assertEqual(metadata, {"bounds": [[0.1, 0.9]] * 3, "dt": DT,
                                "dim": 3})


class ExportRolloutCliTest(tf.test.TestCase):

  def run_cli(self, *args):
    env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m",
         "learning_to_simulate.visualization.export_rollout", *args],
        cwd=_ROOT, env=env, capture_output=True, text=True, timeout=300)

  def test_exports_a_directory_of_rollouts(self):
    root = self.create_tempdir().full_path
    rollouts = os.path.join(root, "rollouts")
    os.makedirs(rollouts)
    for index, dim in enumerate((2, 3)):
      with open(os.path.join(rollouts, f"rollout_test_{index}.pkl"),
                "wb") as f:
        pickle.dump(make_rollout(dim, seed=index), f)
    result = self.run_cli(f"--rollout_path={rollouts}",
                          f"--output_path={root}/export")
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertCountEqual(os.listdir(f"{root}/export"),
                          ["rollout_test_0", "rollout_test_0.npz",
                           "rollout_test_1", "rollout_test_1.npz"])
    mesh = meshio.read(f"{root}/export/rollout_test_1/ground_truth/"
                       "frame_00008.vtu")
    self.assertAllEqual(mesh.points,
                        make_rollout(3, seed=1)["ground_truth_rollout"][-1])

    only_npz = self.run_cli(f"--rollout_path={rollouts}/rollout_test_0.pkl",
                            f"--output_path={root}/npz", "--format=npz")
    self.assertEqual(only_npz.returncode, 0, only_npz.stderr[-2000:])
    self.assertEqual(os.listdir(f"{root}/npz"), ["rollout_test_0.npz"])

    missing = self.run_cli(f"--rollout_path={root}/none.pkl",
                           f"--output_path={root}/bad")
    self.assertEqual(missing.returncode, 1)
    self.assertRegex(missing.stderr.strip().splitlines()[-1],
                     r"^export_rollout: error: Rollout pickle .*none\.pkl "
                     "does not exist$")
    self.assertFalse(os.path.exists(f"{root}/bad"))


if __name__ == "__main__":
  tf.test.main()
