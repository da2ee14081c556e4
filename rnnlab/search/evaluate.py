"""Training a candidate cell under the search's budget: the lean loop, the filter, the settings.

A search trains thousands of small models, so it does not go through ``rnnlab.train.train``
(which writes a run directory, checkpoints, metrics files and plots for every run, and
re-builds the task each time): it uses a lean loop over the same pieces — ``rnnlab.tasks``
(batches, loss, metric), ``rnnlab.RNN`` (the cell on the fused engine) and Adam with gradient
clipping — and keeps the tasks loaded for the life of the worker.

Model (Jozefowicz et al. 2015: inputs embedded to the hidden size n)::

    ids (T, B) --Embedding(V, n)--> (T, B, n) --RNN(cell, n, n)--> (T, B, n) --Linear(n, V)-->

so a cell's raw ``x`` terms (MUT1's ``tanh(x)``) are well defined. Stream tasks (``ptb``) carry
the detached state across continuing batches (truncated BPTT). ``device`` is where the model and
its batches live: ``cpu``, or ``cuda`` in a worker that sees one GPU (rnnlab.trials.placement).

A **setting** is one random draw of the hyperparameters, each from the trial's seeded sampler
(so a re-run draws the same): learning rate log-uniform in [1e-3, 3e-2] (Adam), initialisation
scheme (uniform ±1/√n, xavier, orthogonal) and gradient-norm clip log-uniform in [1, 10].
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .. import tasks as task_registry
from ..lang import Graph
from ..tasks.base import Tokens

INITS = ("uniform", "xavier", "orthogonal")


@dataclass(frozen=True)
class Budget:
    """What one training of one candidate on one task may use (the same for every cell)."""

    hidden: int = 32  # n: embedding and state size
    batch_size: int = 32  # sequences per step
    train_steps: int = 150  # optimiser steps per training
    eval_batches: int = 8  # valid batches per evaluation (accuracy over those)
    seq_len: int = 35  # truncated-BPTT length of stream tasks (ptb)
    filter_steps: int = 800  # most optimiser steps of the memorisation filter
    filter_threshold: float = 0.95  # accuracy the filter asks for (Jozefowicz: 95%)
    filter_hidden: int = 64  # n for the filter (5-of-26 recall needs more than 32 units)
    filter_batch_size: int = 128  # sequences per filter step
    task_options: dict = field(default_factory=dict)  # task name -> options for tasks.make

    def to_dict(self) -> dict:
        return asdict(self)


_TASKS: dict[tuple, object] = {}


def get_task(name: str, options: dict | None = None):
    """The task ``name`` (built once per process: PTB takes seconds to read)."""
    options = dict(options or {})
    key = (name, tuple(sorted(options.items())))
    if key not in _TASKS:
        task = task_registry.make(name, **options)
        if not isinstance(task.input, Tokens) or not isinstance(task.output, Tokens):
            raise ValueError(
                f"search task {name!r} is not a token task ({task.input} -> {task.output}); "
                "the search trains next-symbol models: use arithmetic, xml, ptb, memorize, "
                "copy, addition, text or another Tokens -> Tokens task"
            )
        _TASKS[key] = task
    return _TASKS[key]


def check_tasks(names: list[str], budget: Budget) -> None:
    """Raise ValueError (one line) for an unknown or unsuitable task, before any work."""
    for name in names:
        if name not in task_registry.names():
            raise ValueError(
                f"unknown task {name!r}; known tasks: {', '.join(task_registry.names())}"
            )
    for name in names:
        get_task(name, budget.task_options.get(name))


def draw_setting(suggest, task: str, k: int) -> dict:
    """Setting ``k`` for ``task``, drawn with ``suggest`` (an optuna.Trial)."""
    prefix = f"{task}.{k}"
    return {
        "lr": suggest.suggest_float(f"{prefix}.lr", 1e-3, 3e-2, log=True),
        "init": suggest.suggest_categorical(f"{prefix}.init", INITS),
        "clip": suggest.suggest_float(f"{prefix}.clip", 1.0, 10.0, log=True),
    }


class _Model(nn.Module):
    def __init__(self, cell: Graph | str, vocab: int, hidden: int, cell_options: dict):
        super().__init__()
        from ..engine import RNN

        self.embed = nn.Embedding(vocab, hidden)
        self.rnn = RNN(cell, hidden, hidden, **cell_options)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids, state):
        out, state = self.rnn(self.embed(ids), state)
        return self.head(out), state


def _detach(state):
    from ..engine import detach

    return None if state is None else detach(state)


def train_once(cell: Graph | str, task_name: str, setting: dict, budget: Budget, seed: int,
               steps: int | None = None, cell_options: dict | None = None, *,
               hidden: int | None = None, batch_size: int | None = None,
               target: float | None = None, check_every: int = 100,
               device: str = "cpu") -> dict:
    """Train ``cell`` on one task with one setting; returns the valid metrics.

    Returns ``{"accuracy", "loss", "seconds", "diverged", "steps"}``; a run whose loss turns
    NaN/inf stops there and scores accuracy 0. With ``target``, valid accuracy is also measured
    every ``check_every`` steps and training stops as soon as it reaches ``target``.
    """
    task = get_task(task_name, budget.task_options.get(task_name))
    hidden = budget.hidden if hidden is None else hidden
    batch_size = budget.batch_size if batch_size is None else batch_size
    torch.manual_seed(seed)
    options = dict(cell_options or {})
    options.setdefault("init", setting.get("init", "uniform"))
    model = _Model(cell, task.output.size, hidden, options).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=setting["lr"])
    clip = setting.get("clip", 5.0)
    start = time.perf_counter()
    steps = budget.train_steps if steps is None else steps
    batches = task.batches("train", batch_size, seq_len=budget.seq_len, seed=seed % (2**31))
    state = None
    done = 0
    while done < steps:
        model.train()
        batch = next(batches).to(device)
        state = _detach(state) if batch.continues else None
        logits, state = model(batch.inputs, state)
        loss = task.loss(logits, batch)
        if not torch.isfinite(loss):
            return {"accuracy": 0.0, "loss": math.inf, "diverged": True, "steps": done,
                    "seconds": time.perf_counter() - start}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        done += 1
        if target is not None and done % check_every == 0 and done < steps:
            if _validate(model, task, budget, batch_size)["accuracy"] >= target:
                break
    result = _validate(model, task, budget, batch_size)
    diverged = not math.isfinite(result["loss"])
    return {
        "accuracy": 0.0 if diverged else float(result["accuracy"]),
        "loss": float(result["loss"]),
        "diverged": diverged,
        "steps": done,
        "seconds": time.perf_counter() - start,
    }


def _validate(model: _Model, task, budget: Budget, batch_size: int) -> dict:
    """The task's metrics over the first ``budget.eval_batches`` valid batches."""
    metric = task.metric()
    model.eval()
    state = None
    device = next(model.parameters()).device
    with torch.no_grad():
        valid = task.batches("valid", batch_size, seq_len=budget.seq_len)
        for _, batch in zip(range(budget.eval_batches), valid):
            batch = batch.to(device)
            state = state if batch.continues else None
            logits, state = model(batch.inputs, state)
            metric.update(logits, batch)
    return metric.compute()


