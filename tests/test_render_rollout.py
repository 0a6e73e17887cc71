"""Rollout rendering: reading, per-step error, GIF/MP4 and plot files, CLI.

Everything renders headless into temp dirs and is read back with Pillow.
"""

import json
import math
import os
import pickle
import subprocess
import sys
from unittest import mock

from absl.testing import flagsaver
from absl.testing import parameterized
import imageio.v3
from matplotlib import animation as mpl_animation
from matplotlib import colors as mpl_colors
import numpy as np
from PIL import Image
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate.data import synthetic
from learning_to_simulate import reading_utils
from learning_to_simulate import render_rollout
from learning_to_simulate.training import metrics
from learning_to_simulate.visualization import animation
from learning_to_simulate.visualization import error_plot
from learning_to_simulate.visualization import physics_plot
from learning_to_simulate.visualization import rollout_files
from learning_to_simulate.visualization import scene as scene_lib
from learning_to_simulate.visualization import snapshots

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINEMATIC = common.ParticleType.KINEMATIC
WATER = common.ParticleType.WATER
SAND = common.ParticleType.SAND

NUM_STEPS = 4  # 6 initial positions + 4 steps = 10 trajectory frames.
NUM_FRAMES = common.INPUT_SEQUENCE_LENGTH + NUM_STEPS
DPI = 40  # Frames of 400 x 220 pixels: small and fast.
TYPES = np.array([KINEMATIC, KINEMATIC, WATER, WATER, SAND], np.int64)


def make_rollout(dim, seed=0, types=TYPES):
  """A rollout of `len(types)` particles in the bounds [0.1, 0.9]^dim."""
  rng = np.random.default_rng(seed)
  num_particles = len(types)
  truth = rng.uniform(0.3, 0.7, [NUM_FRAMES, num_particles, dim])
  predicted = truth[common.INPUT_SEQUENCE_LENGTH:] + rng.normal(
      0, 0.01, [NUM_STEPS, num_particles, dim])
  kinematic = types == KINEMATIC
  predicted[:, kinematic] = truth[common.INPUT_SEQUENCE_LENGTH:, kinematic]
  return {
      "initial_positions":
          truth[:common.INPUT_SEQUENCE_LENGTH].astype(np.float32),
      "predicted_rollout": predicted.astype(np.float32),
      "ground_truth_rollout":
          truth[common.INPUT_SEQUENCE_LENGTH:].astype(np.float32),
      "particle_types": np.array(types, np.int64),
      "metadata": {"bounds": [[0.1, 0.9]] * dim, "dim": dim,
                   "sequence_length": NUM_FRAMES,
                   "default_connectivity_radius": 0.015, "dt": 0.0025},
  }


def write_pickle(path, rollout):
  with open(path, "wb") as f:
    pickle.dump(rollout, f)


def rgb_frames(path):
  """`[num_frames, height, width, 3]` int, the frames as a viewer shows them."""
  with Image.open(path) as image:
    frames = []
    for index in range(image.n_frames):
      image.seek(index)
      frames.append(np.asarray(image.convert("RGB"), np.int32))
  return np.stack(frames)


def full_draw(rollout, frame, marker_size=scene_lib.DEFAULT_MARKER_SIZE):
  """`[height, width, 3]` int: frame `frame` drawn in full, no blitting."""
  fig = scene_lib.new_figure(DPI)
  scene = scene_lib.RolloutScene(fig, rollout, marker_size)
  scene.update(frame)
  fig.canvas.draw()
  return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(np.int32)


class ColorsTest(tf.test.TestCase):

  def test_every_type_has_a_distinct_colour_and_label(self):
    self.assertCountEqual(scene_lib.TYPE_COLORS,
                          range(common.NUM_PARTICLE_TYPES))
    rgba = {mpl_colors.to_rgba(color)
            for color in scene_lib.TYPE_COLORS.values()}
    self.assertLen(rgba, common.NUM_PARTICLE_TYPES)
    self.assertEqual(scene_lib.TYPE_COLORS[KINEMATIC], "black")
    self.assertEqual(scene_lib.type_label(KINEMATIC), "Kinematic (3)")
    self.assertEqual(scene_lib.type_label(WATER), "Water (5)")
    self.assertEqual(scene_lib.type_label(1), "Type 1")


