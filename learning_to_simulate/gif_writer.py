"""A streaming GIF writer for matplotlib animations (one frame in memory)."""

import struct
from typing import Tuple

from matplotlib import animation
import numpy as np
from PIL import GifImagePlugin
from PIL import Image


class StreamingGifWriter(animation.AbstractMovieWriter):
  """A GIF writer holding one frame at a time (matplotlib's keeps them all).

  Frames are read from the figure's Agg canvas as last drawn (so at the
  figure's own dpi), which lets the caller blit; `FuncAnimation.save` draws
  before each grab, so it works there too. A 255-colour palette is fitted
  (median cut) on the first frame, which already shows every particle type
  and the legend; every pixel then takes its nearest palette colour, through
  a lookup table over all 2 ** 24 colours, filled in as colours appear
  (255 colours leave 0 to mark those not seen yet, in one byte each). Only
  the rectangle that changed since the previous frame is encoded (Pillow's
  LZW encoder), with "leave in place" disposal. Frame delays are rounded to
  whole centiseconds.
  """

  def __init__(self, fps: float):
    super().__init__(fps=fps)
    self._delay_cs = max(2, int(round(100 / fps)))
    self._file = None
    self._palette = None  # `[num_colors, 3]` int32.
    self._lookup = None  # `[2 ** 24]` packed RGB -> palette index + 1.
    self._previous = None

  def setup(self, fig, outfile, dpi=None):
    super().setup(fig, outfile, dpi)
    self._file = open(outfile, "wb")
    self._palette = None
    self._lookup = None
    self._previous = None

  def _palette_indices(self, rgb: np.ndarray) -> np.ndarray:
    """`[height, width, 3]` uint8 -> `[height, width]` uint8 indices."""
    packed = ((rgb[..., 0].astype(np.uint32) << 16) |
              (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2])
    indices = self._lookup[packed]
    unseen = np.unique(packed[indices == 0])
    for start in range(0, unseen.size, 4096):  # Bounded temporaries.
      colors = unseen[start:start + 4096]
      channels = np.stack([colors >> 16, (colors >> 8) & 255, colors & 255],
                          axis=-1).astype(np.int32)
      distances = np.sum(
          (channels[:, None, :] - self._palette[None, :, :])**2, axis=-1)
      self._lookup[colors] = np.argmin(distances, axis=1) + 1
    if unseen.size:
      indices = self._lookup[packed]
    return indices - 1

  def grab_frame(self, **savefig_kwargs):
    """Appends the canvas as last drawn: the caller draws (and may blit)."""
    if savefig_kwargs:
      raise TypeError(f"Unsupported savefig arguments {sorted(savefig_kwargs)}")
    rgb = np.asarray(self.fig.canvas.buffer_rgba())[..., :3]
    if self._palette is None:
      quantized = Image.fromarray(np.ascontiguousarray(rgb)).quantize(
          colors=255, method=Image.Quantize.MEDIANCUT)
      palette = bytes(quantized.getpalette()[:3 * 255])
      self._palette = np.frombuffer(palette, np.uint8).reshape(-1, 3).astype(
          np.int32)
      # Zeros are allocated lazily: only the pages of colours seen cost RAM.
      self._lookup = np.zeros(1 << 24, np.uint8)
      height, width = rgb.shape[:2]
      self._file.write(gif_header((width, height), palette))
    indices = self._palette_indices(rgb)
    top, left = 0, 0
    bottom, right = indices.shape
    if self._previous is not None:
      changed = indices != self._previous
      rows = np.flatnonzero(changed.any(axis=1))
      if rows.size:
        cols = np.flatnonzero(changed.any(axis=0))
        top, bottom = rows[0], rows[-1] + 1
        left, right = cols[0], cols[-1] + 1
      else:
        bottom, right = 1, 1  # Still write a frame, so frame counts hold.
    self._previous = indices
    changed_box = Image.fromarray(indices[top:bottom, left:right])
    for chunk in GifImagePlugin.getdata(changed_box,
                                        offset=(int(left), int(top)),
                                        duration=self._delay_cs * 10,
                                        disposal=1):
      self._file.write(chunk)

  def finish(self):
    if self._file is not None:
      self._file.write(b";")  # GIF trailer.
      self._file.close()
      self._file = None


def gif_header(size: Tuple[int, int], palette: bytes) -> bytes:
  """GIF89a header, 256-colour global palette, endless looping."""
  palette = palette + bytes(768 - len(palette))
  # Global colour table present, 8 bits per primary, 2 ** (7 + 1) entries.
  screen = struct.pack("<HHBBB", size[0], size[1], 0x80 | 0x70 | 7, 0, 0)
  loop = b"!\xff\x0bNETSCAPE2.0\x03\x01" + struct.pack("<H", 0) + b"\x00"
  return b"GIF89a" + screen + palette + loop
