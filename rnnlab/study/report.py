"""The study report: what ``rnnlab study report`` writes into its folder.

::

    boxplot.png       test metric per cell, all trials and the best 10% (by validation), one
                      row per task, n under each box, the vanilla LSTM highlighted (Greff et
                      al. 2016, Fig. 3), and a caption saying what each variant changes
    welch.csv         each variant vs vanilla: means, difference, Welch's t and p, significant,
                      over all trials and the best 10%; the paired test over the shared draws
    importance.json   fANOVA of the objective per task and cell (and pooled, "all"):
                      {"objective": "valid nll", "main": {...}, "pairwise":
                      {"lr×hidden_size": ...}} as fractions of variance
    importance.png    the pooled main effects and interactions per task, each cell as a dot
    marginal_<task>.png   the forest's marginal prediction of the objective against each
                      hyperparameter, one line per cell, over the trials themselves
    report.md         all of the above with numbers (every pairwise fANOVA term), and the
                      paper's findings beside ours, each with a verdict (shown, consistent,
                      not shown, contradicted)
    study.json        per task and cell: complete / failed / requested trials and statistics
    trials.csv        every complete trial: task, cell, trial index (the hyperparameter draw),
                      its hyperparameters, the objective, the test metric, parameters, epochs
                      and wall seconds — the data every number above comes from

Two numbers per trial: the **objective**, the validation metric (each trial's value, what the
study optimises and optuna-dashboard plots), and the test metric of the same parameters. The
box plots and Welch tests compare cells on the test metric, as the paper does; fANOVA and the
marginal plots explain the objective, so the report's importances and the dashboard's agree.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rnnlab.study.analysis import (  # noqa: E402
    ALPHA,
    BEST_FRACTION,
    CellTrials,
    hyperparameters,
    importance,
    load,
    summarize,
    welch,
)
from rnnlab.study.space import PAPER_NAMES, VANILLA, VARIANT_MEANINGS  # noqa: E402

VANILLA_COLOR, VARIANT_COLOR = "#d62728", "#1f77b4"
LABELS = {
    "lr": "learning rate",
    "hidden_size": "hidden size",
    "momentum": "1 − momentum",
    "input_noise": "input noise std",
}

# Greff et al. 2016's findings (Sections 5-6), for the report's comparison.
PAPER_FINDINGS = {
    "importance": "The learning rate is by far the most important hyperparameter, then the "
    "hidden size; input noise and momentum matter little.",
    "interactions": "Interactions between hyperparameters are small (a few per cent of the "
    "variance); they can be tuned independently.",
    "lr_size": "The interaction of learning rate and network size is minimal: the best "
    "learning rate hardly depends on the size, so it can be tuned on a small network.",
    "worst": "NFG (no forget gate) and NOAF (no output activation) hurt performance most.",
    "nfg": "The forget gate is crucial: NFG is significantly worse than vanilla.",
    "noaf": "The output activation is crucial: NOAF is significantly worse than vanilla.",
    "harmless": "CIFG (coupled gates) and NP (no peepholes) simplify the LSTM without "
    "hurting performance much.",
    "better": "No variant improves significantly on the vanilla LSTM.",
    "jsb_range": "JSB Chorales: the best 10% of trials reach a test NLL of about 8.4-8.8 "
    "nats per time step (read from the paper's figure).",
}


def _name(cell: str) -> str:
    return PAPER_NAMES.get(cell, cell)


def variant_legend(cells) -> str:
    """What each of ``cells`` is, in the paper's names: "NFG: no forget gate; ..."."""
    return "; ".join(f"{_name(c).split(' ')[0]}: {VARIANT_MEANINGS[c]}" for c in cells
                     if c in VARIANT_MEANINGS)


def _caption(figure, cells) -> float:
    """Write the variant legend under the axes; returns the figure fraction it takes."""
    import textwrap

    text = variant_legend(cells)
    if not text:
        return 0.0
    lines = textwrap.wrap(text, int(14 * figure.get_figwidth()))  # characters of 8 pt a line
    figure.text(0.01, 0.01, "\n".join(lines), fontsize=8, va="bottom", ha="left")
    return (0.16 * len(lines) + 0.15) / figure.get_figheight()


def _range(values: np.ndarray, digits: int = 2) -> str:
    """"a to b" over ``values``, or the one value when they all print alike."""
    low, high = f"{values.min():.{digits}f}", f"{values.max():.{digits}f}"
    return low if low == high else f"{low} to {high}"


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    return f"{value:.{digits}g}"