FILTER_SETTING = {"lr": 1e-2, "init": "uniform", "clip": 5.0}


def memorisation_filter(cell: Graph, budget: Budget, seed: int, device: str = "cpu") -> dict:
    """Jozefowicz et al.'s filter: read 5 symbols of 26, reproduce them (``memorize`` task).

    One training of at most ``budget.filter_steps`` steps with a fixed setting (Adam, lr 0.01,
    n = ``filter_hidden``), stopping early once valid accuracy reaches the threshold; returns
    ``{"accuracy", "passed", "steps", "seconds"}``.
    """
    result = train_once(cell, "memorize", FILTER_SETTING, budget, seed,
                        steps=budget.filter_steps, hidden=budget.filter_hidden,
                        batch_size=budget.filter_batch_size, target=budget.filter_threshold,
                        device=device)
    return {
        "accuracy": result["accuracy"],
        "passed": result["accuracy"] >= budget.filter_threshold,
        "steps": result["steps"],
        "seconds": result["seconds"],
    }


def evaluate_on_tasks(cell: Graph | str, tasks: list[str], settings: int, budget: Budget,
                      suggest, seed: int, cell_options: dict | None = None,
                      device: str = "cpu") -> dict:
    """Train on every task with ``settings`` random settings each.

    Returns ``{"accuracy": {task: best}, "runs": {task: [setting + accuracy, ...]},
    "seconds"}``.
    """
    start = time.perf_counter()
    best: dict[str, float] = {}
    runs: dict[str, list] = {}
    for t, task in enumerate(tasks):
        runs[task] = []
        for k in range(settings):
            setting = draw_setting(suggest, task, k)
            result = train_once(cell, task, setting, budget, seed + 1000 * t + k,
                                cell_options=cell_options, device=device)
            runs[task].append({**setting, "accuracy": result["accuracy"],
                               "diverged": result["diverged"]})
            best[task] = max(best.get(task, 0.0), result["accuracy"])
    return {"accuracy": best, "runs": runs, "seconds": time.perf_counter() - start}


def fitness(accuracy: dict[str, float], baseline: dict[str, float]) -> float:
    """Jozefowicz et al.'s fitness: min over tasks of (best accuracy / GRU's best accuracy)."""
    return min(accuracy[t] / baseline[t] if baseline[t] > 0 else 0.0 for t in baseline)
