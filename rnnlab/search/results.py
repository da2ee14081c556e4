"""Reading a search back: the top list, exporting a cell, the report (plot + table + counts)."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState

from ..lang.serialize import from_json, save
from .loop import (
    Architecture,
    SearchConfig,
    SearchError,
    architectures,
    baselines,
    config_from_identity,
    load_study,
    references,
    seed_hashes,
    storage_of,
    stored_identity,
)


def open_search(config: SearchConfig):
    """(storage, config with the stored defining options, trials, baselines)."""
    storage = storage_of(config, must_exist=True)
    where = f"{config.storage or config.folder}"
    config = config_from_identity(config, stored_identity(storage, config.name, where))
    trials = load_study(storage, config.name, where).get_trials(deepcopy=False)
    return storage, config, trials, baselines(storage, config, compute=False)


def top(config: SearchConfig, n: int = 10) -> str:
    """The best ``n`` architectures with fitness, per-task accuracy and equations."""
    if n < 1:
        raise SearchError(f"-n must be >= 1, got {n}")
    _, config, trials, base = open_search(config)
    archs = architectures(trials, base)
    seeds = seed_hashes()
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    lines = [f"search {config.name}: {done} candidate evaluations, {len(archs)} architectures "
             f"evaluated; GRU baseline " + ", ".join(f"{t} {v:.4f}" for t, v in base.items())]
    if not archs:
        lines.append("no architecture has been evaluated yet")
    else:
        found = [(rank, a) for rank, a in enumerate(archs, 1) if a.hash not in seeds]
        lines.append(
            f"best found cell (not a seed): #{found[0][0]} {found[0][1].hash}, fitness "
            f"{found[0][1].fitness:.4f}" if found else
            "no cell found yet besides the seeds (gru, lstm, marked 'seed')"
        )
    for rank, arch in enumerate(archs[:n], 1):
        accuracy = ", ".join(f"{t} {arch.accuracy.get(t, 0.0):.4f}" for t in base)
        lines.append("")
        lines.append(f"#{rank} {label(arch, seeds)}  fitness {arch.fitness:.4f}  ({accuracy}; "
                     f"{arch.evaluations} evaluation(s), {arch.engine} engine)")
        lines.extend("    " + line for line in arch.equations.splitlines())
    return "\n".join(lines)


def label(arch: Architecture, seeds: dict[str, str]) -> str:
    """The architecture's hash, with ``(seed: gru)`` when it is a seed, not a found cell."""
    seed = seeds.get(arch.hash)
    return arch.hash if seed is None else f"{arch.hash} (seed: {seed})"


def find(config: SearchConfig, ident: str) -> Architecture:
    """The evaluated architecture whose hash starts with ``ident`` (at least 4 characters)."""
    _, _, trials, base = open_search(config)
    archs = architectures(trials, base)
    ident = ident.strip().lower()
    if len(ident) < 4:
        raise SearchError(f"ID {ident!r} is too short: give at least 4 characters of a hash "
                          "from `rnnlab search top`")
    matches = [a for a in archs if a.hash.startswith(ident)]
    if not matches:
        raise SearchError(f"no evaluated architecture with ID {ident!r} in search "
                          f"{config.name!r}; see `rnnlab search top`")
    if len(matches) > 1:
        raise SearchError(f"ID {ident!r} matches {len(matches)} architectures "
                          f"({', '.join(a.hash for a in matches[:5])}); give more characters")
    return matches[0]


def export(config: SearchConfig, ident: str, out: str) -> Path:
    """Write the architecture ``ident`` as a cell JSON file; returns its path."""
    if not str(out).lower().endswith(".json"):
        raise SearchError(f"--out must name a .json file, got {out!r}")
    return save(from_json(find(config, ident).graph), out)


def _counts(trials) -> dict:
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    status = [t.user_attrs.get("status") for t in complete]
    engines = [t.user_attrs.get("engine") for t in complete if "engine" in t.user_attrs]
    starts = [t.datetime_start for t in complete if t.datetime_start]
    ends = [t.datetime_complete for t in complete if t.datetime_complete]
    span = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    busy = sum(t.user_attrs.get("seconds", 0.0) for t in complete)
    return {
        "evaluations": len(complete),
        "evaluated": status.count("evaluated"),
        "filtered": status.count("filtered"),
        "rejected_trials": status.count("rejected"),
        "degenerate_discarded": sum(len(t.user_attrs.get("rejected", [])) for t in complete),
        "fused": engines.count("fused"),
        "fallback": engines.count("reference"),
        "engine_unknown": engines.count("unknown"),
        "failed": sum(t.state == TrialState.FAIL and "error" in t.user_attrs for t in trials),
        "wall_seconds": span,
        "per_hour": len(complete) / span * 3600 if span > 0 else 0.0,
        "per_hour_per_worker": len(complete) / busy * 3600 if busy > 0 else 0.0,
    }


