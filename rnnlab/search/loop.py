"""The search loop (Jozefowicz, Zaremba & Sutskever 2015), one candidate evaluation per trial.

Storage layout (any ``rnnlab.trials`` storage; the default is a journal file):

* study ``<name>``: one trial per candidate evaluation, value = that evaluation's fitness
  (direction maximize, metric name ``fitness``); user attrs ``hash``, ``graph`` (cell JSON),
  ``equations``, ``kind`` (seed | mutation | reevaluation), ``parent``, ``status``
  (evaluated | filtered | rejected), ``accuracy`` (best per task), ``runs`` (every setting and
  its accuracy), ``filter``, ``engine`` (fused | reference | unknown), ``rejected``
  (degenerate or known-bad mutants discarded before training), ``seconds``. The study's user
  attr ``search`` holds the options that define the search (tasks, budget, settings, seed); a
  resume must match them, and one that does not is refused before anything is written.
  ``tasks``, ``objective``, ``seeds`` and ``baseline`` say what the study is to a reader of
  the storage (optuna-dashboard).
* study ``<name>.baselines``: one trial per task, GRU trained under the same budget with the
  same number of settings; value = its best valid accuracy (metric name ``GRU best valid
  accuracy``). Measured once, read by every worker.
* study ``<name>.references``: LSTM, LSTM-b, GRU, MUT1–3 under the same budget, for the report.

Each trial (``_Objective``): derive the population — architectures grouped by canonical hash,
each with its best accuracy per task over all its evaluations, ranked by fitness, the best
``population`` kept — then, with a generator seeded by the trial's seed: the first two trials
evaluate the seeds GRU and LSTM; later ones re-evaluate a listed architecture on new settings
(probability ``reevaluate``) or mutate one (``rnnlab.lang.mutate``). A mutant that is
degenerate, or whose hash is already known to fail the filter, is discarded and another drawn.
A candidate not yet known to pass the memorisation filter takes it; then it is trained on each
task with ``settings`` random settings. Because all of this is derived from storage, the search
resumes after any stop, any number of workers extend it, and a killed worker's trial is re-run
(by ``rnnlab.trials``) — losing only that evaluation. Trainings run on ``device`` (cpu, cuda or
auto); on CUDA the default is one worker per visible GPU, worker k seeing only GPU k
(round-robin when there are more workers than GPUs; ``rnnlab.trials.placement``). The device is
not part of the search's identity: a search begun on CPUs can be extended on GPUs.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from .. import cells
from ..lang import Graph, GraphError
from ..lang.mutate import mutate
from ..lang.serialize import from_json, to_json
from ..train.device import DEVICES
from ..trials import (
    StorageError,
    StudyMismatch,
    describe_storage,
    open_storage,
    open_study,
    place,
    run_trials,
    run_workers,
)
from ..trials.placement import kind
from .canonical import architecture_hash
from .checks import degenerate_reason, engine_used
from .evaluate import Budget, check_tasks, evaluate_on_tasks, fitness, memorisation_filter

SEEDS = ("gru", "lstm")  # Jozefowicz et al.: the list starts with the GRU and the LSTM
BASELINE = "gru"
# name, cell, options: the table of the report (Jozefowicz et al.'s LSTM is b_f = 0, LSTM-b 1)
REFERENCES = (
    ("LSTM", "lstm", {"forget_bias": 0.0}),
    ("LSTM-b", "lstm", {"forget_bias": 1.0}),
    ("GRU", "gru", {}),
    ("MUT1", "mut1", {}),
    ("MUT2", "mut2", {}),
    ("MUT3", "mut3", {}),
)
MUTATION_ATTEMPTS = 50
DEFAULT_DIR = "searches"
optuna.logging.set_verbosity(optuna.logging.WARNING)


class SearchError(ValueError):
    """A search that cannot run or be read as asked (one line, says what to do)."""


@dataclass
class SearchConfig:
    """Everything a worker needs (picklable: workers are spawned processes)."""

    name: str = "search"
    tasks: tuple[str, ...] = ("arithmetic", "xml", "ptb")
    steps: int = 24  # candidate evaluations in all (a re-run with more extends the search)
    settings: int = 1  # random hyperparameter settings per candidate and task
    population: int = 100  # size of the list of best architectures
    reevaluate: float = 0.2  # probability that a step re-evaluates instead of mutating
    seed: int = 0
    budget: Budget = field(default_factory=Budget)
    storage: str | None = None  # None: journal file <directory>/trials.journal
    directory: str | None = None  # None: searches/<name>
    workers: int | None = None  # processes on this machine; None: one per GPU on CUDA, else 1
    device: str = "cpu"  # where trainings run: cpu | cuda | auto (cuda: worker k on GPU k)
    threads: int = 1  # torch threads per worker
    lease_seconds: float = 60.0
    quiet: bool = False  # no progress lines

    @property
    def folder(self) -> Path:
        return Path(self.directory if self.directory else Path(DEFAULT_DIR) / self.name)

    def identity(self) -> dict:
        """The options a resumed search must keep (they define what a fitness means)."""
        return {"tasks": list(self.tasks), "settings": self.settings, "seed": self.seed,
                "budget": self.budget.to_dict()}

    def check(self) -> None:
        for what, value, low in (("--steps", self.steps, 1), ("--settings", self.settings, 1),
                                 ("--population", self.population, 1),
                                 ("--workers", 1 if self.workers is None else self.workers, 1),
                                 ("--threads", self.threads, 1)):
            if not isinstance(value, int) or value < low:
                raise SearchError(f"{what} must be an integer >= {low}, got {value!r}")
        if self.device not in DEVICES:
            raise SearchError(f"--device must be one of {', '.join(DEVICES)}, got "
                              f"{self.device!r}")
        if not 0.0 <= self.reevaluate <= 1.0:
            raise SearchError(f"--reevaluate must be a probability in [0, 1], got "
                              f"{self.reevaluate}")
        if not self.tasks:
            raise SearchError("--tasks is empty; give task names, e.g. arithmetic,xml,ptb")
        b = self.budget
        for what, value in (("hidden", b.hidden), ("batch_size", b.batch_size),
                            ("train_steps", b.train_steps), ("filter_steps", b.filter_steps),
                            ("seq_len", b.seq_len),
                            ("eval_batches", b.eval_batches)):
            if not isinstance(value, int) or value < 1:
                raise SearchError(f"budget {what} must be a positive integer, got {value!r}")
        try:
            check_tasks(list(self.tasks) + ["memorize"], b)
        except (ValueError, TypeError, FileNotFoundError) as error:
            raise SearchError(str(error)) from None


# ---- storage ---------------------------------------------------------------------------------
def storage_of(config: SearchConfig, must_exist: bool = False):
    """The search's storage; with ``must_exist`` a missing default journal is an error."""
    if must_exist and config.storage is None:
        path = config.folder / "trials.journal"
        if not path.exists():
            raise SearchError(
                f"no search {config.name!r}: {path} does not exist; start it with `rnnlab "
                f"search run --name {config.name}` (or pass --storage / --dir where it lives)"
            )
    try:
        return open_storage(config.storage, config.folder)
    except StorageError as error:
        raise SearchError(f"storage: {error}") from None


