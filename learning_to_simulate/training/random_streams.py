"""Where a training run's random draws come from: one seed, one stream each.

Every random draw of a run follows from its run seed (`--seed`, or fresh
entropy when unseeded), and each stream is a pure function of the seed and
of where the run is, never of what the process did before:

- input noise of training step `step` on replica `replica`: a stateless
  draw seeded by `(seed, NOISE, step, replica)` (`noise_seed`), with `step`
  the optimizer's step count read in the step's graph;
- the pushforward unroll length of step `step`: `unroll_rng(seed, step)`;
- validation's input noise: the same draws at every validation
  (`validation_seed`), so that two validations differ by the model
  only;
- the shuffle of the training input: checkpointed with the model when the
  input pipeline's position can be (see `trainer`); otherwise a new shuffle
  seeded by `(seed, SHUFFLE, step, worker)` (`shuffle_seed`), so a resumed
  run does not see the start of its stream again;
- the weights' initializers: the framework's global seed
  (`keras.utils.set_random_seed`), set by the trainer before it builds the
  model.

So a run interrupted at step k and resumed draws at step k + 1 what an
uninterrupted run draws there.
"""

from typing import Optional, Union

import numpy as np
import tensorflow as tf

# Stream numbers, folded into the seed so that streams never coincide.
NOISE, UNROLL, SHUFFLE, VALIDATION = 1, 2, 3, 4


def run_seed(seed: Optional[int]) -> int:
  """The run's seed: `seed`, or fresh entropy for an unseeded run."""
  if seed is not None:
    return int(seed)
  return int(np.random.SeedSequence().entropy % 2**62)


def noise_seed(seed: int, step: tf.Tensor,
               replica: Union[int, tf.Tensor] = 0) -> tf.Tensor:
  """`[2]` int64 seed of the stateless input noise of one step.

  Args:
    seed: the run seed.
    step: scalar integer tensor, the training step (the optimizer's
      `iterations` before the update).
    replica: the replica's index in sync (0 on one device).
  """
  key = tf.constant([seed, NOISE], tf.int64)
  key = tf.random.experimental.stateless_fold_in(key, tf.cast(step, tf.int64))
  return tf.random.experimental.stateless_fold_in(
      key, tf.cast(replica, tf.int64))


def replica_noise_seed(seed: int, step: tf.Tensor) -> tf.Tensor:
  """`noise_seed` for the replica this runs on (in replica context)."""
  replica = tf.distribute.get_replica_context().replica_id_in_sync_group
  return noise_seed(seed, step, replica)


def unroll_rng(seed: int, step: int) -> np.random.Generator:
  """The generator of step `step`'s pushforward unroll length."""
  return np.random.default_rng([seed, UNROLL, step])


def _derived_seed(*entropy: int) -> int:
  """A seed for another generator, a function of `entropy` alone."""
  state = np.random.SeedSequence(list(entropy))
  return int(state.generate_state(1, np.uint64)[0] % 2**62)


def shuffle_seed(seed: int, step: int, worker: int = 0) -> int:
  """The shuffle seed of an input pipeline started at `step` on `worker`."""
  return _derived_seed(seed, SHUFFLE, step, worker)


def validation_seed(seed: int) -> int:
  """The seed that validation's noise generator is reset to each time."""
  return _derived_seed(seed, VALIDATION)
