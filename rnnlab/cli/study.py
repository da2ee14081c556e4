"""``rnnlab study run|report|dashboard``: Greff et al.'s LSTM variant study (docs/study.md).

::

    rnnlab study run                          # the quick preset: jsb, the 9 cells, 12 trials
                                              #   of at most 6 epochs, 2 workers, the report
    rnnlab study run --preset greff-jsb       # Greff's study at 30 trials per cell (~5 h)
    rnnlab study run --trials 200 --epochs 150 --patience 10 --name paper --workers 8
    rnnlab study run --storage postgresql+psycopg://u:pw@db/rnnlab --name paper ...  # machines
    rnnlab study run --device cuda            # one worker per visible GPU, worker k on GPU k
    rnnlab study report [--preset P | --name greff] [--storage URL] [--out DIR]
    rnnlab study dashboard [--preset P | --name greff] [--storage URL] [--port 8080]

A preset (rnnlab.study.presets) gives the name, cells, trials, workers and the epoch budget;
every option given on the command line overrides it. Budgets are epochs and steps, never
seconds.

Registered like every subcommand: ``add_parser(subparsers)`` sets ``handler`` on the parsed
arguments, and ``guard`` (:data:`GUARD`): the errors ``rnnlab.cli.main``'s one guard shows as
one line for this command, and what Ctrl-C leaves behind.
"""

from __future__ import annotations

import argparse
import os

from rnnlab.cli.options import Guard
from rnnlab.train.device import DEVICES

NAME = "study"
# Each help string gives its default in words ("[default: studies/NAME]"), the value a run
# uses; the shared Parser's ArgumentDefaultsHelpFormatter would append the raw one a second
# time ("(default: None)" for a default worked out later, "(default: True)" for --no-report).
PLAIN_HELP = {"formatter_class": argparse.HelpFormatter}


def _list(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return items


def _cells(text: str) -> tuple[str, ...]:
    """Cell names as the paper writes them too: ``V``/``vanilla`` is ``peephole``, ``NFG`` is
    ``nfg`` (the studies are stored under the registry's names)."""
    from rnnlab.study.space import GREFF_CELLS

    def name(item: str) -> str:
        lower = item.lower()
        if lower in ("v", "vanilla"):
            return "peephole"
        return lower if lower in GREFF_CELLS else item
    return tuple(dict.fromkeys(name(item) for item in _list(text)))


def _where(parser: argparse.ArgumentParser) -> None:
    from rnnlab.study.presets import DEFAULT_PRESET, PRESETS

    parser.add_argument("--preset", choices=tuple(PRESETS), default=None,
                        help="a named study, the defaults of the options below: "
                        + "; ".join(f"{k}: {p.summary}" for k, p in PRESETS.items())
                        + f" [default: {DEFAULT_PRESET}]")
    parser.add_argument("--name", default=None,
                        help="study name: the Optuna studies are NAME.TASK.CELL [default: the "
                        "preset's name: " + ", ".join(f"{p.name} ({k})" for k, p in PRESETS.items())
                        + "]")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="Optuna storage URL (postgresql+psycopg://USER:PW@HOST:PORT/DB, "
                        "journal:PATH, sqlite:///PATH) [default: the journal file "
                        "DIR/trials.journal]")
    parser.add_argument("--dir", default=None, metavar="DIR",
                        help="the study's folder (default journal file, report) "
                        "[default: studies/NAME]")


def _per_preset(key: str) -> str:
    """``quick 6, greff-jsb 100``: a preset value of each preset, for --help."""
    from rnnlab.study.presets import PRESETS

    def value(p):
        return p.all_settings()[key] if "." in key else getattr(p, key)

    return ", ".join(f"{k} {value(p)}" for k, p in PRESETS.items())


