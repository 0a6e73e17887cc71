"""The external acceleration (gravity) outside the network: beyond the paper.

Neural SPH (Toshev et al., ICML 2024, Sec. 4.1) lets the network predict the
acceleration minus the known external force and adds the force back before
integration. In `LearnedSimulator` with an `external_acceleration` `g`, the
normalized target is `(a - g) / acc_std` instead of the paper's
`(a - acc_mean) / acc_std`: a network that outputs zero makes every
particle fall freely.

Up to the decoder's learned bias this is a re-parametrization: the two
targets differ by the constant `(acc_mean - g) / acc_std`
(`normalized_shift`). On the bundled water sample that is 0.38 std along
gravity, since `acc_mean` is the mean over whole trajectories that start and
end at rest (about 0), not gravity.

`g` is in the dataset's position units per frame squared. It comes from the
flag `--external_acceleration`: numbers (one per dimension), or `auto` for
the metadata key `external_acceleration`, which this package's generator
writes (`9.8 * dt**2` along -y).
"""

from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np

from learning_to_simulate.data import common

METADATA_KEY = common.EXTERNAL_ACCELERATION_KEY
FLAG = "--external_acceleration"


def resolve(value: Optional[Sequence[str]], metadata: Mapping[str, Any],
            metadata_path: str = "metadata.json"
            ) -> Optional[Tuple[float, ...]]:
  """The external acceleration the flag asks for.

  Args:
    value: the flag's comma-separated items: None or `[]` (off, the paper's
      target), `["auto"]` (the metadata's `external_acceleration`) or
      `dim` numbers.
    metadata: the dataset's metadata.
    metadata_path: named in errors.

  Returns:
    `dim` floats, or None.

  Raises:
    ValueError: one line naming the flag or the metadata file.
  """
  if not value:
    return None
  dim = metadata["dim"]
  if list(value) == ["auto"]:
    if METADATA_KEY not in metadata:
      raise ValueError(
          f"{FLAG}=auto: {metadata_path} has no '{METADATA_KEY}'; give the "
          f"{dim} components (position units per frame squared), e.g. "
          f"{FLAG}={','.join(['0'] * (dim - 1) + ['-6.125e-05'])}")
    value = metadata[METADATA_KEY]
    source = metadata_path
  else:
    source = FLAG
  try:
    vector = tuple(float(v) for v in value)
  except (TypeError, ValueError):
    raise ValueError(f"{source}: expected {dim} numbers or 'auto' for the "
                     f"external acceleration, got {value!r}") from None
  if len(vector) != dim or not all(np.isfinite(vector)):
    raise ValueError(f"{source}: expected {dim} finite numbers for the "
                     f"external acceleration, got {list(value)!r}")
  return vector


def normalized_shift(metadata: Mapping[str, Any],
                     external_acceleration: Sequence[float]) -> np.ndarray:
  """`[dim]` `(acc_mean - g) / acc_std`: how far the option moves the
  normalized target from the paper's (without the training noise)."""
  return ((np.asarray(metadata["acc_mean"]) -
           np.asarray(external_acceleration)) /
          np.asarray(metadata["acc_std"]))