def load_study(storage, name: str, where: str) -> optuna.Study:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise SearchError(
            f"no search {name!r} in {where}; start it with `rnnlab search run --name {name}`"
        ) from None


def stored_identity(storage, name: str, where: str) -> dict:
    """The options the search was started with."""
    identity = load_study(storage, name, where).user_attrs.get("search")
    if identity is None:
        raise SearchError(f"study {name!r} in {where} is not an rnnlab search")
    return identity


def existing_identity(config: SearchConfig) -> dict | None:
    """The options the search ``config.name`` was started with, or None if it does not exist
    yet (a missing default journal file is not created)."""
    if config.storage is None and not (config.folder / "trials.journal").exists():
        return None
    storage = storage_of(config)
    try:
        attrs = optuna.load_study(study_name=config.name, storage=storage).user_attrs
    except KeyError:
        return None
    if "search" in attrs:
        return {**attrs["search"], "steps": attrs.get("steps")}
    return None


def _register(storage, config: SearchConfig) -> None:
    """Create the study (or check a resumed one was started with the same options).

    An existing study is checked before anything is written, so a refused resume leaves the
    storage as it was (rnnlab.trials.open_study, identity ``search``). A new one is created
    with its objective's name (``fitness``) and user attributes that say what it is
    (:func:`_search_attrs`).
    """
    try:
        study = open_study(storage, config.name, direction="maximize", metric_name="fitness",
                           attrs=_search_attrs(config), identity="search")
    except StudyMismatch as error:
        if error.stored_direction is not None:
            raise SearchError(f"study {config.name!r} exists and is not a search (it "
                              f"{error.stored_direction}s); choose another --name") from None
        shown = ", ".join(f"{path}={old!r}" for path, old, _ in error.differences)
        raise SearchError(
            f"search {config.name!r} was started with {shown}; resume it with the same "
            "options, or start a new search with another --name"
        ) from None
    if study.user_attrs.get("steps") != config.steps:
        study.set_user_attr("steps", config.steps)  # the default of a later resume


