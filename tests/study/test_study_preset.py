"""The greff-jsb preset end to end at a tiny size (JSB Chorales, 1 epoch of a few updates,
hidden size 2-4), its report, and a killed study resumed without repeating a finished trial."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from rnnlab.cli.main import main
from rnnlab.study.presets import PRESETS, preset
from rnnlab.study.space import GREFF_CELLS, PAPER_SPACE, load_space
from rnnlab.trials import open_storage

REPO = Path(__file__).resolve().parents[2]
JSB = Path("polyphonic_music") / "jsb-chorales-quarter.json"


@pytest.fixture
def data(monkeypatch):
    """RNNLAB_DATA pointing at the shared data with JSB Chorales (skip without it)."""
    for candidate in (os.environ.get("RNNLAB_DATA"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / JSB).is_file():
            monkeypatch.setenv("RNNLAB_DATA", str(candidate))
            return Path(candidate)
    pytest.skip(f"the shared data folder with {JSB} was not found (set RNNLAB_DATA)")


def tiny(tmp_path: Path, *extra: str, steps: int = 8) -> list[str]:
    """``rnnlab study run --preset greff-jsb`` shrunk: 2 trials per cell, 1 epoch of ``steps``
    updates, hidden size 2-4; everything else (cells, space, patience) the preset's."""
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"space": {"hidden_size": {"low": 2, "high": 4}}}))
    return ["study", "run", "--preset", "greff-jsb", "--trials", "2", "--epochs", "1",
            "--config", str(config), "--set", f"train.steps_per_epoch={steps}",
            "--dir", str(tmp_path / "study"), "--quiet", *extra]


def complete(storage, name):
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    return [t for t in trials if t.state == TrialState.COMPLETE]


def test_the_preset_is_greffs_study_budgeted_in_epochs():
    greff = preset("greff-jsb")
    assert greff.name == "greff-jsb" and greff.tasks == ("jsb",) and greff.cells == GREFF_CELLS
    assert greff.trials >= 30 and greff.workers == 2
    settings = greff.all_settings()
    assert settings["train.epochs"] == 100 and settings["train.patience"] == 10
    assert settings["train.optimizer"] == "sgd" and settings["task.batch_size"] == 1
    space = load_space(None, settings=settings)
    assert space.space == PAPER_SPACE  # the paper's ranges, untouched
    for chosen in PRESETS.values():  # no preset budgets a trial in seconds
        assert not any("seconds" in key for key in chosen.all_settings())
    with pytest.raises(ValueError, match="unknown study preset 'greff'; the presets are quick"):
        preset("greff")


def test_a_time_budget_is_refused_in_one_line(tmp_path, capsys):
    code = main(tiny(tmp_path, "--set", "train.budget_seconds=5"))
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "budgeted in epochs or steps, not seconds" in err and "train.epochs" in err
    assert not (tmp_path / "study" / "trials.journal").exists()


def test_the_preset_runs_end_to_end_and_reports_beside_the_paper(tmp_path, data, capsys):
    assert main(tiny(tmp_path, "--workers", "2")) == 0
    out = capsys.readouterr().out
    assert "study greff-jsb: 9 studies x 2 trials settled" in out
    storage = open_storage(None, tmp_path / "study")
    for cell in GREFF_CELLS:
        trials = complete(storage, f"greff-jsb.jsb.{cell}")
        assert len(trials) == 2
        assert all(t.user_attrs["epochs"] == 1 and 2 <= t.params["hidden_size"] <= 4
                   for t in trials)
    stored = optuna.load_study(study_name="greff-jsb.jsb.nfg", storage=storage).user_attrs
    assert stored["space"]["settings"]["train.epochs"] == 1  # --epochs over the preset's 100
    assert stored["space"]["settings"]["train.patience"] == 10  # the preset's
    assert "train.budget_seconds" not in stored["space"]["settings"]

    report = tmp_path / "study" / "report"
    for name in ("boxplot.png", "welch.csv", "importance.json", "importance.png",
                 "marginal_jsb.png", "report.md", "study.json"):
        assert (report / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(report / "welch.csv")))
    assert [r["cell"] for r in rows] == list(GREFF_CELLS[1:])
    assert all(r["p"] and r["best10_mean"] and r["paired_n"] == "2" for r in rows)
    pooled = json.loads((report / "importance.json").read_text())["jsb"]["all"]
    assert len(pooled["main"]) == 4 and len(pooled["pairwise"]) == 6
    text = (report / "report.md").read_text()
    assert "best 10% Welch p" in text and "paired p" in text
    assert all(f"| {name} |" in text for name in ("V (vanilla)", "NFG", "NOAF", "CIFG", "FGR"))
    findings = text[text.index("### The paper's findings beside ours"):]
    for topic, paper in (("NFG", "The forget gate is crucial"),
                         ("NOAF", "The output activation is crucial"),
                         ("CIFG and NP", "without hurting performance much"),
                         ("lr × hidden size", "interaction of learning rate and network size"),
                         ("importance", "learning rate is by far"),
                         ("interactions", "Interactions between hyperparameters are small")):
        line = next((row for row in findings.splitlines() if row.startswith(f"| {topic} |")),
                    None)
        assert line is not None, topic
        assert paper in line and line.count(" | ") == 3, line  # paper, ours, verdict
    # `rnnlab study report --preset greff-jsb` finds the study by the preset's name
    assert main(["study", "report", "--preset", "greff-jsb",
                 "--dir", str(tmp_path / "study"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "report.md").read_text() == text


def test_a_killed_study_resumes_without_repeating_a_finished_trial(tmp_path, data):
    # a worker process is SIGKILLed (with the command that started it) once trials have
    # finished; the same command again keeps those and completes the rest
    args = tiny(tmp_path, "--workers", "1", "--lease-seconds", "2", "--no-report",
                steps=60)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = subprocess.Popen([sys.executable, "-m", "rnnlab", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # its own process group: kill it all
    storage = open_storage(None, tmp_path / "study")
    names = [f"greff-jsb.jsb.{cell}" for cell in GREFF_CELLS]
    finished = {}
    deadline = time.time() + 120
    try:
        while time.time() < deadline and len(finished) < 3:
            time.sleep(0.3)
            finished = {}
            for name in names:
                try:
                    finished.update({(name, t.number): (t.user_attrs["index"], t.value)
                                     for t in complete(storage, name)})
                except KeyError:  # not created yet
                    pass
        assert len(finished) >= 3, "the study never finished three trials"
    finally:
        os.killpg(command.pid, signal.SIGKILL)
        command.wait()
    # read again after the kill: a trial may have finished between the last look and the kill
    finished = {(name, t.number): (t.user_attrs["index"], t.value)
                for name in names for t in complete(storage, name)}
    assert len(finished) < 2 * len(names), "the study finished before it was killed"

    assert main(args) == 0
    storage = open_storage(None, tmp_path / "study")
    after = {(name, t.number): (t.user_attrs["index"], t.value)
             for name in names for t in complete(storage, name)}
    changed = {key: (value, after.get(key)) for key, value in finished.items()
               if after.get(key) != value}
    assert not changed, changed  # kept as they were
    for name in names:
        indices = [index for (study, _), (index, _) in after.items() if study == name]
        seen = [(t.number, t.state.name, {k: v for k, v in t.user_attrs.items()
                                          if k in ("index", "rerun_of", "stale", "surplus",
                                                   "interrupted", "error")})
                for t in optuna.load_study(study_name=name, storage=storage).trials]
        assert len(indices) == 2 and len(set(indices)) == 2, seen  # all there, none repeated
