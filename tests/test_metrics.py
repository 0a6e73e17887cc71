"""Rollout metrics against numpy on hand-made rollouts, and the baselines."""

import itertools

import numpy as np
import tensorflow as tf

from learning_to_simulate.data import common
from learning_to_simulate.training import baselines
from learning_to_simulate.training import evaluation
from learning_to_simulate.training import metrics
from learning_to_simulate.training import one_step

WATER = common.ParticleType.WATER
KINEMATIC = common.ParticleType.KINEMATIC
RADIUS = 0.05
METADATA = {"bounds": [[0.0, 1.0], [0.0, 1.0]],
            "default_connectivity_radius": RADIUS}


def make_rollout(num_steps=30, num_particles=12, seed=0, kinematic=2):
  """Particles drifting inside the unit box; the last `kinematic` fixed."""
  rng = np.random.default_rng(seed)
  start = rng.uniform(0.3, 0.7, [num_particles, 2])
  velocity = rng.uniform(-2e-3, 2e-3, [num_particles, 2])
  frames = np.arange(-5, num_steps + 1)[:, None, None]
  trajectory = start + frames * velocity
  types = np.full([num_particles], WATER)
  types[num_particles - kinematic:] = KINEMATIC
  trajectory[:, types == KINEMATIC] = start[types == KINEMATIC]
  truth = trajectory[6:].astype(np.float32)
  return {"initial_positions": trajectory[:6].astype(np.float32),
          "ground_truth_rollout": truth, "predicted_rollout": truth.copy(),
          "particle_types": types, "metadata": METADATA}


