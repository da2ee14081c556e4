"""Learning-curve plots (matplotlib, Agg backend, PNG).

Two panels side by side: the training value (averaged over each logging window) and the
validation value of the task's primary metric (the loss where training logs no such metric),
one line per run, against optimiser steps or against training seconds (``x="time"``,
the fair axis when runs share a time budget but differ in speed).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

AXES = {"step": ("step", "optimiser steps"), "time": ("time", "training seconds")}


def learning_curves(runs, path, *, labels: list[str] | None = None, x: str = "step") -> Path:
    """Plot the curves of ``runs`` (RunDir objects) into the PNG ``path``; returns the path."""
    if x not in AXES:
        raise ValueError(f"x must be one of {', '.join(AXES)}, got {x!r}")
    key, axis_label = AXES[x]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    primary_names, train_names = set(), set()
    for index, run in enumerate(runs):
        label = labels[index] if labels else run.path.name
        records = [r for r in run.metrics() if not r.get("final")]
        summary = run.summary() or {}
        primary = summary.get("primary") or _guess_primary(records)
        train = [r for r in records if r["split"] == "train" and key in r]
        valid = [r for r in records if r["split"] == "valid" and key in r and primary in r]
        if train:
            measure = primary if all(primary in r for r in train) else "loss"
            train_names.add(measure)
            left.plot([r[key] for r in train], [r[measure] for r in train], label=label)
        if valid:
            primary_names.add(primary)
            right.plot(
                [r[key] for r in valid], [r[primary] for r in valid], marker="o", label=label
            )
    left.set_title("training")
    left.set_xlabel(axis_label)
    left.set_ylabel(" / ".join(sorted(train_names)).replace("loss", "loss (nats)") or "loss")
    right.set_title("validation")
    right.set_xlabel(axis_label)
    right.set_ylabel(" / ".join(sorted(primary_names)) or "metric")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _guess_primary(records: list[dict]) -> str:
    for name in ("bits_per_char", "perplexity", "nll", "accuracy"):
        if any(name in r for r in records if r.get("split") == "valid"):
            return name
    return "loss"
