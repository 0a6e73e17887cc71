"""The density relaxation option (issue 22): pushes out of over-dense regions."""

import dataclasses

import numpy as np
import tensorflow as tf

from learning_to_simulate import connectivity_utils
from learning_to_simulate.data import common
from learning_to_simulate.model import relaxation
from learning_to_simulate.model import build
from learning_to_simulate.training import config as config_lib
from learning_to_simulate.training import rollout

RADIUS = 0.05
METADATA = {
    "dim": 2, "bounds": [[0.0, 1.0], [0.0, 1.0]],
    "default_connectivity_radius": RADIUS, "sequence_length": 10,
    "vel_mean": [0.0, -1e-3], "vel_std": [2e-3, 2e-3],
    "acc_mean": [1e-6, 2e-6], "acc_std": [1.5e-4, 1.6e-4],
}
SMALL = config_lib.ModelConfig(latent_size=8, hidden_size=8, hidden_layers=1,
                               message_passing_steps=2)


def block(spacing, size=8):
  """`[size * size, 2]` float32 square lattice centred at (0.5, 0.5)."""
  grid = np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1)
  grid = grid.reshape(-1, 2) - (size - 1) / 2
  return tf.constant(0.5 + spacing * grid, tf.float32)


def densities(positions):
  senders, receivers, _ = connectivity_utils.compute_connectivity_for_batch_tf(
      positions, tf.shape(positions)[:1], RADIUS)
  return relaxation.kernel_density(positions, senders, receivers, RADIUS)