class MseTest(tf.test.TestCase):

  def test_by_hand(self):
    truth = np.zeros([2, 2, 2], np.float32)
    predicted = np.array([[[1, 0], [0, 0]], [[1, 1], [2, 0]]], np.float32)
    mse = rollout_files.rollout_mse_per_step(
        {"predicted_rollout": predicted, "ground_truth_rollout": truth})
    self.assertAllClose(mse, [1 / 4, 6 / 4])
    self.assertEqual(mse.dtype, np.float64)

  def test_matches_numpy(self):
    rollout = make_rollout(3, seed=4)
    expected = np.mean(
        (rollout["predicted_rollout"].astype(np.float64) -
         rollout["ground_truth_rollout"].astype(np.float64))**2, axis=(1, 2))
    self.assertAllEqual(rollout_files.rollout_mse_per_step(rollout),
                        expected)

  def test_shape_mismatch(self):
    rollout = make_rollout(2)
    rollout["predicted_rollout"] = rollout["predicted_rollout"][:-1]
    with self.assertRaisesRegex(ValueError, r"got \(3, 5, 2\) and \(4, 5, 2\)"):
      rollout_files.rollout_mse_per_step(rollout)
    with self.assertRaisesRegex(ValueError, "is shorter than"):
      rollout_files.check_rollout(rollout)

  def test_prediction_past_the_data(self):
    rollout = make_rollout(2)
    extra = rollout["predicted_rollout"][-1:] + 0.5
    rollout["predicted_rollout"] = np.concatenate(
        [rollout["predicted_rollout"], extra])
    mse = rollout_files.rollout_mse_per_step(rollout_files.check_rollout(
        rollout))
    self.assertLen(mse, NUM_STEPS)  # The overlap with the ground truth.


class ReadTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.out = self.create_tempdir().full_path

  def test_round_trip(self):
    path = os.path.join(self.out, "rollout_test_0.pkl")
    rollout = make_rollout(2)
    rollout["global_context"] = np.ones([NUM_FRAMES, 1], np.float32)
    write_pickle(path, rollout)
    loaded = rollout_files.load_rollout(path)
    for key in ("initial_positions", "predicted_rollout",
                "ground_truth_rollout", "particle_types", "global_context"):
      self.assertAllEqual(loaded[key], rollout[key])
    self.assertAllEqual(loaded["metadata"]["bounds"], [[0.1, 0.9]] * 2)
    self.assertEqual(loaded["metadata"]["dt"], 0.0025)

  def test_missing_pickle(self):
    path = os.path.join(self.out, "nope.pkl")
    with self.assertRaisesRegex(FileNotFoundError,
                                r"Rollout pickle .*nope\.pkl does not exist"):
      rollout_files.load_rollout(path)

  def test_missing_keys(self):
    path = os.path.join(self.out, "rollout_test_0.pkl")
    rollout = make_rollout(2)
    del rollout["predicted_rollout"], rollout["metadata"]
    write_pickle(path, rollout)
    with self.assertRaisesRegex(
        ValueError, r"rollout_test_0\.pkl is missing rollout keys "
        r"\['predicted_rollout', 'metadata'\]"):
      rollout_files.load_rollout(path)

  def test_not_a_pickle(self):
    path = os.path.join(self.out, "rollout_test_0.pkl")
    with open(path, "wb") as f:
      f.write(b"GIF89a")
    with self.assertRaisesRegex(ValueError, "is not a readable rollout pickle"):
      rollout_files.load_rollout(path)

  @parameterized.named_parameters(
      ("not_a_dict", lambda r: [r], "holds a list, not a rollout dict"),
      ("dim_4", lambda r: dict(r, initial_positions=np.zeros([6, 5, 4])),
       r"initial_positions must be .* dim 2 or 3, got shape \(6, 5, 4\)"),
      ("particle_count",
       lambda r: dict(r, ground_truth_rollout=r["ground_truth_rollout"][:, 1:]),
       r"ground_truth_rollout must be numeric \[num_frames, 5, 2\]"),
      ("type_shape", lambda r: dict(r, particle_types=r["particle_types"][1:]),
       r"particle_types must be integer \[5\]"),
      ("unknown_type",
       lambda r: dict(r, particle_types=np.array([0, 1, 9, 3, 12])),
       r"unknown particle types \[9, 12\]; ids run from 0 to 8"),
      ("bounds", lambda r: dict(r, metadata={"bounds": [[0.9, 0.1]] * 2}),
       r"metadata bounds must be \[\[lo, hi\]\] \* 2 with lo < hi"),
      ("no_bounds", lambda r: dict(r, metadata={"dim": 2}),
       "metadata must be a dict with 'bounds'"),
  )
  def test_invalid(self, corrupt, message):
    with self.assertRaisesRegex(ValueError, "^my_source.*" + message):
      rollout_files.check_rollout(corrupt(make_rollout(2)), "my_source")

  def test_find_rollouts_sorts_naturally(self):
    for name in ("rollout_test_10.pkl", "rollout_test_2.pkl",
                 "rollout_test_1.pkl", "notes.txt", "rollout_test_3.gif"):
      write_pickle(os.path.join(self.out, name), make_rollout(2))
    found = rollout_files.find_rollouts(self.out)
    self.assertEqual([os.path.basename(path) for path in found],
                     ["rollout_test_1.pkl", "rollout_test_2.pkl",
                      "rollout_test_10.pkl"])
    self.assertEqual(rollout_files.find_rollouts(found[0]), [found[0]])

  def test_find_rollouts_errors(self):
    with self.assertRaisesRegex(ValueError, "No rollout_.*pkl files in"):
      rollout_files.find_rollouts(self.out)
    with self.assertRaisesRegex(FileNotFoundError, "does not exist"):
      rollout_files.find_rollouts(os.path.join(self.out, "missing"))


