"""Re-training a search's winners: several seeds and settings at a longer budget, against GRU.

A search ranks cells on one training per setting at its own budget (at the small preset one
setting of 150 steps), and the GRU's own accuracy varies by about 10% between two such
measurements: its order is mostly noise. This module asks whether any winner beats the GRU
beyond that noise. The **contenders** are the search's best ``n`` found cells (seeds excluded),
the references GRU, LSTM (``forget_bias`` 0) and LSTM-b (``forget_bias`` 1), and any cells
named. Each is trained on each of the search's tasks with ``seeds`` x ``settings`` runs::

    run (s, k) on task t:  setting k of task t  (lr, init, clip: the search's distribution,
                                                 drawn once from (search seed, t, k))
                           training seed of (search seed, t, s, k)
                           train_steps optimiser steps (default 4x the search's)

Settings and training seeds do not depend on the cell, so every cell sees the same runs. The
rest of the budget (hidden size, batch, valid batches) is the search's.

**Storage**: study ``<search>.<tag>.<cell>`` (tag ``retrain``; cell: the reference's label or
the architecture hash) on the search's own storage, one trial per run, value = its valid
accuracy, trial index ``i = (s * settings + k) * len(tasks) + t`` (so more ``seeds`` extend a
study). Its user attribute ``retrain`` holds what defines the runs (cell, options, tasks,
settings, budget); asking for other values under the same tag is refused before anything is
written. Trials run through ``rnnlab.trials.run_trials``: a stopped re-training resumes
without repeating a finished run, a killed worker's run is re-run, and ``workers`` processes
share the work (on GPUs as the search places them).

**Statistics** (per cell and task, n = seeds x settings runs): relative accuracy = accuracy /
the GRU's mean accuracy on the task in this re-training (the search's per-task fitness, with
the GRU measured the same way); its mean, std and 95% interval (Student's t), and Welch's
t-test of the cell's accuracies against the GRU's (two-sided). Per cell, **fitness** per run =
min over tasks of its relative accuracy, with the same statistics, and the **paper's fitness**
= min over tasks of (best accuracy of the n runs / the GRU's best of its n). A cell "beats GRU
beyond noise" only where p < 0.05 and its mean is higher.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from .. import cells as cell_registry
from ..lang.serialize import from_json, to_json
from ..trials import StudyMismatch, check_study, run_trials, run_workers, settled, study_counts
from .canonical import architecture_hash
from .evaluate import Budget, draw_setting, train_once
from .loop import (
    REFERENCES,
    SearchConfig,
    SearchError,
    architectures,
    placed,
    seed_hashes,
    storage_of,
)
from .results import open_search

# Jozefowicz et al.'s comparison: the GRU (the fitness's denominator) and both LSTMs
COMPARED = ("GRU", "LSTM", "LSTM-b")
BASELINE_LABEL = "GRU"
ALPHA = 0.05  # two-sided level of Welch's test and of the intervals (95%)
OBJECTIVE = ("valid accuracy of one training of the cell (user attribute cell) on the trial's "
             "task with the trial's seed and setting")


@dataclass(frozen=True)
class Contender:
    """One cell to re-train: how the tables name it and what trains."""

    label: str  # "GRU", "#3 3fa1c2b4d5e6", "mut1", "cell.json"
    key: str  # the study's last part: a reference's label or the architecture hash
    graph: str  # cell JSON at the search's hidden size
    options: dict  # cell options (forget_bias of the LSTMs)
    search_fitness: float | None = None  # the cell's fitness in the search (found cells)


@dataclass(frozen=True)
class Plan:
    """What every worker needs (picklable: workers are spawned processes)."""

    config: SearchConfig  # the search, its budget with the re-training's train_steps
    contenders: tuple[Contender, ...]
    seeds: int  # training seeds per setting
    settings: int  # settings per task, the same for every cell
    tag: str  # studies <search>.<tag>.<cell>, files <dir>/<tag>.json and .md

    @property
    def tasks(self) -> tuple[str, ...]:
        return self.config.tasks

    @property
    def runs(self) -> int:
        """Trials per cell: seeds x settings x tasks."""
        return self.seeds * self.settings * len(self.tasks)

    def study(self, contender: Contender) -> str:
        return f"{self.config.name}.{self.tag}.{contender.key}"

    def run_of(self, index: int) -> tuple[int, int, str]:
        """(seed s, setting k, task) of trial ``index``."""
        t = index % len(self.tasks)
        k = index // len(self.tasks) % self.settings
        return index // (len(self.tasks) * self.settings), k, self.tasks[t]

    def setting(self, task: str, k: int) -> dict:
        """Setting ``k`` of ``task``: the search's distribution, the same for every cell."""
        return draw_setting(_FixedDraw(self.config.seed), task, k)

    def training_seed(self, task: str, s: int, k: int) -> int:
        return _derive(self.config.seed, "train", task, s, k) % 2**31

    def identity(self, contender: Contender) -> dict:
        """What defines a cell's runs (compared as stored: JSON types)."""
        return {"search": self.config.name, "cell": contender.key,
                "hash": architecture_hash(from_json(contender.graph)),
                "options": dict(contender.options), "tasks": list(self.tasks),
                "settings": self.settings, "settings_seed": self.config.seed,
                "budget": self.config.budget.to_dict()}