FITNESS = ("fitness = min over tasks of (the cell's best valid accuracy / the GRU baseline's "
           "best valid accuracy); maximize")


def _search_attrs(config: SearchConfig) -> dict:
    """The user attributes a new search study is created with (read without the code)."""
    return {
        "search": config.identity(),
        "tasks": list(config.tasks),
        "objective": FITNESS,
        "seeds": list(SEEDS),
        "baseline": BASELINE,
        "paper": "Jozefowicz, Zaremba & Sutskever 2015, An Empirical Exploration of Recurrent "
                 "Network Architectures",
    }


def config_from_identity(base: SearchConfig, identity: dict) -> SearchConfig:
    """``base`` with the stored defining options (for top / export / report)."""
    budget = Budget(**identity["budget"])
    return SearchConfig(**{**asdict(base), "budget": budget, "tasks": tuple(identity["tasks"]),
                           "settings": identity["settings"], "seed": identity["seed"]})


# ---- baselines and references -------------------------------------------------------------------
def _graph_of(cell: str, budget: Budget) -> Graph:
    return cells.graph(cell, budget.hidden, budget.hidden)


def seed_hashes() -> dict[str, str]:
    """``{architecture hash: seed cell name}`` of the seeds GRU and LSTM (hashes do not depend
    on sizes), to tell the seeds from the cells the search found."""
    return {architecture_hash(cells.graph(seed, 8, 8)): seed for seed in SEEDS}


def _baseline_objective(config: SearchConfig):
    def objective(trial: optuna.Trial) -> float:
        task = config.tasks[trial.user_attrs["index"]]
        result = evaluate_on_tasks(_graph_of(BASELINE, config.budget), [task], config.settings,
                                   config.budget, trial, trial.user_attrs["seed"],
                                   device=config.device)
        trial.set_user_attr("task", task)
        trial.set_user_attr("runs", result["runs"])
        return result["accuracy"][task]

    return objective


def baselines(storage, config: SearchConfig, compute: bool = True) -> dict[str, float]:
    """GRU's best accuracy per task under the search's budget (measured once, then read)."""
    name = f"{config.name}.baselines"
    if compute:
        run_trials(storage, name, len(config.tasks), _baseline_objective(config),
                   direction="maximize", seed=config.seed, lease_seconds=config.lease_seconds,
                   metric_name="GRU best valid accuracy",
                   study_attrs={"search": config.name, "cell": BASELINE,
                                "tasks": list(config.tasks),
                                "objective": "the GRU's best valid accuracy on the trial's task "
                                             "(user attribute task) over the search's settings; "
                                             "the denominator of the search's fitness"})
    try:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        trials = []
    values = {}
    for t in trials:
        if t.state == TrialState.COMPLETE:
            values[t.user_attrs["task"]] = t.value
        elif t.state == TrialState.FAIL and "error" in t.user_attrs:
            raise SearchError(f"the GRU baseline failed: {t.user_attrs['error']}")
    missing = [t for t in config.tasks if t not in values]
    if missing:
        raise SearchError(f"no GRU baseline yet for {', '.join(missing)}: the search has not "
                          "measured it; run `rnnlab search run` first")
    return {t: values[t] for t in config.tasks}


def _reference_objective(config: SearchConfig, base: dict[str, float]):
    def objective(trial: optuna.Trial) -> float:
        label, cell, options = REFERENCES[trial.user_attrs["index"]]
        result = evaluate_on_tasks(_graph_of(cell, config.budget), list(config.tasks),
                                   config.settings, config.budget, trial,
                                   trial.user_attrs["seed"], cell_options=options,
                                   device=config.device)
        trial.set_user_attr("label", label)
        trial.set_user_attr("accuracy", result["accuracy"])
        trial.set_user_attr("runs", result["runs"])
        return fitness(result["accuracy"], base)

    return objective


