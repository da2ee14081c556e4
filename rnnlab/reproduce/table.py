"""The README results table and the comparisons of docs/reproductions.md, built from the
finished runs kept in ``results/`` (never typed by hand).

::

    rnnlab reproduce --table [--results results] [--readme README.md]
    python -m rnnlab.reproduce.table [RESULTS] [--readme README.md] [--docs docs/reproductions.md]

For every entry of :mod:`rnnlab.reproduce.entries` and every published row, the measured value
is read from the summary.json of the row's finished runs under ``RESULTS/NAME/LABEL``: several
give mean ± std (n), one gives its value with "n=1"; with ``aggregate: best_valid``, the value of
the run with the best validation score, as a paper's "best of N draws". A row with no finished
run says "not run". Values are those of the parameters selected on the validation loss unless
the measure says "final weights".

Every ``comparison`` of an entry (a claim "A beats B") gets Welch's t-test over the seeds of
the two rows (two-sided p, the mean difference and its 95% interval), and a verdict that says
"not significant" when p >= 0.05. With ``--readme`` / ``--docs`` each table replaces the text
between its markers.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import warnings
from pathlib import Path

from rnnlab.reproduce import entries
from rnnlab.reproduce.runner import RECORD

BEGIN, END = "<!-- reproductions:begin -->", "<!-- reproductions:end -->"
COMPARE_BEGIN, COMPARE_END = "<!-- comparisons:begin -->", "<!-- comparisons:end -->"
NOT_RUN = "not run"
ALPHA = 0.05


def lookup(summary: dict, path: str):
    """``summary``'s value at a dotted path (``test.accuracy``), None where it has none."""
    value = summary
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _summaries(root: Path, row: dict) -> list[dict]:
    out = []
    for label in row["runs"]:  # the finished ones
        path = root / label / "summary.json"
        if path.is_file():
            out.append(json.loads(path.read_text()))
    return out


def diverged(summary: dict) -> bool:
    """Whether the run of ``summary`` diverged (the table and the sweeps count, not average, it)."""
    return summary.get("status") == "diverged"


def row_values(root: Path, row: dict) -> list[float] | None:
    """The row's value in each finished run (None when a run lacks it or diverged)."""
    summaries = _summaries(root, row)
    values = [lookup(s, row["value"]) for s in summaries]
    if not summaries or any(v is None for v in values) or any(
        diverged(s) for s in summaries
    ):
        return None
    return [float(v) for v in values]


def row_value(root: Path, row: dict) -> str:
    """The measured text of one row: mean ± std (n), a value (n=1), or "not run". Runs that
    diverged are counted and named, not averaged: "0.412 ± 0.010 (n=2 of 3, 1 diverged)"; the
    comparisons (:func:`row_values`) refuse such a row, since the survivors alone would be a
    biased sample. The sweeps' plots (:mod:`rnnlab.reproduce.sweep`) follow the same rule."""
    summaries = _summaries(root, row)
    if not summaries:
        return NOT_RUN
    failed = sum(map(diverged, summaries))
    if failed == len(summaries):
        return "diverged (see docs/reproductions.md)"
    summaries = [s for s in summaries if not diverged(s)]
    values = [lookup(s, row["value"]) for s in summaries]
    if any(v is None for v in values):
        return NOT_RUN
    total = len(row["runs"])
    if row.get("aggregate") == "best_valid":
        def key(s):
            best = s.get("best_valid")
            if best is None:
                return float("inf")
            return -best if s.get("higher_is_better") else best
        best = min(range(len(summaries)), key=lambda i: key(summaries[i]))
        return f"{_fmt(values[best])} (best valid of {len(values)})"
    of = f" of {total}" if len(values) < total else ""
    if failed:
        of += f", {failed} diverged"
    if len(values) == 1:
        return f"{_fmt(values[0])} (n=1{of})"
    return (f"{_fmt(statistics.mean(values))} ± {_fmt(statistics.stdev(values))} "
            f"(n={len(values)}{of})")


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def welch(a: list[float], b: list[float]) -> dict:
    """Welch's t-test of mean(a) vs mean(b): two-sided p, the difference of means and its 95%
    interval (Welch-Satterthwaite degrees of freedom). Identical constant samples give p = 1
    (equal) or p = 0 (different)."""
    from scipy import stats

    diff = statistics.mean(a) - statistics.mean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return {"p": 1.0 if diff == 0 else 0.0, "diff": diff, "low": diff, "high": diff}
    with warnings.catch_warnings():  # nearly identical samples: scipy warns, p is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(stats.ttest_ind(a, b, equal_var=False).pvalue)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, df)) * math.sqrt(va + vb)
    return {"p": p, "diff": diff, "low": diff - half, "high": diff + half}


