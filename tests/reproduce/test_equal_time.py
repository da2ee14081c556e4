"""The equal-time view: learning curves against measured seconds per step (seed-char)."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from rnnlab.reproduce import entries
from rnnlab.reproduce.equal_time import STEP_TIME, at_equal_time, curve, interpolate, measure, plot
from rnnlab.train.config import ExperimentConfig, apply_overrides


def _run(root, label, values, every=100):
    """A kept run whose periodic validations are ``values`` at steps every, 2·every, …, plus
    the final report's two rows (which the view must not read)."""
    (root / label).mkdir(parents=True)
    rows = [{"split": "train", "step": 10, "bits_per_char": 9.0}]
    rows += [{"split": "valid", "step": every * (i + 1), "bits_per_char": v}
             for i, v in enumerate(values)]
    last = every * len(values)
    rows += [{"split": "valid", "step": last, "bits_per_char": 0.1, "final": True},
             {"split": "valid", "step": last, "bits_per_char": 0.2, "final": True,
              "parameters": "last"}]
    (root / label / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


VIEW = {"title": "toy", "file": "equal-time-toy.png", "value": "bits_per_char",
        "ylabel": "validation bits/char",
        "networks": {"fast": ["lstm-s0", "lstm-s1", "lstm-s2"],
                     "slow": ["grid-s0", "grid-s1", "grid-s2"]}}


def _toy(root):
    """The fast network: 1 s a step, value 3 − step/1000; the slow one: 2 s a step, learns 1.5×
    as fast per step (3 − 1.5·step/1000); seeds shifted by ±0.01."""
    for seed, shift in enumerate((-0.01, 0.0, 0.01)):
        _run(root, f"lstm-s{seed}", [3 - s / 1000 + shift for s in range(100, 1001, 100)])
        _run(root, f"grid-s{seed}", [3 - 1.5 * s / 1000 + shift for s in range(100, 1001, 100)])
    return {"lstm-s0": 1.0, "grid-s0": 2.0}


def test_a_curve_is_the_periodic_validations_without_the_final_report(tmp_path):
    _run(tmp_path, "r", [2.0, 1.5, 1.2])
    assert curve(tmp_path / "r") == [(100, 2.0), (200, 1.5), (300, 1.2)]
    assert curve(tmp_path / "missing") == []


def test_interpolation_is_linear_between_evaluations_and_none_outside():
    points = [(100, 2.0), (200, 1.0), (300, 0.5)]
    assert interpolate(points, 150) == pytest.approx(1.5)
    assert interpolate(points, 250) == pytest.approx(0.75)
    assert interpolate(points, 300) == 0.5 and interpolate(points, 100) == 2.0
    assert interpolate(points, 50) is None and interpolate(points, 301) is None


def test_networks_are_read_at_the_fastest_networks_whole_budget(tmp_path):
    seconds = _toy(tmp_path)
    fast, slow = at_equal_time(tmp_path, VIEW, seconds)
    # t* = min(1000 steps × 1 s, 1000 × 2 s) = 1000 s: fast at its step 1000, slow at 500
    assert fast["t_star"] == slow["t_star"] == 1000
    assert fast["steps"] == 1000 and slow["steps"] == 500
    assert fast["mean"] == pytest.approx(2.0) and slow["mean"] == pytest.approx(2.25)
    assert fast["n"] == slow["n"] == 3
    assert fast["std"] == pytest.approx(statistics.stdev([1.99, 2.0, 2.01]))
    # Welch against the first network: slow is worse (higher) by 0.25 at equal time, though
    # it is ahead at equal steps (1.5 vs 2.0 at step 1000)
    assert slow["diff"] == pytest.approx(0.25) and slow["p"] < 0.001 and "p" not in fast


def test_the_view_needs_every_networks_step_time(tmp_path):
    _toy(tmp_path)
    with pytest.raises(KeyError, match="grid-s0"):
        at_equal_time(tmp_path, VIEW, {"lstm-s0": 1.0})


def test_plots_and_csvs_are_written_from_the_kept_step_times(tmp_path, monkeypatch):
    seconds = _toy(tmp_path)
    monkeypatch.setitem(entries.ENTRIES, "seed-char",
                        {**entries.ENTRIES["seed-char"], "equal_time": [VIEW]})
    entry = entries.get("seed-char")
    assert plot(entry, tmp_path, tmp_path / "out") == []  # no step-time.json: nothing drawn
    record = {"machine": {"cpu": "Test CPU"}, "threads": 1, "seconds_per_step": seconds}
    (tmp_path / STEP_TIME).write_text(json.dumps(record))
    written = plot(entry, tmp_path, tmp_path / "out")
    assert [p.name for p in written] == ["equal-time-toy.png", "equal-time-toy-at-t.csv"]
    assert written[0].stat().st_size > 1000
    curves = list(csv.reader(open(tmp_path / "out" / "equal-time-toy.csv")))
    slow_rows = [r for r in curves[1:] if r[0] == "slow"]
    assert slow_rows[0][:3] == ["slow", "200.0", "100"]  # step 100 at 2 s a step
    assert float(slow_rows[0][3]) == pytest.approx(2.85)
    at_t = list(csv.reader(open(written[1])))
    assert at_t[1][0] == "fast" and at_t[2][0] == "slow" and float(at_t[2][4]) == pytest.approx(
        2.25)


def test_seed_chars_views_name_its_runs_and_an_unknown_run_is_refused(monkeypatch):
    entry = entries.get("seed-char")
    assert [v["file"] for v in entry.equal_time] == ["equal-time-shakespeare.png",
                                                     "equal-time-ptb.png"]
    assert entry.equal_time[1]["networks"]["3-layer stacked LSTM"] == [
        "ptb-lstm-s0", "ptb-lstm-s1", "ptb-lstm-s2"]
    data = dict(entries.ENTRIES["seed-char"])
    data["equal_time"] = [{**data["equal_time"][0], "networks": {"x": ["nope-s0"]}}]
    monkeypatch.setitem(entries.ENTRIES, "seed-char", data)
    with pytest.raises(ValueError, match="equal-time view names unknown runs"):
        entries.get("seed-char")


def test_measure_times_every_networks_training_step_in_rounds(tmp_path):
    configs = {}
    for hidden in (8, 16):
        config = ExperimentConfig()
        apply_overrides(config, ["task.name=copy", "task.length=4", "task.valid_size=16",
                                 "task.test_size=16", f"model.hidden_size={hidden}",
                                 "task.batch_size=4"])
        configs[f"h{hidden}"] = config
    seen = []
    times = measure(configs, steps=2, rounds=3, warmup=1,
                    progress=lambda r, last: seen.append((r, sorted(last))))
    assert sorted(times) == ["h16", "h8"]
    assert all(len(v) == 3 and all(t > 0 for t in v) for v in times.values())
    assert seen == [(0, ["h16", "h8"]), (1, ["h16", "h8"]), (2, ["h16", "h8"])]