def _derive(*parts: object) -> int:
    """A 32-bit seed from the parts (stable across processes and runs)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


class _FixedDraw:
    """Stands in for an optuna.Trial in ``draw_setting``: each value depends only on (seed,
    parameter name), and the name holds the task and the setting's number."""

    def __init__(self, seed: int):
        self.seed = seed

    def _uniform(self, name: str) -> float:
        return random.Random(_derive(self.seed, "setting", name)).random()

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        u = self._uniform(name)
        if log:
            return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        return low + u * (high - low)

    def suggest_categorical(self, name: str, choices):
        return choices[min(int(self._uniform(name) * len(choices)), len(choices) - 1)]


# ---- the contenders -------------------------------------------------------------------------
def _reference(label: str, budget: Budget) -> Contender:
    _, cell, options = next(r for r in REFERENCES if r[0] == label)
    graph = cell_registry.graph(cell, budget.hidden, budget.hidden)
    return Contender(label, label, to_json(graph, indent=None), dict(options))


def _named(name: str, budget: Budget, archs, ranks: dict[str, int]) -> Contender:
    """A cell named on the command line: a reference's label, a ``.json`` cell file, a
    registered cell, or a hash prefix (4+ characters) of an architecture of the search."""
    labels = {label.lower(): label for label, _, _ in REFERENCES}
    if name.lower() in labels:
        return _reference(labels[name.lower()], budget)
    if name.lower().endswith(".json"):
        graph = cell_registry.load(name)
        return Contender(name, architecture_hash(graph), to_json(graph, indent=None), {})
    if name in cell_registry.names():
        graph = cell_registry.graph(name, budget.hidden, budget.hidden)
        return Contender(name, architecture_hash(graph), to_json(graph, indent=None), {})
    matches = [a for a in archs if len(name) >= 4 and a.hash.startswith(name.lower())]
    if len(matches) == 1:
        arch = matches[0]
        return Contender(f"#{ranks[arch.hash]} {arch.hash}", arch.hash, arch.graph, {},
                         arch.fitness)
    if len(matches) > 1:
        raise SearchError(f"--cells: {name!r} matches {len(matches)} architectures "
                          f"({', '.join(a.hash for a in matches[:5])}); give more characters")
    raise SearchError(
        f"--cells: unknown cell {name!r}; expected a reference ("
        + ", ".join(label for label, _, _ in REFERENCES) + "), a registered cell ("
        + ", ".join(cell_registry.names()) + "), a .json cell file, or 4+ characters of a "
        "hash from `rnnlab search top`"
    )


