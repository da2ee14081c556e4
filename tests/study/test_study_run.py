"""Running studies for real: workers, exact counts, top-up, a SIGKILLed worker, PostgreSQL,
the command line end to end, and its one-line errors. Trials are tiny (study_helpers.TINY)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from study_helpers import TINY, tiny_args

from rnnlab.cli.main import main
from rnnlab.study import StudyRun, load_space, run_study
from rnnlab.trials import open_storage

REPO = Path(__file__).resolve().parents[2]


def _trials(storage, name):
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def _check_exact(storage, name, n):
    trials = _trials(storage, name)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n, [(t.number, t.state, t.user_attrs) for t in trials]
    indices = [t.user_attrs["index"] for t in complete]
    assert len(set(indices)) == n  # no trial repeated
    for t in complete:  # what every trial stores
        for key in ("valid", "test", "parameters", "epochs", "wall_seconds", "momentum"):
            assert key in t.user_attrs, key
    return complete


def _run(tmp_path, storage_url=None, name="t", cells=("peephole", "cifg"), **kw):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = StudyRun(name=name, tasks=("memorize",), cells=cells,
                   storage=storage_url, out=str(tmp_path), space=load_space(None, TINY),
                   quiet=True, lease_seconds=2.0, **kw)
    run_study(run)
    return open_storage(storage_url, tmp_path)


def test_two_worker_processes_complete_exactly_n(tmp_path):
    storage = _run(tmp_path, trials=4, workers=2, cells=("cifg",))
    _check_exact(storage, "t.memorize.cifg", 4)


def test_rerun_tops_up_without_repeating(tmp_path):
    storage = _run(tmp_path, trials=2, workers=1)
    before = {t.number: (t.params, t.value) for t in _trials(storage, "t.memorize.cifg")}
    storage = _run(tmp_path, trials=4, workers=1)
    complete = _check_exact(storage, "t.memorize.cifg", 4)
    after = {t.number: (t.params, t.value) for t in complete}
    assert all(after[number] == before[number] for number in before)  # kept, not re-run
    # every cell sees the same draws: trial i of cifg has trial i of peephole's parameters
    vanilla = {t.user_attrs["index"]: t.params for t in _trials(storage, "t.memorize.peephole")}
    assert all(vanilla[t.user_attrs["index"]] == t.params for t in complete)


def test_two_workers_on_postgresql(tmp_path, postgres_url):
    storage = _run(tmp_path, storage_url=postgres_url, name="pg2", trials=4, workers=2,
                   cells=("cifg",))
    _check_exact(storage, "pg2.memorize.cifg", 4)
    # a second run on the server tops up without repeating
    storage = _run(tmp_path, storage_url=postgres_url, name="pg2", trials=5, workers=1,
                   cells=("cifg",))
    _check_exact(storage, "pg2.memorize.cifg", 5)


def test_sigkilled_worker_trial_is_rerun_and_total_exact(tmp_path):
    # trials of 1,500 steps (a second or more), so that the worker is caught inside one
    args = ["study", "run", *tiny_args({"train.steps_per_epoch": 1500}),
            "--cells", "peephole", "--trials", "2", "--workers", "1", "--lease-seconds", "2",
            "--dir", str(tmp_path), "--no-report", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    worker = subprocess.Popen([sys.executable, "-m", "rnnlab", *args], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = open_storage(None, tmp_path)
    deadline = time.time() + 60
    running = []
    try:
        while time.time() < deadline and not running:
            time.sleep(0.2)
            try:
                # a trial that has trained for a while: the worker is inside the trainer, not
                # holding the journal's file lock (a lock left by a killed process costs the
                # others a grace period of seconds)
                running = [t for t in _trials(storage, "greff.memorize.peephole")
                           if t.state == TrialState.RUNNING and "lease_until" in t.user_attrs
                           and time.time() - t.datetime_start.timestamp() > 0.6]
            except KeyError:  # the study is not created yet
                pass
        assert running, "the worker never started a trial"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    killed = running[0]
    assert main(args) == 0  # the same command again finishes the study
    storage = open_storage(None, tmp_path)
    complete = _check_exact(storage, "greff.memorize.peephole", 2)
    rerun = [t for t in complete if t.user_attrs["index"] == killed.user_attrs["index"]]
    assert rerun and rerun[0].params == killed.params
    assert rerun[0].user_attrs["seed"] == killed.user_attrs["seed"]
    stale = [t for t in _trials(storage, "greff.memorize.peephole") if t.user_attrs.get("stale")]
    assert [t.number for t in stale] == [killed.number]


def test_command_line_run_writes_the_report(tmp_path, capsys):
    args = ["study", "run", *tiny_args(), "--cells", "peephole,nfg", "--trials", "5",
            "--workers", "1", "--dir", str(tmp_path), "--quiet"]
    assert main(args) == 0
    for name in ("boxplot.png", "welch.csv", "importance.json", "importance.png",
                 "marginal_memorize.png", "report.md", "study.json", "trials.csv"):
        assert (tmp_path / "report" / name).is_file(), name
    assert "complete trials per cell: peephole 5, nfg 5" in capsys.readouterr().out
    # the same command again: nothing to do, nothing repeated
    assert main(args + ["--no-report"]) == 0
    assert len(_trials(open_storage(None, tmp_path), "greff.memorize.nfg")) == 5
    # a different space under the same name is refused, saying how to go on
    capsys.readouterr()
    assert main(args + ["--set", "train.lr=0.5"]) == 1  # sampled, not a fixed setting
    assert "train.lr is sampled from the space" in capsys.readouterr().err
    changed = ["study", "run", *tiny_args({"train.steps_per_epoch": 4}), "--cells", "nfg",
               "--trials", "5", "--dir", str(tmp_path), "--quiet"]
    assert main(changed) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "different search space" in err and "train.steps_per_epoch: 3 -> 4" in err
    assert "--name" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--cells", "peephole,lstmx"], "unknown cell 'lstmx'"),
        (["run", "--task", "timit"], "unknown task 'timit'"),
        (["run", "--storage", "postgresql+psycopg://u:secret@127.0.0.1:1/db"],
         "cannot reach storage"),
        (["run", "--storage", "redis://x"], "unknown storage"),
        (["report"], "no study in"),
        (["dashboard"], "no study in"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    code = main(["study", *args, "--dir", str(tmp_path / "none"), "--quiet"][
        : None if args[0] == "run" else -1])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert "secret" not in err


def test_the_paper_s_cell_names_are_the_registry_s(tmp_path, monkeypatch):
    # V / vanilla is the peephole LSTM; the paper's upper-case names work; repeats collapse
    seen = []

    def run_study(run, **_):
        seen.append(run.cells)
        return {"storage": "none", "seconds": 0.0}

    monkeypatch.setattr("rnnlab.study.runner.run_study", run_study)
    assert main(["study", "run", "--cells", "V,NFG,vanilla,cifg", "--trials", "0", "--quiet",
                 "--no-report", "--dir", str(tmp_path)]) == 0
    assert seen == [("peephole", "nfg", "cifg")]


def test_report_of_an_empty_study_is_one_line(tmp_path, capsys):
    # the studies exist, no trial has completed yet
    args = ["study", "run", *tiny_args(), "--cells", "peephole", "--trials", "0",
            "--dir", str(tmp_path), "--quiet"]
    assert main(args + ["--no-report"]) == 0
    assert main(["study", "report", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no complete trial" in err


def test_a_new_study_names_its_objective_and_says_what_it_is(tmp_path):
    # what optuna-dashboard (or anyone reading the storage) sees: the value's name, not
    # "Objective 0", and the task, cell and objective without reading rnnlab's code
    storage = _run(tmp_path, trials=1, workers=1, cells=("nfg",))
    study = optuna.load_study(study_name="t.memorize.nfg", storage=storage)
    assert study.metric_names == ["valid accuracy"]  # memorize's primary metric, on valid
    assert study.direction.name == "MAXIMIZE"
    (trial,) = _check_exact(storage, "t.memorize.nfg", 1)
    assert trial.value == trial.user_attrs["valid"]  # the named objective is the value
    attrs = study.user_attrs
    assert attrs["task"] == "memorize" and attrs["cell"] == "nfg" and attrs["name"] == "t"
    assert attrs["variant"] == "NFG: no forget gate" and attrs["vanilla"] == "peephole"
    assert attrs["objective"].startswith("valid accuracy (maximize)")
    assert attrs["seed"] == 0 and attrs["space"]["settings"]["train.steps_per_epoch"] == 3
    assert attrs["requested"] == 1


def _journal_bytes(folder):
    return (Path(folder) / "trials.journal").read_bytes()


def test_a_refused_run_writes_nothing_to_the_storage(tmp_path):
    from rnnlab.study import StudyError

    _run(tmp_path, trials=1, workers=1, cells=("peephole",))
    before = _journal_bytes(tmp_path)
    # cifg is new and listed first, peephole exists with other settings: the whole run is
    # refused before either study is touched (no create record, no attribute)
    other = StudyRun(name="t", tasks=("memorize",), cells=("cifg", "peephole"), trials=2,
                     out=str(tmp_path), quiet=True,
                     space=load_space(None, {**TINY, "train.steps_per_epoch": 4}))
    for _ in range(2):
        with pytest.raises(StudyError, match="train.steps_per_epoch: 3 -> 4"):
            run_study(other)
        assert _journal_bytes(tmp_path) == before
    # an accepted run that asks for nothing new does not grow the journal either
    _run(tmp_path, trials=1, workers=1, cells=("peephole",))
    assert _journal_bytes(tmp_path) == before


@pytest.mark.parametrize("action", ["run", "report", "dashboard"])
def test_help_gives_each_default_once_and_in_words(action, capsys):
    with pytest.raises(SystemExit):
        main(["study", action, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default:" not in out  # no second, raw default after the one in words
    assert "[default: the preset's name: greff (quick), greff-jsb (greff-jsb)]" in out
    assert "[default: studies/NAME]" in out and "[default: quick]" in out
    if action == "run":
        assert "--no-report do not write the report at the end --quiet" in out  # no "True"
        assert "[default: the preset's: quick 6, greff-jsb 100]" in out and "None" not in out
        assert "--trial-seconds" not in out  # budgets are epochs: no time budget is offered


def test_a_trial_writes_no_checkpoints_unless_its_run_is_kept(tmp_path, monkeypatch):
    """A lost trial is re-run whole, never resumed: checkpoints would only cost time (an fsync'ed
    torch.save per epoch), so a trial trains without them unless --keep-runs keeps its run."""
    from rnnlab.study.objective import TrialObjective
    from rnnlab.study.space import PARAMETERS, StudySpace
    from rnnlab.train import trainer

    seen = []

    def fake_train(config, argv):
        seen.append(config.train.checkpoints)
        summary = {"primary": "nll", "valid": {"nll": 9.0}, "test": {"nll": 9.5},
                   "higher_is_better": False, "parameters": 1, "epochs": 1, "steps": 1,
                   "status": "completed", "train_seconds": 0.1}
        return None, summary

    monkeypatch.setattr(trainer, "train", fake_train)
    space = StudySpace()
    fixed = {PARAMETERS[name][0]: rng.low for name, rng in space.space.items()}
    for keep, expected in ((None, False), (str(tmp_path / "runs"), True)):
        objective = TrialObjective(space, "jsb", "peephole", "s", keep_runs=keep)
        assert objective(optuna.trial.FixedTrial(fixed)) == 9.0
        assert seen[-1] is expected


def test_the_progress_lines_say_how_long_is_left(monkeypatch):
    # no terminal: a line per settled trial, with the time left at the rate since the start
    import io

    from rnnlab.study import runner

    now = [1000.0]
    settled = [10]
    monkeypatch.setattr(runner.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(runner.Watch, "counts", lambda self: (settled[0], {"jsb": (8.5, "nfg")}))
    stream = io.StringIO()
    run = StudyRun(name="g", tasks=("jsb",), cells=("peephole", "nfg"), trials=30)
    watch = runner.Watch(run, storage=None, stream=stream)  # 10 of 60 settled before this run
    now[0] += 600
    settled[0] = 14  # 4 trials in 10 minutes: 46 left take 115 minutes
    watch()
    now[0] += 3600
    settled[0] = 59
    watch()
    settled[0] = 60
    watch()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "study g: 10/60 trials, best valid jsb nfg 8.5"  # no rate yet
    assert lines[1].endswith(", about 1 h 55 min left"), lines[1]
    assert lines[2].endswith(", about 1 min left"), lines[2]  # 49 in 70 min: 1.4 min a trial
    assert lines[3] == "study g: 60/60 trials, best valid jsb nfg 8.5"
