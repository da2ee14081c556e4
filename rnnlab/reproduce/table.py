"""The README results table, built from run directories (never typed by hand).

::

    python -m rnnlab.reproduce.table [RUNS_ROOT] [--readme README.md]
    rnnlab reproduce --table --out RUNS_ROOT [--readme README.md]

For every entry of :mod:`rnnlab.reproduce.entries` and every published row, the measured value
is read from the summary.json of the row's finished runs under ``RUNS_ROOT/NAME/LABEL``: one
run gives its value (with "1 of N runs" when the row has more), several give mean ± std (or,
with ``aggregate: best_valid``, the value of the run with the best validation score, as a
paper's "best of N draws"). A row with no finished run says "not run yet". With ``--readme``
the table replaces the text between the ``<!-- reproductions:begin -->`` and
``<!-- reproductions:end -->`` markers.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from rnnlab.reproduce import entries
from rnnlab.reproduce.runner import RECORD

BEGIN, END = "<!-- reproductions:begin -->", "<!-- reproductions:end -->"
NOT_RUN = "not run yet"


def _lookup(summary: dict, path: str):
    value = summary
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def row_value(root: Path, row: dict) -> str:
    """The measured text of one row: a number, mean ± std (n), or "not run yet"."""
    summaries = []
    for label in row["runs"]:  # the finished ones (a small budget trains some of them)
        path = root / label / "summary.json"
        if path.is_file():
            summaries.append(json.loads(path.read_text()))
    if not summaries:
        return NOT_RUN
    if any(s.get("status") == "diverged" for s in summaries):
        return "diverged (see docs/reproductions.md)"
    values = [_lookup(s, row["value"]) for s in summaries]
    if any(v is None for v in values):
        return NOT_RUN
    if row.get("aggregate") == "best_valid":
        def key(s):
            best = s.get("best_valid")
            if best is None:
                return float("inf")
            return -best if s.get("higher_is_better") else best
        best = min(range(len(summaries)), key=lambda i: key(summaries[i]))
        return f"{_fmt(values[best])} (best valid of {len(values)})"
    if len(values) == 1:
        total = len(row["runs"])
        return _fmt(values[0]) + (f" (1 of {total} runs)" if total > 1 else "")
    return f"{_fmt(statistics.mean(values))} ± {_fmt(statistics.stdev(values))} (n={len(values)})"


def _fmt(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _wall(root: Path) -> str:
    record = root / RECORD
    if not record.is_file():
        return ""
    data = json.loads(record.read_text())
    seconds = sum(r.get("wall_seconds", 0.0) for r in data.get("runs", {}).values())
    return f"{seconds / 60:.1f} min" if seconds else ""


def _command(name: str, root: Path) -> str:
    record = root / RECORD
    if record.is_file():
        data = json.loads(record.read_text())
        budget = data.get("budget", "full")
        return f"`rnnlab reproduce {name}" + (f" --budget {budget}`" if budget != "full" else "`")
    return f"`rnnlab reproduce {name}`"


def build_table(runs_root: Path, only: list[str] | None = None) -> str:
    """The markdown table over every entry (or ``only`` those), read from ``runs_root``."""
    lines = [
        "| reproduction | measure | published | rnnlab | command | wall time (2 CPU cores) |",
        "|---|---|---|---|---|---|",
    ]
    for name in entries.names():
        if only and name not in only:
            continue
        entry = entries.get(name)
        root = Path(runs_root) / name
        wall = _wall(root)
        for index, row in enumerate(entry.rows):
            lines.append(
                f"| {name if index == 0 else ''} | {row['what']} | {row['published']} | "
                f"{row_value(root, row)} | {_command(name, root) if index == 0 else ''} | "
                f"{wall if index == 0 else ''} |"
            )
    return "\n".join(lines) + "\n"


def write_readme(readme: Path, table: str) -> None:
    """Replace the text between the reproductions markers of ``readme`` with ``table``."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(
            f"{readme} has no {BEGIN} ... {END} markers; add them where the table belongs"
        )
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{table}{END}{tail}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_root", nargs="?", default="runs/reproduce")
    parser.add_argument("--readme", default=None, help="write the table into this README")
    args = parser.parse_args(argv)
    table = build_table(Path(args.runs_root))
    if args.readme:
        try:
            write_readme(Path(args.readme), table)
        except ValueError as error:
            parser.error(str(error))
    print(table, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
