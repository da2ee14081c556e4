"""One worker per visible GPU: the placement rule, the worker processes' environment, and the
study, the search and their command lines passing it on.

On a machine without a GPU, ``torch.cuda.device_count`` is stood in for and each worker only
reports the ``CUDA_VISIBLE_DEVICES`` it started with (it never touches CUDA); the last test, on
a real GPU, checks that each worker sees exactly its own GPU.
"""

from __future__ import annotations

import json
import multiprocessing
import os

import optuna
import pytest
import torch

import rnnlab.search.loop as search_loop
import rnnlab.study.runner as study_runner
import rnnlab.trials
from rnnlab.cli.main import main
from rnnlab.search import Budget, SearchConfig, SearchError
from rnnlab.study import StudyRun, load_space, run_study
from rnnlab.study.objective import TrialObjective
from rnnlab.study.runner import StudyError
from rnnlab.trials import place, placement, run_workers
from rnnlab.trials.placement import kind

optuna.logging.set_verbosity(optuna.logging.WARNING)


# ---- the rule ---------------------------------------------------------------------------------
def test_cpu_workers_are_not_pinned():
    assert placement(None, "cpu", 0) == [None]
    assert placement(None, "cpu", 0, cpu_workers=2) == [None, None]
    assert placement(3, "cpu", 0) == [None, None, None]
    assert placement(None, "auto", 0, cpu_workers=2) == [None, None]  # auto without a GPU
    assert kind(placement(3, "cpu", 0)) == "cpu"


def test_one_gpu_gets_one_worker():
    assert placement(None, "cuda", 1) == ["0"]
    assert placement(None, "auto", 1, cpu_workers=2) == ["0"]  # the GPU count, not cpu_workers


def test_four_gpus_get_one_worker_each():
    assert placement(None, "cuda", 4) == ["0", "1", "2", "3"]
    assert placement(2, "cuda", 4) == ["0", "1"]  # fewer workers: the first GPUs
    assert kind(placement(None, "cuda", 4)) == "cuda"


def test_more_workers_than_gpus_go_round_robin():
    assert placement(6, "cuda", 4) == ["0", "1", "2", "3", "0", "1"]
    assert placement(3, "auto", 1) == ["0", "0", "0"]


def test_device_cpu_ignores_the_gpus_present():
    assert placement(None, "cpu", 4, cpu_workers=2) == [None, None]
    assert placement(5, "cpu", 4) == [None] * 5


def test_workers_see_the_parents_visible_gpus_by_position():
    # the parent sees physical GPUs 2 and 5 (or two UUIDs): worker k gets the k-th of them
    assert placement(3, "cuda", 2, visible="2,5") == ["2", "5", "2"]
    assert placement(None, "cuda", 2, visible="GPU-a1, GPU-b2") == ["GPU-a1", "GPU-b2"]
    assert placement(None, "cuda", 2, visible="") == ["0", "1"]  # empty: as if unset


@pytest.mark.parametrize("workers, device, count, message", [
    (None, "cuda", 0, "--device cuda, but torch sees no CUDA GPU"),
    (None, "gpu", 1, "device must be one of cpu, cuda, auto; got 'gpu'"),
    (0, "cuda", 4, "--workers must be >= 1, got 0"),
    (0, "cpu", 0, "--workers must be >= 1, got 0"),
])
def test_refusals_say_what_to_do(workers, device, count, message):
    with pytest.raises(ValueError, match=message):
        placement(workers, device, count)


