"""One trainer per model directory: a file lock on `{model_path}/.train.lock`.

Two trainers on one `--model_path` would interleave their `ckpt-N` files.
The lock is `filelock.FileLock`, an OS lock (`flock` on Unix) that the
kernel releases when its process ends in any way, `kill -9` included, so a
lock left behind never blocks the next run. The holder writes its pid, host
and start time to `.train.lock.json`, so that a refused run names it.
Evaluation takes no lock: it only reads, and may run beside the trainer.
"""

import contextlib
import datetime
import json
import os
import socket
import tempfile
from typing import Any, Dict, Iterator

import filelock

LOCK_FILENAME = ".train.lock"
OWNER_FILENAME = ".train.lock.json"


class LockedError(ValueError):
  """Another process is training in the model directory."""


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except OSError:  # Exists, but belongs to someone else.
    return True
  return True


def _owner(model_path: str) -> str:
  """The holder, as its `.train.lock.json` describes it."""
  unknown = "a process that has not said who it is yet"
  try:
    with open(os.path.join(model_path, OWNER_FILENAME)) as f:
      owner = json.load(f)
    pid, host, started = owner["pid"], owner["host"], owner["started"]
  except (OSError, ValueError, KeyError, TypeError):
    return unknown
  if host == socket.gethostname() and not _alive(int(pid)):
    return unknown  # The file is from an earlier run; the new one is early.
  return f"pid {pid} on host {host}, started {started}"


def _write_owner(model_path: str, owner: Dict[str, Any]) -> None:
  """Writes `.train.lock.json` atomically (no TensorFlow: a quick import)."""
  fd, tmp_path = tempfile.mkstemp(prefix=f"{OWNER_FILENAME}.", dir=model_path)
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(owner, f)
    os.replace(tmp_path, os.path.join(model_path, OWNER_FILENAME))
  finally:
    if os.path.exists(tmp_path):
      os.remove(tmp_path)


@contextlib.contextmanager
def hold(model_path: str) -> Iterator[None]:
  """Holds the training lock of `model_path` (an existing directory).

  Raises:
    LockedError: another process holds it; the message names that process.
  """
  lock = filelock.FileLock(os.path.join(model_path, LOCK_FILENAME),
                           timeout=0)
  try:
    lock.acquire()
  except filelock.Timeout:
    raise LockedError(
        f"--model_path {model_path!r} is in use by another trainer "
        f"({_owner(model_path)}); wait for it to end or use another "
        "--model_path") from None
  try:
    _write_owner(model_path, {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().astimezone().isoformat(
            timespec="seconds"),
    })
    yield
  finally:
    lock.release()
