"""One process trains a run directory at a time: its lock (``rnnlab.train.run.hold``), what a
second process is told, and a reproduction shared between two processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import tiny_config

from rnnlab.cli.main import main
from rnnlab.reproduce import entries, runner
from rnnlab.train.run import CHECKPOINT, LOCK, PREVIOUS, SUMMARY, RunBusy, hold
from rnnlab.train.trainer import train

fcntl = pytest.importorskip("fcntl")  # run directories are locked where flock exists

REPO = Path(__file__).resolve().parents[2]

# Another process: takes the lock with rnnlab's own ``hold`` (or a bare flock), says "held",
# and keeps it until its stdin closes.
HOLDER = """
import sys
if sys.argv[2] == "rnnlab":
    from rnnlab.train.run import hold
    h = hold(sys.argv[1])
else:
    import fcntl, os
    os.makedirs(sys.argv[1], exist_ok=True)
    f = open(os.path.join(sys.argv[1], ".lock"), "a+")
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


class Holder:
    """A second process holding ``path``'s lock until ``release``."""

    def __init__(self, path: Path, how: str = "flock"):
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path), how], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, cwd=REPO)
        assert self.process.stdout.readline().strip() == "held"

    def release(self) -> None:
        self.process.stdin.close()
        assert self.process.wait(timeout=60) == 0


def test_a_directory_another_process_holds_is_refused_naming_the_holder(tmp_path):
    holder = Holder(tmp_path / "r", how="rnnlab")
    try:
        with pytest.raises(RunBusy, match=f"pid {holder.process.pid} on "):
            hold(tmp_path / "r")
    finally:
        holder.release()
    # the holder's end drops its lock (no stale lock after a process ends, however it ends)
    with hold(tmp_path / "r"):
        assert (tmp_path / "r" / LOCK).read_text().startswith("pid ")


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = Holder(tmp_path / "r")
    holder.process.kill()
    holder.process.wait(timeout=60)
    with hold(tmp_path / "r"):
        pass


def test_holds_nest_within_one_process_and_the_outermost_releases(tmp_path):
    outer = hold(tmp_path / "r")
    with hold(tmp_path / "r"):  # the same process: no refusal
        pass
    probe = open(tmp_path / "r" / LOCK, "a+")  # another open file: what another process sees
    try:
        with pytest.raises(BlockingIOError):  # still held by the outer hold
            fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        outer.release()
        outer.release()  # twice is harmless
        fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # free now
    finally:
        probe.close()


def test_training_or_resuming_a_run_another_process_trains_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "r"
    config = tiny_config("train.max_steps=2", "train.checkpoint_every=1", f"run.dir={run_dir}")
    train(config)
    (run_dir / SUMMARY).unlink()  # as if stopped before its end: resumable
    holder = Holder(run_dir)
    try:
        with pytest.raises(RunBusy, match="being trained by"):
            train(tiny_config("train.max_steps=2", f"run.dir={tmp_path / 'r'}"))
        with pytest.raises(RunBusy, match="being trained by"):
            train(config, resume=str(run_dir))
        code = main(["train", "--resume", str(run_dir)])
        err = capsys.readouterr().err
        assert code != 0 and "being trained by" in err and "Traceback" not in err
    finally:
        holder.release()
    # once it is free, the run resumes and the lock goes with the training
    _, summary = train(config, resume=str(run_dir))
    assert summary["status"] == "completed"
    Holder(run_dir).release()  # another process can take it: train released it


@pytest.fixture
def tiny_entry(monkeypatch):
    """highway-vs-grid with a 3-step full budget: its synthetic runs train in seconds."""
    data = dict(entries.ENTRIES["highway-vs-grid"])
    data["budgets"] = {"full": {"train.max_steps": 3}, "small": {"train.max_steps": 2}}
    monkeypatch.setitem(entries.ENTRIES, "highway-vs-grid", data)
    return [f"parity16-plain-s{seed}" for seed in (0, 1)]