def test_place_reads_this_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert place(None, "auto") == ["0", "1", "2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert place(6, "cuda") == ["4", "5", "6", "7", "4", "5"]


def test_place_on_the_cpu_never_asks_cuda(monkeypatch):
    def refuse():
        raise AssertionError("CUDA was asked on --device cpu")

    monkeypatch.setattr(torch.cuda, "device_count", refuse)
    assert place(None, "cpu", cpu_workers=2) == [None, None]


# ---- worker processes -------------------------------------------------------------------------
def report(folder: str) -> None:
    """A worker that writes the CUDA_VISIBLE_DEVICES it started with (top-level: picklable)."""
    name = multiprocessing.current_process().name
    with open(os.path.join(folder, f"{name}.json"), "w") as file:
        json.dump({"visible": os.environ.get("CUDA_VISIBLE_DEVICES")}, file)


def reports(folder) -> dict[str, str | None]:
    return {path.stem: json.loads(path.read_text())["visible"]
            for path in sorted(folder.glob("*.json"))}


def test_each_worker_process_starts_with_its_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    gpus = place(3, "cuda")
    assert gpus == ["3", "1", "3"]
    run_workers(3, report, (str(tmp_path),), gpus=gpus, poll_seconds=0.2)
    assert reports(tmp_path) == {"rnnlab-worker-0": "3", "rnnlab-worker-1": "1",
                                 "rnnlab-worker-2": "3"}
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,1"  # this process's own is restored


def test_cpu_workers_keep_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    run_workers(2, report, (str(tmp_path),), gpus=place(2, "cpu"), poll_seconds=0.2)
    assert reports(tmp_path) == {"rnnlab-worker-0": None, "rnnlab-worker-1": None}
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_one_entry_per_worker():
    with pytest.raises(ValueError, match="one entry per worker: 2 workers, 1 entries"):
        run_workers(2, report, ("unused",), gpus=["0"])


# ---- the study and the search pass it on ------------------------------------------------------
@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.fixture
def started(monkeypatch):
    """run_workers stood in for: records (workers, gpus, the job's device) and runs nothing."""
    calls = []

    def record(n_workers, target, args=(), *, gpus=None, **_):
        job = args[0]
        run = getattr(job, "run", job)  # the study's _WorkerJob, or a SearchConfig
        calls.append((n_workers, list(gpus), run.workers, run.device))

    monkeypatch.setattr(rnnlab.trials, "run_workers", record)
    monkeypatch.setattr(search_loop, "run_workers", record)
    monkeypatch.setattr(search_loop, "work", lambda config: record(1, None, (config,),
                                                                    gpus=[None]))
    return calls


def study(tmp_path, **changes) -> StudyRun:
    return StudyRun(name="g", tasks=("memorize",), cells=("peephole",), trials=1,
                    out=str(tmp_path), space=load_space(None), quiet=True, **changes)


@pytest.mark.parametrize("changes, expected", [
    ({"device": "cuda"}, (4, ["0", "1", "2", "3"], 4, "cuda")),
    ({"device": "auto", "workers": 6}, (6, ["0", "1", "2", "3", "0", "1"], 6, "cuda")),
    ({"device": "cpu"}, (1, [None], 1, "cpu")),
    ({"device": "cpu", "workers": 2}, (2, [None, None], 2, "cpu")),
])
def test_study_places_its_workers(tmp_path, four_gpus, started, changes, expected):
    run_study(study(tmp_path, **changes))
    assert started == [expected]


def test_study_on_cuda_without_a_gpu_is_refused(tmp_path, monkeypatch, started):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(StudyError, match="--device cuda, but torch sees no CUDA GPU"):
        run_study(study(tmp_path, device="cuda"))
    assert started == [] and not (tmp_path / "trials.journal").exists()


def test_a_study_trial_trains_on_the_workers_device(monkeypatch):
    seen = []

    def train(config, argv):
        seen.append(config.run.device)
        summary = {"primary": "nll", "valid": {"nll": 1.0}, "test": {"nll": 1.0},
                   "higher_is_better": False, "parameters": 1, "epochs": 1, "steps": 1,
                   "status": "completed", "train_seconds": 0.0}
        return None, summary

    monkeypatch.setattr("rnnlab.train.trainer.train", train)
    study_ = optuna.create_study()
    objective = TrialObjective(load_space(None), "memorize", "peephole", "g", device="cuda")
    study_.optimize(objective, n_trials=1)
    assert seen == ["cuda"]


def test_the_device_is_not_a_study_setting():
    with pytest.raises(ValueError, match="settings.run.device: .* --device cuda"):
        load_space(None, {"run.device": "cuda"})


def search(tmp_path, **changes) -> SearchConfig:
    budget = Budget(hidden=8, batch_size=8, train_steps=1, eval_batches=1, filter_steps=1)
    return SearchConfig(name="s", tasks=("arithmetic",), steps=1, budget=budget,
                        directory=str(tmp_path), quiet=True, **changes)


@pytest.mark.parametrize("changes, expected", [
    ({"device": "cuda"}, (4, ["0", "1", "2", "3"], 4, "cuda")),
    ({"device": "cuda", "workers": 5}, (5, ["0", "1", "2", "3", "0"], 5, "cuda")),
    ({}, (1, [None], 1, "cpu")),
])
def test_search_places_its_workers(tmp_path, four_gpus, started, changes, expected):
    search_loop.run(search(tmp_path, **changes))
    assert started == [expected]


def test_search_on_cuda_without_a_gpu_is_refused(tmp_path, monkeypatch, started):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(SearchError, match="--device cuda, but torch sees no CUDA GPU"):
        search_loop.run(search(tmp_path, device="cuda"))
    assert started == []


def test_search_trainings_run_on_the_workers_device(tmp_path, monkeypatch):
    devices = []

    def evaluate(*args, device="cpu", **kw):
        devices.append(device)
        return {"accuracy": {"arithmetic": 0.5}, "runs": {"arithmetic": []}, "seconds": 0.0}

    monkeypatch.setattr(search_loop, "evaluate_on_tasks", evaluate)
    study_ = optuna.create_study(direction="maximize")
    objective = search_loop._baseline_objective(search(tmp_path, device="cuda"))
    study_.enqueue_trial({}, user_attrs={"index": 0, "seed": 1})
    study_.optimize(objective, n_trials=1)
    assert devices == ["cuda"]


# ---- the command lines ------------------------------------------------------------------------
def test_study_command_line_defaults_to_one_worker_per_gpu(tmp_path, four_gpus, monkeypatch):
    runs = []

    def fake_run(run, **_):
        runs.append((run.workers, run.device))
        return {"seconds": 0.0, "settled": 0, "storage": "journal"}

    monkeypatch.setattr(study_runner, "run_study", fake_run)
    common = ["study", "run", "--dir", str(tmp_path), "--no-report", "--quiet"]
    assert main([*common, "--device", "cuda"]) == 0
    assert main([*common, "--run.device=auto", "--workers", "6"]) == 0
    assert main([*common, "--device", "cpu"]) == 0
    assert runs == [(4, "cuda"), (6, "auto"), (min(2, os.cpu_count() or 1), "cpu")]


def test_search_command_line_takes_the_device(tmp_path, four_gpus, monkeypatch):
    configs = []
    monkeypatch.setattr("rnnlab.search.run", lambda config: configs.append(config))
    monkeypatch.setattr("rnnlab.search.top", lambda config, n: "")
    common = ["search", "run", "--dir", str(tmp_path), "--tasks=arithmetic", "--quiet"]
    assert main([*common, "--device=cuda"]) == 0
    assert main([*common, "--run.device=cpu", "--workers=3"]) == 0
    assert [(c.workers, c.device) for c in configs] == [(None, "cuda"), (3, "cpu")]


@pytest.mark.parametrize("command", [["study", "run"], ["search", "run"]])
def test_help_says_how_workers_are_placed(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one per visible GPU" in text and "round-robin" in text and "--device" in text


# ---- a real GPU -------------------------------------------------------------------------------
def see(folder: str) -> None:
    """A worker that writes what torch shows it: the GPUs it sees and the first one's UUID."""
    name = multiprocessing.current_process().name
    with open(os.path.join(folder, f"{name}.json"), "w") as file:
        json.dump({"count": torch.cuda.device_count(),
                   "uuid": str(torch.cuda.get_device_properties(0).uuid)}, file)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_each_worker_sees_only_its_own_gpu(tmp_path):
    count = torch.cuda.device_count()
    uuids = [str(torch.cuda.get_device_properties(k).uuid) for k in range(count)]
    workers = max(2, count)  # at least 2, so that they are processes of their own
    run_workers(workers, see, (str(tmp_path),), gpus=place(workers, "cuda"), poll_seconds=0.2)
    seen = {path.stem: json.loads(path.read_text()) for path in tmp_path.glob("*.json")}
    assert len(seen) == workers
    for k in range(workers):
        assert seen[f"rnnlab-worker-{k}"] == {"count": 1, "uuid": uuids[k % count]}
