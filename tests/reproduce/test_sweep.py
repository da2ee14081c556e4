"""Sweep plots (value against a setting, a line per network) and the grid-depth entry."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from rnnlab.reproduce import entries
from rnnlab.reproduce.runner import _merge_runs
from rnnlab.reproduce.sweep import plot, plot_all, points


def _finish(root, label, accuracy, status="completed"):
    (root / label).mkdir(parents=True)
    summary = {"status": status, "test": {"accuracy": accuracy}}
    (root / label / "summary.json").write_text(json.dumps(summary))


def test_grid_depth_sweeps_one_line_per_network_over_every_depth_and_seed():
    entry = entries.get("grid-depth")
    assert len(entry.sweeps) == 2  # addition and memorisation
    for sweep in entry.sweeps:
        assert set(sweep["lines"]) == {"tied 2-D Grid LSTM", "untied 2-D Grid LSTM",
                                       "stacked LSTM"}
        for line in sweep["lines"].values():
            depths = [entry.run(labels[0]).settings["model.num_layers"] for labels in line]
            assert depths == [1, 2, 4, 8, 12]
            for labels in line:  # one run per seed, equal but for the seed
                assert [entry.run(label).settings["train.seed"] for label in labels] == [0, 1, 2]
                assert len({entry.run(label).settings["model.num_layers"] for label in labels}) == 1
    full = entry.budgets["full"]
    tied = entry.run("add-grid-tied-L8-s0").config(full)
    untied = entry.run("add-grid-untied-L8-s0").config(full)
    stack = entry.run("add-stack-L8-s0").config(full)
    assert (tied.model.body, tied.model.tied, untied.model.tied) == ("grid", True, False)
    assert stack.model.body == "stack" and stack.model.cell == "lstm"
    assert tied.model.hidden_size == untied.model.hidden_size == stack.model.hidden_size == 64
    assert entry.run("copy-stack-L4-s1").config(full).task.name == "copy"
    assert stack.train.max_steps == 1500


def test_sweep_points_are_mean_and_std_over_the_finished_seeds(tmp_path):
    entry = entries.get("grid-depth")
    sweep = entry.sweeps[0]
    _finish(tmp_path, "add-stack-L1-s0", 0.30)
    _finish(tmp_path, "add-stack-L1-s1", 0.34)
    _finish(tmp_path, "add-stack-L4-s0", 0.50)
    _finish(tmp_path, "add-stack-L4-s1", 0.90, status="diverged")  # not counted
    _finish(tmp_path, "add-grid-tied-L2-s2", 0.40)
    measured = points(entry, tmp_path, sweep)
    stack = measured["stacked LSTM"]
    assert stack[0][:2] == (1.0, pytest.approx(0.32))
    assert stack[0][2] == pytest.approx(statistics.stdev([0.30, 0.34])) and stack[0][3] == 2
    assert stack[1] == (4.0, 0.50, 0.0, 1, 1)  # one seed counted, one diverged
    assert len(stack) == 2  # depths without a finished run are left out
    assert measured["tied 2-D Grid LSTM"] == [(2.0, 0.40, 0.0, 1, 0)]
    assert measured["untied 2-D Grid LSTM"] == []
    png = plot(entry, tmp_path, sweep, tmp_path / "out")
    assert png.is_file() and png.stat().st_size > 1000
    with open(png.with_suffix(".csv")) as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["line", "model.num_layers", "test.accuracy mean", "std", "n", "diverged"]
    stack_rows = [row for row in rows if row[0] == "stacked LSTM"]
    assert stack_rows[0][:3] == ["stacked LSTM", "1", "0.32"] and stack_rows[0][4] == "2"
    assert ["tied 2-D Grid LSTM", "2", "0.4", "0", "1", "0"] in rows
    assert ["stacked LSTM", "4", "0.5", "0", "1", "1"] in rows


def test_a_point_whose_every_seed_diverged_is_drawn_and_counted_not_dropped(tmp_path):
    entry = entries.get("grid-depth")
    sweep = entry.sweeps[0]
    for seed in (0, 1):
        _finish(tmp_path, f"add-stack-L12-s{seed}", 0.1, status="diverged")
    _finish(tmp_path, "add-stack-L1-s0", 0.30)
    stack = points(entry, tmp_path, sweep)["stacked LSTM"]
    assert stack[0] == (1.0, 0.30, 0.0, 1, 0)
    assert stack[1][0] == 12.0 and stack[1][3:] == (0, 2)
    png = plot(entry, tmp_path, sweep, tmp_path / "out")
    assert png.is_file()


def test_the_table_counts_diverged_seeds_and_the_comparison_refuses_them(tmp_path):
    from rnnlab.reproduce.table import row_value, row_values

    row = {"runs": ["a", "b", "c"], "value": "test.accuracy"}
    _finish(tmp_path, "a", 0.40)
    _finish(tmp_path, "b", 0.42)
    _finish(tmp_path, "c", 0.9, status="diverged")
    assert row_value(tmp_path, row) == "0.410 ± 0.014 (n=2 of 3, 1 diverged)"
    assert row_values(tmp_path, row) is None
    only = {"runs": ["c"], "value": "test.accuracy"}
    assert row_value(tmp_path, only) == "diverged (see docs/reproductions.md)"


def test_a_sweep_without_finished_runs_draws_nothing(tmp_path):
    entry = entries.get("grid-depth")
    assert plot_all(entry, tmp_path, tmp_path / "out") == []
    assert not (tmp_path / "out").exists()


def test_an_entry_whose_sweep_names_an_unknown_run_is_refused(monkeypatch):
    data = dict(entries.ENTRIES["grid-depth"])
    data["sweeps"] = [{**data["sweeps"][0], "lines": {"x": ["add-stack-L3"]}}]
    monkeypatch.setitem(entries.ENTRIES, "grid-depth", data)
    with pytest.raises(ValueError, match="sweep names unknown runs"):
        entries.get("grid-depth")


def test_two_processes_on_one_entry_keep_each_others_runs(tmp_path):
    path = tmp_path / "reproduction.json"
    mine = {"runs": {"a": {"status": "completed"}, "b": {"status": "stale"}}}
    path.write_text(json.dumps({"runs": {"b": {"status": "completed"}, "c": {"status": "x"}}}))
    _merge_runs(mine, path)
    assert mine["runs"] == {"a": {"status": "completed"}, "b": {"status": "completed"},
                            "c": {"status": "x"}}


def test_grid_parity_nets_have_equal_parameters_and_sweep_k():
    """The tied 1-D grid has one block at every depth; the plain nets match its count."""
    from rnnlab.train.model import count_parameters
    from rnnlab.train.trainer import build

    entry = entries.get("grid-parity")
    full = entry.budgets["full"]
    counts = {net: count_parameters(build(entry.run(f"{net}-k16-s0").config(full))[1])
              for net in ("grid-L2", "grid-L4", "grid-L8", "tanh", "relu")}
    assert counts["grid-L2"] == counts["grid-L4"] == counts["grid-L8"]
    for plain in ("tanh", "relu"):
        assert abs(counts[plain] / counts["grid-L2"] - 1) < 0.01, counts
    (sweep,) = entry.sweeps
    assert sweep["setting"] == "task.options.bits"
    for line in sweep["lines"].values():
        bits = [entry.run(labels[0]).settings["task.options"]["bits"] for labels in line]
        assert bits == [12, 16, 20, 24, 28, 32]
