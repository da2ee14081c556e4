"""Where trials live: an Optuna storage named by a URL, embedded by default.

::

    open_storage(None, "studies/x")                  # journal file studies/x/trials.journal
    open_storage("journal:/shared/x.journal")        # a journal file anywhere (".journal" too)
    open_storage("postgresql+psycopg://u:pw@db:5432/rnnlab")   # many machines
    open_storage("sqlite:///x.db")                   # accepted; see below

The embedded default is Optuna's journal file storage: an append-only log of operations guarded
by a file lock, which Optuna recommends for several processes on one machine. SQLite serialises
writers on one database lock and fails under parallel workers with "database is locked", so it
is accepted but not the default. To run workers on many machines, point every worker at one
PostgreSQL database (``postgresql://`` and ``postgres://`` are read as ``postgresql+psycopg://``,
the driver rnnlab installs).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import optuna

JOURNAL_FILE = "trials.journal"
# A journal append holds the file lock for milliseconds; a lock older than this was left by a
# worker killed while appending and is broken (Optuna's default waits 30 s).
LOCK_GRACE_SECONDS = 3
_RDB_SCHEMES = ("sqlite", "postgresql", "mysql")


class StorageError(RuntimeError):
    """A storage URL that is malformed, of an unknown kind, or cannot be reached."""


def _normalise(url: str) -> str:
    """``postgres://`` and ``postgresql://`` -> ``postgresql+psycopg://`` (psycopg 3)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def describe_storage(url: str | None, directory: str | os.PathLike | None = None) -> str:
    """The storage as a person should see it: the journal path, or the URL without password."""
    if url is None:
        return f"journal file {_default_path(directory)}"
    url = _normalise(url)
    if _journal_path(url) is not None:
        return f"journal file {_journal_path(url)}"
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _default_path(directory: str | os.PathLike | None) -> Path:
    if directory is None:
        raise StorageError("no storage URL and no directory for the default journal file")
    return Path(directory).absolute() / JOURNAL_FILE


def _journal_path(url: str) -> Path | None:
    if url.startswith("journal:"):
        path = url[len("journal:"):]
        path = path[2:] if path.startswith("//") else path
        if not path:
            raise StorageError("journal storage URL has no path: expected journal:PATH")
        return Path(path).absolute()
    if url.endswith(".journal") and "://" not in url:
        return Path(url).absolute()
    return None


def open_storage(
    url: str | None, directory: str | os.PathLike | None = None
) -> optuna.storages.BaseStorage:
    """The Optuna storage named by ``url``; ``None``: the journal file in ``directory``.

    Raises :class:`StorageError` with one line saying what is wrong (the password hidden) when
    the URL is of an unknown kind or the storage cannot be opened or reached.
    """
    path = _default_path(directory) if url is None else _journal_path(_normalise(url))
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            journal = optuna.storages.journal
            lock = journal.JournalFileSymlinkLock(str(path), grace_period=LOCK_GRACE_SECONDS)
            backend = journal.JournalFileBackend(str(path), lock_obj=lock)
            return optuna.storages.JournalStorage(backend)
        except OSError as error:
            raise StorageError(f"cannot open journal file {path}: {error.strerror}") from None
    url = _normalise(url)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme.split("+", 1)[0] not in _RDB_SCHEMES:
        raise StorageError(
            f"unknown storage {describe_storage(url)!r}: expected a journal file (journal:PATH "
            "or PATH.journal), postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB or sqlite:///PATH"
        )
    try:
        # pool_pre_ping: a worker that idled through a server restart reconnects
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    except ModuleNotFoundError as error:
        raise StorageError(
            f"storage {describe_storage(url)} needs the Python module {error.name!r}: "
            "pip install -e '.[postgres]' in the checkout (or pip install 'psycopg[binary]')"
        ) from None
    except Exception as error:  # sqlalchemy / driver errors: one line, no traceback
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = lines[0] if lines else type(error).__name__
        reason = re.sub(r"\(Background on this error.*", "", reason)
        raise StorageError(f"cannot reach storage {describe_storage(url)}: {reason}") from None