# --- plots ---------------------------------------------------------------------------------------
def plot_boxes(data: dict[str, dict[str, CellTrials]], path: Path) -> Path:
    """Box plots of the test metric per cell: all trials (left) and the best 10% (right), the
    number of trials under each box, what each variant is in a caption."""
    figure, axes = plt.subplots(len(data), 2, figsize=(13, 4.4 * len(data) + 0.5),
                                squeeze=False)
    for row, (task, cells) in enumerate(data.items()):
        names = [c for c in cells if cells[c].n]
        metric = next((cells[c].metric for c in names), "metric")
        for col, (title, pick) in enumerate(
            (("all trials", lambda t: t.test),
             (f"best {BEST_FRACTION:.0%} by validation", lambda t: t.test[t.best()]))
        ):
            ax = axes[row][col]
            values = [pick(cells[c]) for c in names]
            if not values:
                ax.set_visible(False)
                continue
            boxes = ax.boxplot(values, patch_artist=True, showfliers=False, widths=0.6)
            for cell, patch in zip(names, boxes["boxes"]):
                vanilla = cell == VANILLA
                patch.set_facecolor(VANILLA_COLOR if vanilla else VARIANT_COLOR)
                patch.set_alpha(0.8 if vanilla else 0.45)
            for i, v in enumerate(values, start=1):  # the trials themselves, jittered
                jitter = np.random.default_rng(i).uniform(-0.12, 0.12, len(v))
                ax.plot(i + jitter, v, ".", color="k", alpha=0.35, markersize=3)
            if VANILLA in names:
                median = float(np.median(values[names.index(VANILLA)]))
                ax.axhline(median, color=VANILLA_COLOR, linestyle="--", linewidth=1,
                           label="vanilla median")
                ax.legend(loc="upper right", fontsize=8)
            ax.set_xticks(range(1, len(names) + 1))
            ax.set_xticklabels([f"{_name(c)}\nn = {len(v)}" for c, v in zip(names, values)],
                               fontsize=8)
            for label, cell in zip(ax.get_xticklabels(), names):
                if cell == VANILLA:
                    label.set_color(VANILLA_COLOR)
                    label.set_fontweight("bold")
            if max(len(v) for v in values) == 1:  # a "box" of one trial is that trial
                title += ": one trial per cell (n = 1), no spread to compare"
            ax.set_title(f"{task}: {title}", fontsize=10)
            ax.set_ylabel(f"test {metric}")
            ax.grid(axis="y", alpha=0.3)
    bottom = _caption(figure, dict.fromkeys(c for cells in data.values() for c in cells
                                            if cells[c].n))
    figure.tight_layout(rect=(0, bottom, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_importance(fanovas: dict[str, dict], path: Path,
                    objectives: dict[str, str] | None = None) -> Path:
    """Per task: bars of the pooled fANOVA fractions (main effects, then pairs), cells as dots;
    ``objectives``: the name of what fANOVA explained, per task (``valid nll``)."""
    figure, axes = plt.subplots(len(fanovas), 1, figsize=(11, 3.8 * len(fanovas)),
                                squeeze=False)
    for row, (task, by_cell) in enumerate(fanovas.items()):
        ax = axes[row][0]
        pooled = by_cell.get("all")
        if pooled is None:
            ax.set_visible(False)
            continue
        keys = list(pooled.main) + list(pooled.pairwise)
        heights = [pooled.main.get(k, pooled.pairwise.get(k)) for k in keys]
        colors = ["#2ca02c"] * len(pooled.main) + ["#9467bd"] * len(pooled.pairwise)
        ax.bar(range(len(keys)), heights, color=colors, alpha=0.7, label="all cells pooled")
        for cell, result in by_cell.items():
            if cell == "all":
                continue
            values = [result.main.get(k, result.pairwise.get(k)) for k in keys]
            ax.plot(range(len(keys)), values, "o", markersize=4, alpha=0.7,
                    color=VANILLA_COLOR if cell == VANILLA else "k")
        ax.plot([], [], "o", color="k", label="one cell")
        ax.plot([], [], "o", color=VANILLA_COLOR, label="vanilla")
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(keys, rotation=25, ha="right")
        ax.set_ylabel("fraction of variance")
        objective = (objectives or {}).get(task, "the objective")
        ax.set_title(f"{task}: fANOVA main effects (green) and pairwise interactions (purple) "
                     f"of {objective}, the study's objective", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_marginals(task: str, cells: dict[str, CellTrials], by_cell: dict, path: Path) -> Path:
    """The objective (validation metric) against each hyperparameter: every trial as a dot,
    and per cell the forest's marginal prediction (fANOVA ``a_d``)."""
    names = list(LABELS)
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.6), squeeze=False)
    # tab10 without its red, which marks the vanilla LSTM
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 3]
    objective = next((c.objective for c in cells.values() if c.n), "objective")
    for col, hp in enumerate(names):
        ax = axes[0][col]
        for i, (cell, trials) in enumerate(cells.items()):
            if not trials.n:
                continue
            color = VANILLA_COLOR if cell == VANILLA else palette[i % len(palette)]
            ax.plot(trials.params[hp], trials.valid, ".", color=color, alpha=0.3, markersize=4)
            result = by_cell.get(cell)
            if result is not None and result.curves:
                x, mean, _ = result.curves[hp]
                ax.plot(x, mean, "-", color=color, linewidth=2.2 if cell == VANILLA else 1.2,
                        label=_name(cell))
        if hp in ("lr", "hidden_size", "momentum"):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(LABELS[hp])
        ax.set_ylabel(objective)
        ax.grid(alpha=0.3)
        if col == 0 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    figure.suptitle(f"{task}: {objective} (the study's objective): fANOVA's marginal prediction "
                    "per cell (lines) over the trials (dots)")
    bottom = _caption(figure, [c for c in cells if cells[c].n])
    figure.tight_layout(rect=(0, bottom, 1, 1))
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# --- tables --------------------------------------------------------------------------------------
WELCH_COLUMNS = (
    "task", "cell", "n", "n_vanilla", "mean", "mean_vanilla", "difference", "t", "p",
    "significant", "worse", "best10_mean", "best10_mean_vanilla", "best10_difference",
    "best10_t", "best10_p", "best10_significant", "paired_n", "paired_median", "paired_p",
    "paired_significant", "paired_worse",
)
# Thresholds of the verdicts on the paper's fANOVA findings (fractions of the variance).
SMALL_PAIR = 0.10  # "interactions are small": no pair explains more
SMALL_LR_SIZE = 0.05  # "lr × size minimal": the learning rate × hidden size pair below this


