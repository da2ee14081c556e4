"""Data-parallel training with two processes (torch.distributed, gloo on the CPU)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from train_helpers import TEXT, TINY, read_metrics, tiny_config

from rnnlab.train import checkpoint as ckpt
from rnnlab.train.trainer import train

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ["train.max_steps=6", "train.eval_every=3", "train.optimizer=sgd", "train.lr=0.5"]


def test_two_processes_agree_and_match_one_process(tmp_path):
    run_dir = tmp_path / "ddp"
    args = [f"--{item}" for item in (*TEXT, *TINY, *SETTINGS, f"run.dir={run_dir}")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "rnnlab", "train", *args],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2
    # every parameter equal on both ranks, to the last bit
    assert summary["parameter_spread_across_ranks"] == 0.0
    # only rank 0 wrote: one command line, one record per (split, step)
    assert len((run_dir / "command.txt").read_text().splitlines()) == 1
    keys = [(r["split"], r["step"], r.get("final", False)) for r in read_metrics(run_dir)]
    assert len(keys) == len(set(keys))

    # each rank took half of every batch's sequences and the gradients were averaged, so the
    # result is the single-process one up to float rounding
    _, single = train(tiny_config(*SETTINGS, f"run.dir={tmp_path / 'single'}"))
    two = ckpt.load(run_dir / "checkpoint.pt")["model"]
    one = ckpt.load(tmp_path / "single" / "checkpoint.pt")["model"]
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5)
    assert summary["tokens"] == single["tokens"]


def test_each_rank_takes_a_disjoint_block_of_sequences():
    import pytest

    from rnnlab.tasks.base import Batch
    from rnnlab.train.distributed import World, shard

    inputs = torch.arange(24).view(3, 8)  # (T, B)
    batch = Batch(inputs, inputs + 100, mask=inputs % 2 == 0, lengths=torch.arange(8))
    parts = [shard(batch, World(rank, 2)) for rank in range(2)]
    assert torch.equal(torch.cat([p.inputs for p in parts], 1), inputs)
    assert torch.equal(torch.cat([p.targets for p in parts], 1), inputs + 100)
    assert torch.equal(torch.cat([p.lengths for p in parts]), torch.arange(8))
    assert parts[0].inputs.shape == (3, 4)
    classes = Batch(torch.zeros(3, 8, 2), torch.arange(8))  # Classes targets are (B,)
    assert shard(classes, World(1, 2)).targets.tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="multiple of 3"):
        shard(batch, World(0, 3))
