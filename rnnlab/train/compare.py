"""Several configurations on one task, side by side: same data, same budget, one table, one plot.

With no configurations given, :func:`compare` runs seed 000's experiment: a 3-layer stacked
LSTM against a 3-layer Grid LSTM (Kalchbrenner et al. 2016) of about the same number of
parameters, on character prediction over the default ``text`` corpus, each trained for the same
time budget from the same seed on the same batches.

A configuration is written ``[label:]key=value,key=value``; keys are ``section.field``, a
shortcut (``cell``, ``body``, ``task``, ``seed``) or a field name that only one section has
(``hidden_size``, ``lr``). Examples::

    rnnlab compare                                       # the seed experiment
    rnnlab compare cell=lstm cell=gru cell=cifg --task=arithmetic --budget-seconds=30
    rnnlab compare small:hidden_size=64 big:hidden_size=256 --no-match-params
    rnnlab compare cell=lstm cell=gru --task=jsb --train.max_steps=300   # equal steps

With ``match_params`` (the default), every configuration after the first that does not set
``hidden_size`` itself gets the hidden size whose parameter count is closest to the first's.
The comparison is at equal time by default (:data:`DEFAULT_BUDGET` per configuration); a limit
the user gives (``train.max_steps``, ``train.epochs``) lifts that default time budget.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

from rnnlab.train import bodies
from rnnlab.train.config import (
    SHORTCUTS,
    ConfigError,
    ExperimentConfig,
    Limits,
    apply_overrides,
    field_types,
    sections,
    to_dict,
    validate,
)
from rnnlab.train.model import count_parameters, model_for
from rnnlab.train.progress import write_line
from rnnlab.train.trainer import make_task, train

# Seed 000's experiment: 3-layer stacked LSTM vs 3-layer Grid LSTM, character prediction.
SEED_SPECS = ("lstm:body=stack,cell=lstm", "grid:body=grid")
SEED_SETTINGS = (
    "task.name=text",
    "model.num_layers=3",
    "model.hidden_size=128",  # the LSTM's size; the Grid LSTM's is matched to its count
    "train.epochs=none",
    "train.eval_every=100",
    "task.eval_batch_size=256",  # wide batches evaluate several times faster on a CPU
    "task.eval_max_batches=1",  # periodic validation on 25,600 characters; the final is whole
    "train.checkpoint_every=none",
    # One intra-op thread: these small per-step GEMMs gain little from a second thread, and two
    # threads collapse (measured 2-10x slower) when another process shares the two cores.
    "run.threads=1",
)
DEFAULT_BUDGET = 90.0  # seconds of training per configuration
SOURCE = "compare's default"  # where the seed settings' values come from, in a run's limits line


@dataclass
class Contender:
    """One configuration of a comparison."""

    label: str
    settings: list[str]  # section.field=value overrides on top of the shared config
    config: ExperimentConfig
    parameters: int = 0
    limits: Limits | None = None  # where its stopping rules came from (None: not known)


def resolve_key(key: str) -> str:
    """``cell`` -> ``model.cell``; ``hidden_size`` -> ``model.hidden_size``; full keys kept."""
    key = key.strip()
    if key in SHORTCUTS or "." in key:
        return SHORTCUTS.get(key, key)
    owners = [name for name, kind in sections().items() if key in field_types(kind)]
    if len(owners) == 1:
        return f"{owners[0]}.{key}"
    if not owners:
        raise ConfigError(
            f"unknown setting {key!r} : use section.field "
            f"(e.g. model.hidden_size) or a shortcut ({', '.join(SHORTCUTS)})"
        )
    raise ConfigError(f"setting {key!r} is ambiguous: write one of "
                      + ", ".join(f"{o}.{key}" for o in owners))


def parse_spec(spec: str) -> tuple[str | None, list[str]]:
    """``"label:cell=gru,lr=0.01"`` -> ``("label", ["model.cell=gru", "train.lr=0.01"])``."""
    label = None
    head, colon, rest = spec.partition(":")
    if colon and "=" not in head:
        label, spec = head.strip(), rest
        if not label:
            raise ConfigError(f"empty label in compare configuration {spec!r}")
    settings = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(
                f"compare configuration items look like key=value, got {item!r} in {spec!r}"
            )
        settings.append(f"{resolve_key(key)}={value}")
    return label, settings


def _auto_label(config: ExperimentConfig, taken: set[str]) -> str:
    base = bodies.label(config.model)
    label, n = base, 1
    while label in taken:
        n += 1
        label = f"{base}-{n}"
    return label


def contenders(
    base: ExperimentConfig, specs: list[str], limits: Limits | None = None
) -> list[Contender]:
    """The configurations: ``base`` with each spec's settings applied (checked). With
    ``limits`` (where ``base``'s stopping rules came from), a spec's settings count as given:
    a limit a spec sets lifts the default ones, as on the command line."""
    out: list[Contender] = []
    for spec in specs:
        label, settings = parse_spec(spec)
        config = apply_overrides(copy.deepcopy(base), settings)
        mine = None
        if limits is not None:
            mine = limits.give(config, [item.partition("=")[0] for item in settings])
            validate(config)
        label = label or _auto_label(config, {c.label for c in out})
        if label in {c.label for c in out}:
            raise ConfigError(f"two compare configurations are labelled {label!r}")
        out.append(Contender(label, settings, config, limits=mine))
    if not out:
        raise ConfigError("compare needs at least one configuration")
    names = {c.config.task.name for c in out}
    if len(names) > 1:
        raise ConfigError(f"compare runs one task, got {', '.join(sorted(names))}")
    return out


def parameter_count(config: ExperimentConfig, task) -> int:
    return count_parameters(model_for(task, config.model))


def match_hidden_size(config: ExperimentConfig, task, target: int) -> int:
    """The hidden size whose model (``config`` otherwise unchanged) has the parameter count
    closest to ``target``."""
    trial = copy.deepcopy(config)

    def count(hidden: int) -> int:
        trial.model.hidden_size = hidden
        return parameter_count(trial, task)

    high = max(config.model.hidden_size, 8)
    while count(high) < target:
        high *= 2
    low = 1
    while low < high:  # smallest hidden size with count >= target
        middle = (low + high) // 2
        if count(middle) >= target:
            high = middle
        else:
            low = middle + 1
    if low > 1 and abs(count(low - 1) - target) <= abs(count(low) - target):
        return low - 1
    return low


def compare(
    base: ExperimentConfig,
    specs: list[str] | None = None,
    *,
    out: str | None = None,
    match_params: bool = True,
    argv: list[str] | None = None,
    stream=None,
    echo=write_line,
    limits: Limits | None = None,
) -> tuple[str, Path, list[dict]]:
    """Train every configuration in turn and compare them.

    Writes, into ``out`` (default ``<run.root>/compare-<timestamp>-<task>``): one run directory
    per configuration, ``table.md``, ``compare.json``, ``curves.png`` (curves against training
    time, the budget's axis) and ``curves_by_step.png`` (against optimiser steps).
    ``limits`` says where ``base``'s stopping rules came from (``rnnlab.train.config.compose``),
    for each run's first line and for the specs' own limits (:func:`contenders`).
    Returns (table text, out dir, rows).
    """
    from rnnlab.train.plots import learning_curves
    from rnnlab.train.report import row, table

    validate(base)
    items = contenders(base, list(specs or SEED_SPECS), limits)
    task = make_task(base)
    first = items[0]
    first.parameters = parameter_count(first.config, task)
    for item in items[1:]:
        sets_hidden = any(s.startswith("model.hidden_size=") for s in item.settings)
        if match_params and not sets_hidden:
            item.config.model.hidden_size = match_hidden_size(item.config, task, first.parameters)
        item.parameters = parameter_count(item.config, task)
    del task
    corpus = base.task.options.get("path")
    corpus = f"-{Path(str(corpus)).stem}" if corpus else ""
    out_dir = Path(out) if out else Path(base.run.root) / (
        f"compare-{time.strftime('%Y%m%d-%H%M%S')}-{base.task.name}{corpus}"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    echo(f"comparing on task {base.task.name!r} -> {out_dir}")
    for item in items:
        budget, steps = item.config.train.budget_seconds, item.config.train.max_steps
        echo(
            f"  {item.label}: {item.config.model.num_layers} layers x "
            f"{item.config.model.hidden_size} hidden, {item.parameters:,} parameters"
            + (f", {budget:g} s budget" if budget else "")
            + (f", {steps:,} steps" if steps else "")
        )
    if len(items) > 1:
        spread = max(c.parameters for c in items) / min(c.parameters for c in items) - 1
        echo(f"  parameter counts differ by {100 * spread:.1f}%")
        if spread > 0.1:
            echo("  warning: the models differ in size by more than 10%; the comparison is "
                 "of sizes as much as of architectures")
    runs = []
    for item in items:
        item.config.run.dir = str(out_dir / item.label)
        echo(f"training {item.label} ...")
        run, summary = train(item.config, argv=argv, stream=stream, limits=item.limits)
        runs.append(run)
        warn_if_untrained(item, run, summary, echo)
    rows = [row(run, label=item.label) for run, item in zip(runs, items, strict=True)]
    text = table(rows)
    notes = [equal_steps(runs, [c.label for c in items]), machine_note(runs)]
    text += "\n\n" + "\n".join(note for note in notes if note)
    (out_dir / "table.md").write_text(text + "\n", encoding="utf-8")
    record = {
        "task": base.task.name,
        "configurations": [
            {"label": c.label, "settings": c.settings, "parameters": c.parameters,
             "config": to_dict(c.config)}
            for c in items
        ],
        "rows": rows,
    }
    (out_dir / "compare.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    labels = [c.label for c in items]
    budget = base.train.budget_seconds
    learning_curves(runs, out_dir / "curves.png", labels=labels, x="time", budget=budget)
    learning_curves(runs, out_dir / "curves_by_step.png", labels=labels, x="step", budget=budget)
    return text, out_dir, rows


def warn_if_untrained(item: Contender, run, summary: dict, echo) -> None:
    """Say so when a configuration stopped before its first periodic validation: its numbers
    then come from parameters that trained for less than one validation interval."""
    steps = summary["steps"]
    periodic = [r for r in run.metrics()
                if r.get("split") == "valid" and not r.get("final") and r["step"] < steps]
    if steps and not periodic:
        every = item.config.train.eval_every
        interval = f"every {every} steps" if every else "at each epoch's end"
        echo(
            f"  warning: {item.label} stopped after {steps} steps, before its first validation "
            f"({interval}): it is barely trained; give it more time (--budget-seconds) or "
            "steps (--train.max_steps), or validate more often (--train.eval_every)"
        )


def equal_steps(runs, labels: list[str]) -> str:
    """The configurations side by side at the same number of steps: each one's last periodic
    validation at or before the fewest steps any of them validated at. A comparison at equal
    time (the default) rewards the faster model as much as the better one; this line separates
    the two."""
    curves = {}
    for run, label in zip(runs, labels, strict=True):
        records = [r for r in run.metrics() if r.get("split") == "valid" and not r.get("final")]
        summary = run.summary() or {}
        primary = summary.get("primary")
        if not records or primary is None:
            return ""
        curves[label] = (primary, [(r["step"], r.get(primary)) for r in records])
    common = min(max(step for step, _ in points) for _, points in curves.values())
    parts = []
    for label, (_, points) in curves.items():
        before = [p for p in points if p[0] <= common]
        if not before:  # its first validation came after the others' last (a short budget)
            first = min(step for step, _ in points)
            return (f"No equal-steps view: {label} first validated at step {first:,}, after "
                    f"the others' last validation (step {common:,}); give every configuration "
                    "more steps or validate more often (--train.eval_every).")
        step, value = max(before, key=lambda p: p[0])
        parts.append(f"{label} {value:.4f} (step {step:,})")
    metric = next(iter(curves.values()))[0]
    return (f"At equal steps (validation estimate of {metric} at the fewest steps all reached, "
            f"{common:,}): " + ", ".join(parts) + ".")


def machine_note(runs) -> str:
    """The CPU the comparison ran on and whether the machine was quiet: at equal time, the
    result depends on both."""
    machines = [(run.summary() or {}).get("machine") for run in runs]
    machines = [m for m in machines if m]
    if not machines:
        return ""
    cores = machines[0].get("cores") or 1
    loads = [x for m in machines for x in (m.get("load"), m.get("load_end")) if x is not None]
    busiest = max(loads, default=0.0)
    quiet = busiest <= 0.5 * cores + 1.0
    return (
        f"Machine: {machines[0]['cpu']}, {machines[0]['threads']} thread(s) per run, load "
        f"average {min(loads, default=0.0):.1f}-{busiest:.1f} over the runs: "
        + ("quiet." if quiet else
           "NOT quiet — other work shared the CPU, so the equal-time view measures the load as "
           "much as the models; compare at equal steps (--train.max_steps) instead.")
    )


def seed_experiment_config(budget_seconds: float = DEFAULT_BUDGET) -> ExperimentConfig:
    """The shared settings of seed 000's experiment (before the user's overrides)."""
    return apply_overrides(
        ExperimentConfig(), [*SEED_SETTINGS, f"train.budget_seconds={budget_seconds}"]
    )

