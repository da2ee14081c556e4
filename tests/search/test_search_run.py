"""The search end to end on tiny budgets: resume, workers, a SIGKILLed worker, PostgreSQL,
top / export / report, and an exported cell trained by `rnnlab train --cell=cell.json`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import rnnlab
from rnnlab.cli.main import main
from rnnlab.search import Budget, SearchConfig, SearchError, architectures, run, top
from rnnlab.trials import open_storage

REPO = Path(__file__).resolve().parents[2]
# a few milliseconds per training; the filter threshold 0 lets every candidate through
TINY = Budget(hidden=8, batch_size=8, train_steps=4, eval_batches=1, filter_steps=4,
              filter_threshold=0.0, filter_hidden=8, filter_batch_size=8)
TINY_ARGS = ["--tasks=arithmetic", "--hidden=8", "--batch-size=8", "--train-steps=4",
             "--eval-batches=1", "--filter-steps=4", "--filter-threshold=0"]


def config(tmp_path, **changes) -> SearchConfig:
    options = dict(name="s", tasks=("arithmetic",), steps=6, budget=TINY, directory=str(tmp_path),
                   quiet=True, reevaluate=0.3, lease_seconds=2.0)  # short lease: quick polls
    options.update(changes)
    return SearchConfig(**options)


def trials(c: SearchConfig, name: str | None = None):
    storage = open_storage(c.storage, c.folder)
    return optuna.load_study(study_name=name or c.name, storage=storage).get_trials()


def complete(ts):
    return [t for t in ts if t.state == TrialState.COMPLETE]


def indices(ts):
    return sorted(t.user_attrs["index"] for t in complete(ts))


def test_search_runs_resumes_without_repeats_and_lists(tmp_path):
    c = config(tmp_path, steps=4)
    run(c)
    first = complete(trials(c))
    assert indices(first) == [0, 1, 2, 3]
    assert [t.user_attrs["kind"] for t in sorted(first, key=lambda t: t.number)][:2] == [
        "seed", "seed"]
    run(config(tmp_path, steps=7))  # resume: three more, the first four untouched
    after = trials(c)
    assert indices(after) == list(range(7))
    old = {t.number: (t.value, t.user_attrs["hash"]) for t in first}
    assert {t.number: (t.value, t.user_attrs["hash"]) for t in complete(after)
            if t.number in old} == old
    baseline = trials(c, "s.baselines")
    assert len(complete(baseline)) == 1  # GRU measured once, not per run
    for t in complete(after):
        assert t.user_attrs["status"] in ("evaluated", "rejected")
        if t.user_attrs["status"] == "evaluated":
            assert set(t.user_attrs["accuracy"]) == {"arithmetic"}
            assert t.user_attrs["engine"] in ("fused", "reference", "unknown")
    base = {"arithmetic": complete(baseline)[0].value}
    archs = architectures(complete(after), base)
    assert archs and len({a.hash for a in archs}) == len(archs)  # one row per architecture
    evaluated = sum(t.user_attrs["status"] == "evaluated" for t in complete(after))
    assert sum(a.evaluations for a in archs) == evaluated
    text = top(c, n=3)
    assert archs[0].hash in text and "fitness" in text and "h'" in text


def test_resume_with_other_options_is_refused_and_writes_nothing(tmp_path):
    run(config(tmp_path, steps=2))
    journal = tmp_path / "trials.journal"
    before = journal.read_bytes()
    for _ in range(2):
        with pytest.raises(SearchError, match="budget.hidden=8"):
            run(config(tmp_path, steps=3, budget=Budget(**{**TINY.to_dict(), "hidden": 9})))
        assert journal.read_bytes() == before  # no create record, no steps attribute


def test_a_search_names_its_objectives_and_top_marks_the_seeds(tmp_path):
    c = config(tmp_path, steps=2)  # the two seeds, nothing found yet
    run(c)
    storage = open_storage(c.storage, c.folder)
    study = optuna.load_study(study_name="s", storage=storage)
    assert study.metric_names == ["fitness"]  # optuna-dashboard's label, not "Objective 0"
    attrs = study.user_attrs
    assert attrs["tasks"] == ["arithmetic"] and attrs["seeds"] == ["gru", "lstm"]
    assert attrs["baseline"] == "gru" and attrs["objective"].startswith("fitness = min over")
    assert attrs["search"]["budget"]["hidden"] == 8 and attrs["steps"] == 2
    baseline = optuna.load_study(study_name="s.baselines", storage=storage)
    assert baseline.metric_names == ["GRU best valid accuracy"]
    assert baseline.user_attrs["cell"] == "gru" and baseline.user_attrs["search"] == "s"
    text = top(c, n=5)
    assert "(seed: gru)" in text and "(seed: lstm)" in text
    assert "no cell found yet besides the seeds" in text


def test_two_workers_settle_exactly_the_asked_count(tmp_path):
    c = config(tmp_path, steps=6, workers=2)
    run(c)
    ts = trials(c)
    assert indices(ts) == list(range(6))
    assert len(complete(trials(c, "s.baselines"))) == 1


def test_sigkilled_worker_loses_only_its_running_candidate(tmp_path):
    slow = TINY_ARGS[:]
    slow[3] = "--train-steps=150"  # each candidate takes a second or so
    command = [sys.executable, "-m", "rnnlab", "search", "run", f"--dir={tmp_path}",
               "--steps=2", "--lease-seconds=2", "--quiet", *slow]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    worker = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    c = config(tmp_path, name="search", steps=2)
    deadline = time.time() + 120  # slow when the machine is loaded
    running = []
    while time.time() < deadline and not running:
        time.sleep(0.2)
        try:
            # a candidate under way: its lease is written after its index, so a trial caught
            # between Optuna's ask and the index (no index to re-run under) is not taken
            running = [t for t in trials(c)
                       if t.state == TrialState.RUNNING and "lease_until" in t.user_attrs]
        except (KeyError, FileNotFoundError):
            continue
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert running, "the worker never started a candidate"
    # read again after the kill: the candidate seen running may have finished in between
    running = [t for t in trials(c) if t.state == TrialState.RUNNING]
    if not running:
        pytest.skip("the candidate finished between the poll and SIGKILL (rare race)")
    killed = running[0].user_attrs["index"]
    done_before = indices(trials(c))
    assert killed not in done_before
    rc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rc.returncode == 0, rc.stderr
    ts = trials(c)
    done = indices(ts)
    seen = [(t.number, t.state.name, {k: v for k, v in t.user_attrs.items()
                                      if k in ("index", "rerun_of", "stale", "surplus",
                                               "interrupted", "status", "error")})
            for t in ts]  # what each trial ended as, should this ever fail (a rare race)
    assert len(done) == 2 and len(set(done)) == 2, seen  # exactly the asked count, no repeats
    assert killed in done  # the killed candidate was re-run under its own index
    assert set(done_before) <= set(done)
    stale = [t for t in ts if t.state == TrialState.FAIL and t.user_attrs.get("stale")]
    assert [t.user_attrs["index"] for t in stale] == [killed]


def test_two_workers_on_postgresql(postgres_url, tmp_path):
    name = "s-" + uuid.uuid4().hex[:8]
    c = config(tmp_path, name=name, storage=postgres_url, steps=3, workers=2)
    run(c)
    assert indices(trials(c)) == list(range(3))
    assert name in top(c, n=1)


def test_cli_run_top_export_train_report(tmp_path, capsys):
    where = [f"--dir={tmp_path}"]
    assert main(["search", "run", *where, "--steps=4", "-n=2", *TINY_ARGS]) == 0
    out = capsys.readouterr().out
    assert "fitness" in out and "#1 " in out
    best = out.split("#1 ")[1].split()[0]
    assert main(["search", "top", *where, "-n", "1"]) == 0
    assert best in capsys.readouterr().out
    cell = tmp_path / "cell.json"
    assert main(["search", "export", best[:6], *where, "--out", str(cell)]) == 0
    graph = rnnlab.cells.load(cell)
    assert graph.name == f"search-{best}"
    assert main(["train", f"--cell={cell}", "--task=arithmetic", "--train.max_steps=3",
                 "--model.hidden_size=8", "--task.batch_size=4", "--task.eval_max_batches=1",
                 f"--run.root={tmp_path / 'runs'}", "--run.plots=false", "--quiet"]) == 0
    assert main(["search", "report", *where, "--out", str(tmp_path / "rep"), "-n", "2"]) == 0
    text = (tmp_path / "rep" / "report.md").read_text()
    for label in ("LSTM (reference)", "LSTM-b", "GRU", "MUT1", "MUT2", "MUT3", best,
                  "candidates/hour", "fell back"):
        assert label in text
    assert (tmp_path / "rep" / "fitness.png").stat().st_size > 0
    references = optuna.load_study(study_name="search.references",
                                   storage=open_storage(None, tmp_path))
    assert references.metric_names == ["fitness"]
    assert references.user_attrs["cells"] == ["LSTM", "LSTM-b", "GRU", "MUT1", "MUT2", "MUT3"]


@pytest.mark.parametrize("argv, expected", [
    (["search", "run", "--tasks=nope"], "unknown task 'nope'"),
    (["search", "run", "--tasks=parity"], "not a token task"),
    (["search", "run", "--steps=0"], "--steps must be an integer >= 1"),
    (["search", "run", "--storage=postgresql://u:secret@127.0.0.1:1/db"], "cannot reach"),
    (["search", "run", "--storage=ftp://x"], "unknown storage"),
    (["search", "top"], "does not exist"),
    (["search", "export", "abcd", "--out=x.txt"], "must name a .json file"),
])
def test_bad_input_is_one_line(argv, expected, tmp_path, capsys):
    assert main([*argv, f"--dir={tmp_path / 'none'}"]) == 1
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1 and "secret" not in err


def test_train_with_a_bad_cell_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(SystemExit) as exit_:  # a bad config value: usage error, status 2
        main(["train", f"--cell={bad}", "--task=arithmetic", "--quiet"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "Traceback" not in err


@pytest.mark.parametrize("action", ["run", "top", "export", "report"])
def test_help_gives_each_default_once_and_in_words(action, capsys):
    with pytest.raises(SystemExit):
        main(["search", action, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default:" not in out  # no second, raw default after the one in words
    assert "[default: search]" in out and "[default: searches/NAME]" in out
    if action == "run":
        assert "[default: small 24, paper 10000]" in out and "None" not in out
        assert "$RNNLAB_DATA/ptb/" in out  # the default tasks need the PTB files
