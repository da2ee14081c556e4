"""results/: finished runs of the full budget are kept small in the repository, and the README
table and the comparisons of docs/reproductions.md are exactly what results/ gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnlab.reproduce import entries, runner, table

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"


def test_the_readme_table_is_what_results_gives():
    expected = table.build_table(RESULTS)
    shown = table.between(REPO / "README.md", table.BEGIN, table.END)
    assert shown == expected, (
        "README's results table differs from results/: run `rnnlab reproduce --table "
        "--readme README.md --docs docs/reproductions.md`"
    )


def test_the_comparisons_of_the_docs_are_what_results_gives():
    expected = table.build_comparisons(RESULTS)
    shown = table.between(REPO / "docs" / "reproductions.md", table.COMPARE_BEGIN,
                          table.COMPARE_END)
    assert shown == expected


def test_every_kept_run_is_small_complete_and_of_an_entry():
    if not RESULTS.is_dir():
        pytest.skip("no results kept yet")
    for entry_dir in sorted(p for p in RESULTS.iterdir() if p.is_dir() and p.name != "studies"):
        entry = entries.get(entry_dir.name)
        labels = {run.label for run in entry.runs}
        for run_dir in sorted(p for p in entry_dir.iterdir()
                              if p.is_dir() and p.name != "gradflow"):
            assert run_dir.name in labels, run_dir
            files = {p.name for p in run_dir.iterdir()}
            assert {"config.json", "summary.json", "metrics.jsonl"} <= files, run_dir
            assert not any(name.endswith(".pt") for name in files), run_dir
            size = sum(p.stat().st_size for p in run_dir.iterdir())
            assert size <= runner.MAX_RESULT_BYTES, (run_dir, size)
            summary = json.loads((run_dir / "summary.json").read_text())
            assert "last" in summary and summary.get("selection"), run_dir
            assert summary["machine"]["cpu"], run_dir


def test_every_kept_study_report_is_complete_and_agrees_with_its_trials():
    """results/studies/NAME: a `rnnlab study report` folder kept without its storage; its
    counts are those of its trials.csv, and the report says them."""
    import csv

    studies = RESULTS / "studies"
    if not studies.is_dir():
        pytest.skip("no study kept yet")
    for folder in sorted(p for p in studies.iterdir() if p.is_dir()):
        for name in ("report.md", "study.json", "trials.csv", "welch.csv", "boxplot.png"):
            assert (folder / name).is_file(), (folder, name)
        study = json.loads((folder / "study.json").read_text())
        rows = list(csv.DictReader(open(folder / "trials.csv", encoding="utf-8")))
        report = (folder / "report.md").read_text(encoding="utf-8")
        for task, cells in study["tasks"].items():
            for cell, summary in cells.items():
                mine = [r for r in rows if r["task"] == task and r["cell"] == cell]
                assert len(mine) == summary["complete"], (folder, task, cell)
                if mine:
                    test = [float(r["test"]) for r in mine]
                    assert abs(sum(test) / len(test) - summary["test"]["mean"]) < 1e-9
        assert f"Study `{study['name']}`" in report


def test_a_full_budget_run_is_kept_and_its_row_filled(tmp_path, monkeypatch):
    data = dict(entries.ENTRIES["highway-vs-grid"])
    data["budgets"] = {"full": {"train.max_steps": 3}, "small": {"train.max_steps": 2}}
    monkeypatch.setitem(entries.ENTRIES, "highway-vs-grid", data)
    results = tmp_path / "results"
    labels = [f"parity16-plain-s{seed}" for seed in (0, 1, 2)]
    runner.reproduce("highway-vs-grid", out=tmp_path / "runs", results=results, labels=labels)
    for label in labels:
        kept = results / "highway-vs-grid" / label
        assert (kept / "summary.json").is_file() and not list(kept.glob("*.pt"))
    text = table.build_table(results, only=["highway-vs-grid"])
    line = next(x for x in text.splitlines() if "parity16 test accuracy, plain" in x)
    assert "(n=3)" in line and "max_steps=3" in text
    assert "not run" in next(x for x in text.splitlines() if ", highway |" in x)
    # a second call keeps what is finished and trains nothing
    runner.reproduce("highway-vs-grid", out=tmp_path / "runs", results=results, labels=labels)
    # a learning curve that makes a run too large is left out; other large files are refused
    run_dir = tmp_path / "runs" / "highway-vs-grid" / labels[0]
    (run_dir / "curves.png").write_bytes(b"x" * runner.MAX_RESULT_BYTES)
    runner.keep_results(run_dir, tmp_path / "slim")
    assert (tmp_path / "slim" / "summary.json").is_file()
    assert not (tmp_path / "slim" / "curves.png").exists()
    big = run_dir / "metrics.jsonl"
    big.write_text("x" * (runner.MAX_RESULT_BYTES + 1))
    with pytest.raises(ValueError, match="metrics.jsonl"):
        runner.keep_results(big.parent, tmp_path / "elsewhere")


def test_runs_trained_under_two_out_folders_are_all_kept_drawn_and_recorded(tmp_path,
                                                                           monkeypatch):
    # seed 0 on one machine (one --out), seed 1 on another: results/NAME's figure and record
    # hold both, not only the second machine's run
    from rnnlab.train import plots

    data = dict(entries.ENTRIES["highway-vs-grid"])
    data["budgets"] = {"full": {"train.max_steps": 2}, "small": {"train.max_steps": 2}}
    monkeypatch.setitem(entries.ENTRIES, "highway-vs-grid", data)
    drawn: dict = {}
    real = plots.learning_curves

    def recording(runs, path, *args, **kwargs):
        drawn[Path(path)] = sorted(run.path.name for run in runs)
        return real(runs, path, *args, **kwargs)

    monkeypatch.setattr(plots, "learning_curves", recording)
    results = tmp_path / "results"
    labels = ["parity16-plain-s0", "parity16-plain-s1"]
    for k, label in enumerate(labels):
        runner.reproduce("highway-vs-grid", out=tmp_path / f"machine{k}", results=results,
                         labels=[label])
    kept = results / "highway-vs-grid"
    assert drawn[kept / "curves.png"] == labels  # the kept figure: both seeds
    assert drawn[tmp_path / "machine1" / "highway-vs-grid" / "curves.png"] == labels[1:]
    assert (kept / "curves.png").is_file()
    record = json.loads((kept / "reproduction.json").read_text())
    assert sorted(record["runs"]) == labels


def test_the_kept_record_keeps_the_runs_kept_from_another_run_directory(tmp_path):
    # seed 0 trained on one machine, seed 1 on another: the second --out's record knows only
    # seed 1, yet results/NAME/reproduction.json still names both while both are kept there
    kept = tmp_path / "results" / "entry"
    for label in ("a-s0", "a-s1", "gone-s0"):
        (kept / label).mkdir(parents=True)
        (kept / label / "summary.json").write_text("{}")
    (kept / "gone-s0" / "summary.json").unlink()  # its results were removed since
    earlier = {"command": "first", "runs": {"a-s0": {"wall_seconds": 1.0},
                                            "gone-s0": {"wall_seconds": 3.0}}}
    (kept / "reproduction.json").write_text(json.dumps(earlier))
    record = {"command": "second", "runs": {"a-s1": {"wall_seconds": 2.0}}}
    runner._keep_record(record, kept)
    written = json.loads((kept / "reproduction.json").read_text())
    assert written["command"] == "second"
    assert written["runs"] == {"a-s0": {"wall_seconds": 1.0}, "a-s1": {"wall_seconds": 2.0}}
    assert record["runs"] == {"a-s1": {"wall_seconds": 2.0}}  # the --out record unchanged
    # a run trained again here replaces its earlier entry; an unreadable record is rewritten
    runner._keep_record({"command": "third", "runs": {"a-s0": {"wall_seconds": 5.0}}}, kept)
    assert json.loads((kept / "reproduction.json").read_text())["runs"]["a-s0"] == {
        "wall_seconds": 5.0}
    (kept / "reproduction.json").write_text("{not json")
    runner._keep_record(record, kept)
    assert json.loads((kept / "reproduction.json").read_text())["runs"] == record["runs"]


def test_welch_comparison_verdicts(tmp_path):
    entry = entries.get("forget-bias")
    root = tmp_path / "forget-bias"

    def write(label, accuracy):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / "summary.json").write_text(json.dumps(
            {"status": "completed", "test": {"accuracy": accuracy, "sequence_accuracy": 0.0}}))

    comparison = entry.comparisons[0]  # symbol accuracy, bias 1 vs bias 0, higher is better
    for seed, (one, zero) in enumerate([(0.90, 0.50), (0.92, 0.52), (0.91, 0.49)]):
        write(f"fb1-s{seed}", one)
        write(f"fb0-s{seed}", zero)
    line = table.comparison_line(entry, root, comparison)
    assert line.endswith("| A beats B |") and "[0." in line
    for seed, (one, zero) in enumerate([(0.50, 0.90), (0.52, 0.92), (0.49, 0.91)]):
        write(f"fb1-s{seed}", one)
        write(f"fb0-s{seed}", zero)
    assert "the opposite" in table.comparison_line(entry, root, comparison)
    for seed, (one, zero) in enumerate([(0.5, 0.6), (0.7, 0.5), (0.6, 0.6)]):
        write(f"fb1-s{seed}", one)
        write(f"fb0-s{seed}", zero)
    assert table.comparison_line(entry, root, comparison).endswith("| not significant |")
    test = table.welch([1.0, 2.0, 3.0], [1.5, 2.5, 3.5])
    assert test["low"] < -0.5 < test["high"] and 0.5 < test["p"] < 1.0
