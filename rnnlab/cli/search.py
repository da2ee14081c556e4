"""``rnnlab search run|top|export|report|retrain``: the evolutionary cell search on the command
line.

::

    rnnlab search run                          the small default search (~10 min, 2 cores)
    rnnlab search run --preset=paper --workers=8 --storage=postgresql://u@db/rnnlab
    rnnlab search run --device=cuda            one worker per visible GPU, worker k on GPU k
    rnnlab search top -n 5                     best architectures, fitness, equations
    rnnlab search export 3fa1c2 --out cell.json
    rnnlab search report                       fitness.png + report.md (vs LSTM, GRU, MUT1-3)
    rnnlab search retrain                      top 5 + GRU, LSTM, LSTM-b: 3 seeds x 2 settings,
                                               4x the steps; intervals, Welch's test vs GRU

Every subcommand takes --name, --storage and --dir to find the search. Registered in
``rnnlab.cli.main`` by ``add_parser``; ``main`` calls ``run`` with the parsed arguments.
"""

from __future__ import annotations

import argparse

from rnnlab.cli.options import Guard

# --preset=paper: Jozefowicz et al.'s scale (hidden size and training length are ours: the
# paper trained to convergence; 20 settings per re-evaluation as in the paper).
PRESETS = {
    "small": {"steps": 24, "settings": 1, "hidden": 32, "batch_size": 32, "train_steps": 150,
              "filter_steps": 800, "eval_batches": 8, "seq_len": 20},
    "paper": {"steps": 10000, "settings": 20, "hidden": 128, "batch_size": 32,
              "train_steps": 2000, "filter_steps": 3000, "eval_batches": 30, "seq_len": 35},
}

# Each help string gives its default in words ("[default: searches/NAME]"); the shared Parser's
# ArgumentDefaultsHelpFormatter would append the raw one a second time ("(default: None)" for
# a default taken from the preset or the stored search).
PLAIN_HELP = {"formatter_class": argparse.HelpFormatter}


def _where(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="search", help="search name [default: search]")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="storage URL: PATH.journal, journal:PATH, postgresql+psycopg://"
                             "USER:PW@HOST:PORT/DB, sqlite:///PATH [default: the journal file "
                             "DIR/trials.journal]")
    parser.add_argument("--dir", default=None,
                        help="folder of the default journal and the report [default: "
                             "searches/NAME]")


def _device(parser: argparse.ArgumentParser) -> None:
    from rnnlab.train.device import DEVICES

    parser.add_argument("--device", "--run.device", dest="device", choices=DEVICES,
                        default="cpu",
                        help="where candidates train, as `rnnlab train --run.device`: cpu, cuda "
                             "(one worker per visible GPU by default), or auto (cuda when torch "
                             "sees a GPU); not part of the search, so a resume may change it "
                             "[default: cpu]")


