"""Run a reproduction: every run of an entry through the ordinary trainer, into run directories.

Layout under ``out`` (default ``runs/reproduce``)::

    out/NAME/LABEL/          one ordinary run directory per run (rnnlab report / evaluate work)
    out/NAME/reproduction.json   entry, budget, settings, per-run wall seconds and directories

A run whose directory already holds summary.json is kept (not trained again); one that holds a
checkpoint but no summary (interrupted) is resumed, and one stopped before its first checkpoint
is started again; so re-running the same command finishes an interrupted reproduction. Each run
is trained under its directory's lock (``rnnlab.train.run.hold``): a second process running the
same command skips the runs the first is training and takes the others, so two processes share
an entry's runs between them.

Each finished run's small files (config, summary, metrics, learning curves; no checkpoints) are
copied to ``results/NAME/LABEL/`` (``results=``), the folder kept in the repository that the
README's results table is built from (:mod:`rnnlab.reproduce.table`).
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path

from rnnlab import machine
from rnnlab.atomic import exclusive, write_text_atomic
from rnnlab.reproduce import entries
from rnnlab.train.config import ConfigError, apply_overrides
from rnnlab.train.run import (
    CONFIG,
    LOCK,
    SUMMARY,
    RunBusy,
    RunDir,
    hold,
    holder,
)

RECORD = "reproduction.json"
RECORD_LOCK = ".reproduction.lock"  # held while a process updates RECORD
BUDGETS = ("full", "small")
# What a finished run keeps in results/: everything a table, a plot or a reader needs, nothing
# that only resuming needs (checkpoints). MAX_RESULT_BYTES bounds one run's files.
RESULT_FILES = ("config.json", "summary.json", "metrics.jsonl", "curves.png", "task.json")
MAX_RESULT_BYTES = 200_000


def budget_settings(entry: entries.Entry, budget: str) -> dict:
    """The settings a budget adds: ``full``, ``small``, or a number of training steps per run
    (budgets are work, never seconds: the same number on every machine)."""
    if budget in entry.budgets:
        return dict(entry.budgets[budget])
    steps = int(budget) if budget.isdigit() else 0
    if steps <= 0:
        raise ValueError(
            f"--budget must be full, small or a number of training steps per run (> 0), got "
            f"{budget!r}"
        )
    return {"train.max_steps": steps, "train.epochs": None}


def keep_results(run_dir: Path, target: Path) -> Path:
    """Copy a finished run's small files (:data:`RESULT_FILES`) to ``target``. The learning-curve
    PNG is left out when it alone makes the run larger than :data:`MAX_RESULT_BYTES` (it can be
    drawn again from metrics.jsonl: ``rnnlab report``); anything else that large is refused,
    naming the file."""
    files = [run_dir / name for name in RESULT_FILES if (run_dir / name).is_file()]
    total = sum(f.stat().st_size for f in files)
    if total > MAX_RESULT_BYTES and run_dir / "curves.png" in files:
        files.remove(run_dir / "curves.png")
        total = sum(f.stat().st_size for f in files)
    if total > MAX_RESULT_BYTES:
        largest = max(files, key=lambda f: f.stat().st_size)
        raise ValueError(
            f"{run_dir}: {total:,} bytes of results (largest {largest.name}, "
            f"{largest.stat().st_size:,}) exceed {MAX_RESULT_BYTES:,}; raise train.log_every"
        )
    target.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, target / f.name)
    return target


def selected_runs(entry: entries.Entry, budget: str, labels: list[str] | None):
    if labels:
        return [entry.run(label) for label in labels]
    if budget == "small":
        return [run for run in entry.runs if run.small]
    return list(entry.runs)


def _merge_runs(record: dict, path: Path) -> None:
    """Add to ``record["runs"]`` the runs another process recorded in ``path`` meanwhile (two
    processes may train different runs of one entry; each would otherwise drop the other's).
    The file wins: each process writes its own runs there as they finish."""
    if path.is_file():
        record["runs"] = {**record["runs"], **json.loads(path.read_text()).get("runs", {})}


def _keep_record(record: dict, kept: Path) -> None:
    """Write the reproduction record into ``kept`` (results/NAME). The record under --out
    knows the runs trained there; the runs kept in ``kept`` earlier from another run directory
    (another machine, another --out) keep their entries while their results are there."""
    path = kept / RECORD
    earlier: dict = {}
    if path.is_file():
        try:
            earlier = json.loads(path.read_text()).get("runs", {})
        except (ValueError, AttributeError):  # unreadable: rewritten from this record
            earlier = {}
    runs = {label: run for label, run in earlier.items() if (kept / label / SUMMARY).is_file()}
    kept_record = {**record, "runs": {**runs, **record["runs"]}}
    write_text_atomic(json.dumps(kept_record, indent=2) + "\n", path)


def _run_one(name, label, directory, config, record, record_path, kept, argv, stream):
    """Train (or resume, or keep) one run whose directory this process holds (``hold``)."""
    from rnnlab.train.trainer import TrainingDiverged, train

    existing = RunDir(directory)
    if existing.file(SUMMARY).is_file():
        print(f"{name}/{label}: done already ({directory}); kept", flush=True)
        if kept is not None and not (kept / label / SUMMARY).is_file():
            keep_results(directory, kept / label)
        return
    resume = None
    if existing.file(CONFIG).is_file():
        if existing.resumable():
            resume = str(directory)
            config = existing.config()
        else:  # its process stopped before the first checkpoint, and nobody trains it now
            print(f"{name}/{label}: the run in {directory} stopped before its first "
                  "checkpoint: started again", flush=True)
            for item in directory.iterdir():
                if item.is_dir():
                    shutil.rmtree(item)
                elif item.name != LOCK:
                    item.unlink()
    print(f"{name}/{label}: training ({'resuming' if resume else 'new'})", flush=True)
    started = time.perf_counter()
    try:
        _, summary = train(config, argv=argv, resume=resume, stream=stream)
    except TrainingDiverged as error:  # recorded in its summary.json; the others still run
        print(f"{name}/{label}: diverged: {error}", flush=True)
        summary = {"status": "diverged"}
    with exclusive(record_path.with_name(RECORD_LOCK)):  # other processes' runs are kept
        _merge_runs(record, record_path)
        record["runs"][label] = {
            "dir": label,
            "wall_seconds": time.perf_counter() - started
            + record["runs"].get(label, {}).get("wall_seconds", 0.0),
            "status": summary["status"],
            "steps": summary.get("steps"),
        }
        write_text_atomic(json.dumps(record, indent=2) + "\n", record_path)
    if kept is not None and (directory / SUMMARY).is_file():
        keep_results(directory, kept / label)
        _keep_record(record, kept)
        print(f"{name}/{label}: results kept in {kept / label}", flush=True)


def reproduce(
    name: str,
    *,
    budget: str = "full",
    out: str | Path = "runs/reproduce",
    overrides: list[str] | None = None,
    labels: list[str] | None = None,
    argv: list[str] | None = None,
    stream=None,
    results: str | Path | None = "results",
) -> Path:
    """Train ``name``'s runs (those of the small budget, or ``labels``); returns out/NAME.

    ``overrides`` are ``section.field=value`` strings applied after the entry's settings and the
    budget (e.g. ``run.threads=2``); they are recorded in reproduction.json. Each finished run
    of the ``full`` budget without overrides is kept under ``results/NAME/LABEL`` (None: not
    kept); other budgets are kept under ``results/NAME@BUDGET`` only when asked for by a
    ``results`` other than the default, so a quick check never mixes into the table.
    """
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
        machine={**machine.describe(), "platform": platform.platform()},
    )
    kept = None
    if results is not None and budget == "full" and not overrides:
        kept = Path(results) / name
    record.setdefault("runs", {})
    busy = []
    for run in selected_runs(entry, budget, labels):
        directory = root / run.label
        config = run.config(extra)
        try:
            apply_overrides(config, [*(overrides or []), f"run.dir={directory}"])
        except ConfigError as error:
            raise ValueError(str(error)) from None
        try:
            lock = hold(directory)
        except RunBusy as error:  # another process trains it: go on with the others
            print(f"{name}/{run.label}: skipped: {error}", flush=True)
            busy.append(run.label)
            continue
        with lock:
            _run_one(name, run.label, directory, config, record, record_path, kept, argv,
                     stream)
    if busy:
        print(f"{name}: {len(busy)} run(s) trained by other processes ({', '.join(busy)}): "
              "the figures include them when the command runs again after they finish",
              flush=True)
    from rnnlab.train.plots import learning_curves

    finished = [RunDir(root / r.label) for r in entry.runs if (root / r.label / SUMMARY).is_file()]
    if finished:
        learning_curves(finished, root / "curves.png")  # every run of the entry, one figure
    if kept is not None:  # every run kept, including those trained under another --out
        everything = [RunDir(kept / r.label) for r in entry.runs
                      if (kept / r.label / SUMMARY).is_file()]
        if everything:
            learning_curves(everything, kept / "curves.png")
    if entry.sweeps:  # value against a setting, one line per network (e.g. depth)
        from rnnlab.reproduce.sweep import plot_all

        for path in plot_all(entry, root, root):
            if kept is not None:
                kept.mkdir(parents=True, exist_ok=True)
                for made in (path, path.with_suffix(".csv")):
                    shutil.copyfile(made, kept / made.name)
    if entry.equal_time and kept is not None:  # redrawn with the step times kept there
        from rnnlab.reproduce.equal_time import plot as equal_time_plot

        equal_time_plot(entry, kept, kept)
    if entry.gradflow:
        from rnnlab.reproduce.gradflow import entry_gradflow

        entry_gradflow(entry, root, record)
        if kept is not None and (root / "gradflow").is_dir():
            (kept / "gradflow").mkdir(parents=True, exist_ok=True)
            for made in sorted((root / "gradflow").iterdir()):
                if made.suffix in (".png", ".csv", ".json"):
                    shutil.copyfile(made, kept / "gradflow" / made.name)
    with exclusive(record_path.with_name(RECORD_LOCK)):
        _merge_runs(record, record_path)
        write_text_atomic(json.dumps(record, indent=2) + "\n", record_path)
    if kept is not None and kept.is_dir():
        _keep_record(record, kept)
    return root


def status(name: str, *, budget: str = "full", out: str | Path = "runs/reproduce",
           labels: list[str] | None = None, results: str | Path | None = "results") -> str:
    """Where each run of ``name`` stands under ``out`` (``rnnlab reproduce NAME --status``):
    done (its result), training (by which process, how far, the time left at its pace),
    interrupted (the command resumes it), stopped before its first checkpoint (the command
    starts it again) or not started — and for a run not started under ``out``, the finished
    one ``results`` keeps, if any. Reads the run directories; changes nothing."""
    entry = entries.get(name)
    budget_settings(entry, budget)  # an unknown budget is refused here too
    root = Path(out) / name
    runs = selected_runs(entry, budget, labels)
    width = max((len(run.label) for run in runs), default=0)
    counts: dict[str, int] = {}
    lines = []
    for run in runs:
        state, text = _run_status(root / run.label)
        kept = None if results is None or budget != "full" else Path(results) / name / run.label
        if state == "not started" and kept is not None and (kept / SUMMARY).is_file():
            text += (f" under {root}; {kept} keeps a finished one ("
                     f"{_run_status(kept)[1]}), which the command would replace")
        counts[state] = counts.get(state, 0) + 1
        lines.append(f"  {run.label:<{width}}  {text}")
    head = ", ".join(f"{n} {state}" for state, n in counts.items())
    return "\n".join([f"{name} ({root}): {head}", *lines]) + "\n"


def _run_status(directory: Path) -> tuple[str, str]:
    """(state, one line) of one run directory; see ``status``."""
    run = RunDir(directory)
    summary = run.summary() if run.file(SUMMARY).is_file() else None
    if summary is not None:
        valid = summary.get("valid") or {}
        shown = dict.fromkeys(["loss", summary.get("primary")])  # in order, once each
        result = ", ".join(f"{k} {valid[k]:.4g}" for k in shown
                           if isinstance(valid.get(k), float))
        result = f", valid {result}" if result else ""
        steps = summary.get("steps") or 0
        return "done", f"done: {summary.get('status')} after {steps:,} steps{result}"
    if not run.exists():
        return "not started", "not started"
    who = holder(directory)
    progress = _progress(run)
    if who is not None:
        return "training", f"training ({who}): {progress}"
    if run.resumable():
        return "interrupted", f"interrupted ({progress}): the command resumes it"
    return "stopped early", ("stopped before its first checkpoint: the command starts it "
                             "again")


def _progress(run: RunDir) -> str:
    """How far a run has logged: its last training record against the run's limit, and the
    time left at the pace of its last few records."""
    train = [r for r in run.metrics() if r.get("split") == "train"]
    if not train:
        return "no step logged yet"
    last = train[-1]
    limit = run.config().train.max_steps
    text = f"step {last['step']:,}" + (f" of {limit:,}" if limit else "")
    if isinstance(last.get("loss"), float):
        text += f", train loss {last['loss']:.4g}"
    # the pace of its recent records (training seconds a step), not of the whole run: a run
    # resumed on another machine, or slowed for a while, is judged by how it goes now
    first = train[max(0, len(train) - 6)]
    if first is last:
        first = {"step": 0, "time": 0.0}
    steps = last["step"] - first["step"]
    if limit and steps > 0 and last["step"] < limit and isinstance(last.get("time"), float):
        left = (limit - last["step"]) * (last["time"] - first.get("time", 0.0)) / steps
        text += f", ~{left / 60:.0f} min left at its recent pace"
    return text


def measured_minutes(results: Path, name: str) -> tuple[float, int, str] | None:
    """(minutes of training summed over the kept runs, runs, where: the CPU and the highest
    load average seen) of an entry, from results/."""
    minutes, count, cpus, load = 0.0, 0, set(), 0.0
    for summary in sorted((Path(results) / name).glob(f"*/{SUMMARY}")):
        data = json.loads(summary.read_text())
        minutes += data.get("train_seconds", 0.0) / 60
        count += 1
        seen = data.get("machine", {})
        cpus.add(seen.get("cpu", "?"))
        load = max([load, *(x for x in (seen.get("load"), seen.get("load_end")) if x)])
    if not count:
        return None
    return minutes, count, f"{', '.join(sorted(cpus))}, load up to {load:.1f}"


def listing(results: str | Path = "results") -> str:
    """The ``--list`` text: per entry the claim, the paper, the published numbers, what differs
    from the paper, the budget in steps, n seeds, and the CPU-minutes (measured from results/
    where the entry has been run, else the estimate)."""
    lines = []
    for name in entries.names():
        entry = entries.get(name)
        measured = measured_minutes(Path(results), name)
        if measured is not None and measured[1] == len(entry.runs):
            cost = (f"{measured[0]:.0f} CPU-min measured ({measured[1]} runs, {measured[2]}; "
                    "results/)")
        else:
            cost = f"~{entry.expected_minutes:g} CPU-min estimated"
        lines.append(f"{name}  ({len(entry.runs)} run(s), n={entry.seeds_per_row()} per row, "
                     f"{cost})")
        lines.append(f"    claim: {entry.claim}")
        lines.append(f"    paper: {entry.paper}")
        lines.append(f"    table: {entry.table}")
        shown = entry.rows if len(entry.rows) <= 4 else entry.rows[:3]
        for row in shown:
            lines.append(f"    published: {row['what']}: {row['published']}")
        if len(entry.rows) > len(shown):
            lines.append(f"    ... and {len(entry.rows) - len(shown)} more rows")
        lines.append(f"    budget full: {entry.budget_text('full')} per run; differs from the "
                     f"paper: {entry.scaled}")
        lines.append(f"    budget small: {entry.budget_text('small')} per run; "
                     f"{entry.small_scaled}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
