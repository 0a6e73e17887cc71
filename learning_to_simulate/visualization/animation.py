"""Rollout animations: GIF or MP4 files, and the interactive window.

Frames are drawn by `scene.RolloutScene` (blitting: only the particles and the
frame counter are redrawn) and streamed one at a time to the ffmpeg binary
that the imageio-ffmpeg wheel ships, so a fresh install writes both formats
and memory does not grow with the number of frames. GIFs get a palette fitted
to each frame (ffmpeg's `palettegen`/`paletteuse`, no dithering), so particle
colours stay exact; ffmpeg encodes only the rectangle that changed since the
previous frame. MP4s are H.264 (yuv420p), which every player reads.

Every file is written under a temporary name in its directory and moved into
place only when complete.
"""

from typing import Any, Mapping

import imageio_ffmpeg
from matplotlib import animation as mpl_animation
import numpy as np

from learning_to_simulate.data import dataset_writer
from learning_to_simulate.visualization import scene as scene_lib

ANIMATION_EXTENSIONS = (".gif", ".mp4")
DEFAULT_FPS = 20
# GIF frame delays are whole centiseconds, and browsers slow down delays
# under 2 cs, so GIFs play at most 50 frames per second.
MAX_GIF_FPS = 50
# One palette per frame, fitted to its colours; no dithering of the flat
# colours of a scatter plot.
_GIF_FILTER = ("split[a][b];[a]palettegen=stats_mode=single:"
               "reserve_transparent=0[p];[b][p]paletteuse=new=1:dither=none")


class MissingWriterError(RuntimeError):
  """The ffmpeg binary needed to write animations is not available."""


def ffmpeg_executable() -> str:
  """Path of the ffmpeg binary shipped with imageio-ffmpeg (or on PATH).

  Raises:
    MissingWriterError: when neither is available on this platform.
  """
  try:
    return imageio_ffmpeg.get_ffmpeg_exe()
  except RuntimeError as e:
    raise MissingWriterError(
        f"no ffmpeg binary for this platform ({e}); install ffmpeg or set "
        "IMAGEIO_FFMPEG_EXE") from None


class FrameWriter:
  """Streams `[height, width, 3]` uint8 frames to a `.gif` or `.mp4` file."""

  def __init__(self, path: str, size: tuple, fps: float, extension: str):
    """Starts ffmpeg.

    Args:
      path: output file (any name: the format comes from `extension`).
      size: `(width, height)` in pixels.
      fps: frames per second.
      extension: ".gif" or ".mp4".
    """
    ffmpeg_executable()
    if extension == ".gif":
      options = dict(codec="gif", pix_fmt_out="pal8", macro_block_size=1,
                     output_params=["-filter_complex", _GIF_FILTER,
                                    "-loop", "0", "-f", "gif"])
    else:
      options = dict(codec="libx264", pix_fmt_out="yuv420p",
                     macro_block_size=2, output_params=["-f", "mp4"])
    self._frames = imageio_ffmpeg.write_frames(
        path, size, fps=fps, ffmpeg_log_level="error", **options)
    self._frames.send(None)  # Starts the process.
    self.num_frames = 0

  def write(self, rgb: np.ndarray) -> None:
    self._frames.send(np.ascontiguousarray(rgb, dtype=np.uint8))
    self.num_frames += 1

  def close(self) -> None:
    """Waits for ffmpeg to finish the file."""
    self._frames.close()


def check_animation_path(output_path: str, fps: float = DEFAULT_FPS) -> str:
  """Checks that an animation can be written to `output_path` at `fps`.

  Args:
    output_path: a `.gif` or `.mp4` file name.
    fps: frames per second: positive, and at most `MAX_GIF_FPS` for GIF.

  Returns:
    The lower-case extension.

  Raises:
    ValueError: for any other extension, a directory or a bad `fps`.
    MissingWriterError: when no ffmpeg binary is available.
  """
  extension = scene_lib.output_extension(output_path, ANIMATION_EXTENSIONS,
                                         "animation")
  if not fps > 0:
    raise ValueError(f"fps must be positive, got {fps}")
  if extension == ".gif" and fps > MAX_GIF_FPS:
    raise ValueError(f"fps must be at most {MAX_GIF_FPS} for .gif (frame "
                     f"delays are whole centiseconds, >= 2), got {fps}")
  ffmpeg_executable()
  return extension


def animation_frames(num_frames: int, step_stride: int) -> np.ndarray:
  """Trajectory frames shown: every `step_stride`-th, from the first."""
  if step_stride < 1:
    raise ValueError(f"step_stride must be at least 1, got {step_stride}")
  return np.arange(0, num_frames, step_stride)


def render_animation(rollout: Mapping[str, Any], output_path: str,
                     step_stride: int = 3, fps: float = DEFAULT_FPS,
                     dpi: float = scene_lib.DEFAULT_DPI,
                     marker_size: float = scene_lib.DEFAULT_MARKER_SIZE
                     ) -> int:
  """Writes the ground-truth vs prediction animation to a GIF or MP4 file.

  Args:
    rollout: a rollout dict (see `rollout_files.check_rollout`).
    output_path: a `.gif` or `.mp4` file; its directory is created if needed,
      and the file appears only once complete.
    step_stride: show every `step_stride`-th frame of the trajectory.
    fps: frames per second of the animation (at most 50 for GIF).
    dpi: pixels per inch; the frames are `FIGURE_SIZE * dpi` pixels.
    marker_size: particle marker diameter in points.

  Returns:
    The number of frames written, `ceil(num_frames / step_stride)`.

  Raises:
    ValueError: for an unsupported extension or invalid arguments/rollout.
    MissingWriterError: when no ffmpeg binary is available.
  """
  extension = check_animation_path(output_path, fps)
  if not dpi > 0:
    raise ValueError(f"dpi must be positive, got {dpi}")
  fig = scene_lib.new_figure(dpi)
  scene = scene_lib.RolloutScene(fig, rollout, marker_size)
  frames = animation_frames(scene.num_frames, step_stride)
  width, height = (int(v) for v in fig.canvas.get_width_height())
  with dataset_writer.atomic_file(output_path) as temporary:
    writer = FrameWriter(temporary, (width, height), fps, extension)
    try:
      for frame in frames:
        scene.update(frame)
        scene.draw()
        writer.write(np.asarray(fig.canvas.buffer_rgba())[..., :3])
    finally:
      writer.close()
  return len(frames)


def show_animation(rollout: Mapping[str, Any], step_stride: int = 3,
                   block: bool = True,
                   marker_size: float = scene_lib.DEFAULT_MARKER_SIZE
                   ) -> mpl_animation.FuncAnimation:
  """Shows the animation in a pyplot window, as the original viewer does.

  Args:
    rollout: a rollout dict (see `rollout_files.check_rollout`).
    step_stride: show every `step_stride`-th frame of the trajectory.
    block: whether `pyplot.show` blocks until the window is closed.
    marker_size: particle marker diameter in points.

  Returns:
    The animation; keep a reference while it plays when `block` is false.
  """
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig = plt.figure(figsize=scene_lib.FIGURE_SIZE)
  scene = scene_lib.RolloutScene(fig, rollout, marker_size)
  frames = animation_frames(scene.num_frames, step_stride)
  anim = mpl_animation.FuncAnimation(fig, scene.update, frames=frames,
                                     # 3D views can be rotated: redraw all.
                                     interval=10, blit=scene.dim == 2)
  plt.show(block=block)
  return anim