def plot(trials, path: Path) -> Path:
    """Fitness of every candidate evaluation in order, and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted((t.user_attrs.get("index", t.number), t.value) for t in trials
                    if t.state == TrialState.COMPLETE)
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    best, running = [], float("-inf")
    for y in ys:
        running = max(running, y)
        best.append(running)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(xs, ys, s=10, alpha=0.6, label="candidate evaluation")
    ax.plot(xs, best, color="C3", label="best so far")
    ax.axhline(1.0, color="gray", linestyle=":", linewidth=1, label="GRU (fitness 1)")
    ax.set_xlabel("candidate (trial index)")
    ax.set_ylabel("fitness = min over tasks of acc / GRU acc")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report(config: SearchConfig, out: str | None = None, n: int = 5,
           with_references: bool = True) -> tuple[str, Path]:
    """Write ``fitness.png`` and ``report.md`` (top cells vs the reference cells); returns
    (the markdown text, the output folder)."""
    storage, config, trials, base = open_search(config)
    folder = Path(out) if out else config.folder / "report"
    folder.mkdir(parents=True, exist_ok=True)
    archs = architectures(trials, base)
    refs = references(storage, config, compute=with_references)
    counts = _counts(trials)
    tasks = list(base)
    header = "| cell | fitness | " + " | ".join(tasks) + " | evaluations |"
    rule = "|---" * (len(tasks) + 3) + "|"
    rows = []
    for r in refs:
        accuracy = " | ".join(f"{r['accuracy'][t]:.4f}" for t in tasks)
        rows.append((r["fitness"], f"| {r['label']} (reference) | {r['fitness']:.4f} | "
                                   f"{accuracy} | 1 |"))
    seeds = seed_hashes()
    for arch in archs[:n]:
        accuracy = " | ".join(f"{arch.accuracy.get(t, 0.0):.4f}" for t in tasks)
        rows.append((arch.fitness, f"| {label(arch, seeds)} | {arch.fitness:.4f} | {accuracy} | "
                                   f"{arch.evaluations} |"))
    rows.sort(key=lambda r: -r[0])
    b = config.budget
    lines = [
        f"# Search {config.name}",
        "",
        f"Tasks {', '.join(tasks)}; budget per training: hidden {b.hidden}, batch "
        f"{b.batch_size}, {b.train_steps} steps, accuracy on {b.eval_batches} valid batches; "
        f"{config.settings} random setting(s) per cell and task; memorisation filter "
        f"{b.filter_threshold:.0%} within {b.filter_steps} steps. GRU baseline: "
        + ", ".join(f"{t} {v:.4f}" for t, v in base.items()) + ".",
        "",
        f"{counts['evaluations']} candidate evaluations ({counts['evaluated']} trained, "
        f"{counts['filtered']} stopped by the memorisation filter, {counts['rejected_trials']} "
        f"without a usable mutant), {len(archs)} distinct architectures; "
        f"{counts['degenerate_discarded']} degenerate or known-bad mutants discarded before "
        f"training; {counts['failed']} evaluations failed with an error.",
        f"Engine: {counts['fused']} candidates ran fused, {counts['fallback']} fell back to the "
        f"reference loop, {counts['engine_unknown']} unknown.",
        f"Throughput: {counts['per_hour']:.0f} candidates/hour over {counts['wall_seconds']:.0f}"
        f" s of wall time ({counts['per_hour_per_worker']:.0f} per worker-hour).",
        "",
        "Top cells and the reference cells under the same budget (a searched cell's accuracy "
        "is its best over all its evaluations; a reference has one evaluation; `seed` marks the "
        "search's starting cells GRU and LSTM, evaluated inside the search, not found by it):",
        "",
        header,
        rule,
        *[r[1] for r in rows],
        "",
    ]
    for rank, arch in enumerate(archs[:n], 1):
        lines += [f"## #{rank} {label(arch, seeds)}, fitness {arch.fitness:.4f}", "", "```",
                  arch.equations, "```", ""]
    text = "\n".join(lines)
    (folder / "report.md").write_text(text, encoding="utf-8")
    plot(trials, folder / "fitness.png")
    return text, folder
