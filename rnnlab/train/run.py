"""The run directory: everything needed to understand, resume and report one training run.

::

    runs/20250101-120000-text-lstm/
        config.json        the full ExperimentConfig (plain JSON; `rnnlab train` reads it back)
        command.txt        the command line(s) that started and resumed the run, one per line
        version.json       code version: git describe / commit / dirty, rnnlab, torch, python
        task.json          the task's provenance (task.info: files, checksums, split sizes)
        model.txt          the model's description, parameter count and module tree
        metrics.jsonl      one JSON object per line: {"split", "step", "epoch", "loss", ...}
        vocab.json         the symbols of a Tokens task (sampling needs no corpus)
        checkpoint.pt      the latest state (parameters, optimiser, RNG, data position, ...)
        checkpoint.prev.pt the one before: a resume falls back to it if checkpoint.pt is damaged
        best.pt            parameters at the best validation metric so far
        summary.json       written when the run stops: status, steps, time, final metrics
        history.jsonl      one record per resume: the config and summary it replaced
        curves.png         learning curves (train loss, valid metric)
        tensorboard/       event files, with --run.tensorboard and tensorboard installed
        .lock              held by the process training the run (``hold``): a second process
                           that would train it too is refused with ``RunBusy``

Only rank 0 of a distributed run writes here. Provenance is append-only: a resume appends to
command.txt and history.jsonl and never drops a final result from metrics.jsonl.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from rnnlab.atomic import flock, write_text_atomic
from rnnlab.train import bodies
from rnnlab.train.config import ExperimentConfig, from_dict, to_dict

CONFIG = "config.json"
COMMAND = "command.txt"
VERSION = "version.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
VOCAB = "vocab.json"
HISTORY = "history.jsonl"
BEST = "best.pt"
MODEL = "model.txt"
TASK = "task.json"
LOCK = ".lock"


def default_dir(config: ExperimentConfig) -> Path:
    """``<root>/<timestamp>-<task>-<cell or grid>``, made unique with a suffix if it exists."""
    body = bodies.label(config.model)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(config.run.root) / f"{stamp}-{config.task.name}-{body}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def code_version() -> dict:
    """git describe / commit / dirty flag of the rnnlab source tree (when it is a checkout),
    and the rnnlab, torch and Python versions."""
    import torch

    info: dict = {
        "rnnlab": _package_version(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    source = Path(__file__).resolve().parents[2]  # the tree holding the rnnlab package
    for key, args in (
        ("git_describe", ["describe", "--always", "--dirty", "--tags"]),
        ("git_commit", ["rev-parse", "HEAD"]),
    ):
        try:
            result = subprocess.run(
                ["git", "-C", str(source), *args],
                capture_output=True,
                text=True,
                timeout=10,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if result.returncode == 0:
            info[key] = result.stdout.strip()
    return info


def _package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("rnnlab")
    except metadata.PackageNotFoundError:
        return "unknown"


class RunBusy(OSError):
    """Another process is training in the run directory (it holds the directory's lock)."""


_HELD: dict[Path, list] = {}  # the run directories this process holds: path -> [file, depth]


class Hold:
    """This process's hold on one run directory (``hold``); ``release`` or use it as a context
    manager. Holds of one directory in one process nest: the lock goes with the outermost."""

    def __init__(self, path: Path):
        self.path = path
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        entry = _HELD.get(self.path)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[self.path]
            entry[0].close()  # closing the file drops its lock

    def __enter__(self) -> Hold:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def hold(path: str | os.PathLike) -> Hold:
    """Hold run directory ``path`` (made if missing) for this process while it trains there.

    An exclusive ``flock`` on ``path/.lock``: the kernel drops it when the process ends, however
    it ends, so a killed run leaves no stale lock behind. A second process that asks for the
    same directory gets ``RunBusy`` naming the holder (its pid, host and start) — two processes
    never write one run's checkpoints and metrics. Without ``fcntl`` (Windows), or on a file
    system that has no locks, nothing is locked. The lock is advisory: it keeps rnnlab
    processes apart, nothing else.
    """
    path = Path(path).resolve()
    if path in _HELD:
        _HELD[path][1] += 1
        return Hold(path)
    path.mkdir(parents=True, exist_ok=True)
    handle = open(path / LOCK, "a+", encoding="utf-8")
    if _lock_soon(handle) is False:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RunBusy(
            f"{path} is being trained by {holder}; wait for it to finish, or stop it and "
            "resume the run"
        )
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                 f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    handle.flush()
    _HELD[path] = [handle, 1]
    return Hold(path)


def _lock_soon(handle, tries: int = 5) -> bool | None:
    """The exclusive lock of ``handle`` (``rnnlab.atomic.flock``: True, False when held, None
    where there are no locks), waiting a moment for a look (``holder``) to end."""
    for attempt in range(tries):
        taken = flock(handle)
        if taken is not False or attempt == tries - 1:
            return taken
        time.sleep(0.05)
    return False


def holder(path: str | os.PathLike) -> str | None:
    """Who trains in run directory ``path`` now (the ``hold`` of another process, or of this
    one): its pid, host and start; None when no process does. It takes a shared lock only for
    the look itself (``hold`` waits that long), changes nothing, and makes nothing."""
    lock = Path(path) / LOCK
    if not lock.is_file():
        return None
    with open(lock, encoding="utf-8") as handle:
        if flock(handle, shared=True) is False:
            return handle.read().strip() or "another process"
    return None  # free, or no locks here (nobody can be told apart)


class RunDir:
    """Reads and writes the files of one run directory."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    # --- creation -----------------------------------------------------------------------------
    def create(self, config: ExperimentConfig, argv: list[str] | None) -> None:
        """Make the directory and write config.json, command.txt and version.json."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.file(CONFIG).exists():
            raise FileExistsError(
                f"{self.path} already holds a run; continue it with --resume {self.path} "
                "or choose another --run.dir"
            )
        write_text_atomic(json.dumps(to_dict(config), indent=2) + "\n", self.file(CONFIG))
        write_text_atomic(json.dumps(code_version(), indent=2) + "\n", self.file(VERSION))
        self.append_command(argv)

    def append_command(self, argv: list[str] | None) -> None:
        argv = sys.argv if argv is None else ["rnnlab", *argv]
        with open(self.file(COMMAND), "a", encoding="utf-8") as handle:
            handle.write(shlex.join(argv) + "\n")

    def write_text(self, name: str, text: str) -> None:
        write_text_atomic(text, self.file(name))

    def write_json(self, name: str, data) -> None:
        write_text_atomic(json.dumps(data, indent=2, default=str) + "\n", self.file(name))

    # --- reading ------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.file(CONFIG).is_file()

    def resumable(self) -> bool:
        """Whether a checkpoint to resume from is here: checkpoint.pt, or the previous one."""
        return self.file(CHECKPOINT).is_file() or self.file(PREVIOUS).is_file()

    def require_resumable(self) -> None:
        """Refuse (FileNotFoundError) a run with no checkpoint to resume from."""
        if not self.resumable():
            raise FileNotFoundError(
                f"{self.path} has no {CHECKPOINT} to resume from (the run stopped before its "
                "first checkpoint); start it again instead"
            )

    def require(self) -> None:
        if not self.exists():
            raise FileNotFoundError(
                f"{self.path} is not a run directory (no {CONFIG}); "
                "give a directory made by `rnnlab train`"
            )

    def config(self) -> ExperimentConfig:
        self.require()
        data = self.read_json(CONFIG)
        try:
            return from_dict(data)
        except (ValueError, TypeError, AttributeError) as error:
            raise ValueError(
                f"{self.file(CONFIG)} does not hold a valid rnnlab config ({error}); "
                "restore it from command.txt or start a new run"
            ) from None

    def read_json(self, name: str, *, kind: type = dict):
        """The JSON object in file ``name``; an error naming the file if it is not one."""
        path = self.file(name)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is damaged: not valid JSON ({error})") from None
        if not isinstance(data, kind):
            raise ValueError(
                f"{path} is damaged: expected a JSON {kind.__name__}, got {type(data).__name__}"
            )
        return data

    def summary(self) -> dict | None:
        return self.read_json(SUMMARY) if self.file(SUMMARY).is_file() else None

    def metrics(self) -> list[dict]:
        """Every record of metrics.jsonl. A torn last line (a crash while writing) is skipped;
        any other line that is not a JSON object is an error naming the file and line."""
        path = self.file(METRICS)
        if not path.is_file():
            return []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise ValueError(f"{path} is damaged: not UTF-8 text ({error})") from None
        records = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    continue
                raise ValueError(
                    f"{path} is damaged: line {number} is not a JSON record ({line[:40]!r})"
                ) from None
            if not isinstance(record, dict) or not isinstance(record.get("step", 0), int):
                raise ValueError(
                    f"{path} is damaged: line {number} is not a metrics record ({line[:40]!r})"
                )
            records.append(record)
        return records

    def append_history(self, record: dict) -> None:
        """Append one record to history.jsonl (what a resume replaced)."""
        with open(self.file(HISTORY), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=str) + "\n")

    # --- metrics log --------------------------------------------------------------------------
    def log(self, record: dict) -> None:
        """Append one record to metrics.jsonl (flushed: a killed process loses nothing; on disk
        for a machine's crash at the next checkpoint, ``sync_metrics``)."""
        with open(self.file(METRICS), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def sync_metrics(self) -> None:
        """Put metrics.jsonl on disk (an fsync per record cost 5% of a small model's training;
        the trainer syncs at each checkpoint, and a resume drops records past the checkpoint)."""
        path = self.file(METRICS)
        if path.exists():
            with open(path, "a", encoding="utf-8") as handle:
                os.fsync(handle.fileno())

    def truncate_metrics(self, step: int) -> int:
        """Drop training records after ``step``: what a killed run logged past its last
        checkpoint is logged again, identically, when it resumes. Final results (``final``) of
        an earlier session are kept. Returns the number of training records kept."""
        records = self.metrics()
        kept = [r for r in records if r.get("final") or r.get("step", 0) <= step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        write_text_atomic(text, self.file(METRICS))
        return sum(1 for r in kept if not r.get("final"))