def add_parser(commands) -> argparse.ArgumentParser:
    """Add ``search`` (with its five subcommands) to the top-level subparsers."""
    search = commands.add_parser(
        "search", **PLAIN_HELP,
        help="evolutionary search over cell graphs (Jozefowicz et al. 2015)",
        allow_abbrev=False,
        description="Jozefowicz et al. (2015)'s evolutionary search over recurrent cells, "
                    "on shared storage: resumable, any number of workers. See docs/search.md.",
    )
    search.set_defaults(handler=handle, guard=GUARD)
    sub = search.add_subparsers(dest="search_command", metavar="SUBCOMMAND")
    sub.required = True
    run = sub.add_parser(
        "run", **PLAIN_HELP, allow_abbrev=False, help="run, resume or extend a search",
        description="Run a search, or resume / extend one (same --name and storage). With no "
                    "options: the small preset, about 10 minutes on 2 cores, then the top list. "
                    "An option left out takes the preset's value or, on a resume, the stored "
                    "search's. The default tasks include ptb: the Penn Treebank files are read "
                    "from $RNNLAB_DATA/ptb/ or the cache, or downloaded (docs/search.md).",
    )
    _where(run)
    run.add_argument("--preset", choices=tuple(PRESETS), default=None,
                     help="defaults for the options below: small (the quick search) or paper "
                          "(the paper's scale) [default: small]")
    run.add_argument("--tasks", default=None,
                     help="comma-separated search tasks [default: arithmetic,xml,ptb]")
    run.add_argument("--steps", type=int, default=None,
                     help="candidate evaluations in all; a larger one extends a search [default: "
                          "small 24, paper 10000]")
    run.add_argument("--settings", type=int, default=None,
                     help="random hyperparameter settings per candidate and task [default: "
                          "small 1, paper 20]")
    run.add_argument("--population", type=int, default=100,
                     help="size of the list of best architectures [default: 100]")
    run.add_argument("--train-steps", type=int, default=None,
                     help="optimiser steps per training: the per-training budget [default: "
                          "small 150, paper 2000]")
    run.add_argument("--hidden", type=int, default=None, help="hidden size [default: small 32, "
                     "paper 128]")
    run.add_argument("--batch-size", type=int, default=None, help="batch size [default: 32]")
    run.add_argument("--seq-len", type=int, default=None,
                     help="truncated-BPTT length on ptb [default: small 20, paper 35]")
    run.add_argument("--filter-steps", type=int, default=None,
                     help="most steps of the memorisation filter [default: small 800, paper "
                          "3000]")
    run.add_argument("--filter-threshold", type=float, default=None,
                     help="accuracy the memorisation filter asks for [default: 0.95]")
    run.add_argument("--eval-batches", type=int, default=None,
                     help="valid batches for each accuracy [default: small 8, paper 30]")
    run.add_argument("--reevaluate", type=float, default=0.2,
                     help="probability that a step re-evaluates a listed cell instead of "
                          "mutating one [default: 0.2]")
    run.add_argument("--workers", type=int, default=None,
                     help="worker processes on this machine; on CUDA worker k sees only GPU k, "
                          "and more workers than GPUs share them round-robin [default: one per "
                          "visible GPU on CUDA, else 1]; start more machines with the same "
                          "command and --storage")
    _device(run)
    run.add_argument("--threads", type=int, default=1, help="torch threads per worker [default: 1]")
    run.add_argument("--seed", type=int, default=None, help="search seed [default: 0]")
    run.add_argument("--lease-seconds", type=float, default=60.0,
                     help="a worker silent this long is presumed dead and its candidate is "
                          "re-run [default: 60]")
    run.add_argument("-n", type=int, default=5, help="architectures listed at the end [default: 5]")
    run.add_argument("--quiet", action="store_true", help="no progress lines")

    show = sub.add_parser("top", **PLAIN_HELP, allow_abbrev=False,
                          help="the best architectures found")
    _where(show)
    show.add_argument("-n", type=int, default=10, help="how many [default: 10]")

    export = sub.add_parser("export", **PLAIN_HELP, allow_abbrev=False,
                            help="write an architecture as a cell JSON file")
    _where(export)
    export.add_argument("id", metavar="ID", help="its hash (or a unique prefix) from `top`")
    export.add_argument("--out", required=True, help="the .json file to write")

    report = sub.add_parser(
        "report", **PLAIN_HELP, allow_abbrev=False,
        help="fitness plot and a table of the top cells vs LSTM, LSTM-b, GRU, MUT1-3",
        description="Write fitness.png and report.md. The reference cells are trained once "
                    "under the search's budget (stored, so a second report is instant).",
    )
    _where(report)
    report.add_argument("--out", default=None, help="output folder [default: DIR/report]")
    report.add_argument("-n", type=int, default=5, help="top cells in the table [default: 5]")
    report.add_argument("--workers", type=int, default=None,
                        help="worker processes for the reference cells, placed on GPUs as by "
                             "`run` [default: one per visible GPU on CUDA, else 1]")
    _device(report)
    report.add_argument("--no-references", action="store_true",
                        help="do not train the reference cells (table shows those stored)")

    retrain = sub.add_parser(
        "retrain", **PLAIN_HELP, allow_abbrev=False,
        help="re-train the top cells and GRU, LSTM, LSTM-b with several seeds and settings; "
             "intervals and Welch's test against the GRU",
        description="Re-train the search's top found cells, GRU, LSTM and LSTM-b (and --cells) "
                    "on the search's tasks, each with --seeds x --settings runs at a longer "
                    "budget; the settings come from the search's distribution and are the same "
                    "for every cell. Prints and writes DIR/TAG.md and DIR/TAG.json: per cell "
                    "and task the mean, std and 95% interval of accuracy relative to the GRU, "
                    "the fitness (min over tasks) and Welch's t-test against the GRU. Each run "
                    "is a trial in the search's storage: run the command again to resume.",
    )
    _where(retrain)
    retrain.add_argument("-n", type=int, default=5,
                         help="top found cells (seeds excluded) to re-train [default: 5]")
    retrain.add_argument("--cells", default="",
                         help="more cells, comma-separated: MUT1, a registered cell, a .json "
                              "cell file or a hash prefix from `top` [default: none]")
    retrain.add_argument("--seeds", type=int, default=3,
                         help="training seeds per setting [default: 3]")
    retrain.add_argument("--settings", type=int, default=2,
                         help="random hyperparameter settings per task, the same for every cell "
                              "[default: 2]")
    retrain.add_argument("--train-steps", type=int, default=None,
                         help="optimiser steps per run [default: 4x the search's]")
    retrain.add_argument("--tag", default="retrain",
                         help="names the stored runs and the files DIR/TAG.md, DIR/TAG.json; "
                              "another tag keeps a second re-training with other options "
                              "[default: retrain]")
    retrain.add_argument("--workers", type=int, default=None,
                         help="worker processes, placed on GPUs as by `run` [default: one per "
                              "visible GPU on CUDA, else 1]")
    _device(retrain)
    retrain.add_argument("--lease-seconds", type=float, default=60.0,
                         help="a worker silent this long is presumed dead and its run is re-run "
                              "[default: 60]")
    retrain.add_argument("--no-train", action="store_true",
                         help="train nothing: report the runs stored so far")
    retrain.add_argument("--quiet", action="store_true", help="no progress lines")
    return search


