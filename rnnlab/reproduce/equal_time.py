"""The equal-time view of an entry: learning curves against seconds of training on one machine.

An entry compares networks at equal steps (its table). How they compare at equal *time* depends
on each network's speed on a given CPU, which a run's own clock cannot say when several runs
shared a loaded machine (the reproductions run two at a time, ``nice``d, sometimes paused). So
the view is built from two measurements kept apart:

* the learning curves: each run's validation values every ``train.eval_every`` steps
  (``metrics.jsonl`` under ``results/ENTRY/LABEL``);
* each network's seconds per training step, measured on an idle machine by ``measure``
  (``python benchmarks/equal_time.py ENTRY``): one seed's run of each network rebuilt from the
  entry's settings, its training step (forward, backward, clipping, the optimiser's step; no
  validation) timed in interleaved rounds, the median kept in ``results/ENTRY/step-time.json``
  with the CPU model and the thread count.

A curve's step s is then at s × (seconds per step) seconds. ``plot`` draws, per view of the
entry (``Entry.equal_time``), the mean over seeds against those seconds (a band of ± one
standard deviation), and ``at_equal_time`` reads every network at one time t*: the time the
fastest network needs for its whole budget (so every curve reaches t*), each seed's value
interpolated linearly between evaluations, mean ± std over seeds and Welch's test against the
view's first network. Both go to ``equal-time-*.png`` / ``.csv`` beside the results.
"""

from __future__ import annotations

import csv
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

STEP_TIME = "step-time.json"


def curve(run: Path, value: str = "bits_per_char") -> list[tuple[int, float]]:
    """(step, value) of each periodic validation of a run directory (the final report's rows,
    which repeat the last step with the best or the last weights, are left out)."""
    points = []
    path = run / "metrics.jsonl"
    if not path.is_file():
        return points
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("split") == "valid" and not row.get("final") and value in row:
            points.append((int(row["step"]), float(row[value])))
    return points


def interpolate(points: list[tuple[int, float]], step: float) -> float | None:
    """The value at ``step`` on a curve, linear between its points; None outside them."""
    for (s0, v0), (s1, v1) in itertools.pairwise(points):
        if s0 <= step <= s1:
            return v0 if s1 == s0 else v0 + (v1 - v0) * (step - s0) / (s1 - s0)
    if points and points[-1][0] == step:
        return points[-1][1]
    return None


def _timed(view: dict, seconds: dict) -> dict[str, float]:
    """Seconds per step of each network of a view: its first run's (the one measured)."""
    missing = [labels[0] for labels in view["networks"].values() if labels[0] not in seconds]
    if missing:
        raise KeyError(f"no step time measured for {', '.join(missing)}; run "
                       "python benchmarks/equal_time.py")
    return {legend: seconds[labels[0]] for legend, labels in view["networks"].items()}


def at_equal_time(root: Path, view: dict, seconds: dict) -> list[dict]:
    """Each network of ``view`` read at t* (module docstring): one dict per network with
    ``network``, ``seconds_per_step``, ``t_star``, ``steps`` (its steps in t*), ``values`` (one
    per finished seed), ``mean``, ``std``, ``n`` and, from the second network on, Welch's test
    against the first (``diff``, ``low``, ``high``, ``p``). Empty when no network has a curve."""
    from rnnlab.reproduce.table import welch

    per_step = _timed(view, seconds)
    curves = {legend: [c for c in (curve(root / label, view["value"]) for label in labels) if c]
              for legend, labels in view["networks"].items()}
    if not all(curves.values()):
        return []
    # each network's whole budget in seconds: the last step all its seeds reached
    spans = {legend: min(c[-1][0] for c in cs) * per_step[legend] for legend, cs in
             curves.items()}
    t_star = min(spans.values())
    out = []
    for legend, cs in curves.items():
        steps = t_star / per_step[legend]
        values = [v for v in (interpolate(c, steps) for c in cs) if v is not None]
        row = {"network": legend, "seconds_per_step": per_step[legend], "t_star": t_star,
               "steps": steps, "values": values, "n": len(values),
               "mean": statistics.fmean(values) if values else float("nan"),
               "std": statistics.stdev(values) if len(values) > 1 else 0.0}
        if out and len(values) > 1 and out[0]["n"] > 1:
            row.update(welch(values, out[0]["values"]))
        out.append(row)
    return out


def _mean_curve(cs: list[list[tuple[int, float]]]) -> list[tuple[int, float, float, int]]:
    """(step, mean, std, n) at every step all of a network's curves have."""
    common = sorted(set.intersection(*(set(s for s, _ in c) for c in cs)))
    out = []
    for step in common:
        values = [dict(c)[step] for c in cs]
        out.append((step, statistics.fmean(values),
                    statistics.stdev(values) if len(values) > 1 else 0.0, len(values)))
    return out


