"""Rollouts as VTK time series for ParaView, and as plain npz arrays.

A rollout pickle (see `rollout_files`) becomes two particle time series, the
prediction and the ground truth, each the 6 initial frames followed by the
rolled-out steps. Each frame is a VTK unstructured grid of vertices (`.vtu`,
binary and zlib-compressed, written by meshio), with point data
`particle_type` and `velocity` (and, for the prediction, `error`: the distance
to the ground-truth position); a `.pvd` collection (pyevtk's `VtkGroup`) puts
the frames on a time axis for ParaView. 2D rollouts get z = 0.
Everything is written under a temporary name and moved into place when
complete.
"""

import json
import os
from typing import Any, Dict, List, Mapping

import meshio
import numpy as np
from pyevtk import vtk as evtk_vtk

from learning_to_simulate.data import dataset_writer

# The two series of a rollout: name -> the rollout key after the 6 initial
# frames.
SERIES = {"predicted": "predicted_rollout",
          "ground_truth": "ground_truth_rollout"}
FRAME_NAME = "frame_{index:05d}"


def frame_series(rollout: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """The initial frames followed by each rollout: `[num_frames, N, dim]`."""
  initial = np.asarray(rollout["initial_positions"])
  return {name: np.concatenate([initial, np.asarray(rollout[key])], axis=0)
          for name, key in SERIES.items()}


def frame_velocities(frames: np.ndarray, dt: float) -> np.ndarray:
  """`[num_frames, N, dim]` velocities `(x_t - x_{t-1}) / dt`.

  The first frame has no predecessor and takes the second frame's velocity.
  """
  frames = np.asarray(frames, np.float64)
  if len(frames) < 2:
    return np.zeros_like(frames)
  velocity = np.diff(frames, axis=0) / dt
  return np.concatenate([velocity[:1], velocity], axis=0)


def _xyz(values: np.ndarray) -> np.ndarray:
  """`[N, 3]` float32 from `[N, dim]`, z = 0 in 2D."""
  values = np.asarray(values, np.float32)
  if values.shape[1] == 2:
    values = np.pad(values, [(0, 0), (0, 1)])
  return values


def _time_step(rollout: Mapping[str, Any]) -> float:
  dt = rollout["metadata"].get("dt")
  return float(dt) if dt else 1.0


def write_vtk(rollout: Mapping[str, Any], output_dir: str) -> Dict[str, str]:
  """Writes a rollout as two VTK time series.

  Args:
    rollout: a checked rollout (`rollout_files.load_rollout`).
    output_dir: directory to create (replaced whole if it exists):
      `predicted.pvd` and `ground_truth.pvd`, each naming its frames
      `predicted/frame_00000.vtu`, ... Times are frame index x metadata `dt`
      (x 1 without `dt`); velocities are in position units per time.

  Returns:
    Series name -> path of its `.pvd` file.
  """
  dt = _time_step(rollout)
  series = frame_series(rollout)
  types = np.asarray(rollout["particle_types"], np.int64)
  error = np.linalg.norm(series["predicted"] - series["ground_truth"],
                         axis=-1).astype(np.float32)
  # One vertex cell per particle: ParaView shows points that belong to cells.
  cells = [("vertex", np.arange(len(types))[:, np.newaxis])]
  written = {}
  with dataset_writer.staged_directory(output_dir, replace=True) as staging:
    for name, frames in series.items():
      os.makedirs(os.path.join(staging, name))
      velocities = frame_velocities(frames, dt)
      group = evtk_vtk.VtkGroup(os.path.join(staging, name))
      for index, positions in enumerate(frames):
        data = {"particle_type": types, "velocity": _xyz(velocities[index])}
        if name == "predicted":
          data["error"] = error[index]
        path = os.path.join(staging, name,
                            FRAME_NAME.format(index=index) + ".vtu")
        meshio.write_points_cells(path, _xyz(positions), cells,
                                  point_data=data)
        group.addFile(filepath=path, sim_time=index * dt)
      group.save()
      written[name] = os.path.join(output_dir, f"{name}.pvd")
  return written


def _json_ready(value: Any) -> Any:
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, Mapping):
    return {str(k): _json_ready(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_ready(v) for v in value]
  return value


def write_npz(rollout: Mapping[str, Any], path: str) -> List[str]:
  """Writes a rollout's arrays to an `.npz` file (no pickles), atomically.

  Arrays: `initial_positions`, `predicted_rollout`, `ground_truth_rollout`,
  `particle_types`, `global_context` when present, and `metadata`, the
  metadata dict as a JSON string (`json.loads(str(f["metadata"]))`).

  Returns:
    The names of the arrays written.
  """
  arrays = {key: np.asarray(rollout[key]) for key in (
      "initial_positions", "predicted_rollout", "ground_truth_rollout",
      "particle_types", "global_context") if rollout.get(key) is not None}
  arrays["metadata"] = np.asarray(
      json.dumps(_json_ready(rollout["metadata"]), sort_keys=True))
  with dataset_writer.atomic_file(path) as tmp_path:
    with open(tmp_path, "wb") as f:
      np.savez(f, **arrays)
  return sorted(arrays)
