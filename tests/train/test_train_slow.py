"""Longer end-to-end checks (pytest -m slow): a real SIGKILL, distributed resume, the seed
experiment on a short budget."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import TEXT, TINY, read_metrics, without_timing

from rnnlab.cli.main import main
from rnnlab.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.slow


def options(*items):
    return [f"--{item}" for item in items]


def assert_same_run(a: Path, b: Path):
    one, two = ckpt.load(a / "checkpoint.pt"), ckpt.load(b / "checkpoint.pt")
    assert one["counters"]["step"] == two["counters"]["step"]
    for name, tensor in one["model"].items():
        assert torch.equal(tensor, two["model"][name]), name
    assert without_timing(read_metrics(a)) == without_timing(read_metrics(b))


def start_and_kill(command, run_dir: Path, after_step: int):
    """Start ``command`` in its own process group; SIGKILL the group once run_dir holds a
    checkpoint at or after ``after_step``."""
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    step = 0
    while step < after_step and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
        if (run_dir / "checkpoint.pt").exists():
            step = ckpt.load(run_dir / "checkpoint.pt")["counters"]["step"]
    assert process.poll() is None, "the run ended before it could be killed"
    # torchrun may start its workers in sessions of their own: kill every descendant too.
    family = descendants(process.pid)
    os.killpg(process.pid, signal.SIGKILL)
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()
    time.sleep(0.5)
    assert not (run_dir / "summary.json").exists()


def descendants(pid: int) -> list[int]:
    """The process ids below ``pid`` (from /proc), children before grandchildren."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    settings = [*TEXT, *TINY, "model.num_layers=2", "model.dropout=0.2", "train.max_steps=80",
                "train.checkpoint_every=5", "train.eval_every=20", "train.log_every=5"]
    killed = tmp_path / "killed"
    start_and_kill([sys.executable, "-m", "rnnlab", "train",
                    *options(*settings, f"run.dir={killed}")], killed, after_step=23)
    assert ckpt.load(killed / "checkpoint.pt")["counters"]["step"] < 80

    assert main(["train", "--resume", str(killed), "--quiet"]) == 0
    whole = tmp_path / "whole"
    assert main(["train", *options(*settings, f"run.dir={whole}")]) == 0
    assert_same_run(whole, killed)


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "rnnlab", "train"]


def torchrun(*args):
    result = subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, timeout=300,
                            env=ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_killed_distributed_run_resumes_exactly(tmp_path):
    settings = [*TEXT, *TINY, "model.dropout=0.3", "train.input_noise=0.1", "train.max_steps=60",
                "train.eval_every=10", "train.checkpoint_every=3", "train.log_every=3"]
    killed = tmp_path / "killed"
    start_and_kill([*TORCHRUN, *options(*settings, f"run.dir={killed}")], killed, after_step=15)
    torchrun("--resume", str(killed))
    torchrun(*options(*settings, f"run.dir={tmp_path / 'whole'}"))
    assert_same_run(tmp_path / "whole", killed)


def test_seed_experiment_on_a_short_budget(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--budget-seconds=4", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "| lstm | 3x128 lstm stack |" in text and "| grid | 3x" in text
    record = json.loads((out / "compare.json").read_text())
    lstm, grid = record["configurations"]
    assert abs(grid["parameters"] - lstm["parameters"]) / lstm["parameters"] < 0.1
    for row in record["rows"]:
        assert row["status"] == "budget" and row["valid"] > 0 and row["test"] > 0
    assert (out / "curves.png").is_file() and (out / "curves_by_step.png").is_file()