def _config(args):
    """The SearchConfig the arguments ask for. Resuming ``run`` (the search exists): options
    not given on the command line are those the search was started with, so `rnnlab search
    run --name X --steps 200` extends X whatever preset or budget it used."""
    from rnnlab.search import Budget, SearchConfig
    from rnnlab.search.loop import existing_identity

    preset = dict(PRESETS[getattr(args, "preset", None) or "small"])
    preset.update(tasks="arithmetic,xml,ptb", seed=0, filter_threshold=0.95)
    base = SearchConfig(name=args.name, storage=args.storage, directory=args.dir)
    stored = existing_identity(base) if args.search_command == "run" else None
    if stored is not None:
        preset.update(stored["budget"], tasks=",".join(stored["tasks"]),
                      settings=stored["settings"], seed=stored["seed"])
        if stored.get("steps"):
            preset["steps"] = stored["steps"]

    def pick(name):
        value = getattr(args, name, None)
        return preset[name] if value is None else value

    tasks = tuple(t.strip() for t in pick("tasks").split(",") if t.strip())
    budget = Budget(hidden=pick("hidden"), batch_size=pick("batch_size"),
                    train_steps=pick("train_steps"), filter_steps=pick("filter_steps"),
                    eval_batches=pick("eval_batches"), filter_threshold=pick("filter_threshold"),
                    seq_len=pick("seq_len"))
    return SearchConfig(
        name=args.name, tasks=tasks, steps=pick("steps"), settings=pick("settings"),
        population=getattr(args, "population", 100), reevaluate=getattr(args, "reevaluate", 0.2),
        seed=pick("seed"), budget=budget, storage=args.storage, directory=args.dir,
        workers=getattr(args, "workers", None), device=getattr(args, "device", "cpu"),
        threads=getattr(args, "threads", 1),
        lease_seconds=getattr(args, "lease_seconds", 60.0), quiet=getattr(args, "quiet", False),
    )


def _errors():
    from rnnlab.lang import GraphError
    from rnnlab.search import SearchError

    # RuntimeError: a storage out of reach, or a worker process that failed
    return SearchError, GraphError, RuntimeError


GUARD = Guard(errors=_errors, action="search_command",
              interrupted="the running candidate will be re-run on resume")


def handle(args, parser, extra, argv) -> int:
    """The subcommand handler ``rnnlab.cli.main`` calls (inside its guard, with GUARD)."""
    return run(args)


def run(args) -> int:
    """Run ``rnnlab search SUBCOMMAND``; returns the exit status."""
    from rnnlab import search

    config = _config(args)
    if args.search_command == "run":
        search.run(config)
        print()
        print(search.top(config, n=args.n))
    elif args.search_command == "top":
        print(search.top(config, n=args.n))
    elif args.search_command == "export":
        path = search.export(config, args.id, args.out)
        print(f"written {path}; use it with rnnlab.cells.load({str(path)!r}) or "
              f"`rnnlab train --cell={path}`")
    elif args.search_command == "report":
        if args.workers is not None and args.workers < 1:
            raise search.SearchError(f"--workers must be >= 1, got {args.workers}")
        text, folder = search.report(config, args.out, n=args.n,
                                     with_references=not args.no_references)
        print(text)
        print(f"written: {folder / 'report.md'}, {folder / 'fitness.png'}")
    elif args.search_command == "retrain":
        cells = [c.strip() for c in args.cells.split(",") if c.strip()]
        text, _, paths = search.retrain(config, n=args.n, seeds=args.seeds,
                                        settings=args.settings, train_steps=args.train_steps,
                                        cells=cells, tag=args.tag, train=not args.no_train)
        print(text)
        print("written: " + ", ".join(str(p) for p in paths))
    return 0
