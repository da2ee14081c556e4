"""Tables and plots from run directories (what ``rnnlab report`` and ``rnnlab compare`` print)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rnnlab.train import bodies
from rnnlab.train.plots import learning_curves
from rnnlab.train.run import RunDir


def row(run: RunDir, label: str | None = None) -> dict:
    """One table row from a run's summary.json (or its metrics, for a run still going)."""
    summary = run.summary()
    config = run.config()
    # the body with its settings that differ from their defaults (regularisers, bidirectional,
    # ...), so that two runs differing only in those are told apart
    body = bodies.describe(config.model)
    out = {
        "run": label or run.path.name,
        "task": config.task.name,
        "model": f"{config.model.num_layers}x{config.model.hidden_size} {body}",
        "path": str(run.path),
    }
    if summary is None:
        records = run.metrics()
        out.update(
            status="running or killed",
            steps=max((r["step"] for r in records), default=0),
        )
        return out
    primary = summary["primary"]
    out.update(
        parameters=summary["parameters"],
        steps=summary["steps"],
        tokens_per_s=summary.get("tokens_per_s"),
        train_seconds=summary.get("train_seconds"),
        primary=primary,
        higher_is_better=summary.get("higher_is_better"),
        status=summary["status"],
    )
    for split in ("valid", "test"):
        if split in summary:
            out[split] = summary[split][primary]
    return out


def table(rows: list[dict]) -> str:
    """A Markdown table of rows from :func:`row`; valid / test are the task's primary metric
    (named in the header, or in a column of its own when the runs differ in it)."""
    primaries = sorted({r["primary"] for r in rows if "primary" in r})
    shared = len(primaries) <= 1
    tasks = len({r["task"] for r in rows}) > 1
    metric = primaries[0] if primaries else "metric"
    header = [
        "run",
        *(["task"] if tasks else []),
        "model",
        "parameters",
        "steps",
        "tokens/s",
        *([] if shared else ["metric"]),
        f"valid {metric}" if shared else "valid",
        f"test {metric}" if shared else "test",
        "status",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            r["run"],
            *([r["task"]] if tasks else []),
            r["model"],
            _number(r.get("parameters"), "{:,}"),
            _number(r.get("steps"), "{:,}"),
            _number(r.get("tokens_per_s"), "{:,.0f}"),
            *([] if shared else [r.get("primary", "-")]),
            _number(r.get("valid"), "{:.4f}"),
            _number(r.get("test"), "{:.4f}"),
            r.get("status", ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value, spec: str) -> str:
    return "-" if value is None else spec.format(value)


def report(run_dirs: list[str], out: str | None = None, *, x: str = "step") -> tuple[str, Path]:
    """Table (printed by the CLI) and curves for ``run_dirs``; writes report.md, report.json and
    curves.png into ``out`` (default reports/<timestamp>). Returns (table text, out dir)."""
    runs = [RunDir(path) for path in run_dirs]
    for run in runs:
        run.require()
    out_dir = Path(out) if out else Path("reports") / time.strftime("%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [row(run) for run in runs]
    text = table(rows)
    (out_dir / "report.md").write_text(text + "\n", encoding="utf-8")
    (out_dir / "report.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    learning_curves(runs, out_dir / "curves.png", x=x)
    return text, out_dir
