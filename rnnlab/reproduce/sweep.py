"""Plots of one measured value against one setting, a line per network: an entry's ``sweeps``.

A sweep (see ``grid-depth`` in :mod:`rnnlab.reproduce.entries`) names, for every line, its
points in order; a point is the list of runs behind it (one per seed). The x value of a point
is the ``setting`` of its runs (``model.num_layers``), the y value the mean of ``value``
(``test.accuracy``) over the point's finished runs, with their standard deviation as the error
bar. A point with no finished run is left out of its line; the legend says how many seeds each
line has, so a plot read before every run has finished says so. Runs that diverged are not
averaged but counted, as in the table: the point is labelled "k diverged" on the plot and the
CSV has a ``diverged`` column; a point whose every run diverged is drawn as an ✕ on the x axis.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import NamedTuple

from rnnlab.reproduce.table import diverged, lookup


class Point(NamedTuple):
    """One point of a line: the setting, mean and std of the value over the finished runs that
    did not diverge, how many those are, and how many diverged."""

    x: float
    mean: float
    std: float
    n: int
    diverged: int = 0


def _setting(settings: dict, key: str):
    """``settings[key]``, or for ``task.options.bits`` the option ``bits`` of ``task.options``."""
    if key in settings:
        return settings[key]
    parent, _, name = key.rpartition(".")
    return settings[parent][name]


def points(entry, root: Path, sweep: dict) -> dict[str, list[Point]]:
    """``{legend: [Point, ...]}`` over the finished runs under ``root``."""
    settings = {run.label: run.settings for run in entry.runs}
    out: dict[str, list[Point]] = {}
    for legend, line in sweep["lines"].items():
        measured = []
        for labels in line:
            values, failed = [], 0
            for label in labels:
                path = root / label / "summary.json"
                if not path.is_file():
                    continue
                summary = json.loads(path.read_text())
                value = lookup(summary, sweep["value"])
                if diverged(summary):
                    failed += 1
                elif value is not None:
                    values.append(float(value))
            if values or failed:
                x = float(_setting(settings[labels[0]], sweep["setting"]))
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                mean = statistics.fmean(values) if values else float("nan")
                measured.append(Point(x, mean, std, len(values), failed))
        out[legend] = measured
    return out


def plot(entry, root: Path, sweep: dict, out: Path) -> Path | None:
    """``out/<sweep file>`` (and a .csv beside it) from the runs under ``root``; None when no
    point of the sweep has a finished run yet."""
    measured = points(entry, root, sweep)
    if not any(measured.values()):
        return None
    out.mkdir(parents=True, exist_ok=True)
    png = out / sweep["file"]
    with open(png.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["line", sweep["setting"], f"{sweep['value']} mean", "std", "n",
                         "diverged"])
        for legend, line in measured.items():
            writer.writerows([legend, f"{p.x:g}", f"{p.mean:.6g}", f"{p.std:.6g}", p.n,
                              p.diverged] for p in line)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for legend, line in measured.items():
        kept = [p for p in line if p.n]
        if kept:
            ns = [p.n for p in kept]
            seeds = f"n={min(ns)}" if min(ns) == max(ns) else f"n={min(ns)}-{max(ns)}"
            drawn = axis.errorbar([p.x for p in kept], [p.mean for p in kept],
                                  yerr=[p.std for p in kept], marker="o", capsize=4,
                                  label=f"{legend} ({seeds})")
            colour = drawn.lines[0].get_color()
        else:
            colour = None
        for p in line:
            if not p.diverged:
                continue
            if not p.n:  # every run of the point diverged: a cross on the axis
                axis.plot([p.x], [0], marker="x", markersize=9, color=colour, clip_on=False,
                          label=f"{legend}: all diverged")
            axis.annotate(f"{p.diverged} diverged", (p.x, p.mean if p.n else 0),
                          textcoords="offset points", xytext=(4, 6), fontsize=7, color=colour)
    xs = sorted({p.x for line in measured.values() for p in line})
    if sweep.get("log_x", True):
        axis.set_xscale("log", base=2)
    axis.set_xticks(xs, [f"{x:g}" for x in xs])
    axis.set_xlabel(sweep["xlabel"])
    axis.set_ylabel(sweep["ylabel"])
    axis.set_title(f"{entry.name}: {sweep['title']}", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(png, dpi=120)
    plt.close(figure)
    return png


def plot_all(entry, root: Path, out: Path) -> list[Path]:
    """Every sweep of ``entry`` that has a finished run: the paths written."""
    made = (plot(entry, root, sweep, out) for sweep in entry.sweeps)
    return [path for path in made if path is not None]