def test_a_reproduction_skips_the_runs_another_process_trains(tmp_path, capsys, tiny_entry):
    runs = tmp_path / "runs"
    holder = Holder(runs / "highway-vs-grid" / tiny_entry[0])
    try:
        runner.reproduce("highway-vs-grid", out=runs, results=None, labels=tiny_entry)
    finally:
        holder.release()
    out = capsys.readouterr().out
    assert f"{tiny_entry[0]}: skipped: " in out and "being trained by" in out
    assert f"1 run(s) trained by other processes ({tiny_entry[0]})" in out
    assert not (runs / "highway-vs-grid" / tiny_entry[0] / SUMMARY).exists()
    assert (runs / "highway-vs-grid" / tiny_entry[1] / SUMMARY).is_file()
    # the same command again takes what is left
    runner.reproduce("highway-vs-grid", out=runs, results=None, labels=tiny_entry)
    assert (runs / "highway-vs-grid" / tiny_entry[0] / SUMMARY).is_file()
    assert "done already" in capsys.readouterr().out


def test_a_run_stopped_before_its_first_checkpoint_is_started_again(tmp_path, capsys,
                                                                    tiny_entry):
    runs = tmp_path / "runs"
    runner.reproduce("highway-vs-grid", out=runs, results=None, labels=tiny_entry[:1])
    run_dir = runs / "highway-vs-grid" / tiny_entry[0]
    for name in (SUMMARY, CHECKPOINT, PREVIOUS):  # its process died before any checkpoint
        (run_dir / name).unlink(missing_ok=True)
    (run_dir / "tensorboard").mkdir()
    runner.reproduce("highway-vs-grid", out=runs, results=None, labels=tiny_entry[:1])
    out = capsys.readouterr().out
    assert "stopped before its first checkpoint: started again" in out
    assert (run_dir / SUMMARY).is_file() and not (run_dir / "tensorboard").exists()
    assert len((run_dir / "command.txt").read_text().splitlines()) == 1  # a new run, not resumed


def test_reproduce_jobs_shares_the_runs_between_processes(tmp_path, capsys, monkeypatch):
    # three 3-step runs in two processes (this one and a worker): each run trained once, the
    # worker's log kept, and the figures drawn at the end over all of them
    monkeypatch.chdir(tmp_path)  # the worker inherits it: nothing lands in the checkout
    labels = [f"parity16-plain-s{seed}" for seed in (0, 1, 2)]
    code = main(["reproduce", "highway-vs-grid", "--budget", "3", "--out", "runs", "--runs",
                 ",".join(labels), "--jobs", "2"])
    out = capsys.readouterr().out
    assert code == 0 and "2 processes, " in out
    root = tmp_path / "runs" / "highway-vs-grid"
    for label in labels:
        assert (root / label / SUMMARY).is_file()
        assert len((root / label / "command.txt").read_text().splitlines()) == 1
    assert (root / "worker-1.log").is_file() and (root / "curves.png").is_file()
    record = json.loads((root / "reproduction.json").read_text())
    assert sorted(record["runs"]) == labels  # no process dropped another's record


def test_reproduce_jobs_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        main(["reproduce", "highway-vs-grid", "--jobs", "0"])
    assert "--jobs must be at least 1" in capsys.readouterr().err


def test_resuming_a_mistyped_path_makes_no_directory(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "no-such-run")]) != 0
    assert "no-such-run" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        train(tiny_config("train.max_steps=1"), resume=str(tmp_path / "no-such-run"))
    assert not (tmp_path / "no-such-run").exists()


def test_a_file_system_without_locks_trains_unlocked(tmp_path, monkeypatch):
    import errno
    import types

    from rnnlab import atomic
    from rnnlab.train.run import holder

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(atomic, "fcntl", types.SimpleNamespace(
        flock=no_locks, LOCK_EX=fcntl.LOCK_EX, LOCK_SH=fcntl.LOCK_SH, LOCK_NB=fcntl.LOCK_NB))
    with hold(tmp_path / "r"):  # not refused: the run goes on without a lock
        assert (tmp_path / "r" / LOCK).is_file()
        assert holder(tmp_path / "r") is None  # nobody can be told apart
    with atomic.exclusive(tmp_path / "record.lock"):  # a reproduction's record: unlocked too
        pass