def write_welch(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=WELCH_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in WELCH_COLUMNS})
    return path


def write_trials(data: dict[str, dict[str, CellTrials]], path: Path) -> Path:
    """One row per complete trial of every (task, cell) study (``trials.csv``)."""
    names = sorted({name for cells in data.values() for c in cells.values() for name in c.params})
    columns = ["task", "cell", "draw", *names, "objective", "valid", "test", "parameters",
               "epochs", "wall_seconds"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for task, cells in data.items():
            for cell, c in cells.items():
                for i in range(c.n):
                    drawn = hyperparameters(c, i)  # momentum itself, hidden size an integer
                    writer.writerow([
                        task, cell, int(c.index[i]), *(drawn.get(k, "") for k in names),
                        c.objective, repr(float(c.valid[i])), repr(float(c.test[i])),
                        int(c.parameters[i]), int(c.epochs[i]),
                        round(float(c.wall_seconds[i]), 1)])
    return path


def _direction(row: dict) -> str:
    return "worse" if row["worse"] else "better" if row["difference"] else "equal"


def _verdict_crucial(row: dict) -> str:
    """Shown / not significant / not shown, for "this variant is significantly worse"."""
    tests = (("Welch, all trials", ""), ("Welch, best 10%", "best10_"), ("paired", "paired_"))
    if _untestable(row):
        return UNTESTABLE
    shown = [what for what, k in tests if row.get(f"{k}significant") and row.get(f"{k}worse")]
    better = [what for what, k in tests
              if row.get(f"{k}significant") and row.get(f"{k}worse") is False]
    if shown and not better:
        if shown == ["paired"]:
            return "shown by the paired test only (not by the paper's Welch test)"
        return f"shown (p < {ALPHA}: {'; '.join(shown)})"
    if better:
        return f"contradicted: significantly better ({'; '.join(better)})"
    if row.get("worse") or row.get("best10_worse"):
        return "not shown: worse, not significantly"
    return "not shown"


UNTESTABLE = "not testable: too few trials (Welch needs 2 per cell, the paired test 6 pairs)"


def _untestable(row: dict) -> bool:
    return all(row.get(f"{k}p") is None for k in ("", "best10_", "paired_"))


def _row_text(row: dict) -> str:
    """Δ and p of one variant's three comparisons with vanilla."""
    return (f"Δ {_fmt(row['difference'], 3)} (Welch p = {_fmt(row['p'], 2)}); best 10% Δ "
            f"{_fmt(row['best10_difference'], 3)} (p = {_fmt(row['best10_p'], 2)}); paired "
            f"median Δ {_fmt(row['paired_median'], 3)} over {row['paired_n']} draws "
            f"(p = {_fmt(row['paired_p'], 2)})")


def _findings(task: str, cells: dict[str, CellTrials], rows: list[dict], fan: dict,
              on_ranks=None) -> list:
    """(topic, the paper's finding, ours, verdict) rows for report.md, computed from this
    study. Δ is variant − vanilla in the test metric. ``on_ranks``: the pooled fANOVA of the
    objective's ranks, reported beside the raw one."""
    out = []
    pooled = fan.get("all")
    objective = next((c.objective for c in cells.values() if c.n), "the objective")
    if pooled is not None:
        ranked = sorted(pooled.main.items(), key=lambda kv: -kv[1])
        ours = (f"{task}, fANOVA of {objective}: "
                + ", then ".join(f"{k} {v:.0%}" for k, v in ranked) + ".")
        verdict = "consistent" if ranked[0][0] == "lr" else "not shown: lr is not first"
        if on_ranks is not None:
            by_rank = sorted(on_ranks.main.items(), key=lambda kv: -kv[1])
            ours += (" Of its ranks: "
                     + ", then ".join(f"{k} {v:.0%}" for k, v in by_rank) + ".")
            if (by_rank[0][0] == "lr") != (ranked[0][0] == "lr"):
                verdict += ("; of the ranks: consistent" if by_rank[0][0] == "lr"
                            else "; of the ranks: not shown, lr is not first")
        out.append(("importance", PAPER_FINDINGS["importance"], ours, verdict))
        total = sum(max(v, 0.0) for v in pooled.pairwise.values())
        top = max(pooled.pairwise.items(), key=lambda kv: kv[1])
        out.append((
            "interactions", PAPER_FINDINGS["interactions"],
            f"{task}: all six pairs together {total:.0%}; largest {top[0]} {top[1]:.0%}.",
            f"consistent (no pair above {SMALL_PAIR:.0%})" if top[1] < SMALL_PAIR
            else f"not shown: {top[0]} explains {top[1]:.0%}",
        ))
        lr_size = pooled.pairwise.get("lr×hidden_size", pooled.pairwise.get("hidden_size×lr"))
        if lr_size is not None:
            out.append((
                "lr × hidden size", PAPER_FINDINGS["lr_size"],
                f"{task}: the lr × hidden size interaction explains {lr_size:.1%} of the "
                f"variance of {objective}.",
                f"consistent (below {SMALL_LR_SIZE:.0%})" if lr_size < SMALL_LR_SIZE
                else f"not shown ({lr_size:.0%} ≥ {SMALL_LR_SIZE:.0%})",
            ))
    if rows:
        # the largest in size, better or worse: a study far from convergence may well find
        # the paper's worst variants ahead of vanilla
        largest = sorted((r for r in rows if r["difference"] is not None),
                         key=lambda r: -abs(r["difference"]))
        text = "; ".join(
            f"{_name(r['cell'])} {r['difference']:+.3g} ({_direction(r)}, p = {_fmt(r['p'], 2)})"
            for r in largest[:2]
        )
        sig = [_name(r["cell"]) for r in rows if r["significant"] and r["worse"]]
        worst = sorted((r for r in rows if r["worse"]), key=lambda r: -abs(r["difference"]))
        two = {r["cell"] for r in worst[:2]}
        # draw by draw (the paired medians), where the means are moved by untrained trials
        paired = sorted((r for r in rows if r.get("paired_median") is not None),
                        key=lambda r: -r["paired_median"])
        by_draw = "; ".join(
            f"{_name(r['cell'])} {r['paired_median']:+.3g} (p = {_fmt(r['paired_p'], 2)})"
            for r in paired[:2])
        out.append((
            "worst variants", PAPER_FINDINGS["worst"],
            f"{task}: largest mean differences (test {cells[VANILLA].metric}, variant − "
            f"vanilla) in size: {text}. Significantly worse "
            f"(p < {ALPHA}): {', '.join(sig) or 'none'}."
            + (f" Largest paired median differences (worse first): {by_draw}." if by_draw
               else ""),
            ("consistent: NFG and NOAF are the two worst" if two == {"nfg", "noaf"}
             else "not shown: the two worst means are "
             + (", ".join(_name(r["cell"]) for r in worst[:2]) or "none"))
            + ("; draw by draw (paired medians) NFG and NOAF are the two worst, both "
               "significantly" if {r["cell"] for r in paired[:2]} == {"nfg", "noaf"}
               and all(r["paired_significant"] and r["paired_worse"] for r in paired[:2])
               else ""),
        ))
        by_cell = {r["cell"]: r for r in rows}
        for cell in ("nfg", "noaf"):
            if cell in by_cell:
                out.append((_name(cell), PAPER_FINDINGS[cell],
                            f"{task}: {_row_text(by_cell[cell])}.",
                            _verdict_crucial(by_cell[cell])))
        harmless, hurt, worse_by_draw, testable = [], [], [], False
        for cell in ("cifg", "np"):
            row = by_cell.get(cell)
            if row is not None:
                harmless.append(f"{_name(cell)}: {_row_text(row)}")
                testable = testable or not _untestable(row)
                if any(row.get(f"{k}significant") and row.get(f"{k}worse")
                       for k in ("", "best10_")):
                    hurt.append(_name(cell))
                if row.get("paired_significant") and row.get("paired_worse"):
                    worse_by_draw.append(f"{_name(cell)} {row['paired_median']:+.3g}")
        if harmless:
            # "without hurting much": a small loss draw by draw (our paired test) is named
            # beside the paper's Welch verdict, not in its place
            worse = (f"; draw by draw worse (paired median): {', '.join(worse_by_draw)}"
                     if worse_by_draw else "")
            out.append(("CIFG and NP", PAPER_FINDINGS["harmless"],
                        f"{task}: " + "; ".join(harmless) + ".",
                        f"contradicted: {', '.join(hurt)} significantly worse (Welch)" if hurt
                        else f"consistent: not significantly worse (Welch){worse}"
                        if testable else UNTESTABLE))
        better = [_name(r["cell"]) for r in rows
                  if any(r.get(f"{k}significant") and r.get(f"{k}worse") is False
                         for k in ("", "best10_"))]
        # draw by draw (our addition): better by the paired test, which the means can hide
        better_by_draw = [
            f"{_name(r['cell'])} {r['paired_median']:+.3g} (p = {_fmt(r['paired_p'], 2)})"
            for r in rows if r.get("paired_significant") and r.get("paired_worse") is False]
        out.append((
            "better than vanilla", PAPER_FINDINGS["better"],
            f"{task}: significantly better than vanilla (Welch, all trials or best 10%): "
            f"{', '.join(better) or 'none'}." + (
                f" Better draw by draw (paired median differences): "
                f"{'; '.join(better_by_draw)}." if better_by_draw else ""),
            ("contradicted" if better else "consistent") + (
                f" (Welch); draw by draw {len(better_by_draw)} better (paired)"
                if better_by_draw else ""),
        ))
    if task == "jsb" and VANILLA in cells and cells[VANILLA].n:
        vanilla = cells[VANILLA]
        best = vanilla.test[vanilla.best()]
        if len(best) == 1:
            ours = (f"jsb: vanilla's best {BEST_FRACTION:.0%} by validation is one trial "
                    f"(n = 1 of {vanilla.n}): test NLL {best[0]:.2f}.")
        else:
            ours = (f"jsb: vanilla's best {BEST_FRACTION:.0%} by validation (n = {len(best)} of "
                    f"{vanilla.n}) reach a test NLL of {_range(best)} (median "
                    f"{np.median(best):.2f}).")
        median = float(np.median(best))
        level = ("consistent" if median <= 8.8 else
                 f"not reached: {median - 8.8:.2f} nats above the paper's range")
        out.append(("JSB level", PAPER_FINDINGS["jsb_range"], ours, level))
    return out


def _fanova_row(label: str, result, params: list[str], pairs: list[str]) -> str:
    """One row of report.md's fANOVA table: main effects, every pair, the pairs' total."""
    total = sum(max(v, 0.0) for v in result.pairwise.values())
    return (f"| {label} | " + " | ".join(f"{result.main[p]:.2f}" for p in params)
            + "".join(f" | {result.pairwise[k]:.2f}" for k in pairs) + f" | {total:.2f} |")


def markdown(
    name: str, storage: str, data: dict, summaries: dict, welch_rows: dict, fanovas: dict,
    files: list[str], rank_fanovas: dict | None = None,
) -> str:
    lines = [f"# Study `{name}`: Greff et al.'s LSTM variants", ""]
    first = next(iter(next(iter(data.values())).values()))
    lines += [f"Storage: {storage}.", ""]
    if first.space:
        space = first.space
        ranges = ", ".join(
            f"{k} {'log-' if v['log'] else ''}uniform [{v['low']:g}, {v['high']:g}]"
            for k, v in space["space"].items()
        )
        settings = ", ".join(f"{k}={v}" for k, v in space["settings"].items())
        lines += [f"Space: {ranges} (momentum = 1 − one_minus_momentum); seed "
                  f"{space.get('seed')}.", "", f"Fixed settings of every trial: {settings}.", ""]
    objectives = sorted({c.objective for cells in data.values() for c in cells.values() if c.n})
    lines += [f"The study's objective, each trial's value, is the validation metric "
              f"({', '.join(objectives)}) of its best validated parameters; fANOVA and the "
              "marginal plots explain it (as optuna-dashboard's importances do). The box plots "
              "and Welch tests compare the cells on the test metric of the same parameters. "
              "Every cell sees the same hyperparameter draws (trial i of each cell uses the "
              "same sample).", "",
              "Cells: " + variant_legend(
                  dict.fromkeys(c for cells in data.values() for c in cells)) + ".", ""]
    for task, cells in data.items():
        metric = next((c.metric for c in cells.values() if c.n), "metric")
        wall = sum(float(c.wall_seconds.sum()) for c in cells.values())
        lines += [f"## {task}", "",
                  f"Test {metric} per cell; trial wall time summed over cells {wall / 60:.1f} "
                  "min (worker-minutes).", "",
                  "| cell | trials (failed) | mean ± std | median | best 10% mean | best trial "
                  "| Δ mean vs vanilla | Welch p | best 10% Δ | best 10% Welch p | paired "
                  "median Δ (pairs) | paired p | |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        rows = {r["cell"]: r for r in welch_rows.get(task, [])}
        for cell in cells:
            s = summaries[task][cell]
            test, best = s["test"], s["test_best10"]
            r = rows.get(cell)
            marks = []
            for label, key in (("", ""), ("best 10% ", "best10_"), ("paired ", "paired_")):
                if r is not None and r[f"{key}significant"]:
                    marks.append(f"{label}{'worse' if r[f'{key}worse'] else 'better'} *")
            if r is None:
                compared = "– | – | – | – | – | –"
            else:
                compared = (f"{_fmt(r['difference'])} | {_fmt(r['p'], 2)} | "
                            f"{_fmt(r['best10_difference'])} | {_fmt(r['best10_p'], 2)} | "
                            f"{_fmt(r['paired_median'])} ({r['paired_n']}) | "
                            f"{_fmt(r['paired_p'], 2)}")
            lines.append(
                f"| {_name(cell)} | {s['complete']} ({s['failed']}) | "
                f"{_fmt(test.get('mean'))} ± {_fmt(test.get('std'), 2)} | "
                f"{_fmt(test.get('median'))} | {_fmt(best.get('mean'))} | "
                f"{_fmt(s.get('best_trial', {}).get('test'))} | {compared} | "
                f"{', '.join(marks)} |"
            )
        lines += ["", f"`*`: p < {ALPHA}. Welch: the paper's unequal-variance t-test against "
                  "vanilla, over all trials and over the best 10% by validation. Paired: "
                  "the Wilcoxon signed-rank test of variant − vanilla over the draws both "
                  "completed (trial i of every cell has the same hyperparameters), which "
                  "removes the spread the hyperparameters cause; our addition, not the "
                  "paper's.", ""]
        fan = fanovas.get(task, {})
        ranked = (rank_fanovas or {}).get(task, {}).get("all")  # pooled, of the ranks
        if fan:
            params = list(LABELS)
            pairs = list(next(iter(fan.values())).pairwise)
            objective = next((c.objective for c in cells.values() if c.n), "the objective")
            lines += [f"fANOVA of the objective, {objective} (fractions of variance; `all` "
                      "pools every cell's trials): main effects, then every pairwise "
                      "interaction.", "",
                      "| cell | " + " | ".join(params + pairs) + " | pairs total |",
                      "|---|" + "---|" * (len(params) + len(pairs) + 1)]
            lines += [_fanova_row(_name(cell), result, params, pairs)
                      for cell, result in fan.items()]
            if ranked is not None:
                lines += [_fanova_row("all, ranks", ranked, params, pairs), "",
                          "`all, ranks`: the same for the ranks of the objective, which "
                          "weigh every trial alike; fANOVA splits variance, so a few trials "
                          "that barely trained (an objective several times the others') can "
                          "decide the raw importances alone."]
            lines.append("")
        findings = _findings(task, cells, welch_rows.get(task, []), fan, ranked)
        if findings:
            lines += ["### The paper's findings beside ours", "",
                      "| | Greff et al. 2016 | this study | verdict |", "|---|---|---|---|"]
            lines += [f"| {topic} | {paper} | {ours} | {verdict} |"
                      for topic, paper, ours, verdict in findings]
            lines += ["", f"Verdicts: *shown* = significant at p < {ALPHA} in the paper's "
                      "direction; *consistent* = what the paper reports, or no significant "
                      "difference where the paper reports none (a study of few trials is "
                      "consistent with \"no difference\" easily: read n beside it); *not "
                      f"shown* = not significant; fANOVA thresholds: a pair is small below "
                      f"{SMALL_PAIR:.0%}, lr × hidden size minimal below {SMALL_LR_SIZE:.0%}.",
                      ""]
    lines += ["## Files", ""] + [f"- `{f}`" for f in files] + [""]
    return "\n".join(lines)


def write_report(storage, name: str, out: str | Path, *, storage_text: str = "",
                 tasks=None, cells=None, n_trees: int = 64) -> tuple[Path, dict]:
    """Read every study of ``name`` from ``storage`` and write the report files into ``out``.

    ``n_trees``: trees of each fANOVA forest. Returns (report.md path, study.json contents).
    Raises StudyNotFound when the name has no study, ValueError when no study has a complete
    trial.
    """
    data = load(storage, name, tasks=tasks, cells=cells)
    if not any(c.n for cells_ in data.values() for c in cells_.values()):
        raise ValueError(
            f"study {name} has no complete trial yet; run `rnnlab study run --name {name}` "
            "(or wait for its workers) before the report"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = {t: {c: summarize(trials) for c, trials in cs.items()} for t, cs in data.items()}
    welch_rows = {t: welch(cs) for t, cs in data.items()}
    fanovas = {t: importance(cs, n_trees=n_trees) for t, cs in data.items()}
    rank_fanovas = {t: importance(cs, n_trees=n_trees, ranks=True) for t, cs in data.items()}
    files = ["boxplot.png", "welch.csv", "importance.json", "importance.png"]
    plot_boxes(data, out / "boxplot.png")
    write_welch([{"task": t, **r} for t, rows in welch_rows.items() for r in rows],
                out / "welch.csv")
    objectives = {t: next((c.objective for c in cs.values() if c.n), "objective")
                  for t, cs in data.items()}
    (out / "importance.json").write_text(json.dumps(
        {t: {c: {"objective": objectives[t], **r.to_dict(),
                 **({"ranks": rank_fanovas[t][c].to_dict()} if c in rank_fanovas[t] else {})}
             for c, r in by.items()}
         for t, by in fanovas.items()}, indent=2
    ) + "\n", encoding="utf-8")
    plot_importance(fanovas, out / "importance.png", objectives)
    for task, cells_ in data.items():
        plot_marginals(task, cells_, fanovas.get(task, {}), out / f"marginal_{task}.png")
        files.append(f"marginal_{task}.png")
    write_trials(data, out / "trials.csv")
    files += ["report.md", "study.json", "trials.csv"]
    study = {
        "name": name,
        "storage": storage_text,
        "tasks": summaries,
        "welch": welch_rows,
        "space": next((c.space for cs in data.values() for c in cs.values() if c.space), None),
    }
    (out / "study.json").write_text(json.dumps(study, indent=2) + "\n", encoding="utf-8")
    text = markdown(name, storage_text, data, summaries, welch_rows, fanovas, files,
                    rank_fanovas)
    (out / "report.md").write_text(text, encoding="utf-8")
    return out / "report.md", study