def contenders(archs, seeds: dict[str, str], n: int, named: list[str],
               budget: Budget) -> list[Contender]:
    """The top ``n`` found cells (seeds excluded), GRU, LSTM, LSTM-b, then the named cells;
    each architecture-and-options once (the first name wins)."""
    ranks = {a.hash: rank for rank, a in enumerate(archs, 1)}
    found = [a for a in archs if a.hash not in seeds][:n]
    chosen = [Contender(f"#{ranks[a.hash]} {a.hash}", a.hash, a.graph, {}, a.fitness)
              for a in found]
    chosen += [_reference(label, budget) for label in COMPARED]
    chosen += [_named(name, budget, archs, ranks) for name in named]
    unique, seen = [], set()
    for c in chosen:
        if c.key not in seen:
            unique.append(c)
            seen.add(c.key)
    return unique


# ---- training -------------------------------------------------------------------------------
def _objective(plan: Plan, contender: Contender):
    graph = from_json(contender.graph)

    def objective(trial: optuna.Trial) -> float:
        s, k, task = plan.run_of(trial.user_attrs["index"])
        setting = plan.setting(task, k)
        seed = plan.training_seed(task, s, k)
        result = train_once(graph, task, setting, plan.config.budget, seed,
                            cell_options=contender.options, device=plan.config.device)
        for key, value in (("cell", contender.label), ("task", task), ("seed_index", s),
                           ("setting_index", k), ("setting", setting), ("training_seed", seed),
                           ("diverged", result["diverged"]), ("seconds", result["seconds"])):
            trial.set_user_attr(key, value)
        return result["accuracy"]

    return objective


def _run_cell(plan: Plan, storage, contender: Contender, greedy: bool, progress=None) -> None:
    name = plan.study(contender)
    lease = plan.config.lease_seconds

    def claimed() -> bool:  # every run is settled or under way: go on to the next cell
        counts = study_counts(storage, name, lease)
        return counts["settled"] + counts["running"] >= plan.runs

    run_trials(storage, name, plan.runs, _objective(plan, contender), direction="maximize",
               seed=plan.config.seed, lease_seconds=lease, progress=progress,
               stop_when=claimed if greedy else None, metric_name="valid accuracy",
               study_attrs={"retrain": plan.identity(contender), "objective": OBJECTIVE,
                            "label": contender.label, "graph": contender.graph})


def work(plan: Plan) -> None:
    """One worker: claim free runs cell after cell, then wait for (or re-run) the rest."""
    torch.set_num_threads(plan.config.threads)
    storage = storage_of(plan.config)
    alone = not plan.config.quiet and (plan.config.workers or 1) == 1  # else: run_workers' watch
    for greedy in (True, False):
        for contender in plan.contenders:
            _run_cell(plan, storage, contender, greedy, _progress(contender) if alone else None)


def _progress(contender: Contender):
    def show(n_settled: int, n_trials: int, best: float | None) -> None:
        print(f"retrain {contender.label}: {n_settled}/{n_trials} runs settled", flush=True)

    return show


def _watch(plan: Plan, storage):
    last = [None]

    def show() -> None:
        counts = [study_counts(storage, plan.study(c), plan.config.lease_seconds)
                  for c in plan.contenders]
        line = (f"retrain {plan.config.name}: {sum(c['settled'] for c in counts)}/"
                f"{plan.runs * len(plan.contenders)} runs settled, "
                f"{sum(c['running'] for c in counts)} running")
        if line != last[0] and not plan.config.quiet:
            print(line, flush=True)
            last[0] = line

    return show


