"""How long a training took, from its log, over every piece it ran in.

A run stopped (SIGTERM, the end of a session) and resumed trains in pieces,
each a `train` process that logs `Training on ...` when its first step starts
and `Stopped by ...` or `Finished at step ...` when it saves its last
checkpoint. A parent that times only the `train` child it started sees only
the last piece; the log, appended to by every piece, holds them all.
"""

import datetime
import re
from typing import Optional, Tuple

# An absl log line's prefix: severity, MMDD HH:MM:SS.micro, thread id.
_STAMP = re.compile(
    r"^[IWEF](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6}) +(\d+) ")
_START = "] Training on "
_ENDS = ("] Stopped by ", "] Finished at step ")


def _stamp(line: str) -> Optional[Tuple[datetime.datetime, str]]:
  """A line's time and thread, or None for a line absl did not write."""
  match = _STAMP.match(line)
  if not match:
    return None
  month, day, hour, minute, second, micro = map(int, match.groups()[:6])
  # absl writes no year; 2000 is a leap year, so 29 February parses.
  return (datetime.datetime(2000, month, day, hour, minute, second, micro),
          match.group(7))


def _seconds(start: datetime.datetime, end: datetime.datetime) -> float:
  seconds = (end - start).total_seconds()
  # A piece across New Year: its end reads as earlier in the same year.
  return seconds + 365 * 86400 if seconds < 0 else seconds


def training_seconds(log_text: str) -> Tuple[Optional[float], int]:
  """Seconds of training summed over the pieces in a `train` log.

  Each piece counts from its `Training on` line to its `Stopped by` or
  `Finished at step` line (what a process killed without a chance to log
  ran until the last line its thread wrote). Start-up before the first step
  and evaluation after the last are not training.

  Args:
    log_text: the log's text: one or more `train` processes' absl lines,
      possibly with other processes' lines between them.

  Returns:
    `(seconds, pieces)`: `seconds` is None when the log holds no piece.
  """
  total, pieces = 0.0, 0
  start = last = thread = None
  for line in log_text.splitlines():
    stamped = _stamp(line)
    if stamped is None:
      continue
    stamp, line_thread = stamped
    if _START in line:
      if start is not None:  # The previous piece died without a word.
        total += _seconds(start, last)
      start, last, thread, pieces = stamp, stamp, line_thread, pieces + 1
    elif start is not None and line_thread == thread:
      if any(end in line for end in _ENDS):
        total += _seconds(start, stamp)
        start = None
      else:
        last = stamp
  if start is not None:
    total += _seconds(start, last)
  return (total if pieces else None), pieces
