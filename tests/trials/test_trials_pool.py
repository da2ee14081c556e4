"""The trial pool: exact counts across processes, re-runs of killed workers, seeded sampling.

Each scenario runs on the embedded journal file and on a real PostgreSQL server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from rnnlab.trials import (
    StudyMismatch,
    check_study,
    differences,
    open_storage,
    open_study,
    run_trials,
    run_workers,
    settled,
    study_counts,
    trial_index,
    trial_seed,
)

HERE = os.path.dirname(__file__)
WORKER = os.path.join(HERE, "trials_worker.py")
optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(params=["journal", "postgres"])
def storage_url(request, tmp_path):
    if request.param == "journal":
        return str(tmp_path / "trials.journal")
    return request.getfixturevalue("postgres_url")


def square(trial):
    x = trial.suggest_float("x", -1.0, 1.0)
    return x * x


def trials_of(url, name):
    return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()


def complete(trials):
    return [t for t in trials if t.state == TrialState.COMPLETE]


def fresh_name():
    return "t-" + uuid.uuid4().hex[:8]


def test_exact_count_and_top_up_keep_earlier_trials(storage_url):
    name = fresh_name()
    assert run_trials(open_storage(storage_url), name, 3, square, seed=1) == 3
    first = {t.user_attrs["index"]: t.params for t in trials_of(storage_url, name)}
    assert run_trials(open_storage(storage_url), name, 5, square, seed=1) == 2
    assert run_trials(open_storage(storage_url), name, 5, square, seed=1) == 0
    trials = complete(trials_of(storage_url, name))
    assert len(trials) == 5
    assert sorted(trial_index(t) for t in trials) == [0, 1, 2, 3, 4]
    for t in trials[:3]:
        assert t.params == first[trial_index(t)]


def test_parameters_and_seed_depend_on_seed_and_index_only(tmp_path):
    a, b, c = (str(tmp_path / f"{k}.journal") for k in "abc")
    run_trials(open_storage(a), "s", 4, square, seed=5)
    run_trials(open_storage(b), "s", 2, square, seed=5)
    run_trials(open_storage(b), "s", 4, square, seed=5)
    run_trials(open_storage(c), "s", 4, square, seed=6)

    def by_index(url):
        return {trial_index(t): (t.params["x"], trial_seed(t)) for t in trials_of(url, "s")}

    assert by_index(a) == by_index(b)
    assert set(by_index(a).values()).isdisjoint(by_index(c).values())
    assert len({x for x, _ in by_index(a).values()}) == 4


def test_objective_error_is_settled_not_retried(tmp_path):
    url = str(tmp_path / "t.journal")
    calls = []

    def flaky(trial):
        calls.append(trial.number)
        if trial.number == 1:
            raise ValueError("diverged\nsecond line")
        return square(trial)

    run_trials(open_storage(url), "s", 3, flaky)
    trials = trials_of(url, "s")
    assert calls == [0, 1, 2]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].user_attrs["error"] == "ValueError: diverged"
    assert all(settled(t) for t in trials)
    counts = study_counts(open_storage(url), "s")
    assert (counts["complete"], counts["failed"], counts["settled"]) == (2, 1, 3)


def test_interrupt_requeues_the_running_trial(tmp_path):
    url = str(tmp_path / "t.journal")

    def interrupted(trial):
        square(trial)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_trials(open_storage(url), "s", 2, interrupted)
    trials = trials_of(url, "s")
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["interrupted"]
    assert trials[1].state == TrialState.WAITING and trial_index(trials[1]) == 0
    run_trials(open_storage(url), "s", 2, square)
    done = complete(trials_of(url, "s"))
    assert sorted(trial_index(t) for t in done) == [0, 2]
    rerun = next(t for t in done if trial_index(t) == 0)
    assert rerun.params == trials[0].params and trial_seed(rerun) == trial_seed(trials[0])


def test_a_worker_killed_before_writing_the_index_leaves_no_seedless_rerun(tmp_path):
    # a worker SIGKILLed between Optuna's ask and writing the trial's index leaves a RUNNING
    # trial with no index, no seed and no lease; once stale it is failed, and a fresh trial
    # (with an index and a seed) takes its place instead of a re-run with neither
    url = str(tmp_path / "t.journal")
    storage = open_storage(url)
    open_study(storage, "s").ask()  # trial 0: asked, never indexed

    def needs_a_seed(trial):
        assert isinstance(trial.user_attrs["seed"], int), trial.user_attrs
        return square(trial)

    time.sleep(0.6)
    run_trials(storage, "s", 2, needs_a_seed, lease_seconds=0.5)
    trials = trials_of(url, "s")
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["stale"]
    assert "error" not in trials[0].user_attrs and not settled(trials[0])
    done = complete(trials)
    assert len(done) == 2 and sorted(trial_index(t) for t in done) == [1, 2]
    assert not [t for t in trials if t.state == TrialState.WAITING]


def test_a_worker_killed_between_writing_the_index_and_the_seed_reruns_with_its_seed(tmp_path):
    # SIGKILLed after writing the trial's index and before its seed: the re-run gets the seed
    # that trial would have had (not None, which the objective cannot use)
    url = str(tmp_path / "t.journal")
    storage = open_storage(url)
    open_study(storage, "s").ask().set_user_attr("index", 0)  # trial 0: indexed, no seed
    run_trials(storage, "reference", 1, square, seed=7)  # what trial 0 is given normally
    (expected,) = [trial_seed(t) for t in complete(trials_of(url, "reference"))]
    seeds = []

    def needs_a_seed(trial):
        seeds.append((trial.user_attrs["index"], trial.user_attrs["seed"]))
        return square(trial)

    time.sleep(0.6)
    run_trials(storage, "s", 2, needs_a_seed, lease_seconds=0.5, seed=7)
    trials = trials_of(url, "s")
    assert trials[0].state == TrialState.FAIL and trials[0].user_attrs["stale"]
    assert (0, expected) in seeds and all(isinstance(seed, int) for _, seed in seeds), seeds
    assert sorted(trial_index(t) for t in complete(trials)) == [0, 2]


def test_two_worker_processes_complete_exactly_n(storage_url):
    name = fresh_name()
    sys.path.insert(0, HERE)
    try:
        import trials_worker
    finally:
        sys.path.remove(HERE)
    seen = []
    run_workers(2, trials_worker.work, (storage_url, name, 6, 0.3),
                watch=lambda: seen.append(study_counts(open_storage(storage_url), name)),
                poll_seconds=0.5)
    trials = trials_of(storage_url, name)
    done = complete(trials)
    assert len(done) == 6
    assert sorted(trial_index(t) for t in done) == sorted({trial_index(t) for t in done})
    assert len({t.user_attrs["pid"] for t in done}) == 2  # both workers did trials
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)
    assert seen and seen[-1]["settled"] == 6


def test_sigkilled_worker_trial_is_rerun_with_same_parameters(storage_url):
    name = fresh_name()
    victim = subprocess.Popen([sys.executable, WORKER, storage_url, name, "3", "60"])
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                running = [t for t in trials_of(storage_url, name)
                           if t.state == TrialState.RUNNING and "pid" in t.user_attrs]
            except KeyError:  # study not created yet
                running = []
            if running:
                break
            time.sleep(0.2)
        assert running, "the worker never started a trial"
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    finally:
        victim.kill()
    killed = running[0]
    assert run_trials(open_storage(storage_url), name, 3, square, seed=7,
                      lease_seconds=2, poll_seconds=0.2) == 3
    trials = trials_of(storage_url, name)
    assert trials[killed.number].state == TrialState.FAIL
    assert trials[killed.number].user_attrs["stale"]
    done = complete(trials)
    assert len(done) == 3
    rerun = next(t for t in done if trial_index(t) == trial_index(killed))
    assert rerun.params == killed.params and trial_seed(rerun) == trial_seed(killed)


def test_failed_worker_is_reported(tmp_path):
    with pytest.raises(RuntimeError, match=r"rnnlab-worker-\d \(exit code 1\)"):
        run_workers(2, run_trials, ("not a storage", "s", 1, None))


def test_open_study_names_a_new_study_once_and_leaves_the_journal_alone(tmp_path):
    path = tmp_path / "trials.journal"
    storage = open_storage(str(path))
    study = open_study(storage, "s", direction="maximize", metric_name="valid accuracy",
                       attrs={"task": "copy"})
    assert study.metric_names == ["valid accuracy"] and study.user_attrs == {"task": "copy"}
    run_trials(storage, "s", 1, lambda trial: 1.0, direction="maximize")
    before = path.read_bytes()
    # loading an existing study writes nothing, and does not rename or re-describe it
    again = open_study(storage, "s", direction="maximize", metric_name="other",
                       attrs={"task": "xml"})
    assert again.metric_names == ["valid accuracy"] and again.user_attrs == {"task": "copy"}
    run_trials(storage, "s", 1, lambda trial: 1.0, direction="maximize")  # already settled
    assert path.read_bytes() == before
    assert optuna.load_study(study_name="s", storage=open_storage(str(path))).metric_names == [
        "valid accuracy"]


def test_open_study_checks_the_identity_before_writing_and_adopts_a_foreign_study(tmp_path):
    path = tmp_path / "trials.journal"
    storage = open_storage(str(path))
    mine = {"space": {"lr": {"low": 1e-6, "high": 1e-2}, "seed": 0}, "task": "jsb"}
    open_study(storage, "s", attrs=mine, identity="space")
    before = path.read_bytes()
    assert open_study(storage, "s", attrs=mine, identity="space").user_attrs == mine
    other = {**mine, "space": {"lr": {"low": 1e-5, "high": 1e-2}, "seed": 1}}
    with pytest.raises(StudyMismatch) as found:
        open_study(storage, "s", attrs=other, identity="space")
    assert found.value.differences == [("lr.low", 1e-6, 1e-5), ("seed", 0, 1)]
    with pytest.raises(StudyMismatch) as found:  # the direction is part of what a study is
        check_study(storage, "s", direction="maximize", identity="space", attrs=mine)
    assert (found.value.stored_direction, found.value.direction) == ("minimize", "maximize")
    assert check_study(storage, "none", direction="minimize", identity="space",
                       attrs=mine) is None
    assert path.read_bytes() == before  # neither check nor refusal wrote anything
    # a study made outside rnnlab (no identity) is adopted: given the attributes, once
    optuna.create_study(storage=storage, study_name="foreign")
    adopted = open_study(storage, "foreign", attrs=mine, identity="space")
    assert adopted.user_attrs == mine
    with pytest.raises(StudyMismatch):
        open_study(storage, "foreign", attrs=other, identity="space")


def test_differences_name_every_differing_leaf_in_the_asked_order():
    stored = {"tasks": ["a"], "budget": {"hidden": 8, "steps": 4}, "seed": 0, "old": 1}
    asked = {"tasks": ["a", "b"], "budget": {"hidden": 9, "steps": 4}, "seed": 0}
    assert differences(stored, asked) == [
        ("tasks", ["a"], ["a", "b"]), ("budget.hidden", 8, 9), ("old", 1, None)]
    assert differences({"a": 1}, {"a": 1}) == []