class RelaxationTest(tf.test.TestCase):

  def test_kernel_density_of_a_pair(self):
    # Two particles half a radius apart: each has 1 (itself) + (1 - 1/4)^3.
    positions = tf.constant([[0.5, 0.5], [0.5 + RADIUS / 2, 0.5]])
    self.assertAllClose(densities(positions), [1 + 0.75**3] * 2)

  def test_nothing_moves_at_or_below_the_rest_density(self):
    positions = block(0.4 * RADIUS)
    movable = tf.ones([64], tf.bool)
    top = tf.reduce_max(densities(positions))
    relaxed = relaxation.relax(positions, movable, RADIUS, top, 5, 0.3)
    self.assertAllEqual(relaxed, positions)
    # The default rest density, the 90th percentile, moves only the few
    # densest (interior) particles, and by little.
    rest = relaxation.rest_density(positions, movable, RADIUS)
    self.assertLess(rest, top)
    relaxed = relaxation.relax(positions, movable, RADIUS, rest, 1, 0.3)
    self.assertLess(np.abs(relaxed - positions).max(), 0.01 * RADIUS)

  def test_a_compressed_block_expands_and_keeps_its_centre(self):
    movable = tf.ones([64], tf.bool)
    rest = relaxation.rest_density(block(0.4 * RADIUS), movable, RADIUS)
    squeezed = block(0.8 * 0.4 * RADIUS)
    relaxed = relaxation.relax(squeezed, movable, RADIUS, rest, 5, 0.3)
    extent = lambda x: np.ptp(x.numpy(), axis=0)
    self.assertAllGreater(extent(relaxed) - extent(squeezed), 0.05 * RADIUS)
    self.assertLess(tf.reduce_max(densities(relaxed)),
                    tf.reduce_max(densities(squeezed)))
    # The pair terms are antisymmetric: the centre of mass stays.
    self.assertAllClose(tf.reduce_mean(relaxed, 0),
                        tf.reduce_mean(squeezed, 0), atol=1e-6, rtol=0)

  def test_a_batch_relaxes_each_example_alone(self):
    # Two examples in the same place (a batch's examples share the box): a
    # squeezed block and a looser one with a kinematic half. Relaxed as one
    # batch, each moves as it would alone, with its own rest density.
    first, second = block(0.25 * RADIUS), block(0.35 * RADIUS, size=6)
    first_movable = tf.ones([64], tf.bool)
    second_movable = tf.range(36) % 2 == 0
    rests = relaxation.rest_densities(
        tf.concat([first, second], 0),
        tf.concat([first_movable, second_movable], 0), RADIUS,
        tf.constant([64, 36]))
    self.assertAllEqual(rests, [
        relaxation.rest_density(first, first_movable, RADIUS),
        relaxation.rest_density(second, second_movable, RADIUS)])
    self.assertNotAllClose(rests[0], rests[1])
    # The rest densities of a looser pair: the batch relaxes both.
    rests = rests * 0.8
    batch = relaxation.relax(
        tf.concat([first, second], 0),
        tf.concat([first_movable, second_movable], 0), RADIUS, rests, 2, 0.3,
        n_particles_per_example=tf.constant([64, 36]))
    alone = tf.concat([
        relaxation.relax(first, first_movable, RADIUS, rests[0], 2, 0.3),
        relaxation.relax(second, second_movable, RADIUS, rests[1], 2, 0.3)],
                      0)
    self.assertAllClose(batch, alone, atol=1e-7, rtol=0)
    self.assertGreater(np.abs(batch[:64] - first).max(), 0)
    # An example without movable particles reads a lone particle's density.
    self.assertAllEqual(relaxation.rest_densities(
        tf.concat([first, second], 0),
        tf.concat([tf.zeros([64], tf.bool), second_movable], 0), RADIUS,
        tf.constant([64, 36]))[0], 1.)

  def test_kinematic_particles_push_but_do_not_move(self):
    squeezed = block(0.3 * RADIUS)
    movable = tf.range(64) % 2 == 0
    relaxed = relaxation.relax(squeezed, movable, RADIUS, tf.constant(1.), 3,
                               0.3)
    self.assertAllEqual(tf.boolean_mask(relaxed, ~movable),
                        tf.boolean_mask(squeezed, ~movable))
    self.assertAllGreater(
        np.abs(tf.boolean_mask(relaxed - squeezed, movable)).max(), 0)
    # No movable particle: the rest density is a lone particle's, 1.
    self.assertEqual(relaxation.rest_density(squeezed, tf.zeros([64], tf.bool),
                                             RADIUS), 1.)

  def test_mirrored_walls_push_with_the_full_pressure(self):
    # A movable particle 0.3 radii from a kinematic one, rest density 1:
    # rho = 1 + (1 - 0.3^2)^3, p = rho - 1; the wall's pressure is 0.
    positions = tf.constant([[0.5, 0.5], [0.5 + 0.3 * RADIUS, 0.5]])
    movable = tf.constant([True, False])
    pressure = 0.91**3
    # dx = step * h * pair * 6 s (1 - s^2)^2 e_ij, e_ij pointing away.
    push = 0.2 * RADIUS * 6 * 0.3 * 0.91**2
    for mirror, pair in ((False, pressure / 2), (True, pressure)):
      relaxed = relaxation.relax(positions, movable, RADIUS, tf.constant(1.),
                                 1, 0.2, mirror_walls=mirror)
      self.assertAllClose(relaxed, [[0.5 - push * pair, 0.5],
                                    [0.5 + 0.3 * RADIUS, 0.5]], atol=1e-7)
    # Between movable particles nothing changes.
    squeezed = block(0.3 * RADIUS)
    everyone = tf.ones([64], tf.bool)
    self.assertAllEqual(
        relaxation.relax(squeezed, everyone, RADIUS, tf.constant(1.), 2, 0.3,
                         mirror_walls=True),
        relaxation.relax(squeezed, everyone, RADIUS, tf.constant(1.), 2, 0.3))

  def test_a_rollout_relaxes_every_predicted_frame(self):
    num_frames = common.INPUT_SEQUENCE_LENGTH + 2
    start = block(0.3 * RADIUS, size=4)
    trajectory = tf.tile(start[:, None], [1, num_frames, 1])
    features = {"position": trajectory,
                "particle_type": tf.fill([16], tf.constant(5, tf.int64)),
                "n_particles_per_example": tf.constant([16])}
    steps = dataclasses.replace(SMALL, relaxation_steps=2,
                                relaxation_step_size=0.3)
    with_steps = build.build_simulator(METADATA, steps)
    plain = build.build_simulator(METADATA, SMALL)
    for simulator in (with_steps, plain):  # Builds the variables.
      rollout.rollout(simulator, features, 1)
    for mine, other in zip(plain.variables, with_steps.variables):
      mine.assign(other)
    relaxed = rollout.rollout(with_steps, features, 1)["predicted_rollout"][0]
    plain = rollout.rollout(plain, features, 1)["predicted_rollout"][0]
    rest = relaxation.rest_density(start, tf.ones([16], tf.bool), RADIUS)
    self.assertAllClose(relaxed, relaxation.relax(plain, tf.ones([16], tf.bool),
                                                  RADIUS, rest, 2, 0.3),
                        atol=1e-7, rtol=0)
    self.assertGreater(np.abs(relaxed - plain).max(), 1e-5)

  def test_walls_and_relaxation_leave_kinematic_particles_outside(self):
    # Static wall particles outside the bounds, as `--wall_layers` makes
    # them: behind walls with relaxation they stay where the data has them
    # (the walls hold the fluid, not the wall particles).
    num_frames = common.INPUT_SEQUENCE_LENGTH + 3
    fluid = block(0.3 * RADIUS, size=4)
    wall = tf.constant([[x, -0.01] for x in np.linspace(0.3, 0.7, 12)],
                       tf.float32)
    positions = tf.concat([fluid, wall], axis=0)
    trajectory = tf.tile(positions[:, None], [1, num_frames, 1])
    types = tf.concat([tf.fill([16], tf.constant(5, tf.int64)),
                       tf.fill([12], tf.constant(3, tf.int64))], axis=0)
    features = {"position": trajectory, "particle_type": types,
                "n_particles_per_example": tf.constant([28])}
    simulator = build.build_simulator(METADATA, dataclasses.replace(
        SMALL, clamp_to_bounds=True, relaxation_steps=2))
    predicted = rollout.rollout(simulator, features, 3)["predicted_rollout"]
    self.assertAllEqual(predicted[:, 16:],
                        np.tile(wall.numpy()[None], [3, 1, 1]))
    self.assertGreaterEqual(float(tf.reduce_min(predicted[:, :16])), 0.0)

  def test_flags_are_checked_and_may_change_at_evaluation(self):
    for field, value, flag in (("relaxation_steps", -1, "--relaxation_steps"),
                               ("relaxation_step_size", 0.,
                                "--relaxation_step_size"),
                               ("relaxation_rest_density", -2.,
                                "--relaxation_rest_density")):
      with self.assertRaisesRegex(ValueError, flag):
        dataclasses.replace(SMALL, **{field: value}).validate()
    saved = {"model": dataclasses.asdict(SMALL)}
    resolved = config_lib.resolve(saved, "model", config_lib.ModelConfig,
                                  {"relaxation_steps": 3}, "/m",
                                  evaluating=True)
    self.assertEqual(resolved.relaxation(), relaxation.Relaxation(3, 0.1))
    resolved = config_lib.resolve(saved, "model", config_lib.ModelConfig,
                                  {"relaxation_mirror_walls": True}, "/m",
                                  evaluating=True)
    self.assertTrue(resolved.relaxation().mirror_walls)
    with self.assertRaisesRegex(ValueError, "relaxation_steps"):
      config_lib.resolve(saved, "model", config_lib.ModelConfig,
                         {"relaxation_steps": 3}, "/m")


if __name__ == "__main__":
  tf.test.main()
