"""Benchmark tasks behind one interface, in a registry by name.

>>> import rnnlab.tasks as tasks
>>> tasks.names()[:3]
['addition', 'arithmetic', 'copy']
>>> task = tasks.make("parity", bits=50)
>>> batch = next(task.batches("train", batch_size=8))
>>> batch.inputs.shape, batch.targets.shape          # (T=1, B, k bits) -> (B,) labels
(torch.Size([1, 8, 50]), torch.Size([8]))

Each task is built by a factory registered with :func:`register`; :func:`make` passes its
keyword options on, so ``make("addition", digits=15)`` and ``make("tinyshakespeare",
path="~/data")`` are the whole API. ``docs/tasks.md`` lists every task and option.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from rnnlab.tasks.base import (
    Batch,
    Binary,
    BinaryMetric,
    Classes,
    ClassMetric,
    Features,
    Metric,
    Task,
    TokenMetric,
    Tokens,
)

REGISTRY: dict[str, Callable[..., Task]] = {}


def register(name: str) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorator: register a task factory (a class or function returning a Task) under ``name``."""

    def add(factory: Callable[..., Task]) -> Callable[..., Task]:
        if name in REGISTRY and REGISTRY[name] is not factory:
            raise ValueError(f"task {name!r} is already registered by {REGISTRY[name]!r}")
        REGISTRY[name] = factory
        return factory

    return add


def names() -> list[str]:
    """The registered task names, sorted."""
    return sorted(REGISTRY)


def make(name: str, **options) -> Task:
    """Build the task ``name`` with keyword ``options`` (see each task's docstring).

    Raises ValueError for an unknown name (listing the known ones) and TypeError for an option
    the task does not take (listing the ones it does).
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(names())}")
    factory = REGISTRY[name]
    parameters = inspect.signature(factory).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = [key for key in options if key not in parameters]
    if unknown and not takes_any:
        accepted = [p for p in parameters if p != "self"]
        raise TypeError(
            f"task {name!r} got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(accepted) or '(none)'}"
        )
    return factory(**options)


def factory_options(name: str) -> dict[str, object]:
    """The options ``make(name, ...)`` accepts, with their defaults (``inspect.Parameter.empty``
    for required ones)."""
    parameters = inspect.signature(REGISTRY[name]).parameters
    return {key: p.default for key, p in parameters.items() if key != "self"}


def training_defaults(name: str) -> dict[str, object]:
    """The training settings task ``name`` recommends (``{"task.batch_size": 8, ...}``: the
    ``training_defaults`` of its class), which ``rnnlab train`` and ``rnnlab compare`` apply
    unless the user sets them; ``{}`` for a task without any, or an unknown name."""
    return dict(getattr(REGISTRY.get(name), "training_defaults", {}))


def describe_all() -> dict[str, str]:
    """``{name: description}`` for every registered task, from the factory's ``summary``.

    Built without loading data, so it works with no data folder and no network.
    """
    return {name: describe(name) for name in names()}


def describe(name: str) -> str:
    """The one-paragraph description of task ``name``, without building it or loading data."""
    if name not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(names())}")
    summary = getattr(REGISTRY[name], "summary", None)
    if summary is None:
        raise TypeError(f"task factory for {name!r} has no 'summary' text to describe it")
    return summary


# Importing the families registers their tasks.
from rnnlab.tasks import (  # noqa: E402, F401
    audio,
    mnist,
    music,
    speech,
    synthetic,
    text,
    timing,
    translation,
)

__all__ = [
    "Batch",
    "Binary",
    "BinaryMetric",
    "ClassMetric",
    "Classes",
    "Features",
    "Metric",
    "REGISTRY",
    "Task",
    "TokenMetric",
    "Tokens",
    "describe",
    "describe_all",
    "factory_options",
    "make",
    "names",
    "register",
    "training_defaults",
]
