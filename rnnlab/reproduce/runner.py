"""Run a reproduction: every run of an entry through the ordinary trainer, into run directories.

Layout under ``out`` (default ``runs/reproduce``)::

    out/NAME/LABEL/          one ordinary run directory per run (rnnlab report / evaluate work)
    out/NAME/reproduction.json   entry, budget, settings, per-run wall seconds and directories

A run whose directory already holds summary.json is kept (not trained again); one that holds a
checkpoint but no summary (interrupted) is resumed; so re-running the same command finishes an
interrupted reproduction.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from rnnlab.reproduce import entries
from rnnlab.train.config import ConfigError, apply_overrides
from rnnlab.train.run import CHECKPOINT, CONFIG, SUMMARY, RunDir

RECORD = "reproduction.json"
BUDGETS = ("full", "small")


def budget_settings(entry: entries.Entry, budget: str) -> dict:
    """The settings a budget adds: ``full``, ``small``, or a number of seconds per run."""
    if budget in entry.budgets:
        return dict(entry.budgets[budget])
    try:
        seconds = float(budget)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(
            f"--budget must be full, small or a number of seconds per run (> 0), got {budget!r}"
        )
    return {**entry.budgets["full"], "train.budget_seconds": seconds}


def selected_runs(entry: entries.Entry, budget: str, labels: list[str] | None):
    if labels:
        return [entry.run(label) for label in labels]
    if budget == "small":
        return [run for run in entry.runs if run.small]
    return list(entry.runs)


def reproduce(
    name: str,
    *,
    budget: str = "full",
    out: str | Path = "runs/reproduce",
    overrides: list[str] | None = None,
    labels: list[str] | None = None,
    argv: list[str] | None = None,
    stream=None,
) -> Path:
    """Train ``name``'s runs (those of the small budget, or ``labels``); returns out/NAME.

    ``overrides`` are ``section.field=value`` strings applied after the entry's settings and the
    budget (e.g. ``run.threads=2``); they are recorded in reproduction.json.
    """
    from rnnlab.train.trainer import TrainingDiverged, train

    entry = entries.get(name)
    extra = budget_settings(entry, budget)
    root = Path(out) / name
    root.mkdir(parents=True, exist_ok=True)
    record_path = root / RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    record.update(
        entry=name,
        paper=entry.paper,
        table=entry.table,
        budget=budget,
        scaled=entry.scaled if budget == "full" else entry.small_scaled
        if budget == "small" else f"{budget} s per run; " + entry.scaled,
        overrides=list(overrides or []),
        command="rnnlab " + " ".join(argv) if argv is not None else None,
        machine={"cpus": torch.get_num_threads(), "platform": platform.platform()},
    )
    record.setdefault("runs", {})
    for run in selected_runs(entry, budget, labels):
        directory = root / run.label
        config = run.config(extra)
        try:
            apply_overrides(config, [*(overrides or []), f"run.dir={directory}"])
        except ConfigError as error:
            raise ValueError(str(error)) from None
        existing = RunDir(directory)
        if existing.file(SUMMARY).is_file():
            print(f"{name}/{run.label}: done already ({directory}); kept", flush=True)
            continue
        resume = None
        if existing.file(CONFIG).is_file():
            if not existing.file(CHECKPOINT).is_file():
                raise FileExistsError(
                    f"{directory} holds an unfinished run without a checkpoint; delete it to "
                    "train that run again"
                )
            resume = str(directory)
            config = existing.config()
        print(f"{name}/{run.label}: training ({'resuming' if resume else 'new'})", flush=True)
        started = time.perf_counter()
        try:
            _, summary = train(config, argv=argv, resume=resume, stream=stream)
        except TrainingDiverged as error:  # recorded in its summary.json; the others still run
            print(f"{name}/{run.label}: diverged: {error}", flush=True)
            summary = {"status": "diverged"}
        record["runs"][run.label] = {
            "dir": run.label,
            "wall_seconds": time.perf_counter() - started
            + record["runs"].get(run.label, {}).get("wall_seconds", 0.0),
            "status": summary["status"],
        }
        record_path.write_text(json.dumps(record, indent=2) + "\n")
    finished = [RunDir(root / r.label) for r in entry.runs if (root / r.label / SUMMARY).is_file()]
    if finished:
        from rnnlab.train.plots import learning_curves

        learning_curves(finished, root / "curves.png")  # every run of the entry, one figure
    if entry.gradflow:
        from rnnlab.reproduce.gradflow import entry_gradflow

        entry_gradflow(entry, root, record)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return root


def listing() -> str:
    """The ``--list`` text: each entry's paper, table, published numbers and expected time."""
    lines = []
    for name in entries.names():
        entry = entries.get(name)
        lines.append(f"{name}  (~{entry.expected_minutes:g} min here at budget full, "
                     f"{len(entry.runs)} run(s))")
        lines.append(f"    {entry.paper}")
        lines.append(f"    {entry.table}")
        shown = entry.rows if len(entry.rows) <= 4 else entry.rows[:3]
        for row in shown:
            lines.append(f"    published: {row['what']}: {row['published']}")
        if len(entry.rows) > len(shown):
            lines.append(f"    ... and {len(entry.rows) - len(shown)} more rows")
        lines.append(f"    full budget: {entry.scaled}")
        lines.append(f"    small budget: {entry.small_scaled}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