def references(storage, config: SearchConfig, compute: bool = True) -> list[dict]:
    """LSTM, LSTM-b, GRU, MUT1–3 under the search's budget: ``[{label, accuracy, fitness}]``."""
    base = baselines(storage, config, compute=False)
    name = f"{config.name}.references"
    if compute:
        config, gpus = placed(config)
        run_workers(config.workers, _reference_worker, (config,), gpus=gpus)
    try:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return []
    rows = [{"label": t.user_attrs["label"], "accuracy": t.user_attrs["accuracy"],
             "fitness": fitness(t.user_attrs["accuracy"], base)}
            for t in trials if t.state == TrialState.COMPLETE]
    order = [r[0] for r in REFERENCES]
    return sorted(rows, key=lambda r: order.index(r["label"]))


def _reference_worker(config: SearchConfig) -> None:
    torch.set_num_threads(config.threads)
    storage = storage_of(config)
    base = baselines(storage, config, compute=False)
    run_trials(storage, f"{config.name}.references", len(REFERENCES),
               _reference_objective(config, base), direction="maximize", seed=config.seed,
               lease_seconds=config.lease_seconds, metric_name="fitness",
               study_attrs={"search": config.name, "tasks": list(config.tasks),
                            "cells": [label for label, _, _ in REFERENCES],
                            "objective": FITNESS})


# ---- the population ---------------------------------------------------------------------------
@dataclass
class Architecture:
    """One architecture (canonical hash) and what its evaluations found."""

    hash: str
    graph: str  # cell JSON of its first evaluation
    equations: str
    accuracy: dict[str, float]  # best per task over all evaluations
    evaluations: int
    first: int  # index of the trial that first evaluated it
    fitness: float = 0.0
    engine: str = "unknown"


def architectures(trials, base: dict[str, float]) -> list[Architecture]:
    """Evaluated architectures, best fitness first (ties: the earlier found first)."""
    found: dict[str, Architecture] = {}
    for t in sorted(trials, key=lambda t: t.number):
        a = t.user_attrs
        if t.state != TrialState.COMPLETE or a.get("status") != "evaluated":
            continue
        arch = found.get(a["hash"])
        if arch is None:
            found[a["hash"]] = Architecture(a["hash"], a["graph"], a["equations"],
                                            dict(a["accuracy"]), 1, a.get("index", t.number),
                                            engine=a.get("engine", "unknown"))
            continue
        arch.evaluations += 1
        for task, value in a["accuracy"].items():
            arch.accuracy[task] = max(arch.accuracy.get(task, 0.0), value)
    for arch in found.values():
        arch.fitness = fitness({t: arch.accuracy.get(t, 0.0) for t in base}, base)
    return sorted(found.values(), key=lambda a: (-a.fitness, a.first))


class _Objective:
    """One candidate evaluation (see the module docstring)."""

    def __init__(self, config: SearchConfig, base: dict[str, float]):
        self.config = config
        self.base = base

    def __call__(self, trial: optuna.Trial) -> float:
        c = self.config
        start = time.perf_counter()
        index, seed = trial.user_attrs["index"], trial.user_attrs["seed"]
        rng = random.Random(seed)
        done = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        listed = architectures(done, self.base)[: c.population]
        bad = {t.user_attrs.get("hash") for t in done if t.user_attrs.get("status") == "filtered"}
        passed = {t.user_attrs.get("hash") for t in done
                  if t.user_attrs.get("status") == "evaluated"}
        rejected: list[dict] = []
        parent = None
        seeds = {s: _graph_of(s, c.budget) for s in SEEDS}
        seen = {t.user_attrs.get("hash") for t in trial.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))}
        missing = [s for s, g in seeds.items() if architecture_hash(g) not in seen]
        if index < len(SEEDS) or missing or not listed:
            # the seeds first (by index; a re-run or a gap in the indices still gets both)
            kind = "seed"
            pick = (SEEDS[index] if index < len(SEEDS)
                    else missing[0] if missing else rng.choice(SEEDS))
            graph = seeds[pick]
        elif rng.random() < c.reevaluate:
            kind = "reevaluation"
            chosen = rng.choice(listed)
            parent, graph = chosen.hash, from_json(chosen.graph)
        else:
            kind = "mutation"
            chosen = rng.choice(listed)
            parent, graph = chosen.hash, self._mutant(from_json(chosen.graph), rng, bad,
                                                       passed, rejected)
        trial.set_user_attr("kind", kind)
        trial.set_user_attr("parent", parent)
        trial.set_user_attr("rejected", rejected)
        if graph is None:
            trial.set_user_attr("status", "rejected")
            trial.set_user_attr("seconds", time.perf_counter() - start)
            return 0.0
        key = architecture_hash(graph)
        graph = graph.replace(name=f"search-{key}")
        trial.set_user_attr("hash", key)
        trial.set_user_attr("graph", to_json(graph, indent=None))
        trial.set_user_attr("equations", str(graph))
        trial.set_user_attr("engine", engine_used(graph))
        if key not in passed:
            result = memorisation_filter(graph, c.budget, seed, device=c.device)
            trial.set_user_attr("filter", result)
            if not result["passed"]:
                trial.set_user_attr("status", "filtered")
                trial.set_user_attr("seconds", time.perf_counter() - start)
                return 0.0
        result = evaluate_on_tasks(graph, list(c.tasks), c.settings, c.budget, trial, seed,
                                   device=c.device)
        trial.set_user_attr("accuracy", result["accuracy"])
        trial.set_user_attr("runs", result["runs"])
        trial.set_user_attr("status", "evaluated")
        trial.set_user_attr("seconds", time.perf_counter() - start)
        return fitness(result["accuracy"], self.base)

    def _mutant(self, parent: Graph, rng: random.Random, bad: set, passed: set,
                rejected: list) -> Graph | None:
        """A mutant of ``parent`` that is not degenerate and not known to fail the filter."""
        for _ in range(MUTATION_ATTEMPTS):
            try:
                child = mutate(parent, rng)
            except GraphError:
                rejected.append({"hash": None, "reason": "no valid mutation of the parent"})
                return None
            key = architecture_hash(child)
            if key in passed:
                return child  # re-discovered: evaluated again, counted once
            reason = ("known to fail the memorisation filter" if key in bad
                      else degenerate_reason(child, seed=rng.randrange(2**31)))
            if reason is None:
                return child
            rejected.append({"hash": key, "reason": reason})
        return None


