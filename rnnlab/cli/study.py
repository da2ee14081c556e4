"""``rnnlab study run|report|dashboard``: Greff et al.'s LSTM variant study (docs/study.md).

::

    rnnlab study run                          # default: jsb, the 9 cells, 12 trials each,
                                              #   6 s per trial, 2 workers, then the report
    rnnlab study run --trials 200 --trial-seconds none --name paper --workers 8
    rnnlab study run --storage postgresql+psycopg://u:pw@db/rnnlab --name paper ...  # machines
    rnnlab study report [--name greff] [--storage URL] [--out DIR]
    rnnlab study dashboard [--name greff] [--storage URL] [--port 8080]

Registered like every subcommand: ``add_parser(subparsers)`` sets ``handler`` on the parsed
arguments; each handler returns the exit status and reports bad input as one line.
"""

from __future__ import annotations

import argparse
import os
import sys

NAME = "study"
DEFAULT_TRIALS = 12  # per (task, cell): the default study finishes in ~10 minutes on 2 cores
DEFAULT_TRIAL_SECONDS = 6.0  # training time per trial in the default study
# Each help string gives its default in words ("[default: studies/NAME]"), the value a run
# uses; the shared Parser's ArgumentDefaultsHelpFormatter would append the raw one a second
# time ("(default: None)" for a default worked out later, "(default: True)" for --no-report).
PLAIN_HELP = {"formatter_class": argparse.HelpFormatter}


def _list(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return items


def _seconds(text: str) -> float | str:
    if text.strip().lower() in ("none", "0", "inf"):
        return "none"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or none, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0 or none, got {text!r}")
    return value


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="greff",
                        help="study name: the Optuna studies are NAME.TASK.CELL [default: greff]")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="Optuna storage URL (postgresql+psycopg://USER:PW@HOST:PORT/DB, "
                        "journal:PATH, sqlite:///PATH) [default: the journal file "
                        "DIR/trials.journal]")
    parser.add_argument("--dir", default=None, metavar="DIR",
                        help="the study's folder (default journal file, report) "
                        "[default: studies/NAME]")


def add_parser(subparsers):
    from rnnlab.study.space import GREFF_CELLS

    study = subparsers.add_parser(
        NAME, **PLAIN_HELP, help="Greff et al.'s LSTM variant study: run, report, dashboard",
        description="Random-search study of the vanilla (peephole) LSTM and its eight "
        "variants over Greff et al.'s hyperparameter space, stored in an Optuna storage "
        "(docs/study.md).",
    )
    actions = study.add_subparsers(dest="study_command", metavar="ACTION")
    actions.required = True

    run = actions.add_parser(
        "run", **PLAIN_HELP, help="run (or top up) a study, then write its report",
        description="Fill each study NAME.TASK.CELL to --trials settled trials: running it "
        "again continues, several processes or machines on one --storage share the work. "
        f"Defaults finish in about 10 minutes on 2 cores: {DEFAULT_TRIALS} trials per cell, "
        f"{DEFAULT_TRIAL_SECONDS:g} s of training each. Paper scale: --trials 200 "
        "--trial-seconds none.",
    )
    _where(run)
    run.add_argument("--out", dest="dir", default=argparse.SUPPRESS, metavar="DIR",
                     help="same as --dir")
    run.add_argument("--task", type=_list, default=("jsb",), metavar="TASK[,TASK]",
                     help="tasks: jsb (Greff's), nottingham, or any rnnlab task [default: jsb]")
    run.add_argument("--cells", type=_list, default=GREFF_CELLS, metavar="CELL[,CELL]",
                     help="cells; peephole is the vanilla LSTM the others are tested against "
                     "[default: the nine of Greff et al.]")
    run.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                     help=f"settled trials wanted per (task, cell) [default: {DEFAULT_TRIALS}]")
    run.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                     help="worker processes on this machine [default: 2, or 1 on one core]")
    run.add_argument("--trial-seconds", type=_seconds, default=None, metavar="S",
                     help=f"training time per trial; none: no time limit [default: "
                     f"{DEFAULT_TRIAL_SECONDS:g}, or the --config file's train.budget_seconds]")
    run.add_argument("--epochs", type=int, default=None,
                     help="epoch limit per trial [default: 150]")
    run.add_argument("--patience", type=int, default=None,
                     help="early stopping: epochs without validation improvement [default: 10]")
    run.add_argument("--seed", type=int, default=0, help="sampling and training seed [default: 0]")
    run.add_argument("--config", dest="study_config", default=None, metavar="FILE",
                     help="JSON/TOML file with 'space' ranges and fixed 'settings'")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                     help="a fixed trial setting (any `rnnlab train` field); repeatable")
    run.add_argument("--keep-runs", action="store_true",
                     help="keep each trial's run directory under DIR/runs")
    run.add_argument("--lease-seconds", type=float, default=60.0,
                     help="a trial whose worker is silent this long is re-run [default: 60]")
    run.add_argument("--no-report", dest="report", action="store_false",
                     help="do not write the report at the end")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.set_defaults(handler=run_command, study_parser=run)

    report = actions.add_parser(
        "report", **PLAIN_HELP, help="box plots, Welch tests, fANOVA and report.md of a study",
    )
    _where(report)
    report.add_argument("--out", default=None, help="report folder [default: DIR/report]")
    report.set_defaults(handler=report_command, study_parser=report)

    dashboard = actions.add_parser(
        "dashboard", **PLAIN_HELP, help="watch a study in the browser (optuna-dashboard)",
    )
    _where(dashboard)
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="address to listen on [default: 127.0.0.1, loopback only]")
    dashboard.add_argument("--port", type=int, default=8080, help="[default: 8080]")
    dashboard.set_defaults(handler=dashboard_command, study_parser=dashboard)
    return study