def _check(storage, plan: Plan) -> None:
    """Refuse (before anything is written) a cell already re-trained with other options."""
    for contender in plan.contenders:
        try:
            check_study(storage, plan.study(contender), direction="maximize",
                        identity="retrain", attrs={"retrain": plan.identity(contender)})
        except StudyMismatch as error:
            shown = ", ".join(f"{path}={old!r} (asked {new!r})"
                              for path, old, new in error.differences[:3])
            raise SearchError(
                f"{contender.label} was re-trained under --tag {plan.tag} with {shown}; ask for "
                "the same options, or keep both with another --tag"
            ) from None


# ---- reading and statistics ----------------------------------------------------------------
def _results(storage, plan: Plan, contender: Contender) -> tuple[dict, list[str]]:
    """``{(task, s, k): accuracy}`` of the cell's settled runs, and the errors of failed ones."""
    try:
        trials = optuna.load_study(study_name=plan.study(contender),
                                   storage=storage).get_trials(deepcopy=False)
    except KeyError:
        return {}, []
    values, errors = {}, []
    for t in trials:
        index = t.user_attrs.get("index")
        if index is None or index >= plan.runs:
            continue
        s, k, task = plan.run_of(index)
        if t.state == TrialState.COMPLETE:
            values[(task, s, k)] = t.value
        elif settled(t) and "error" in t.user_attrs:
            errors.append(f"{contender.label} {task} seed {s} setting {k}: "
                          f"{t.user_attrs['error']}")
    return values, errors


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def describe(values: list[float], reference: list[float] | None) -> dict:
    """Mean, std, 95% interval of the mean (Student's t) of ``values``, and Welch's two-sided
    t-test against ``reference`` (None for the GRU itself) with its verdict."""
    from scipy import stats

    mean, std = _mean_std(values)
    interval = None
    if std is not None:
        half = stats.t.ppf(1 - ALPHA / 2, len(values) - 1) * std / math.sqrt(len(values))
        interval = [mean - half, mean + half]
    p = None
    if reference is None:
        verdict = "(the reference)"
    elif len(values) < 2 or len(reference) < 2:
        verdict = "too few runs to test"
    else:
        with warnings.catch_warnings():  # nearly equal values: scipy warns, p stays usable
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ttest_ind(values, reference, equal_var=False)
        p = None if math.isnan(result.pvalue) else float(result.pvalue)
        higher = mean > sum(reference) / len(reference)
        if p is None:
            verdict = "no spread to test"
        elif p < ALPHA:
            verdict = "beats GRU beyond noise" if higher else "below GRU beyond noise"
        else:
            verdict = "within noise"
    return {"n": len(values), "mean": mean, "std": std, "interval": interval, "p": p,
            "verdict": verdict, "values": values}


def summarise(plan: Plan, results: dict[str, dict]) -> dict:
    """Per cell and task, and per cell over tasks (see the module docstring); ``results``:
    each contender's key -> ``{(task, s, k): accuracy}``."""
    runs = [(s, k) for s in range(plan.seeds) for k in range(plan.settings)]
    gru = results[BASELINE_LABEL]

    def accuracies(values: dict, task: str) -> list[float]:
        return [values[(task, s, k)] for s, k in runs if (task, s, k) in values]

    gru_mean = {t: _mean_std(accuracies(gru, t))[0] or 0.0 for t in plan.tasks}
    gru_best = {t: max(accuracies(gru, t), default=0.0) for t in plan.tasks}

    def relative(value: float, task: str) -> float:
        return value / gru_mean[task] if gru_mean[task] > 0 else 0.0

    def per_run_fitness(values: dict) -> list[float]:
        return [min(relative(values[(t, s, k)], t) for t in plan.tasks) for s, k in runs
                if all((t, s, k) in values for t in plan.tasks)]

    gru_fitness = per_run_fitness(gru)
    rows, fitness_rows = [], []
    for c in plan.contenders:
        mine = results[c.key]
        is_gru = c.key == BASELINE_LABEL
        for task in plan.tasks:
            acc = accuracies(mine, task)
            row = describe([relative(v, task) for v in acc],
                           None if is_gru else [relative(v, task) for v in accuracies(gru, task)])
            mean, std = _mean_std(acc)
            rows.append({"cell": c.label, "task": task, **row, "accuracy": {
                "mean": mean, "std": std, "best": max(acc, default=None), "values": acc}})
        best = {t: max(accuracies(mine, t), default=0.0) for t in plan.tasks}
        paper = min(best[t] / gru_best[t] if gru_best[t] > 0 else 0.0 for t in plan.tasks)
        fitness_rows.append({"cell": c.label, "search_fitness": c.search_fitness,
                             **describe(per_run_fitness(mine), None if is_gru else gru_fitness),
                             "paper_fitness": paper})
    return {"rows": rows, "fitness": fitness_rows, "gru_mean_accuracy": gru_mean}