class RolloutMetricsTest(tf.test.TestCase):

  def test_perfect_rollout_scores_zero(self):
    scores = metrics.rollout_metrics(make_rollout())
    # The energy and density ratios of a perfect rollout are 1, every error
    # 0.
    self.assertEqual(scores.pop("kinetic_energy_ratio"), 1.0)
    self.assertEqual(scores.pop("density_ratio"), 1.0)
    for name, value in scores.items():
      self.assertEqual(value, 0.0, name)
    # Horizons up to the rollout length, and the full rollout.
    self.assertEqual(set(scores), {"rollout_error_mse", "mse_1", "mse_5",
                                   "mse_10", "mse_20", "mse_at_1",
                                   "mse_at_5", "mse_at_10", "mse_at_20",
                                   "mse_full", "emd",
                                   "kinetic_energy_mse", "out_of_domain",
                                   "centre_of_mass_error",
                                   "centre_of_mass_error_mean",
                                   "wall_height_error"})

  def test_rigid_shift(self):
    rollout = make_rollout()
    moving = rollout["particle_types"] != KINEMATIC
    shift = np.array([0.01, -0.02], np.float32)
    rollout["predicted_rollout"][:, moving] += shift
    scores = metrics.rollout_metrics(rollout)
    # MSE averages over dimensions: (0.01^2 + 0.02^2) / 2 at every horizon.
    expected = float(np.mean(shift.astype(np.float64)**2))
    for name in ("mse_1", "mse_5", "mse_20", "mse_full"):
      self.assertAllClose(scores[name], expected, rtol=1e-4)
    # The original's figure averages over kinematic particles too.
    self.assertAllClose(scores["rollout_error_mse"],
                        expected * moving.mean(), rtol=1e-4)
    # W2^2 of a translation is |d|^2: the shift, summed over dimensions.
    self.assertAllClose(scores["emd"], 2 * expected, rtol=1e-4)
    # A shift at every step leaves the velocities after the first alone.
    velocities = metrics.velocities(rollout["initial_positions"],
                                    rollout["predicted_rollout"])
    self.assertAllClose(velocities[1:, moving],
                        np.diff(rollout["ground_truth_rollout"], axis=0)[
                            :, moving], atol=1e-6)

  def test_emd_ignores_particle_identity(self):
    rollout = make_rollout(kinematic=0)
    rollout["predicted_rollout"] = rollout["predicted_rollout"][:, ::-1]
    scores = metrics.rollout_metrics(rollout)
    self.assertGreater(scores["mse_full"], 1e-3)
    self.assertAllClose(scores["emd"], 0.0, atol=1e-12)

  def test_emd_against_brute_force(self):
    rng = np.random.default_rng(3)
    a, b = rng.uniform(size=[2, 6, 2])
    # All 720 one-to-one matchings of 6 particles.
    best = min(np.mean(np.sum((a - b[list(p)])**2, axis=-1))
               for p in itertools.permutations(range(6)))
    self.assertAllClose(metrics.emd(a, b), best)

  def test_horizons_and_overlap(self):
    rollout = make_rollout(num_steps=12)
    moving = rollout["particle_types"] != KINEMATIC
    # Error 1, 2, 3, ... at steps 1, 2, 3, ... in one coordinate.
    error = np.arange(1, 13, dtype=np.float64)[:, None] * 1e-3
    rollout["predicted_rollout"][:, moving, 0] += error.astype(np.float32)
    # The prediction runs 4 steps past the data: they are not compared.
    rollout["predicted_rollout"] = np.concatenate(
        [rollout["predicted_rollout"], np.zeros([4, 12, 2], np.float32)])
    scores = metrics.rollout_metrics(rollout)
    per_step = (error[:, 0]**2) / 2  # Mean over the two dimensions.
    self.assertAllClose(scores["mse_1"], per_step[0], rtol=1e-3)
    self.assertAllClose(scores["mse_5"], per_step[:5].mean(), rtol=1e-3)
    self.assertAllClose(scores["mse_10"], per_step[:10].mean(), rtol=1e-3)
    self.assertAllClose(scores["mse_full"], per_step.mean(), rtol=1e-3)
    # At the step itself, not the mean up to it.
    self.assertAllClose(scores["mse_at_1"], per_step[0], rtol=1e-3)
    self.assertAllClose(scores["mse_at_5"], per_step[4], rtol=1e-3)
    self.assertAllClose(scores["mse_at_10"], per_step[9], rtol=1e-3)
    self.assertNotIn("mse_20", scores)
    self.assertNotIn("mse_at_20", scores)
    # Out of domain covers every predicted step: the zeros past the data sit
    # on the lower bounds, inside.
    self.assertEqual(scores["out_of_domain"], 0.0)

  def test_one_step_mse_of_all_and_of_moving_particles(self):
    # 3 particles, the last kinematic, whose predicted next positions are
    # off by 1, 2 and 3 in x.
    class Offset:
      """Predicts the target plus a fixed offset; accelerations exact."""

      def __call__(self, position, **unused):
        return target + offsets

      def get_predicted_and_target_normalized_accelerations(self, **unused):
        return tf.zeros([3, 2]), tf.zeros([3, 2])

    target = tf.zeros([3, 2])
    offsets = tf.constant([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    features = {"position": tf.zeros([3, 6, 2]),
                "particle_type": tf.constant([5, 5, KINEMATIC], tf.int64),
                "n_particles_per_example": tf.constant([3])}
    totals = {name: float(value) for name, value in one_step.eval_step(
        Offset(), (features, target), noise_std=0.0).items()}
    totals["num_batches"] = 1
    result = evaluation.metrics_from_totals(totals)
    self.assertAllClose(result["one_step_position_mse"], 14.0 / 6.0)
    self.assertAllClose(result["one_step_position_mse_moving"], 5.0 / 4.0)
    result = evaluation.metrics_from_totals(dict(totals, moving_count=0.0))
    self.assertNotIn("one_step_position_mse_moving", result)

  def test_out_of_domain(self):
    rollout = make_rollout(num_steps=10, num_particles=5, kinematic=1)
    tolerance = metrics.OUT_OF_DOMAIN_TOLERANCE_RADII * RADIUS
    self.assertEqual(metrics.out_of_domain_tolerance(METADATA), tolerance)
    # Particle 0 beyond the tolerance at 3 steps, particle 1 within it at
    # every step; the kinematic particle 4 outside does not count.
    rollout["predicted_rollout"][2:5, 0, 0] = 1.0 + 2 * tolerance
    rollout["predicted_rollout"][:, 1, 1] = -0.5 * tolerance
    rollout["predicted_rollout"][:, 4] = -1.0
    scores = metrics.rollout_metrics(rollout)
    self.assertAllClose(scores["out_of_domain"], 3 / (10 * 4))

  def test_kinetic_energy_series(self):
    rollout = make_rollout(num_steps=8)
    positions = rollout["predicted_rollout"].astype(np.float64)
    moving = rollout["particle_types"] != KINEMATIC
    energy = metrics.kinetic_energy(rollout["initial_positions"], positions,
                                    moving)
    previous = np.concatenate([rollout["initial_positions"][-1:],
                               positions[:-1]])
    for step in range(8):
      v = positions[step, moving] - previous[step, moving]
      direct = sum(0.5 * (vx * vx + vy * vy) for vx, vy in v) / moving.sum()
      self.assertAllClose(energy[step], direct)
    # Doubling every velocity quadruples the energy.
    doubled = rollout["initial_positions"][-1] + 2 * (
        positions - rollout["initial_positions"][-1])
    self.assertAllClose(
        metrics.kinetic_energy(rollout["initial_positions"], doubled,
                               moving)[0], 4 * energy[0])

  def test_mean_metrics(self):
    self.assertEqual(metrics.mean_metrics([{"a": 1.0, "b": 2.0},
                                           {"a": 3.0}]),
                     {"a": 2.0, "b": 2.0})


class WallHeightsTest(tf.test.TestCase):

  def test_small_exact_cases(self):
    bounds = np.array([[0.0, 1.0], [0.0, 2.0]])
    # Up is y (axis 1); the side walls are x low and x high, and a particle
    # is at one within a tenth of the box's width (0.1) of it.
    self.assertEqual(metrics.side_walls(2, 1), [(0, 0), (0, 1)])
    positions = np.array([
        [[0.05, 0.3], [0.95, 0.6], [0.5, 1.9]],   # one at each wall
        [[0.15, 0.3], [0.97, 1.2], [0.92, 0.4]],  # none low, two high
    ])
    heights = metrics.wall_heights(positions, np.ones(3, bool), bounds, 1)
    top = lambda values: np.percentile(values, metrics.WALL_HEIGHT_PERCENTILE)
    self.assertAllClose(heights, [[0.3, 0.6], [0.0, top([1.2, 0.4])]])
    # Only the particles of the mask count.
    self.assertAllClose(metrics.wall_heights(
        positions, np.array([True, False, True]), bounds, 1),
                        [[0.3, 0.0], [0.0, 0.4]])
    # Heights are above the floor: the box moved up by 1, the same.
    lifted = positions + np.array([0.0, 1.0])
    self.assertAllClose(metrics.wall_heights(
        lifted, np.ones(3, bool), bounds + np.array([[0.0], [1.0]]), 1),
                        heights)
    # In 3D with z up: four side walls, x then y.
    self.assertEqual(metrics.side_walls(3, 2),
                     [(0, 0), (0, 1), (1, 0), (1, 1)])
    cube = np.array([[[0.05, 0.5, 0.2], [0.5, 0.95, 0.7]]])
    self.assertAllClose(metrics.wall_heights(
        cube, np.ones(2, bool), np.array([[0.0, 1.0]] * 3), 2),
                        [[0.2, 0.0, 0.0, 0.7]])

  def test_a_splash_that_does_not_rise(self):
    # The truth's water climbs the right wall of the unit box from step 10
    # on; the prediction's stays on the floor: the error is the mean gap
    # over the steps and both walls.
    steps, particles = 20, 10
    truth = np.zeros([steps, particles, 2])
    truth[..., 0] = np.append(np.linspace(0.3, 0.8, particles - 1), 0.98)
    truth[..., 1] = 0.01
    climb = np.clip(np.arange(steps) - 9, 0, None) * 0.05
    truth[:, -1, 1] = 0.01 + climb
    predicted = truth.copy()
    predicted[:, -1, 1] = 0.01
    rollout = {"initial_positions": np.repeat(truth[:1], 6, axis=0),
               "ground_truth_rollout": truth, "predicted_rollout": predicted,
               "particle_types": np.full([particles], WATER),
               "metadata": METADATA}
    self.assertAllClose(metrics.physics_summary(rollout)["wall_height_error"],
                        np.mean(climb) / 2)
    curves = metrics.physics_curves(rollout)["wall_heights"]
    self.assertEqual(curves["walls"], ["x low", "x high"])
    self.assertAllClose(np.asarray(curves["ground_truth"])[:, 1],
                        0.01 + climb, atol=1e-6)


class PhysicsSummaryTest(tf.test.TestCase):

  def test_small_exact_cases(self):
    rollout = make_rollout()
    self.assertEqual(metrics.physics_summary(rollout),
                     {"kinetic_energy_ratio": 1.0,
                      "centre_of_mass_error": 0.0,
                      "centre_of_mass_error_mean": 0.0,
                      "density_ratio": 1.0,
                      "wall_height_error": 0.0})
    # Every prediction moved by (0.02, -0.05): the centre of mass too, by
    # 5% of the unit box; the velocities change only at the first step.
    shifted = dict(rollout, predicted_rollout=rollout["predicted_rollout"] +
                   np.float32([0.02, -0.05]))
    self.assertAllClose(
        metrics.physics_summary(shifted)["centre_of_mass_error"], 0.05)
    # Particles that stop at the last input: no kinetic energy at all.
    frozen = dict(rollout, predicted_rollout=np.broadcast_to(
        rollout["initial_positions"][-1:],
        rollout["ground_truth_rollout"].shape))
    self.assertEqual(
        metrics.physics_summary(frozen)["kinetic_energy_ratio"], 0.0)
    # Half the speed at every step (the first one too, from the last
    # input): a quarter of the energy.
    initial = rollout["initial_positions"]
    steps = np.arange(1, len(rollout["ground_truth_rollout"]) + 1)
    slow = initial[-1] + 0.5 * steps[:, None, None] * (initial[-1] -
                                                       initial[-2])
    half = dict(rollout, predicted_rollout=slow.astype(np.float32))
    self.assertAllClose(
        metrics.physics_summary(half)["kinetic_energy_ratio"], 0.25,
        rtol=1e-4)


  def test_centre_of_mass_error_grows_with_a_late_drift(self):
    # The prediction drifts 0.01 per step along y from step 11 of 30 on:
    # 0.2 off at the last step, 0.2 * 10.5 / 30 on average.
    rollout = make_rollout()
    moving = rollout["particle_types"] != KINEMATIC
    drift = 0.01 * np.maximum(np.arange(1, 31) - 10, 0)
    rollout["predicted_rollout"][:, moving, 1] += drift[:, None]
    summary = metrics.physics_summary(rollout)
    self.assertAllClose(summary["centre_of_mass_error"], 0.2, rtol=1e-4)
    self.assertAllClose(summary["centre_of_mass_error_mean"],
                        drift.mean(), rtol=1e-4)

  def test_per_material_centre_of_mass(self):
    rollout = make_rollout()
    types = rollout["particle_types"].copy()
    types[:4] = common.ParticleType.SAND  # 4 sand, 6 water, 2 kinematic.
    rollout["particle_types"] = types
    sand = types == common.ParticleType.SAND
    rollout["predicted_rollout"][:, sand] += np.float32([0.0, 0.03])
    summary = metrics.physics_summary(rollout)
    self.assertAllClose(summary["centre_of_mass_error_sand"], 0.03,
                        rtol=1e-4)
    self.assertEqual(summary["centre_of_mass_error_water"], 0.0)
    # All moving particles: 4 of 10 moved by 0.03.
    self.assertAllClose(summary["centre_of_mass_error"], 0.012, rtol=1e-4)
    curves = metrics.physics_curves(rollout)
    self.assertEqual(list(curves["centre_of_mass"]), ["water", "sand"])
    truth = rollout["ground_truth_rollout"][:, sand].astype(np.float64)
    self.assertAllClose(curves["centre_of_mass"]["sand"]["ground_truth"],
                        truth.mean(axis=1), rtol=1e-5)
    self.assertAllClose(curves["centre_of_mass"]["sand"]["predicted"],
                        truth.mean(axis=1) + [0.0, 0.03], rtol=1e-5)
    self.assertAllClose(
        curves["kinetic_energy"]["ground_truth"],
        metrics.kinetic_energy(rollout["initial_positions"],
                               rollout["ground_truth_rollout"],
                               types != KINEMATIC), rtol=1e-5)
    self.assertEqual(metrics.material_name(42), "type_42")

  def test_density_ratio_counts_neighbours(self):
    # Within RADIUS = 0.05: particles 0.04 apart on a line have 1, 2, 2 and
    # 1 neighbours (mean 1.5); 0.01 apart, all 3 (the fluid compacted).
    # The kinematic particle is not counted.
    line = np.zeros([1, 5, 2])
    line[0, :4, 0] = [0.0, 0.04, 0.08, 0.12]
    moving = np.array([True] * 4 + [False])
    self.assertAllClose(metrics.neighbour_counts(line, moving, RADIUS),
                        [1.5])
    packed = line * 0.25
    self.assertAllClose(metrics.neighbour_counts(packed, moving, RADIUS),
                        [3.0])
    self.assertAllClose(
        metrics.density_ratio(np.concatenate([packed, line]),
                              np.concatenate([line, line]), moving, RADIUS),
        (3.0 + 1.5) / 3.0)
    # A spray: nobody has a neighbour any more.
    self.assertEqual(
        metrics.density_ratio(line * 10, line, moving, RADIUS), 0.0)
    # A truth without neighbours leaves it undefined.
    self.assertTrue(np.isnan(
        metrics.density_ratio(line, line * 10, moving, RADIUS)))
    # Through a rollout: the moving particles pulled halfway to their centre.
    rollout = make_rollout()
    is_moving = rollout["particle_types"] != KINEMATIC
    truth = rollout["ground_truth_rollout"]
    centre = truth[:, is_moving].mean(axis=1, keepdims=True)
    rollout["predicted_rollout"][:, is_moving] = (
        centre + 0.5 * (truth[:, is_moving] - centre))
    self.assertGreater(metrics.physics_summary(rollout)["density_ratio"],
                       1.5)

  def test_energy_ratio_is_left_out_for_a_truth_at_rest(self):
    rollout = make_rollout()
    rest = np.broadcast_to(rollout["initial_positions"][-1:],
                           rollout["ground_truth_rollout"].shape)
    rollout = dict(rollout, ground_truth_rollout=rest.copy(),
                   initial_positions=np.broadcast_to(
                       rest[:1], rollout["initial_positions"].shape))
    self.assertNotIn("kinetic_energy_ratio", metrics.rollout_metrics(rollout))


class BaselinesTest(tf.test.TestCase):

  def test_frozen_and_constant_velocity(self):
    rollout = make_rollout(num_steps=5)
    moving = rollout["particle_types"] != KINEMATIC
    frozen = baselines.frozen_rollout(rollout)
    self.assertAllEqual(frozen[:, moving],
                        np.repeat(rollout["initial_positions"][-1:, moving],
                                  5, axis=0))
    self.assertAllEqual(frozen[:, ~moving],
                        rollout["ground_truth_rollout"][:, ~moving])
    # The drift is uniform: constant velocity is exact.
    scores = evaluation.score_rollout(rollout)
    self.assertEqual(set(scores), {"model", "constant_velocity", "frozen"})
    self.assertAllClose(scores["constant_velocity"]["mse_full"], 0.0,
                        atol=1e-12)
    self.assertGreater(scores["frozen"]["mse_full"], 0.0)

  def test_summary_and_table(self):
    scores = [evaluation.score_rollout(make_rollout(seed=s))
              for s in range(2)]
    summary = evaluation.summarize_scores(scores)
    self.assertLen(summary["frozen"]["per_trajectory"], 2)
    self.assertAllClose(
        summary["frozen"]["mean"]["mse_full"],
        np.mean([s["frozen"]["mse_full"] for s in scores]))
    self.assertNotIn(evaluation.CURVES, summary)
    # Curves, where the scores have them, pass through per trajectory.
    with_curves = evaluation.summarize_scores(
        [dict(s, **{evaluation.CURVES: {"index": i}})
         for i, s in enumerate(scores)])
    self.assertEqual(with_curves[evaluation.CURVES],
                     [{"index": 0}, {"index": 1}])
    self.assertEqual(with_curves["model"], summary["model"])
    table = evaluation.format_scores(summary)
    self.assertRegex(table.splitlines()[0],
                     r"model +constant_velocity +frozen")
    row = next(line for line in table.splitlines()
                if line.startswith("mse_full "))
    self.assertAllClose([float(v) for v in row.split()[1:]],
                        [summary[name]["mean"]["mse_full"]
                         for name in ("model", "constant_velocity", "frozen")],
                        rtol=1e-4)


if __name__ == "__main__":
  tf.test.main()
