"""``rnnlab reproduce`` and ``rnnlab gradflow``: published results, and how gradients flow.

::

    rnnlab reproduce --list                          the entries: paper, table, published, time
    rnnlab reproduce NAME [--budget full|small|STEPS] [--out DIR] [--set section.field=value]
                     [--jobs N]                  N runs at a time, in N processes
    rnnlab reproduce NAME --status [--out DIR]       where each run stands (done, training...)
    rnnlab reproduce --table [--results DIR] [--readme README.md]   the table from results/
    rnnlab gradflow [MODEL ...] [--out DIR]          ‖∂C_T/∂s_t‖ per step, PNG (log) + CSV
    rnnlab gradflow --grad-norm RUN_DIR ...          gradient norm over training of runs

A gradflow MODEL is a run directory (its last parameters) or ``label:key=value,...`` settings
of a fresh model, keys as in ``rnnlab compare`` (``rnn:cell=rnn``, ``big:model.hidden_size=256``);
with none, fresh rnn, lstm (forget_bias 0 and 1) and gru on ``copy`` with 50 symbols to
remember.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rnnlab.train.config import ExperimentConfig

COMMANDS = ("reproduce", "gradflow")


def add_parser(subparsers):
    """The rnnlab.cli subcommand protocol: ``"reproduce"`` in COMMANDS adds both subcommands,
    each with ``handler(args, parser, extra, argv)``."""
    register(subparsers)
    for name in COMMANDS:
        subparsers.choices[name].set_defaults(handler=handler)
    return subparsers.choices["reproduce"]


def handler(args, parser, extra, argv) -> int:
    return run(args, parser, argv)


def register(commands) -> None:
    """Add the ``reproduce`` and ``gradflow`` subcommands to the top-level subparsers."""
    from rnnlab.reproduce.runner import BUDGETS

    reproduce = commands.add_parser(
        "reproduce",
        help="reproduce a published result (--list shows them)",
        allow_abbrev=False,
        description="Train a published recipe with the ordinary trainer into run directories; "
        "`rnnlab reproduce --table` builds the results table from them.",
    )
    reproduce.add_argument("name", nargs="?", help="an entry of --list")
    reproduce.add_argument("--list", action="store_true", help="list the entries")
    reproduce.add_argument("--table", action="store_true",
                           help="print the results table built from the runs kept under "
                           "--results")
    reproduce.add_argument("--readme", default=None,
                           help="with --table: write the table into this README between its "
                           "reproductions markers")
    reproduce.add_argument("--docs", default=None,
                           help="with --table: write the comparisons (Welch t-tests) into this "
                           "page between its comparisons markers")
    reproduce.add_argument("--budget", default="full",
                           help=f"{' | '.join(BUDGETS)} | STEPS per run [default: full]")
    reproduce.add_argument("--results", default="results",
                           help="where finished runs of the full budget keep their small files, "
                           "and where --table reads them [default: results]")
    reproduce.add_argument("--out", default="runs/reproduce",
                           help="parent of the entries' run directories [default: runs/reproduce]")
    reproduce.add_argument("--runs", default=None,
                           help="comma-separated run labels to train (default: the budget's)")
    reproduce.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                           help="override a setting of every run (repeatable)")
    reproduce.add_argument("--status", action="store_true",
                           help="where each run of NAME stands under --out (done, training by "
                           "which process and how far, interrupted, not started); trains nothing")
    reproduce.add_argument("--jobs", type=int, default=1, metavar="N",
                           help="train N runs at a time, in N processes sharing the CPU's cores "
                           "(each run under its directory's lock) [default: 1]")

    gradflow = commands.add_parser(
        "gradflow",
        help="gradient norm per step back in time (BPTT), PNG and CSV",
        allow_abbrev=False,
        description="‖∂C_T/∂s_t‖ for every step t of a batch, for trained runs or fresh models, "
        "on a log scale; or (--grad-norm) the gradient norm over training of runs.",
    )
    gradflow.add_argument("models", nargs="*", metavar="MODEL",
                          help="RUN_DIR or label:key=value,... (default: rnn, lstm fb 0/1, gru)")
    gradflow.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                          help="a setting for every fresh model (repeatable), e.g. "
                          "task.length=100")
    gradflow.add_argument("--batch", type=int, default=32, help="sequences in the probe batch")
    gradflow.add_argument("--seed", type=int, default=0, help="seed of fresh models")
    gradflow.add_argument("--grad-norm", action="store_true",
                          help="MODELs are run directories: plot their logged gradient norms")
    gradflow.add_argument("--inputs", action="store_true",
                          help="measure ‖∂C/∂x_t‖ at every input step instead, C the loss of the "
                          "first step that counts: works for every body (grids too)")
    gradflow.add_argument("--out", default="gradflow", help="output directory [default: gradflow]")


def _settings(parser, items: list[str]) -> dict:
    """``key=value`` strings -> {section.field: text}. Keys as in ``rnnlab compare``'s
    CONFIG: ``section.field``, a shortcut (``cell=lstm``) or a field name only one section has
    (``hidden_size=64``); ``task.NAME`` for a name that is no task field is a task option."""
    from rnnlab.train.compare import resolve_key
    from rnnlab.train.config import ConfigError

    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            parser.error(f"a setting must look like key=value (section.field=value, cell=lstm), "
                         f"got {item!r}")
        try:
            out[resolve_key(key)] = value
        except ConfigError as error:
            parser.error(str(error))
    return out


def run(args, parser, argv) -> int:
    if args.command == "reproduce":
        return cmd_reproduce(args, parser, argv)
    return cmd_gradflow(args, parser)


def cmd_reproduce(args, parser, argv) -> int:
    from rnnlab.reproduce import entries
    from rnnlab.reproduce.runner import listing, reproduce

    if args.list:
        print(listing(args.results), end="")
        return 0
    if args.table:
        from rnnlab.reproduce.table import (
            COMPARE_BEGIN,
            COMPARE_END,
            build_comparisons,
            build_table,
            replace_between,
            write_readme,
        )

        if not Path(args.results).is_dir():
            parser.error(f"--results {args.results}: no such folder; the table is built from "
                         "the runs kept there (default: results, in the checkout)")
        text = build_table(Path(args.results))
        comparisons = build_comparisons(Path(args.results))
        if args.readme:
            write_readme(Path(args.readme), text)
            print(f"written into {args.readme}")
        if args.docs:
            replace_between(Path(args.docs), COMPARE_BEGIN, COMPARE_END, comparisons)
            print(f"written into {args.docs}")
        print(text, end="")
        print()
        print(comparisons, end="")
        return 0
    if not args.name:
        parser.error("name an entry (`rnnlab reproduce --list` shows them), or use --list")
    if args.name not in entries.names():
        parser.error(
            f"unknown reproduction {args.name!r}; entries: {', '.join(entries.names())}"
        )
    labels = [x for x in args.runs.split(",") if x] if args.runs else None
    for item in args.set:
        if "=" not in item:
            parser.error(f"--set must look like section.field=value, got {item!r}")
    if args.status:
        from rnnlab.reproduce.runner import status

        print(status(args.name, budget=args.budget, out=args.out, labels=labels,
                     results=args.results), end="")
        return 0
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    failed = []
    if args.jobs > 1:
        failed = _in_parallel(args, lambda: reproduce(
            args.name, budget=args.budget, out=args.out, overrides=args.set, labels=labels,
            argv=argv, results=args.results))
    root = reproduce(args.name, budget=args.budget, out=args.out, overrides=args.set,
                     labels=labels, argv=argv, results=args.results)
    from rnnlab.reproduce.table import build_table

    print(build_table(root.parent, only=[args.name]), end="")  # this budget's runs
    if failed:
        from rnnlab.cli.options import fail

        return fail("reproduce", f"{len(failed)} worker process(es) failed: see "
                    f"{', '.join(str(log) for log in failed)}")
    return 0


def _in_parallel(args, train_share) -> list[Path]:
    """``--jobs N``: N − 1 worker processes run this same command (without ``--jobs``) while
    this one runs ``train_share``; each takes the runs nobody else trains (the run
    directories' locks, ``rnnlab.train.run.hold``), with ``cores // N`` threads. Their output
    goes to ``OUT/NAME/worker-K.log``. Waits for them (on Ctrl-C too: their checkpoints are
    written); returns the logs of the workers that failed. The caller then runs the command
    once more, which finds every run done and draws the figures of all of them."""
    import os
    import subprocess
    import sys

    import torch

    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    command = [sys.executable, "-m", "rnnlab", "reproduce", args.name, "--budget", args.budget,
               "--out", args.out, "--results", args.results,
               *(["--runs", args.runs] if args.runs else []),
               *(x for item in args.set for x in ("--set", item))]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    folder = Path(args.out) / args.name
    folder.mkdir(parents=True, exist_ok=True)
    workers = []
    for k in range(1, args.jobs):
        log = folder / f"worker-{k}.log"
        with open(log, "a", encoding="utf-8") as handle:
            workers.append((subprocess.Popen(command, env=env, stdout=handle,
                                             stderr=subprocess.STDOUT), log))
    print(f"{args.name}: {args.jobs} processes, {threads} thread(s) each; the worker(s) "
          f"{', '.join(str(w.pid) for w, _ in workers)} write to "
          f"{folder / 'worker-*.log'}", flush=True)
    torch.set_num_threads(threads)
    try:
        train_share()
    finally:  # Ctrl-C reaches the workers too: let them write their checkpoints
        codes = [worker.wait() for worker, _ in workers]
    return [log for (_, log), code in zip(workers, codes, strict=True) if code != 0]


def cmd_gradflow(args, parser) -> int:
    from rnnlab.reproduce import gradflow
    from rnnlab.train.pretrained import load_trained
    from rnnlab.train.trainer import build

    out = Path(args.out)
    if args.batch < 1:
        parser.error(f"--batch must be a positive integer, got {args.batch}")
    if args.grad_norm:
        if not args.models:
            parser.error("--grad-norm needs run directories")
        path = gradflow.grad_norm_curves([Path(m) for m in args.models], out)
        print(f"written: {path}, {out / 'grad_norm.csv'}")
        return 0
    results = {}
    for label, model_of in gradflow_models(args, parser):
        if isinstance(model_of, Path):
            _, task, model = load_trained(model_of, "last")
        else:
            task, model = build(model_of)  # seeded with --seed
        batch = gradflow.probe_batch(task, args.batch, equal_lengths=not args.inputs)
        try:
            results[label] = (gradflow.input_gradient if args.inputs
                              else gradflow.gradient_flow)(model, batch)
        except ValueError as error:
            parser.error(f"{label}: {error}")
    if args.inputs:
        csv_path, png_path = gradflow.write(
            results, out, "gradient reaching each input step",
            xlabel="input step t (the loss is that of the first step that counts)",
            ylabel="‖∂C/∂x_t‖ / √B")
    else:
        csv_path, png_path = gradflow.write(results, out, "gradient flow back in time")
    for label, fields in results.items():
        first = {k: f"{v[0]:.2e}" for k, v in fields.items()}
        last = {k: f"{v[-1]:.2e}" for k, v in fields.items()}
        print(f"{label}: t=0 {first}  t=T-1 {last}")
    print(f"written: {png_path}, {csv_path}")
    return 0


# A fresh gradflow MODEL's settings before the user's: a copy task with 50 symbols to remember.
FRESH = {"task.name": "copy", "task.length": "50", "task.symbols": "8",
         "model.hidden_size": "64"}
DEFAULT_MODELS = ["rnn:cell=rnn", "lstm fb=0:cell=lstm,forget_bias=0",
                  "lstm fb=1:cell=lstm,forget_bias=1", "gru:cell=gru"]


def gradflow_models(args, parser) -> list[tuple[str, Path | ExperimentConfig]]:
    """``(label, run directory or ExperimentConfig)`` of each gradflow MODEL (checked, nothing
    built): a run directory, or ``label:key=value,...`` settings of a fresh model over
    :data:`FRESH` and ``--set``; a bad one is a usage error."""
    from rnnlab.train.config import ConfigError, ExperimentConfig, apply_overrides
    from rnnlab.train.run import CONFIG

    common = _settings(parser, args.set)
    out = []
    for spec in args.models or DEFAULT_MODELS:
        if Path(spec).is_dir() and (Path(spec) / CONFIG).is_file():
            out.append((Path(spec).name, Path(spec)))
            continue
        label, colon, body = spec.partition(":")
        if not colon:
            parser.error(f"{spec!r} is neither a run directory nor label:key=value,... settings")
        own = {**common, **_settings(parser, [s for s in body.split(",") if s])}
        fresh = FRESH if own.get("task.name", FRESH["task.name"]) == FRESH["task.name"] else {
            k: v for k, v in FRESH.items() if not k.startswith("task.")}  # copy's options
        settings = {**fresh, **own}
        try:
            config = apply_overrides(ExperimentConfig(), [
                *(f"{key}={value}" for key, value in settings.items()), f"train.seed={args.seed}"
            ])
        except ConfigError as error:
            parser.error(str(error))
        out.append((label, config))
    return out