# ---- running -------------------------------------------------------------------------------
def work(config: SearchConfig) -> int:
    """One worker: baselines first (shared), then candidates until ``config.steps`` settle."""
    torch.set_num_threads(config.threads)
    storage = storage_of(config)
    _register(storage, config)
    base = baselines(storage, config)
    return run_trials(storage, config.name, config.steps, _Objective(config, base),
                      direction="maximize", seed=config.seed,
                      lease_seconds=config.lease_seconds, progress=_progress(config))


def placed(config: SearchConfig) -> tuple[SearchConfig, list[str | None]]:
    """``config`` with its number of workers and its resolved device (cpu or cuda), and each
    worker's GPU (rnnlab.trials.placement: one worker per visible GPU on CUDA)."""
    try:
        gpus = place(config.workers, config.device)
    except ValueError as error:
        raise SearchError(str(error)) from None
    return replace(config, workers=len(gpus), device=kind(gpus)), gpus


def _progress(config: SearchConfig):
    if (config.workers or 1) > 1 or config.quiet:
        return None
    start = time.time()

    def show(n_settled: int, n_trials: int, best: float | None) -> None:
        rate = n_settled / max(time.time() - start, 1e-9) * 3600
        best_text = "-" if best is None else f"{best:.3f}"
        print(f"search {config.name}: {n_settled}/{n_trials} candidates settled, best fitness "
              f"{best_text}, {rate:.0f} candidates/hour (this run)", flush=True)

    return show


def run(config: SearchConfig) -> None:
    """Run (or resume, or extend) the search with ``config.workers`` worker processes."""
    config.check()
    config, gpus = placed(config)
    quiet = config.quiet
    storage = storage_of(config)
    _register(storage, config)  # fail fast on a mismatched resume, before spawning
    if not quiet:
        where = "" if config.device == "cpu" else f" on GPUs {','.join(dict.fromkeys(gpus))}"
        print(f"search {config.name!r} on {describe_storage(config.storage, config.folder)}: "
              f"{config.steps} candidates, tasks {','.join(config.tasks)}, {config.settings} "
              f"setting(s) each, {config.workers} worker(s){where}", flush=True)
    if config.workers == 1:
        work(config)
    else:
        run_workers(config.workers, work, (config,), watch=_watch(config, storage, quiet),
                    gpus=gpus)


def _watch(config: SearchConfig, storage, quiet: bool):
    from ..trials import study_counts

    last = [None]

    def show() -> None:
        counts = study_counts(storage, config.name, config.lease_seconds)
        line = (f"search {config.name}: {counts['settled']}/{config.steps} settled, "
                f"{counts['running']} running")
        if line != last[0] and not quiet:
            print(line, flush=True)
            last[0] = line

    return show
