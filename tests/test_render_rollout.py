"""Headless rendering of rollouts: GIF frames, particle placement, error plot."""

import os
import pickle
import shutil
import subprocess
import sys

from absl.testing import parameterized
import numpy as np
from PIL import Image
import tensorflow as tf

from learning_to_simulate import common
from learning_to_simulate import render_rollout

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WATER = common.ParticleType.WATER
SAND = common.ParticleType.SAND
KINEMATIC = common.ParticleType.KINEMATIC


def make_rollout(dim, num_steps=10, seed=0, corner=False):
  """A rollout of 6 particles (water, sand, kinematic) in [0, 1]^dim."""
  rng = np.random.default_rng(seed)
  num_frames = 6 + num_steps
  positions = rng.uniform(0.3, 0.7, [num_frames, 6, dim]).astype(np.float32)
  if corner:  # Every particle near the top-left corner (x low, y high).
    positions[:] = 0.05
    positions[..., 1] = 0.95
  predicted = positions[6:] + rng.normal(0, 0.01, positions[6:].shape)
  return {
      "initial_positions": positions[:6],
      "predicted_rollout": predicted.astype(np.float32),
      "ground_truth_rollout": positions[6:],
      "particle_types": np.array([WATER] * 3 + [SAND] * 2 + [KINEMATIC],
                                 np.int64),
      "metadata": {"bounds": [[0.0, 1.0]] * dim, "dim": dim,
                   "sequence_length": num_frames},
  }


def rgb_frames(path):
  image = Image.open(path)
  frames = []
  for index in range(image.n_frames):
    image.seek(index)
    frames.append(np.asarray(image.convert("RGB"), np.int32))
  return frames


class RenderTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.out = self.create_tempdir().full_path

  @parameterized.parameters(2, 3)
  def test_gif_has_one_frame_per_stride(self, dim):
    path = os.path.join(self.out, f"rollout_{dim}d.gif")
    count = render_rollout.render_animation(make_rollout(dim), path,
                                            step_stride=3, dpi=40)
    # 16 trajectory frames (6 initial + 10 steps) at stride 3: 0, 3, ..., 15.
    self.assertEqual(count, 6)
    frames = rgb_frames(path)
    self.assertLen(frames, 6)
    width, height = (np.array(render_rollout.FIGURE_SIZE) * 40).astype(int)
    self.assertEqual(frames[0].shape, (height, width, 3))
    # Something is drawn in both halves (ground truth and prediction).
    for half in (frames[0][:, :width // 2], frames[0][:, width // 2:]):
      self.assertGreater(np.sum(half.sum(-1) < 600), 10)
    self.assertEqual(sorted(os.listdir(self.out)), [f"rollout_{dim}d.gif"])

  def test_particles_are_drawn_where_the_data_puts_them(self):
    path = os.path.join(self.out, "corner.gif")
    rollout = make_rollout(2, corner=True)
    rollout["particle_types"][:] = WATER  # Blue, unlike the black text.
    render_rollout.render_animation(rollout, path,
                                    step_stride=100, dpi=50, marker_size=15)
    frame = rgb_frames(path)[0]
    height, width = frame.shape[:2]
    left = frame[:, :width // 2]

    def colourful(region):  # Neither background white nor black text.
      spread = region.max(-1) - region.min(-1)
      return np.sum(spread > 80)

    # The ground-truth panel: particles sit at (0.05, 0.95) of its axes, i.e.
    # in the top-left quarter of the panel, none in the bottom-right.
    top_left = left[int(0.1 * height):int(0.5 * height), :width // 4]
    bottom_right = left[int(0.5 * height):int(0.9 * height),
                        width // 4:width // 2]
    self.assertGreater(colourful(top_left), 10)
    self.assertEqual(colourful(bottom_right), 0)

  def test_error_plot_values(self):
    rollouts = {"a": make_rollout(2, seed=1), "b": make_rollout(3, seed=2)}
    path = os.path.join(self.out, "error.png")
    plotted = render_rollout.plot_error(rollouts, path)
    for name, rollout in rollouts.items():
      expected = np.mean((rollout["predicted_rollout"].astype(np.float64) -
                          rollout["ground_truth_rollout"])**2, axis=(1, 2))
      self.assertAllClose(plotted[name], expected)
      self.assertAllClose(render_rollout.rollout_mse_per_step(rollout),
                          expected)
    with Image.open(path) as image:
      self.assertEqual(image.format, "PNG")
      self.assertGreater(image.size[0], 100)

  def test_cli_renders_a_directory_headless(self):
    for index in range(2):
      with open(os.path.join(self.out, f"rollout_test_{index}.pkl"),
                "wb") as f:
        pickle.dump(make_rollout(2, seed=index), f)
    env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("DISPLAY", None)
    error_plot = os.path.join(self.out, "error.png")
    result = subprocess.run(
        [sys.executable, "-m", "learning_to_simulate.render_rollout",
         f"--rollout_path={self.out}", f"--error_plot_path={error_plot}"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    # No display and no --output_path: the GIF goes next to the pickle.
    self.assertTrue(os.path.exists(os.path.join(self.out,
                                                "rollout_test_0.gif")))
    self.assertTrue(os.path.exists(error_plot))

  def test_mp4_when_ffmpeg_is_present(self):
    if shutil.which("ffmpeg") is None:
      with self.assertRaisesRegex(render_rollout.MissingWriterError,
                                  "install ffmpeg or write a .gif"):
        render_rollout.render_animation(
            make_rollout(2), os.path.join(self.out, "a.mp4"))
      return
    path = os.path.join(self.out, "a.mp4")
    render_rollout.render_animation(make_rollout(2), path, dpi=40)
    self.assertGreater(os.path.getsize(path), 0)


class BadInputTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.out = self.create_tempdir().full_path

  def test_missing_pickle(self):
    with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
      render_rollout.load_rollout(os.path.join(self.out, "nope.pkl"))

  def test_pickle_without_expected_keys(self):
    path = os.path.join(self.out, "rollout_test_0.pkl")
    rollout = make_rollout(2)
    del rollout["predicted_rollout"]
    with open(path, "wb") as f:
      pickle.dump(rollout, f)
    with self.assertRaisesRegex(ValueError,
                                r"is missing rollout keys \['predicted_rollout'\]"):
      render_rollout.load_rollout(path)

  def test_unknown_output_extension(self):
    with self.assertRaisesRegex(ValueError,
                                r"Unsupported animation extension '\.avi'"):
      render_rollout.render_animation(make_rollout(2),
                                      os.path.join(self.out, "a.avi"))
    with self.assertRaisesRegex(ValueError,
                                r"Unsupported error plot extension '\.gif'"):
      render_rollout.plot_error({"a": make_rollout(2)},
                                os.path.join(self.out, "a.gif"))

  def test_cli_error_is_one_line(self):
    env = dict(os.environ, PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "learning_to_simulate.render_rollout",
         f"--rollout_path={self.out}/missing.pkl",
         f"--output_path={self.out}/a.gif"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    self.assertNotEqual(result.returncode, 0)
    self.assertRegex(result.stderr.strip().splitlines()[-1],
                     r"^render_rollout: error: .*missing\.pkl")


if __name__ == "__main__":
  tf.test.main()