def plot(entry, root: Path, out: Path, seconds: dict | None = None) -> list[Path]:
    """Each view of ``entry.equal_time`` with finished runs under ``root``, drawn into ``out``
    (``view["file"]`` and a .csv of the curves beside it), from the step times of
    ``seconds`` (default: ``root/step-time.json``). Returns the files written; none without
    step times."""
    if seconds is None:
        path = root / STEP_TIME
        if not path.is_file():
            return []
        seconds = json.loads(path.read_text())
    per_step_of = seconds["seconds_per_step"]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    out.mkdir(parents=True, exist_ok=True)
    for view in entry.equal_time:
        curves = {legend: [c for c in (curve(root / label, view["value"]) for label in labels)
                           if c] for legend, labels in view["networks"].items()}
        if not any(curves.values()):
            continue
        per_step = _timed(view, per_step_of)
        png = out / view["file"]
        figure, axis = plt.subplots(figsize=(7.5, 4.5))
        rows = [["network", "seconds", "step", f"{view['value']} mean", "std", "n"]]
        for legend, cs in curves.items():
            if not cs:
                continue
            mean = _mean_curve(cs)
            xs = [step * per_step[legend] for step, *_ in mean]
            ys = [m for _, m, _, _ in mean]
            sd = [s for _, _, s, _ in mean]
            drawn = axis.plot(xs, ys, label=f"{legend} ({per_step[legend] * 1000:.0f} ms/step, "
                                            f"n={len(cs)})")
            axis.fill_between(xs, [y - s for y, s in zip(ys, sd)],
                              [y + s for y, s in zip(ys, sd)], alpha=0.2,
                              color=drawn[0].get_color())
            rows += [[legend, f"{x:.1f}", step, f"{m:.6g}", f"{s:.6g}", n]
                     for x, (step, m, s, n) in zip(xs, mean)]
        read = at_equal_time(root, view, per_step_of)
        if read:
            axis.axvline(read[0]["t_star"], color="grey", linestyle="--", linewidth=1,
                         label=f"t* = {read[0]['t_star']:.0f} s (equal time)")
        machine = seconds.get("machine", {})
        axis.set_xlabel(f"seconds of training steps on {machine.get('cpu', 'an unnamed CPU')}, "
                        f"{seconds.get('threads', '?')} thread(s) (measured step time × step)",
                        fontsize=8)
        axis.set_ylabel(view["ylabel"])
        axis.set_title(f"{entry.name}: {view['title']}, equal time (mean ± std over seeds)",
                       fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(png, dpi=120)
        plt.close(figure)
        with open(png.with_suffix(".csv"), "w", newline="") as handle:
            csv.writer(handle).writerows(rows)
        written.append(png)
        if read:
            summary = png.with_name(png.stem + "-at-t.csv")
            with open(summary, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["network", "seconds_per_step", "t_star", "steps", "mean", "std",
                                 "n", "diff_vs_first", "low", "high", "p"])
                for r in read:
                    writer.writerow([r["network"], f"{r['seconds_per_step']:.6g}",
                                     f"{r['t_star']:.1f}", f"{r['steps']:.0f}",
                                     f"{r['mean']:.6g}", f"{r['std']:.6g}", r["n"],
                                     *(f"{r[k]:.6g}" if k in r else ""
                                       for k in ("diff", "low", "high", "p"))])
            written.append(summary)
    return written


def measure(configs: dict, *, steps: int = 20, rounds: int = 5, warmup: int = 3,
            progress=None) -> dict[str, list[float]]:
    """Seconds per training step of each ``{label: ExperimentConfig}``: every network built
    as its training run builds it (seed, task, model, optimiser), then ``rounds`` rounds, in
    each of which every network takes ``steps`` steps in turn (the order reversed every other
    round, so that load which comes and goes falls on all alike). Returns each label's
    seconds per step of every round (the caller keeps the median)."""
    from rnnlab.train.run import RunDir
    from rnnlab.train.trainer import Trainer, absolute_data_paths, build

    trainers = {}
    with tempfile.TemporaryDirectory() as scratch:
        for label, config in configs.items():
            absolute_data_paths(config)
            task, model = build(config)
            trainer = Trainer(config, task, model, RunDir(Path(scratch) / label))
            batches = task.batches("train", config.task.batch_size,
                                   seq_len=config.task.seq_len, seed=config.train.seed)
            for _ in range(warmup):
                trainer.train_step(next(batches))
            trainers[label] = (trainer, batches)
        times: dict[str, list[float]] = {label: [] for label in configs}
        order = list(configs)
        for r in range(rounds):
            for label in order if r % 2 == 0 else order[::-1]:
                trainer, batches = trainers[label]
                drawn = [next(batches) for _ in range(steps)]
                started = time.perf_counter()
                for batch in drawn:
                    trainer.train_step(batch)
                times[label].append((time.perf_counter() - started) / steps)
            if progress is not None:
                progress(r, {k: v[-1] for k, v in times.items()})
    return times
