"""The trainer end to end on tiny budgets: run directory, resume, NaN, stopping rules, BPTT."""

import json
import math

import pytest
import torch
from train_helpers import TEXT, read_metrics, tiny_config, without_timing

from rnnlab.train import checkpoint as ckpt
from rnnlab.train import trainer as trainer_module
from rnnlab.train.trainer import Trainer, TrainingDiverged, train


def test_a_run_directory_holds_everything(tmp_path):
    config = tiny_config("train.max_steps=6", "train.eval_every=3", f"run.dir={tmp_path / 'r'}",
                         "run.plots=true")
    run, summary = train(config, argv=["train", "--x"])
    names = {p.name for p in run.path.iterdir()}
    assert {"config.json", "command.txt", "version.json", "metrics.jsonl", "checkpoint.pt",
            "best.pt", "summary.json", "model.txt", "task.json", "curves.png"} <= names
    assert json.loads((run.path / "config.json").read_text())["model"]["hidden_size"] == 12
    assert (run.path / "command.txt").read_text().strip() == "rnnlab train --x"
    version = json.loads((run.path / "version.json").read_text())
    assert version["torch"] == torch.__version__ and "rnnlab" in version
    assert summary["status"] == "completed" and summary["steps"] == 6
    assert summary["parameters"] > 0
    assert math.isfinite(summary["valid"]["bits_per_char"])
    assert math.isfinite(summary["test"]["bits_per_char"])
    splits = [(r["split"], r["step"]) for r in read_metrics(run.path)]
    assert ("valid", 3) in splits and ("valid", 6) in splits and ("test", 6) in splits
    payload = torch.load(run.path / "checkpoint.pt", weights_only=True)
    assert payload["counters"]["step"] == 6
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]


def test_without_checkpoints_the_same_run_writes_neither_checkpoint(tmp_path, monkeypatch):
    """train.checkpoints=false (study trials): no checkpoint.pt or best.pt, the same numbers;
    metrics.jsonl is fsync'ed at each checkpoint, not at each record."""
    import os

    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    common = ["train.max_steps=6", "train.eval_every=3", "train.log_every=1",
              "train.checkpoint_every=none"]
    with_ckpt, a = train(tiny_config(*common, f"run.dir={tmp_path / 'a'}"), argv=[])
    metrics_synced = synced.count("metrics.jsonl")
    synced.clear()
    without, b = train(tiny_config(*common, "train.checkpoints=false",
                                   f"run.dir={tmp_path / 'b'}"), argv=[])
    assert {"checkpoint.pt", "best.pt"} <= {p.name for p in with_ckpt.path.iterdir()}
    assert not {"checkpoint.pt", "best.pt"} & {p.name for p in without.path.iterdir()}
    assert (a["valid"], a["test"], a["best_step"]) == (b["valid"], b["test"], b["best_step"])
    records = read_metrics(with_ckpt.path)
    assert without_timing(records) == without_timing(read_metrics(without.path))
    # checkpoints at steps 3 and 6 (the evaluations): the metrics are synced with each of them
    assert metrics_synced == 2 < len(records)
    assert "metrics.jsonl" not in synced


def _crash_at(monkeypatch, step):
    """Make the trainer raise (as a kill would stop it) when it is about to take ``step``."""
    original = Trainer.train_step

    def train_step(self, batch):
        if self.counters.step + 1 == step:
            raise RuntimeError("simulated kill")
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", train_step)


@pytest.mark.parametrize(
    "task",
    [
        # a stream task: the carried truncated-BPTT state must be restored too
        TEXT + ["model.num_layers=2", "model.dropout=0.3", "train.input_noise=0.1"],
        # a generated task with padding, masks and a data position from `start`
        ["task.name=arithmetic", "task.digits=2", "task.eval_batch_size=16",
         "model.dropout=0.2", "train.optimizer=sgd", "train.momentum=0.9",
         "train.nesterov=true", "train.lr=0.1"],
    ],
    ids=["text", "arithmetic"],
)
def test_a_killed_run_resumes_bit_for_bit(tmp_path, monkeypatch, task):
    settings = ["train.max_steps=14", "train.eval_every=4", "train.checkpoint_every=3",
                "train.log_every=2"]
    whole_dir, killed_dir = tmp_path / "whole", tmp_path / "killed"
    _, whole = train(tiny_config(*settings, f"run.dir={whole_dir}", task=task))

    with monkeypatch.context() as patch:
        _crash_at(patch, 11)  # last checkpoint at step 9; step 10 was logged and is redone
        with pytest.raises(RuntimeError, match="simulated kill"):
            train(tiny_config(*settings, f"run.dir={killed_dir}", task=task))
    assert ckpt.load(killed_dir / "checkpoint.pt")["counters"]["step"] == 9
    assert not (killed_dir / "summary.json").exists()

    config = tiny_config(*settings, f"run.dir={killed_dir}", task=task)
    _, resumed = train(config, resume=str(killed_dir))

    a = ckpt.load(whole_dir / "checkpoint.pt")
    b = ckpt.load(killed_dir / "checkpoint.pt")
    assert a["counters"]["step"] == b["counters"]["step"] == 14
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for name, tensor in a["best_model"].items():
        assert torch.equal(tensor, b["best_model"][name]), name
    assert without_timing(read_metrics(whole_dir)) == without_timing(read_metrics(killed_dir))
    for key in ("valid", "test", "best_valid", "best_step", "steps", "tokens"):
        assert whole[key] == resumed[key], key
    assert len((killed_dir / "command.txt").read_text().splitlines()) == 2


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    config = tiny_config("train.max_steps=20", "train.checkpoint_every=2",
                         "train.eval_every=100", f"run.dir={tmp_path / 'r'}")
    original = Trainer.train_step

    def poisoned(self, batch):
        if self.counters.step + 1 == 5:
            batch.inputs = batch.inputs.clone()
            self.model.head.bias.data[0] = float("nan")
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    with pytest.raises(TrainingDiverged, match="step 5") as error:
        train(config)
    assert "checkpoint (step 4)" in str(error.value)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "diverged" and "nan" in summary["message"]
    kept = ckpt.load(tmp_path / "r" / "checkpoint.pt")
    assert kept["counters"]["step"] == 4
    assert all(torch.isfinite(t).all() for t in kept["model"].values())