class RenderTest(tf.test.TestCase, parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.out = self.create_tempdir().full_path

  def test_rollout_past_the_data(self):
    rollout = make_rollout(2)
    rollout["predicted_rollout"] = np.concatenate(
        [rollout["predicted_rollout"]] * 2)
    path = os.path.join(self.out, "rollout.gif")
    count = animation.render_animation(rollout, path, step_stride=1, dpi=DPI)
    self.assertEqual(count, NUM_FRAMES + NUM_STEPS)
    self.assertLen(rgb_frames(path), count)
    scene = scene_lib.RolloutScene(scene_lib.new_figure(DPI), rollout)
    scene.update(NUM_FRAMES + 1)
    self.assertEqual(scene.counter.get_text(),
                     f"step {NUM_FRAMES + 1}/{NUM_FRAMES + NUM_STEPS - 1} "
                     f"(past the data: ground truth at {NUM_FRAMES - 1})")
    # The ground truth holds its last frame; the prediction goes on.
    self.assertAllClose(scene.scatters[0].get_offsets(),
                        rollout["ground_truth_rollout"][-1])
    self.assertAllClose(scene.scatters[1].get_offsets(),
                        rollout["predicted_rollout"][NUM_STEPS + 1])

  @parameterized.product(dim=(2, 3), step_stride=(1, 3))
  def test_gif_frames_match_full_draws(self, dim, step_stride):
    path = os.path.join(self.out, "rollout.gif")
    rollout = make_rollout(dim)
    count = animation.render_animation(rollout, path, step_stride,
                                       fps=20, dpi=DPI)
    self.assertEqual(count, math.ceil(NUM_FRAMES / step_stride))
    frames = rgb_frames(path)
    self.assertEqual(frames.shape, (count, 220, 400, 3))
    with Image.open(path) as image:
      self.assertEqual(image.info["duration"], 50)  # ms, at 20 fps.
      self.assertEqual(image.info["loop"], 0)
    # Blitting, the shared palette and delta frames change nothing visible.
    for index, frame in enumerate(frames):
      reference = full_draw(rollout, index * step_stride)
      self.assertLess(np.mean(np.abs(frame - reference)), 1.0)
    # The counter changes, so consecutive frames differ.
    self.assertTrue(np.all(np.any(frames[1:] != frames[:-1], axis=(1, 2, 3))))
    # Only the finished file is left: no temporary.
    self.assertEqual(os.listdir(self.out), ["rollout.gif"])

  def test_particles_are_drawn_where_the_data_puts_them(self):
    # One big water particle: near the lower-left corner in ground truth,
    # near the upper-right corner in the prediction.
    rollout = make_rollout(2, types=np.array([WATER]))
    low, high = 0.1 + 0.1 * 0.8, 0.9 - 0.1 * 0.8
    rollout["initial_positions"][:] = low
    rollout["ground_truth_rollout"][:] = low
    rollout["predicted_rollout"][:] = high
    path = os.path.join(self.out, "corner.gif")
    marker_size = 12.0
    animation.render_animation(rollout, path, step_stride=7, dpi=DPI,
                               marker_size=marker_size)
    frames = rgb_frames(path)
    self.assertLen(frames, 2)  # Trajectory frames 0 and 7.

    # Where the data points land, from the same layout drawn in full.
    fig = scene_lib.new_figure(DPI)
    scene = scene_lib.RolloutScene(fig, rollout, marker_size)
    fig.canvas.draw()
    height = frames.shape[1]

    def patch(frame, ax, xy):
      x, y = ax.transData.transform(xy)
      row, col = int(round(height - y)), int(round(x))
      return frame[row - 1:row + 2, col - 1:col + 2].reshape(-1, 3)

    water = np.array(mpl_colors.to_rgb(scene_lib.TYPE_COLORS[WATER]))
    for frame_index, frame in enumerate(frames):
      truth_xy, predicted_xy = (low, low), ((low, low) if frame_index == 0
                                            else (high, high))
      for ax, xy in ((scene.ground_truth_axes, truth_xy),
                     (scene.prediction_axes, predicted_xy)):
        opposite = tuple(low + high - v for v in xy)
        self.assertAllClose(patch(frame, ax, xy).mean(0), water * 255, atol=30)
        self.assertAllGreater(patch(frame, ax, opposite), 240)  # Background.

  def test_mp4(self):
    # imageio-ffmpeg ships the ffmpeg binary: MP4 works on a fresh install.
    path = os.path.join(self.out, "rollout.mp4")
    rollout = make_rollout(2)
    count = animation.render_animation(rollout, path, dpi=DPI)
    self.assertEqual(count, math.ceil(NUM_FRAMES / 3))
    self.assertEqual(os.listdir(self.out), ["rollout.mp4"])
    frames = imageio.v3.imread(path, plugin="FFMPEG")
    self.assertEqual(frames.shape, (count, 220, 400, 3))
    # Lossy (H.264, 4:2:0), but close to the full draws.
    for index, frame in enumerate(frames):
      reference = full_draw(rollout, index * 3)
      self.assertLess(np.mean(np.abs(frame.astype(np.int32) - reference)),
                      4.0)

  def test_missing_ffmpeg(self):
    with mock.patch.object(animation.imageio_ffmpeg, "get_ffmpeg_exe",
                           side_effect=RuntimeError("no binary")):
      with self.assertRaisesRegex(animation.MissingWriterError,
                                  "no ffmpeg binary for this platform"):
        animation.render_animation(make_rollout(2),
                                   os.path.join(self.out, "a.mp4"))
    self.assertEqual(os.listdir(self.out), [])

  @parameterized.named_parameters(
      ("extension", "a.avi", {},
       r"Unsupported animation extension '\.avi' in .*a\.avi; supported: "
       r"\.gif, \.mp4"),
      ("gif_fps", "a.gif", {"fps": 60}, "fps must be at most 50 for .gif"),
      ("fps", "a.gif", {"fps": 0}, "fps must be positive, got 0"),
      ("dpi", "a.gif", {"dpi": 0}, "dpi must be positive, got 0"),
      ("stride", "a.gif", {"step_stride": 0},
       "step_stride must be at least 1, got 0"),
      ("marker", "a.gif", {"marker_size": -1},
       "marker_size must be positive, got -1"),
  )
  def test_bad_arguments(self, name, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      animation.render_animation(make_rollout(2),
                                 os.path.join(self.out, name), **kwargs)
    self.assertEqual(os.listdir(self.out), [])

  def test_failure_leaves_existing_file_untouched(self):
    path = os.path.join(self.out, "rollout.gif")
    with open(path, "wb") as f:
      f.write(b"old")
    original_update = scene_lib.RolloutScene.update

    def failing_update(scene, frame):
      if frame == 6:
        raise RuntimeError("interrupted")
      return original_update(scene, frame)

    with mock.patch.object(scene_lib.RolloutScene, "update",
                           failing_update):
      with self.assertRaisesRegex(RuntimeError, "interrupted"):
        animation.render_animation(make_rollout(2), path, dpi=DPI)
    self.assertEqual(os.listdir(self.out), ["rollout.gif"])
    with open(path, "rb") as f:
      self.assertEqual(f.read(), b"old")


class ErrorPlotTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.out = self.create_tempdir().full_path

  def test_plotted_values(self):
    rollouts = {"rollout_test_0": make_rollout(2, seed=1),
                "rollout_test_1": make_rollout(3, seed=2)}
    path = os.path.join(self.out, "error.png")
    plotted = error_plot.plot_error(rollouts, path)
    self.assertEqual(list(plotted), list(rollouts))
    for name, rollout in rollouts.items():
      expected = np.mean(
          (rollout["predicted_rollout"].astype(np.float64) -
           rollout["ground_truth_rollout"].astype(np.float64))**2, axis=(1, 2))
      self.assertAllClose(plotted[name], expected, rtol=1e-12, atol=0)
    with Image.open(path) as image:
      self.assertEqual(image.format, "PNG")
      self.assertEqual(image.size, (800, 500))
    self.assertEqual(os.listdir(self.out), ["error.png"])

  def test_lazy_rollouts_from_a_directory(self):
    for index in (10, 2):
      write_pickle(os.path.join(self.out, f"rollout_test_{index}.pkl"),
                   make_rollout(2, seed=index))
    rollouts = rollout_files.LazyRollouts(
        rollout_files.find_rollouts(self.out))
    plotted = error_plot.plot_error(
        rollouts, os.path.join(self.out, "plots", "error.svg"))
    self.assertEqual(list(plotted), ["rollout_test_2", "rollout_test_10"])
    self.assertAllClose(
        plotted["rollout_test_10"],
        rollout_files.rollout_mse_per_step(make_rollout(2, seed=10)))

  def test_bad_inputs(self):
    with self.assertRaisesRegex(
        ValueError, r"Unsupported error plot extension '\.gif' .*; "
        r"supported: \.png, \.pdf, \.svg"):
      error_plot.plot_error({"a": make_rollout(2)},
                            os.path.join(self.out, "a.gif"))
    with self.assertRaisesRegex(ValueError, "needs at least one rollout"):
      error_plot.plot_error({}, os.path.join(self.out, "a.png"))
    self.assertEqual(os.listdir(self.out), [])


class PhysicsPlotTest(tf.test.TestCase):

  def test_plotted_values(self):
    rollout = make_rollout(2, seed=3)
    # A radius at which these few particles have neighbours.
    rollout["metadata"]["default_connectivity_radius"] = 0.15
    curves = metrics.physics_curves(rollout)
    path = os.path.join(self.create_tempdir().full_path, "physics.png")
    plotted = physics_plot.plot_physics(curves, rollout["metadata"], path,
                                        "a title")
    self.assertEqual(list(plotted), [
        "water height, predicted", "water height, ground truth",
        "sand height, predicted", "sand height, ground truth",
        "kinetic energy, predicted", "kinetic energy, ground truth",
        "density, predicted", "density, ground truth",
        "x low wall, predicted", "x low wall, ground truth",
        "x high wall, predicted", "x high wall, ground truth"])
    self.assertAllClose(plotted["x high wall, predicted"], np.asarray(
        curves["wall_heights"]["predicted"])[:, 1])
    water = TYPES == WATER
    self.assertAllClose(plotted["water height, ground truth"],
                        rollout["ground_truth_rollout"][:, water, 1].mean(1),
                        rtol=1e-5)
    velocity = np.diff(np.concatenate(
        [rollout["initial_positions"][-1:], rollout["predicted_rollout"]]),
                       axis=0)[:, TYPES != KINEMATIC].astype(np.float64)
    self.assertAllClose(plotted["kinetic energy, predicted"],
                        0.5 * np.mean(np.sum(velocity**2, -1), 1), rtol=1e-5)
    # Density at its own steps: neighbours within the radius per moving
    # particle (all-pairs distances here, a k-d tree there).
    moving = TYPES != KINEMATIC
    steps = np.asarray(curves["density"]["steps"])
    truth = rollout["ground_truth_rollout"][steps - 1][:, moving]
    close = np.linalg.norm(truth[:, :, None] - truth[:, None], axis=-1) < (
        rollout["metadata"]["default_connectivity_radius"])
    self.assertGreater(close.sum() - close.shape[0] * moving.sum(), 0)
    self.assertAllClose(plotted["density, ground truth"],
                        close.sum((1, 2)) / moving.sum() - 1, rtol=1e-5)
    with Image.open(path) as image:
      self.assertEqual(image.format, "PNG")
      self.assertEqual(image.size, (2000, 400))
    # Curves of a metrics.json from before the density and the wall
    # heights: two panels.
    older = {key: value for key, value in curves.items()
             if key not in ("density", "wall_heights")}
    physics_plot.plot_physics(older, rollout["metadata"], path)
    with Image.open(path) as image:
      self.assertEqual(image.size, (1000, 400))
    # Up is gravity's axis: the metadata's external acceleration decides.
    rollout["metadata"]["external_acceleration"] = [-1e-5, 0.0]
    up = scene_lib.vertical_axis(rollout["metadata"], 2)
    self.assertEqual(up, 0)
    self.assertAllClose(
        physics_plot.plotted_series(curves, up)["sand height, predicted"],
        rollout["predicted_rollout"][:, TYPES == SAND, 0].mean(1), rtol=1e-5)
    with self.assertRaisesRegex(ValueError, "Unsupported physics plot "
                                r"extension '\.gif'"):
      physics_plot.plot_physics(curves, rollout["metadata"],
                                path[:-4] + ".gif")


class VerticalAxisTest(tf.test.TestCase):

  def test_bundled_sample_is_up_along_y(self):
    # Its mean acceleration is largest in x (-2.7e-6 against 2.0e-6 in y):
    # noise of trajectories that start and end at rest, not gravity.
    with open(os.path.join(reading_utils.bundled_dataset_path(),
                           "metadata.json")) as f:
      metadata = json.load(f)
    self.assertNotIn(common.EXTERNAL_ACCELERATION_KEY, metadata)
    self.assertGreater(abs(metadata["acc_mean"][0]),
                       abs(metadata["acc_mean"][1]))
    self.assertEqual(scene_lib.vertical_axis(metadata, 2), 1)

  def test_3d_dataset_is_up_along_its_fall(self):
    # Particles fall along y with random initial velocities on every axis.
    metadata = synthetic.write_tiny_dataset(
        os.path.join(self.get_temp_dir(), "tiny3d"), dim=3, num_frames=40)
    self.assertEqual(scene_lib.vertical_axis(metadata, 3), 1)

  def test_rules_in_order(self):
    metadata = {"vel_mean": [0.0, 0.0, -1e-3], "acc_mean": [0.0, -1e-4, 0.0]}
    self.assertEqual(scene_lib.vertical_axis(metadata, 3), 2)
    # The metadata's gravity decides over the statistics.
    metadata[common.EXTERNAL_ACCELERATION_KEY] = [-1e-5, 0.0, 0.0]
    self.assertEqual(scene_lib.vertical_axis(metadata, 3), 0)
    # Nothing to go by, or statistics of another dimension: y.
    self.assertEqual(scene_lib.vertical_axis({}, 3), 1)
    self.assertEqual(scene_lib.vertical_axis({"vel_mean": [-1.0, 0.0]}, 3), 1)


class CommandLineTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.out = self.create_tempdir().full_path

  def test_display_available(self):
    with mock.patch.dict(os.environ, {"DISPLAY": ":0"}):
      with mock.patch.object(render_rollout.matplotlib, "get_backend",
                             return_value="agg"):
        self.assertFalse(render_rollout.display_available())
      with mock.patch.object(render_rollout.matplotlib, "get_backend",
                             return_value="tkagg"):
        self.assertTrue(render_rollout.display_available())
    if sys.platform.startswith("linux"):
      environ = {key: value for key, value in os.environ.items()
                 if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
      with mock.patch.dict(os.environ, environ, clear=True):
        self.assertFalse(render_rollout.display_available())

  def test_show_animation(self):
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    with mock.patch.object(plt, "show") as show:
      anim = animation.show_animation(make_rollout(2), step_stride=2,
                                      block=False)
    show.assert_called_once_with(block=False)
    self.assertIsInstance(anim, mpl_animation.FuncAnimation)
    fig = plt.gcf()
    self.assertLen(fig.axes, 3)  # Counter header and the two panels.
    fig.canvas.draw()  # Starts the animation: draws its first frame.
    anim.pause()
    self.assertEqual(fig.axes[0].texts[0].get_text(),
                     f"step 0/{NUM_FRAMES - 1}")
    plt.close(fig)

  def test_main_writes_to_output_path(self):
    write_pickle(os.path.join(self.out, "rollout_valid_0.pkl"),
                 make_rollout(3))
    gif = os.path.join(self.out, "anim", "rollout.gif")
    plot = os.path.join(self.out, "anim", "physics.svg")
    with flagsaver.flagsaver(rollout_path=self.out, output_path=gif,
                             step_stride=5, dpi=DPI, physics_plot_path=plot):
      render_rollout.main(["render_rollout"])
    self.assertLen(rgb_frames(gif), 2)
    with open(plot) as f:
      self.assertIn("<svg", f.read())

  def test_snapshots_compare_models_row_by_row(self):
    first = os.path.join(self.out, "rollout_test_0.pkl")
    other = os.path.join(self.out, "other.pkl")
    write_pickle(first, make_rollout(2, seed=0))
    write_pickle(other, make_rollout(2, seed=1))
    # The rows: the first rollout's ground truth, its prediction, the other's.
    rollouts = [("Prediction", make_rollout(2, seed=0)),
                ("other", make_rollout(2, seed=1))]
    fig = snapshots.comparison_figure(rollouts, num_columns=3)
    axes = np.array(fig.axes).reshape(3, 3)
    steps = snapshots.snapshot_steps(NUM_STEPS, 3)
    for row, (rollout, key) in enumerate(
        [(rollouts[0][1], "ground_truth_rollout"),
         (rollouts[0][1], "predicted_rollout"),
         (rollouts[1][1], "predicted_rollout")]):
      frames = np.concatenate([rollout["initial_positions"][-1:],
                               rollout[key]])
      self.assertEqual(axes[row, 0].get_ylabel(),
                       ["Ground truth", "Prediction", "other"][row])
      for column, step in enumerate(steps):
        self.assertAllClose(axes[row, column].collections[0].get_offsets(),
                            frames[step])
    # The command line: still frames only (no animation without
    # --output_path), three rows of three panels.
    png = os.path.join(self.out, "frames.png")
    with flagsaver.flagsaver(rollout_path=first, snapshots_path=png,
                             snapshot_columns=3, compare=[f"other={other}"]):
      render_rollout.main(["render_rollout"])
    self.assertCountEqual(os.listdir(self.out),
                          ["rollout_test_0.pkl", "other.pkl", "frames.png"])
    with Image.open(png) as image:
      width, height = image.size
    self.assertAllClose(width / height, 3 * snapshots.PANEL_SIZE / (
        3 * snapshots.PANEL_SIZE + 0.3), rtol=0.02)
    for flag_values, message in (
        ({"compare": [f"other={other}"]},
         "--compare draws rows of --snapshots_path: give it too"),
        ({"snapshots_path": png, "compare": [other]},
         f"--compare: '{other}' is not NAME=PICKLE"),
        ({"snapshots_path": png + ".jpg"},
         r"Unsupported --snapshots_path extension '\.jpg'")):
      with flagsaver.flagsaver(rollout_path=first, **flag_values):
        with self.assertRaises(SystemExit) as raised:
          render_rollout.main(["render_rollout"])
      self.assertRegex(raised.exception.code,
                       "^render_rollout: error: " + message)

  def test_main_bad_input_exits_with_one_line(self):
    path = os.path.join(self.out, "rollout_test_0.pkl")
    write_pickle(path, make_rollout(2))
    for flag_values, message in (
        ({"rollout_path": os.path.join(self.out, "nope.pkl")},
         "Rollout pickle .*nope.pkl does not exist"),
        ({"rollout_path": path, "output_path": path + ".avi"},
         r"Unsupported animation extension '\.avi'"),
        ({"rollout_path": path, "output_path": path + ".gif",
          "error_plot_path": path + ".jpg"},
         r"Unsupported error plot extension '\.jpg'"),
        ({"rollout_path": path, "output_path": path + ".gif",
          "error_plot_path": path + ".png",
          "physics_plot_path": path + ".jpg"},
         r"Unsupported physics plot extension '\.jpg'")):
      with flagsaver.flagsaver(**flag_values):
        with self.assertRaises(SystemExit) as raised:
          render_rollout.main(["render_rollout"])
      self.assertRegex(raised.exception.code,
                       "^render_rollout: error: " + message)
    # Paths are checked first: nothing was written.
    self.assertEqual(os.listdir(self.out), ["rollout_test_0.pkl"])

  def test_cli_renders_a_directory_headless(self):
    for index in range(2):
      write_pickle(os.path.join(self.out, f"rollout_test_{index}.pkl"),
                   make_rollout(2, seed=index))
    env = {key: value for key, value in os.environ.items()
           if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(PYTHONPATH=_ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    plot_path = os.path.join(self.out, "error.png")
    result = subprocess.run(
        [sys.executable, "-m", "learning_to_simulate.render_rollout",
         f"--rollout_path={self.out}", f"--error_plot_path={plot_path}",
         "--dpi=40"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    # No display and no --output_path: the GIF goes next to the first pickle.
    gif = os.path.join(self.out, "rollout_test_0.gif")
    self.assertIn("No display available: writing the animation to " + gif,
                  result.stderr)
    self.assertLen(rgb_frames(gif), math.ceil(NUM_FRAMES / 3))
    with Image.open(plot_path) as image:
      self.assertEqual(image.format, "PNG")

    # Bad input: one line on stderr, exit status 1, no traceback.
    result = subprocess.run(
        [sys.executable, "-m", "learning_to_simulate.render_rollout",
         f"--rollout_path={self.out}", f"--output_path={self.out}/a.webm"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    self.assertEqual(result.returncode, 1)
    self.assertNotIn("Traceback", result.stderr)
    self.assertRegex(result.stderr.strip().splitlines()[-1],
                     r"^render_rollout: error: Unsupported animation "
                     r"extension '\.webm'")


if __name__ == "__main__":
  tf.test.main()