def add_parser(subparsers):
    study = subparsers.add_parser(
        NAME, **PLAIN_HELP, help="Greff et al.'s LSTM variant study: run, report, dashboard",
        description="Random-search study of the vanilla (peephole) LSTM and its eight "
        "variants over Greff et al.'s hyperparameter space, stored in an Optuna storage "
        "(docs/study.md).",
    )
    study.set_defaults(handler=handle, guard=GUARD)
    actions = study.add_subparsers(dest="study_command", metavar="ACTION")
    actions.required = True

    run = actions.add_parser(
        "run", **PLAIN_HELP, help="run (or top up) a study, then write its report",
        description="Fill each study NAME.TASK.CELL to --trials settled trials: running it "
        "again continues, several processes or machines on one --storage share the work. "
        "Each trial trains to early stopping under an epoch limit (budgets are epochs, not "
        "seconds). Defaults: the --preset (quick: JSB, 12 trials per cell of at most 6 epochs, "
        "about 10 minutes on 2 cores; greff-jsb: 30 trials per cell of at most 100 epochs, "
        "about 5 hours). Paper scale: --trials 200 --epochs 150 --patience 10.",
    )
    _where(run)
    run.add_argument("--out", dest="dir", default=argparse.SUPPRESS, metavar="DIR",
                     help="same as --dir")
    run.add_argument("--task", type=_list, default=None, metavar="TASK[,TASK]",
                     help="tasks: jsb (Greff's), nottingham, or any rnnlab task [default: the "
                     "preset's: jsb]")
    run.add_argument("--cells", type=_cells, default=None, metavar="CELL[,CELL]",
                     help="cells; peephole (or V, vanilla) is the vanilla LSTM the others are "
                     "tested against; the paper's upper-case names work too "
                     "[default: the nine of Greff et al.]")
    run.add_argument("--trials", type=int, default=None,
                     help="settled trials wanted per (task, cell) [default: the preset's: "
                     + _per_preset("trials") + "]")
    run.add_argument("--workers", type=int, default=None,
                     help="worker processes on this machine; on CUDA worker k sees only GPU k, "
                     "and more workers than GPUs share them round-robin [default: one per "
                     "visible GPU on CUDA, else the preset's, 2 (1 on one core)]")
    run.add_argument("--device", "--run.device", dest="device", choices=DEVICES,
                     default="cpu",
                     help="where the trials train, as `rnnlab train --run.device`: cpu, cuda "
                     "(one worker per visible GPU by default), or auto (cuda when torch sees a "
                     "GPU) [default: cpu]")
    run.add_argument("--epochs", type=int, default=None,
                     help="epoch limit per trial [default: the preset's: "
                     + _per_preset("train.epochs") + "]")
    run.add_argument("--patience", type=int, default=None,
                     help="early stopping: epochs without validation improvement [default: the "
                     "preset's: " + _per_preset("train.patience") + "]")
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
    run.set_defaults(action_handler=run_command, study_parser=run)

    report = actions.add_parser(
        "report", **PLAIN_HELP, help="box plots, Welch tests, fANOVA and report.md of a study",
    )
    _where(report)
    report.add_argument("--out", default=None, help="report folder [default: DIR/report]")
    report.set_defaults(action_handler=report_command, study_parser=report)

    dashboard = actions.add_parser(
        "dashboard", **PLAIN_HELP, help="watch a study in the browser (optuna-dashboard)",
    )
    _where(dashboard)
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="address to listen on [default: 127.0.0.1, loopback only]")
    dashboard.add_argument("--port", type=int, default=8080, help="[default: 8080]")
    dashboard.set_defaults(action_handler=dashboard_command, study_parser=dashboard)
    return study


def _errors():
    from optuna.exceptions import OptunaError

    from rnnlab.study.analysis import StudyNotFound
    from rnnlab.trials import StorageError

    # RuntimeError: a worker process that failed (rnnlab.trials.run_workers names it)
    return StorageError, StudyNotFound, OptunaError, RuntimeError


GUARD = Guard(errors=_errors, action="study_command",
              interrupted="the running trials are re-run by the next `rnnlab study run`")


def handle(args, parser, extra, argv) -> int:
    """The subcommand handler ``rnnlab.cli.main`` calls (inside its guard, with GUARD)."""
    return args.action_handler(args, args.study_parser)


def _preset(args):
    """The --preset's Preset, with --name defaulting to the preset's name."""
    from rnnlab.study.presets import preset

    chosen = preset(args.preset)
    if args.name is None:
        args.name = chosen.name
    return chosen


def _directory(args) -> str:
    return args.dir or os.path.join("studies", args.name)


def run_command(args, parser) -> int:
    from rnnlab.study.runner import StudyRun, run_study
    from rnnlab.study.space import load_space
    from rnnlab.train.config import SHORTCUTS
    from rnnlab.trials import place

    chosen = _preset(args)
    trials = chosen.trials if args.trials is None else args.trials
    if trials < 0:
        parser.error(f"--trials must be >= 0, got {trials}")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    # on CUDA one worker per GPU; on the CPU the preset's number, at most one per core
    workers = len(place(args.workers, args.device,
                        cpu_workers=min(chosen.workers, os.cpu_count() or 1)))
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
    if args.epochs is not None:  # --epochs and --patience win over --set and the file
        budget["train.epochs"] = args.epochs
    if args.patience is not None:
        budget["train.patience"] = args.patience
    space = load_space(args.study_config, budget, settings=chosen.all_settings())
    run = StudyRun(
        name=args.name, tasks=args.task or chosen.tasks, cells=args.cells or chosen.cells,
        trials=trials, storage=args.storage, out=_directory(args), workers=workers,
        device=args.device,
        seed=args.seed, space=space, keep_runs=args.keep_runs,
        lease_seconds=args.lease_seconds, quiet=args.quiet,
    )
    _quiet_optuna()
    result = run_study(run)
    print(f"study {args.name}: {len(run.studies())} studies x {trials} trials settled on "
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
          "study.json, trials.csv beside it)")
    return 0


def report_command(args, parser) -> int:
    _preset(args)
    directory = _directory(args)
    return _write_report(args, directory, args.out or os.path.join(directory, "report"))


def dashboard_command(args, parser) -> int:
    from rnnlab.study.dashboard import require, serve
    from rnnlab.trials import describe_storage, open_storage

    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    _preset(args)
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