# ---- the report ----------------------------------------------------------------------------
def _number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _spread(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"


def _interval(interval: list[float] | None) -> str:
    return "—" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def _p(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p:.2g}" if p >= 1e-3 else "< 0.001"


def markdown(plan: Plan, summary: dict, search_steps: int, errors: list[str],
             missing: str = "") -> str:
    """The report's text: what was trained, the fitness table, the per-task table;
    ``missing`` says why there are fewer found cells than asked."""
    b = plan.config.budget
    settings = "; ".join(
        f"{task} {k}: lr {s['lr']:.2g}, {s['init']}, clip {s['clip']:.2g}"
        for task in plan.tasks for k in range(plan.settings)
        for s in [plan.setting(task, k)])
    lines = [
        f"# Search {plan.config.name}: the winners re-trained",
        "",
        f"Every cell trained on {', '.join(plan.tasks)} with {plan.seeds} seed(s) x "
        f"{plan.settings} setting(s) = {plan.seeds * plan.settings} runs per task, "
        f"{b.train_steps} steps each (the search: {search_steps}); hidden {b.hidden}, batch "
        f"{b.batch_size}, accuracy on {b.eval_batches} valid batches. The settings, drawn once "
        f"from the search's distribution and the same for every cell: {settings}.",
        "",
        "Relative = accuracy / the GRU's mean accuracy on the task in this re-training. "
        "Fitness of a run = min over tasks of its relative accuracy; paper fitness = min over "
        "tasks of (best of the n runs / the GRU's best of its n). Interval: 95% for the mean "
        "(Student's t). p: Welch's two-sided t-test against the GRU's runs; the verdict says "
        f"\"beats GRU beyond noise\" only when p < {ALPHA} and the mean is higher.",
        *(["", missing] if missing else []),
        "",
        "## Fitness (min over tasks)",
        "",
        "| cell | search fitness | n | fitness mean ± std | 95% interval | paper fitness | "
        "p vs GRU | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["fitness"]:
        lines.append(f"| {r['cell']} | {_number(r['search_fitness'])} | {r['n']} | "
                     f"{_spread(r['mean'], r['std'])} | {_interval(r['interval'])} | "
                     f"{_number(r['paper_fitness'])} | {_p(r['p'])} | {r['verdict']} |")
    lines += [
        "",
        "## Per task",
        "",
        "| cell | task | n | accuracy mean ± std | relative mean ± std | 95% interval | "
        "p vs GRU | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["rows"]:
        a = r["accuracy"]
        lines.append(f"| {r['cell']} | {r['task']} | {r['n']} | {_spread(a['mean'], a['std'])} "
                     f"| {_spread(r['mean'], r['std'])} | {_interval(r['interval'])} | "
                     f"{_p(r['p'])} | {r['verdict']} |")
    beats = [r["cell"] for r in summary["fitness"] if r["verdict"] == "beats GRU beyond noise"]
    lines += ["", "Beats the GRU beyond noise on fitness: "
              + (", ".join(beats) if beats else "none") + "."]
    if errors:
        lines += ["", f"{len(errors)} run(s) failed with an error (left out of n):",
                  *(f"* {e}" for e in errors[:20])]
    lines.append("")
    return "\n".join(lines)


# ---- the command ---------------------------------------------------------------------------
def retrain(config: SearchConfig, n: int = 5, seeds: int = 3, settings: int = 2,
            train_steps: int | None = None, cells: list[str] | tuple[str, ...] = (),
            tag: str = "retrain", train: bool = True) -> tuple[str, dict, list[Path]]:
    """Re-train the search's top ``n`` found cells, GRU, LSTM, LSTM-b and ``cells``; see the
    module docstring. ``train_steps`` None: 4x the search's. ``train=False`` reports what is
    stored. Returns (the Markdown text, the summary written as JSON, the files written)."""
    for what, value, low in (("-n", n, 0), ("--seeds", seeds, 1), ("--settings", settings, 1),
                             ("--train-steps", 1 if train_steps is None else train_steps, 1)):
        if not isinstance(value, int) or value < low:
            raise SearchError(f"{what} must be an integer >= {low}, got {value!r}")
    if seeds * settings < 2:
        raise SearchError(f"--seeds x --settings must be >= 2 for a spread and a test, got "
                          f"{seeds} x {settings}")
    if not tag or not all(ch.isalnum() or ch in "-_" for ch in tag):
        raise SearchError(f"--tag must be a word of letters, digits, - and _, got {tag!r}")
    start = time.perf_counter()
    storage, config, trials, base = open_search(config)
    search_steps = config.budget.train_steps
    budget = replace(config.budget, train_steps=train_steps or 4 * search_steps)
    archs = architectures(trials, base)
    chosen = contenders(archs, seed_hashes(), n, list(cells), budget)
    found = sum(a.hash not in seed_hashes() for a in archs)
    missing = "" if found >= n else (f"The search has evaluated {found} cell(s) besides its "
                                     f"seeds GRU and LSTM; -n asked for {n}.")
    plan = Plan(replace(config, budget=budget), tuple(chosen), seeds, settings, tag)
    if train:
        plan.config.check()  # --workers, --device; the tasks load (PTB's files are found)
    _check(storage, plan)
    if train:
        placed_config, gpus = placed(plan.config)
        plan = replace(plan, config=placed_config)
        if not config.quiet:
            stored = sum(study_counts(storage, plan.study(c))["complete"] for c in chosen)
            print(f"retrain {config.name}: {len(chosen)} cells x {len(plan.tasks)} task(s) x "
                  f"{seeds} seed(s) x {settings} setting(s) = {plan.runs * len(chosen)} runs of "
                  f"{budget.train_steps} steps ({stored} stored), {plan.config.workers} "
                  "worker(s)", flush=True)
        if plan.config.workers == 1:
            work(plan)
        else:
            run_workers(plan.config.workers, work, (plan,), watch=_watch(plan, storage),
                        gpus=gpus)
    results, errors = {}, []
    for c in chosen:
        results[c.key], failed = _results(storage, plan, c)
        errors += failed
    summary = summarise(plan, results)
    text = markdown(plan, summary, search_steps, errors, missing)
    document = {
        "search": config.name, "tag": tag, "tasks": list(plan.tasks), "seeds": seeds,
        "settings": [{"task": t, "index": k, **plan.setting(t, k)}
                     for t in plan.tasks for k in range(settings)],
        "budget": budget.to_dict(), "search_train_steps": search_steps,
        "cells": [{"label": c.label, "key": c.key, "study": plan.study(c),
                   "options": c.options, "search_fitness": c.search_fitness,
                   "equations": str(from_json(c.graph))} for c in chosen],
        **summary, "errors": errors, "seconds": time.perf_counter() - start,
    }
    folder = config.folder
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{tag}.json", folder / f"{tag}.md"]
    paths[0].write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    paths[1].write_text(text, encoding="utf-8")
    return text, document, paths
