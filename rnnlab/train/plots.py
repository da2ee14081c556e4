"""Learning-curve plots (matplotlib, Agg backend, PNG).

Two panels side by side: the training value (averaged over each logging window) and the
validation value of the task's primary metric (the loss where training logs no such metric),
one line per run (the seeds of one network in one colour, each in its own line style; one
legend beside the panels), against optimiser steps or against training seconds (``x="time"``,
the fair axis when runs share a time budget but differ in speed).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

AXES = {"step": ("step", "optimiser steps"), "time": ("time", "training seconds")}


def learning_curves(
    runs,
    path,
    *,
    labels: list[str] | None = None,
    x: str = "step",
    budget: float | None = None,
) -> Path:
    """Plot the curves of ``runs`` (RunDir objects) into the PNG ``path``; returns the path.

    The title names the task (and corpus) and the time ``budget``; each legend entry gives the
    run's parameter count; each run's full-split validation value with the parameters it keeps
    (the best validation step's) is marked with a star at that step.
    """
    if x not in AXES:
        raise ValueError(f"x must be one of {', '.join(AXES)}, got {x!r}")
    key, axis_label = AXES[x]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    primary_names, train_names = set(), set()
    group_of = [seed_group(labels[i] if labels else run.path.name) for i, run in enumerate(runs)]
    counts = Counter(group_of)  # runs per network, in order of first appearance
    groups = list(counts)
    colours = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20").colors
    legend: dict[str, object] = {}  # one entry per network: its seeds share a colour
    seen: Counter = Counter()
    final_marker = None
    for run, group in zip(runs, group_of, strict=True):
        style = {"color": colours[groups.index(group) % len(colours)],
                 "linestyle": ("-", "--", ":", "-.")[seen[group] % 4]}
        seen[group] += 1
        records = [r for r in run.metrics() if not r.get("final")]
        summary = run.summary() or {}
        primary = summary.get("primary") or _guess_primary(records)
        train = [r for r in records if r["split"] == "train" and key in r]
        valid = [r for r in records if r["split"] == "valid" and key in r and primary in r]
        if train:
            measure = primary if all(primary in r for r in train) else "loss"
            train_names.add(measure)
            left.plot([r[key] for r in train], [r[measure] for r in train], **style)
        if valid:
            primary_names.add(primary)
            (line,) = right.plot([r[key] for r in valid], [r[primary] for r in valid],
                                 marker="o", markersize=3, **style)
            legend.setdefault(legend_label(run, group) + (
                f", {counts[group]} seeds" if counts[group] > 1 else ""), line)
            point = final_point(run, key, primary)
            if point is not None:
                (final_marker,) = right.plot(*point, marker="*", markersize=12,
                                             linestyle="none", color=style["color"])
    if final_marker is not None:  # (the legend's star in grey: each run's is in its colour)
        legend["kept parameters, full split"] = Line2D([], [], marker="*", markersize=12,
                                                       linestyle="none", color="0.4")
    figure.suptitle(title(runs, budget), fontsize=10)
    left.set_title("training")
    left.set_xlabel(axis_label)
    left.set_ylabel(" / ".join(sorted(train_names)).replace("loss", "loss (nats)") or "loss")
    right.set_title("validation")
    right.set_xlabel(axis_label)
    right.set_ylabel(" / ".join(sorted(primary_names)) or "metric")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
    if legend:  # beside the axes, where it hides no curve
        figure.legend(list(legend.values()), list(legend), fontsize=8, loc="center left",
                      bbox_to_anchor=(1.0, 0.5), frameon=False)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def title(runs, budget: float | None = None) -> str:
    """``task text (corpus.txt), budget 90 s per model``: what the curves are of."""
    names = []
    for run in runs:
        info = run.read_json("task.json") if run.file("task.json").is_file() else {}
        name = info.get("name") or _config_task(run)
        source = info.get("source")
        if source and source not in ("stdlib",):
            name += f" ({Path(str(source)).name})"
        if name not in names:
            names.append(name)
    text = "task " + ", ".join(names) if names else "learning curves"
    if budget:
        text += f", budget {budget:g} s per model"
    return text


def _config_task(run) -> str:
    try:
        return run.config().task.name
    except (OSError, ValueError):
        return "?"


def seed_group(name: str) -> str:
    """A run's network without its seed or draw: ``grid-L2-s1`` and ``arith-gru-d2`` →
    ``grid-L2``, ``arith-gru`` (seeds of one network share a colour in the plots)."""
    return re.sub(r"-[sd]\d+$", "", name)


def legend_label(run, label: str) -> str:
    """``label (12,345 params)`` when the run's summary gives its parameter count."""
    summary = run.summary() or {}
    count = summary.get("parameters")
    return f"{label} ({count:,} params)" if isinstance(count, int) else label


def final_point(run, key: str, primary: str) -> tuple[list, list] | None:
    """The final full-split validation value of ``run`` (measured with the parameters the run
    keeps: its best validation step's, else its last), placed at that step: ([x], [value]),
    or None."""
    summary = run.summary() or {}
    value = (summary.get("valid") or {}).get(primary)
    if value is None:
        return None
    step = summary.get("best_step") or summary.get("steps")
    if key == "step":
        x = step
    else:  # the training clock when that step was validated
        x = next((r.get(key) for r in run.metrics()
                  if r.get("split") == "valid" and r.get("step") == step and key in r),
                 summary.get("train_seconds"))
    return ([x], [value]) if x is not None else None


def _guess_primary(records: list[dict]) -> str:
    for name in ("bits_per_char", "perplexity", "nll", "accuracy"):
        if any(name in r for r in records if r.get("split") == "valid"):
            return name
    return "loss"