def _fail(args, message: str) -> int:
    text = " ".join(str(message).split())  # one line
    print(f"rnnlab study {args.study_command}: error: {text}", file=sys.stderr)
    return 1


def _errors():
    from optuna.exceptions import OptunaError

    from rnnlab.study.analysis import StudyNotFound
    from rnnlab.trials import StorageError

    # RuntimeError: a worker process that failed (rnnlab.trials.run_workers names it)
    return (StorageError, StudyNotFound, OptunaError, ValueError, OSError, KeyError,
            RuntimeError)


def _guard(body):
    """Run a handler body; known errors become one line and exit status 1."""

    def handler(args, parser, extra, argv) -> int:
        try:
            return body(args, getattr(args, "study_parser", parser))
        except KeyboardInterrupt:
            print(f"rnnlab study {args.study_command}: interrupted; the running trials are "
                  "re-run by the next `rnnlab study run`", file=sys.stderr)
            return 130
        except _errors() as error:
            if os.environ.get("RNNLAB_DEBUG"):
                raise
            return _fail(args, f"{error} (RNNLAB_DEBUG=1 shows the traceback)")

    return handler


def _directory(args) -> str:
    return args.dir or os.path.join("studies", args.name)


@_guard
def run_command(args, parser) -> int:
    from rnnlab.study.runner import StudyRun, run_study
    from rnnlab.study.space import load_space
    from rnnlab.train.config import SHORTCUTS

    if args.trials < 0:
        parser.error(f"--trials must be >= 0, got {args.trials}")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    for flag in ("epochs", "patience"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag} must be >= 1, got {value}")
    budget: dict = {}
    for item in args.set:
        key, eq, text = item.partition("=")
        if not eq:
            parser.error(f"--set expects SECTION.FIELD=VALUE, got {item!r}")
        key = SHORTCUTS.get(key.strip(), key.strip())
        budget[key] = _typed(key, text)
    if args.trial_seconds not in (None, "none"):  # --trial-seconds wins over --set and the file
        budget["train.budget_seconds"] = args.trial_seconds
    if args.epochs is not None:
        budget["train.epochs"] = args.epochs
    if args.patience is not None:
        budget["train.patience"] = args.patience
    space = load_space(args.study_config, budget)
    if args.trial_seconds == "none":
        space.settings.pop("train.budget_seconds", None)
    elif "train.budget_seconds" not in space.settings:
        space.settings["train.budget_seconds"] = DEFAULT_TRIAL_SECONDS
    run = StudyRun(
        name=args.name, tasks=args.task, cells=args.cells, trials=args.trials,
        storage=args.storage, out=_directory(args), workers=args.workers, seed=args.seed,
        space=space, keep_runs=args.keep_runs, lease_seconds=args.lease_seconds,
        quiet=args.quiet,
    )
    _quiet_optuna()
    result = run_study(run)
    print(f"study {args.name}: {len(run.studies())} studies x {args.trials} trials settled on "
          f"{result['storage']} in {result['seconds'] / 60:.1f} min")
    if args.report:
        return _write_report(args, run.directory, os.path.join(run.directory, "report"))
    return 0


def _typed(key: str, text: str):
    """A --set value converted to its config field's type (stored in the study's settings)."""
    from rnnlab.train.config import ExperimentConfig, set_field

    config = ExperimentConfig()
    set_field(config, key, text)
    section, _, name = key.partition(".")
    if name.startswith("options.") or not hasattr(getattr(config, section), name):
        return getattr(config, section).options[name.removeprefix("options.")]
    return getattr(getattr(config, section), name)


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _write_report(args, directory: str, out: str) -> int:
    from rnnlab.study.report import write_report
    from rnnlab.trials import describe_storage, open_storage

    _quiet_optuna()
    if args.storage is None and not os.path.exists(os.path.join(directory, "trials.journal")):
        from rnnlab.study.analysis import StudyNotFound

        raise StudyNotFound(
            f"no study in {directory} (no trials.journal); run `rnnlab study run --name "
            f"{args.name}` first, or give --dir or --storage"
        )
    storage = open_storage(args.storage, directory)
    path, study = write_report(
        storage, args.name, out, storage_text=describe_storage(args.storage, directory)
    )
    for task, cells in study["tasks"].items():
        counts = ", ".join(f"{cell} {s['complete']}" for cell, s in cells.items())
        print(f"{task}: complete trials per cell: {counts}")
    print(f"report: {path} (and boxplot.png, welch.csv, importance.json/png, marginal plots, "
          "study.json beside it)")
    return 0


@_guard
def report_command(args, parser) -> int:
    directory = _directory(args)
    return _write_report(args, directory, args.out or os.path.join(directory, "report"))


@_guard
def dashboard_command(args, parser) -> int:
    from rnnlab.study.dashboard import require, serve
    from rnnlab.trials import describe_storage, open_storage

    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    directory = _directory(args)
    if args.storage is None and not os.path.exists(os.path.join(directory, "trials.journal")):
        from rnnlab.study.analysis import StudyNotFound

        raise StudyNotFound(
            f"no study in {directory} (no trials.journal); give --dir, --name or --storage"
        )
    storage = open_storage(args.storage, directory)
    require()  # before saying it is serving
    print(f"serving {describe_storage(args.storage, directory)} at "
          f"http://{args.host}:{args.port}/dashboard (Ctrl-C stops)", flush=True)
    serve(storage, host=args.host, port=args.port)
    return 0