def comparison_line(entry: entries.Entry, root: Path, comparison: dict) -> str:
    """One markdown row: claim A beats B, the two means, Welch p, the interval, the verdict."""
    a, b = entry.row(comparison["a"]), entry.row(comparison["b"])
    va, vb = row_values(root, a), row_values(root, b)
    better = "higher" if comparison["higher_is_better"] else "lower"
    head = f"| {entry.name} | {comparison['a']} vs {comparison['b']} ({better} is better) |"
    if va is None or vb is None:
        return f"{head} {NOT_RUN} | | | |"
    if len(va) < 2 or len(vb) < 2:
        return f"{head} n={len(va)} vs n={len(vb)}: too few seeds for a test | | | |"
    test = welch(va, vb)
    ahead = test["diff"] > 0 if comparison["higher_is_better"] else test["diff"] < 0
    if test["p"] >= ALPHA:
        verdict = "not significant"
    elif ahead:
        verdict = "A beats B"
    else:
        verdict = "B beats A (the opposite)"
    return (f"{head} {_fmt(statistics.mean(va))} vs {_fmt(statistics.mean(vb))} "
            f"(n={len(va)}, {len(vb)}) | {test['p']:.3g} | {_fmt(test['diff'])} "
            f"[{_fmt(test['low'])}, {_fmt(test['high'])}] | {verdict} |")


def _selected(only: list[str] | None):
    """The entries in their order, or ``only`` those named."""
    return [entries.get(name) for name in entries.names() if not only or name in only]


def build_comparisons(results: Path, only: list[str] | None = None) -> str:
    lines = [
        "| entry | claim: A vs B | means (n) | Welch p | A − B [95% interval] | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for entry in _selected(only):
        name = entry.name
        for comparison in entry.comparisons:
            lines.append(comparison_line(entry, Path(results) / name, comparison))
    return "\n".join(lines) + "\n"


def _wall(root: Path) -> str:
    """CPU-minutes of training summed over the kept runs, and the CPU they ran on."""
    summaries = [json.loads(p.read_text()) for p in sorted(root.glob("*/summary.json"))]
    if not summaries:
        return ""
    minutes = sum(s.get("train_seconds", 0.0) for s in summaries) / 60
    cpus = sorted({s.get("machine", {}).get("cpu", "?") for s in summaries})
    return f"{minutes:.1f} min ({', '.join(cpus)})"


def _budget(root: Path) -> str:
    record = root / RECORD
    if record.is_file():
        return json.loads(record.read_text()).get("budget", "full")
    return "full"


def _command(name: str, root: Path) -> str:
    budget = _budget(root)
    return f"`rnnlab reproduce {name}" + (f" --budget {budget}`" if budget != "full" else "`")


def _budget_text(entry: entries.Entry, root: Path) -> str:
    budget = _budget(root)
    return entry.budget_text(budget) if budget in entry.budgets else f"max_steps={budget}"


def build_table(results: Path, only: list[str] | None = None) -> str:
    """The markdown table over every entry (or ``only`` those), read from ``results``."""
    lines = [
        "| reproduction | measure | published | rnnlab | budget per run | command | "
        "training time (CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in _selected(only):
        name = entry.name
        root = Path(results) / name
        wall = _wall(root)
        for index, row in enumerate(entry.rows):
            first = index == 0
            lines.append(
                f"| {name if first else ''} | {row['what']} | {row['published']} | "
                f"{row_value(root, row)} | {_budget_text(entry, root) if first else ''} | "
                f"{_command(name, root) if first else ''} | {wall if first else ''} |"
            )
    return "\n".join(lines) + "\n"


def replace_between(path: Path, begin: str, end: str, text: str) -> None:
    """Replace the text between the ``begin`` and ``end`` markers of ``path`` with ``text``."""
    content = path.read_text()
    if begin not in content or end not in content:
        raise ValueError(f"{path} has no {begin} ... {end} markers; add them where the table "
                         "belongs")
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text}{end}{tail}")


def write_readme(readme: Path, table: str) -> None:
    """The README's results table."""
    replace_between(readme, BEGIN, END, table)


def between(path: Path, begin: str, end: str) -> str:
    """The text between two markers of ``path`` (what :func:`replace_between` wrote)."""
    content = path.read_text()
    return content.split(begin, 1)[1].split(end, 1)[0].lstrip("\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default="results")
    parser.add_argument("--readme", default=None, help="write the table into this README")
    parser.add_argument("--docs", default=None,
                        help="write the comparisons into this page (docs/reproductions.md)")
    args = parser.parse_args(argv)
    table = build_table(Path(args.results))
    comparisons = build_comparisons(Path(args.results))
    try:
        if args.readme:
            write_readme(Path(args.readme), table)
        if args.docs:
            replace_between(Path(args.docs), COMPARE_BEGIN, COMPARE_END, comparisons)
    except ValueError as error:
        parser.error(str(error))
    print(table, end="")
    print()
    print(comparisons, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
