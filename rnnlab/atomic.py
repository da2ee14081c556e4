"""Atomic file writes: the bytes go to a temporary file in the target's own directory, which is
flushed and fsync'ed and then renamed over the target with ``os.replace`` (the directory fsync'ed
after). A crash at any point leaves the old file or the new one, never a partial file, and a
failed write leaves no temporary file behind. Used by checkpoints and run files
(``rnnlab.train``) and by the native engine's kept GEMM timings."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write a small text file (JSON summaries, timings) atomically."""
    write_atomic(path, "w", lambda handle: handle.write(text))


def write_atomic(path: str | os.PathLike, mode: str, write) -> None:
    """Call ``write(handle)`` on a temporary file opened with ``mode``, then put it at ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # The rename itself is durable only once the directory entry is on disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def flock(handle, *, shared: bool = False, wait: bool = False) -> bool | None:
    """An advisory lock (``flock``) on the open file ``handle``, exclusive unless ``shared``:
    True when taken, False when another open file holds a conflicting one (only without
    ``wait``), None where there are no locks (no ``fcntl``, as on Windows, or a file system
    without them, ENOLCK on some network mounts) — the caller then goes on unlocked. Closing
    the file drops the lock; so does the end of the process, however it ends."""
    if fcntl is None:
        return None
    operation = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
    try:
        fcntl.flock(handle.fileno(), operation)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


@contextlib.contextmanager
def exclusive(path: str | os.PathLike):
    """Hold an exclusive advisory lock on the file ``path`` (made if missing), waiting for it: a
    read-modify-write of a file that several processes update (a reproduction's record) runs
    under it whole, so no process drops another's update. Where there are no locks (``flock``)
    it runs unlocked."""
    with open(path, "a", encoding="utf-8") as handle:
        flock(handle, wait=True)
        yield