def test_status_says_where_each_run_stands(tmp_path, capsys, tiny_entry):
    # done, training by another process, interrupted, stopped before its first checkpoint,
    # and not started, each in one line; the look changes no run directory
    from rnnlab.train.run import holder

    runs = tmp_path / "runs"
    labels = [*tiny_entry, "parity16-plain-s2", "parity16-highway-s0", "parity16-highway-s1"]
    runner.reproduce("highway-vs-grid", out=runs, results=None, labels=labels[:4])
    root = runs / "highway-vs-grid"
    (root / labels[1] / SUMMARY).unlink()  # interrupted: a checkpoint, no summary
    for name in (SUMMARY, CHECKPOINT, PREVIOUS):  # stopped before its first checkpoint
        (root / labels[2] / name).unlink(missing_ok=True)
    (root / labels[3] / SUMMARY).unlink()  # and trained by another process now
    busy = Holder(root / labels[3], how="rnnlab")
    try:
        assert f"pid {busy.process.pid} " in holder(root / labels[3])
        capsys.readouterr()
        assert main(["reproduce", "highway-vs-grid", "--status", "--out", str(runs),
                     "--runs", ",".join(labels), "--results", str(tmp_path / "none")]) == 0
        text = capsys.readouterr().out
    finally:
        busy.release()
    lines = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert text.splitlines()[0].endswith(
        "1 done, 1 interrupted, 1 stopped early, 1 training, 1 not started")
    assert "done: completed after 3 steps, valid loss " in lines[labels[0]]
    assert "interrupted (step 3 of 3, train loss " in lines[labels[1]]
    assert "min left at its recent pace" not in lines[labels[1]]  # nothing is left
    assert "the command resumes it" in lines[labels[1]]
    assert "stopped before its first checkpoint" in lines[labels[2]]
    assert f"training (pid {busy.process.pid} on " in lines[labels[3]]
    assert lines[labels[4]].endswith("not started")
    assert holder(root / labels[3]) is None  # its process ended: nobody holds it
    assert not (root / labels[4]).exists()  # the look made nothing
    # a run not started under --out whose finished twin results/ keeps: said, with its result
    runner.keep_results(root / labels[0], tmp_path / "kept" / "highway-vs-grid" / labels[4])
    text = runner.status("highway-vs-grid", out=runs, labels=labels[4:],
                         results=tmp_path / "kept")
    assert "keeps a finished one (done: completed after 3 steps" in text
    assert "which the command would replace" in text


def test_a_look_at_the_lock_does_not_make_a_start_fail(tmp_path):
    # holder() takes a shared lock for the look; a hold that comes meanwhile waits it out
    import threading

    (tmp_path / "r").mkdir()
    look = open(tmp_path / "r" / LOCK, "a+")
    fcntl.flock(look.fileno(), fcntl.LOCK_SH)
    threading.Timer(0.06, look.close).start()
    with hold(tmp_path / "r"):
        pass


def test_the_time_left_is_read_at_the_recent_pace(tmp_path):
    from rnnlab.train.run import RunDir

    run = RunDir(tmp_path / "r")
    run.create(tiny_config("train.max_steps=1000"), argv=[])
    # 10 s a step for the first 100 steps (a loaded machine), then 1 s a step
    for step, seconds in [(50, 500.0), (100, 1000.0), *((s, 1000.0 + s - 100)
                                                       for s in range(150, 451, 50))]:
        run.log({"split": "train", "step": step, "time": seconds, "loss": 2.0})
    text = runner._progress(run)
    assert text == "step 450 of 1,000, train loss 2, ~9 min left at its recent pace"