def test_time_budget_stops_training(tmp_path):
    config = tiny_config("train.max_steps=100000", "train.budget_seconds=0.5",
                         "train.eval_every=1000000", f"run.dir={tmp_path / 'r'}")
    _, summary = train(config)
    assert summary["status"] == "budget"
    assert 0 < summary["steps"] < 100000
    assert summary["train_seconds"] >= 0.5


def test_early_stopping_after_patience(tmp_path, monkeypatch):
    values = iter([3.0, 2.0, 2.5, 2.4, 2.6, 1.0, 1.0, 1.0])

    def fake_evaluate(self, split, *, full=False, count=False):
        if full:
            result = {"loss": 1.0, "bits_per_char": 1.0}
        else:
            value = next(values)
            result = {"loss": value, "bits_per_char": value}
        return (result, "1 token") if count else result

    monkeypatch.setattr(Trainer, "evaluate", fake_evaluate)
    config = tiny_config("train.max_steps=100", "train.eval_every=2", "train.patience=3",
                         f"run.dir={tmp_path / 'r'}")
    _, summary = train(config)
    assert summary["status"] == "early_stopped"
    assert summary["steps"] == 10  # evaluations at 2, 4 (best), 6, 8, 10: three without gain
    assert summary["best_valid"] == 2.0 and summary["best_step"] == 4


@pytest.mark.parametrize("mode", ["truncated", "full"])
def test_state_is_carried_only_in_truncated_bptt(tmp_path, monkeypatch, mode):
    seen = []
    original = trainer_module.SequenceModel.forward

    def forward(self, inputs, state=None, lengths=None, input_noise=0.0):
        if self.training:
            seen.append(state)
        return original(self, inputs, state, lengths, input_noise)

    monkeypatch.setattr(trainer_module.SequenceModel, "forward", forward)
    config = tiny_config("train.max_steps=3", "train.eval_every=100",
                         f"train.bptt={mode}", f"run.dir={tmp_path / 'r'}")
    train(config)
    assert seen[0] is None  # the first batch of an epoch starts from zeros
    if mode == "full":
        assert all(state is None for state in seen)
    else:
        assert all(state is not None for state in seen[1:])
        assert all(not t.requires_grad for state in seen[1:] for t in state)  # detached


def test_zaremba_schedule_changes_the_learning_rate_per_epoch(tmp_path):
    config = tiny_config("train.optimizer=sgd", "train.lr=1.0", "train.schedule=zaremba",
                         "train.lr_decay=2", "train.decay_after=2", "train.steps_per_epoch=2",
                         "train.max_steps=8", "train.log_every=1", "train.eval_every=100",
                         f"run.dir={tmp_path / 'r'}")
    train(config)
    lrs = [r["lr"] for r in read_metrics(tmp_path / "r") if r["split"] == "train"]
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_starting_twice_in_one_directory_is_refused(tmp_path):
    config = tiny_config("train.max_steps=1", f"run.dir={tmp_path / 'r'}")
    train(config)
    with pytest.raises(FileExistsError, match="--resume"):
        train(config)


def test_generated_tasks_get_nominal_epochs_and_seq_len_reaches_the_task(tmp_path):
    # xml fixes its sequence length when it is made; epochs of generated data are 100 steps
    config = tiny_config("train.epochs=1", "task.eval_max_batches=1",
                         f"run.dir={tmp_path / 'r'}",
                         task=["task.name=xml", "task.seq_len=12", "task.valid_size=8",
                               "task.test_size=8"])
    _, summary = train(config)
    assert summary["steps"] == trainer_module.GENERATED_EPOCH
    assert summary["epochs"] == 1.0
    assert summary["tokens"] == 100 * 4 * 12
    valid = [r for r in read_metrics(tmp_path / "r") if r["split"] == "valid"]
    assert [r["step"] for r in valid] == [100, 100]  # at the epoch's end, then the final one
