"""Model selection cannot hide learning: it follows the validation loss by default, ties of a
metric stuck at its floor are broken by the loss, and the final parameters are always reported
beside the selected ones."""

from __future__ import annotations

import pytest
import torch
from train_helpers import full_split, scripted_validation, tiny_config

from rnnlab.train.trainer import Trainer, train


@pytest.mark.parametrize("select", ["loss", "metric"])
def test_a_metric_at_its_floor_does_not_freeze_the_selection(tmp_path, monkeypatch, select):
    # bits_per_char is lower-better: a constant 9.0 is a floor that never improves. Before the
    # fix the first validation's parameters (step 3) were kept and reported.
    snapshots = scripted_validation(monkeypatch, [3.0, 2.0, 1.5, 1.7], primary=9.0)
    config = tiny_config("train.max_steps=12", "train.eval_every=3", f"train.select={select}",
                         f"run.dir={tmp_path / 'r'}")
    run, summary = train(config)
    assert summary["best_step"] == 9 and summary["best_valid_loss"] == 1.5
    assert summary["selection"] == select
    for split in ("valid", "test"):
        selected = full_split(config, snapshots[9], split)["bits_per_char"]
        final = full_split(config, snapshots[12], split)["bits_per_char"]
        assert summary[split]["bits_per_char"] == pytest.approx(selected, rel=1e-5)
        assert summary["last"][split]["bits_per_char"] == pytest.approx(final, rel=1e-5)
    best = torch.load(run.path / "best.pt", weights_only=True)
    assert best["step"] == 9


def test_select_metric_prefers_the_metric_over_the_loss(tmp_path, monkeypatch):
    # The metric improves at step 6 while the loss rises: "metric" keeps step 6, "loss" step 3.
    values = None  # set per run below
    original = Trainer.evaluate

    def evaluate_(self, split, *, full=False, count=False):
        result = original(self, split, full=full, count=count)
        if not full:
            v = result[0] if count else result
            v["bits_per_char"], v["loss"] = next(values)
        return result

    monkeypatch.setattr(Trainer, "evaluate", evaluate_)
    picked = {}
    for select in ("metric", "loss"):
        values = iter([(5.0, 1.0), (4.0, 2.0), (4.0, 3.0), (6.0, 1.5)])
        config = tiny_config("train.max_steps=12", "train.eval_every=3",
                             f"train.select={select}", f"run.dir={tmp_path / select}")
        picked[select] = train(config)[1]["best_step"]
    assert picked == {"metric": 6, "loss": 3}


def test_early_stopping_counts_on_the_selection_criterion(tmp_path, monkeypatch):
    # loss keeps falling, metric flat: no early stop with select=loss
    scripted_validation(monkeypatch, [5.0, 4.0, 3.0, 2.0, 1.0], primary=9.0)
    config = tiny_config("train.max_steps=15", "train.eval_every=3", "train.patience=2",
                         f"run.dir={tmp_path / 'r'}")
    assert train(config)[1]["status"] == "completed"


def test_the_summary_records_the_machine(tmp_path):
    config = tiny_config("train.max_steps=2", f"run.dir={tmp_path / 'r'}")
    summary = train(config)[1]
    machine = summary["machine"]
    assert machine["cpu"] and machine["threads"] >= 1 and "load_end" in machine
    assert set(summary["last"]) == {"valid", "test"}


def test_a_retired_field_of_an_old_run_directory_still_loads():
    from rnnlab.train.config import ExperimentConfig, from_dict, to_dict

    data = to_dict(ExperimentConfig())
    data["train"]["evaluate_last"] = True
    assert from_dict(data).train.select == "loss"
