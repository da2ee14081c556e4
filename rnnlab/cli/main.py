"""The ``rnnlab`` command line: list, train, evaluate, sample, compare, report.

::

    rnnlab list [cells|tasks]                    cells with their equations, tasks described
    rnnlab train --cell=cifg --task=arithmetic   train one model (any --section.field=value)
    rnnlab train --resume runs/<id>              continue a killed run exactly
    rnnlab evaluate runs/<id> [--split=test]     the task's metric on valid / test
    rnnlab sample runs/<id> --prime "def "       text from a character or word model
    rnnlab compare [CONFIG ...]                  configurations side by side (no CONFIG: seed
                                                 000's 3-layer LSTM vs 3-layer Grid LSTM)
    rnnlab report runs/<a> runs/<b>              table and learning curves of finished runs

Every config field is an option ``--section.field=value`` (``rnnlab train --help`` lists them
with their defaults and meaning); ``--cell``, ``--body``, ``--task`` and ``--seed`` are
shortcuts. Options of the chosen task go through as ``--task.<option>=value``.
``torchrun --nproc_per_node=N -m rnnlab train ...`` trains data-parallel.

Exit status: 0 success, 1 error, 2 bad command line, 3 training diverged (NaN/inf), 130
interrupted.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

from rnnlab.train.config import (
    SHORTCUTS,
    ConfigError,
    ExperimentConfig,
    describe_fields,
    field_types,
    sections,
    set_field,
    validate,
)

EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130


# --- config options ---------------------------------------------------------------------------
def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--section.field`` option per config field, plus the shortcuts."""
    group = parser.add_argument_group(
        "configuration (--section.field=value; `none` clears an optional field)"
    )
    for key, type_name, default, comment in describe_fields():
        section_name, name = key.split(".")
        annotation = field_types(sections()[section_name])[name]
        is_bool = annotation is bool
        group.add_argument(
            f"--{key}",
            dest=key,
            default=argparse.SUPPRESS,
            metavar="BOOL" if is_bool else type_name.upper().replace(" OR ", "|"),
            nargs="?" if is_bool else None,
            const="true" if is_bool else None,
            help=f"{comment} [default: {default!r}]",
        )
    for short, key in SHORTCUTS.items():
        group.add_argument(
            f"--{short}", dest=key, default=argparse.SUPPRESS, metavar="VALUE",
            help=f"shortcut for --{key}",
        )


def config_from_args(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    extra: list[str],
    base: ExperimentConfig,
) -> ExperimentConfig:
    """``base`` with the --section.field options in ``args`` and task options in ``extra``."""
    config = copy.deepcopy(base)
    try:
        for key, text in vars(args).items():
            if "." in key:
                set_field(config, key, text)
        for key, text in task_options(parser, extra):
            set_field(config, key, text)
        validate(config)
    except ConfigError as error:
        parser.error(str(error))
    return config


def task_options(parser: argparse.ArgumentParser, extra: list[str]) -> list[tuple[str, str]]:
    """Unknown ``--task.<option>=value`` (or ``--task.<option> value``) arguments; anything else
    unknown is a usage error."""
    pairs, rest = [], list(extra)
    while rest:
        item = rest.pop(0)
        if item.startswith("--task."):
            key, eq, value = item[2:].partition("=")
            if not eq:
                if not rest:
                    parser.error(f"argument --{key} expects a value")
                value = rest.pop(0)
            pairs.append((key, value))
        else:
            parser.error(
                f"unrecognized argument {item!r}; `rnnlab {parser.prog.split()[-1]} --help` "
                "lists the options"
            )
    return pairs


# --- subcommands --------------------------------------------------------------------------------
def cmd_list(args, parser) -> int:
    import rnnlab.cells
    import rnnlab.tasks

    if args.what in (None, "cells"):
        print("cells (rnnlab.cells.names(); use with --cell=NAME or rnnlab.RNN(NAME, ...)):\n")
        for name in rnnlab.cells.names():
            print(f"[{name}]")
            print(str(rnnlab.cells.make(name, 8, 8)).rstrip())
            print()
        print("[grid] --body=grid: rnnlab.GridLSTM, a 2-D (time x depth) Grid LSTM\n")
    if args.what in (None, "tasks"):
        print("tasks (use with --task=NAME; options as --task.OPTION=VALUE):\n")
        for name, text in rnnlab.tasks.describe_all().items():
            options = ", ".join(
                key for key in rnnlab.tasks.factory_options(name) if key not in ("args", "kwargs")
            )
            print(f"[{name}] {text}")
            if options:
                print(f"  options: {options}")
            print()
    return 0


def cmd_train(args, parser, extra, argv) -> int:
    from rnnlab.train.run import RunDir
    from rnnlab.train.trainer import train

    if args.resume:
        run = RunDir(args.resume)
        try:
            base = run.config()
        except FileNotFoundError as error:
            parser.error(str(error))
        if not run.file("checkpoint.pt").is_file():
            parser.error(
                f"{run.path} has no checkpoint.pt to resume from (the run stopped before its "
                "first checkpoint); start it again instead"
            )
    else:
        base = ExperimentConfig()
    config = config_from_args(parser, args.config, extra, base)
    if args.quiet:
        config.run.quiet = True
    if args.tensorboard:
        config.run.tensorboard = True
    train(config, argv=argv, resume=args.resume)
    return 0


def cmd_evaluate(args, parser) -> int:
    from rnnlab.train.evaluate import evaluate
    from rnnlab.train.pretrained import load_trained

    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be a positive integer, got {args.batch_size}")
    config, task, model = load_trained(args.run_dir, args.which)
    splits = ("valid", "test") if args.split == "all" else (args.split,)
    batch_size = args.batch_size or config.task.eval_batch_size or config.task.batch_size
    metric = task.metric()
    print(f"{args.run_dir} ({args.which} parameters), task {task.name}, "
          f"primary metric {metric.primary}")
    for split in splits:
        values = evaluate(model, task, split, batch_size, seq_len=config.task.seq_len)
        print(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    return 0


def cmd_sample(args, parser) -> int:
    from rnnlab.train.pretrained import load_trained
    from rnnlab.train.sampling import sample

    if args.length < 0:
        parser.error(f"--length must be >= 0, got {args.length}")
    if args.temperature < 0:
        parser.error(f"--temperature must be >= 0 (0 is greedy), got {args.temperature}")
    _, task, model = load_trained(args.run_dir, args.which)
    text = sample(
        model,
        task,
        prime=args.prime,
        length=args.length,
        temperature=args.temperature,
        seed=args.seed,
    )
    print(text)
    return 0


def cmd_compare(args, parser, extra, argv) -> int:
    from rnnlab.train.compare import compare, seed_experiment_config

    if args.budget_seconds is not None and args.budget_seconds <= 0:
        parser.error(f"--budget-seconds must be > 0, got {args.budget_seconds}")
    base = seed_experiment_config(args.budget_seconds or 90.0)
    config = config_from_args(parser, args.config, extra, base)
    if args.quiet:
        config.run.quiet = True
    try:
        text, out_dir, _ = compare(
            config, args.configs or None, out=args.out, match_params=args.match_params,
            argv=argv,
        )
    except ConfigError as error:
        parser.error(str(error))
    print()
    print(text)
    print(f"\nwritten: {out_dir / 'table.md'}, {out_dir / 'curves.png'}")
    return 0


def cmd_report(args, parser) -> int:
    from rnnlab.train.report import report

    text, out_dir = report(args.run_dirs, args.out, x=args.x)
    print(text)
    print(f"\nwritten: {out_dir / 'report.md'}, {out_dir / 'curves.png'}")
    return 0


# --- parser ---------------------------------------------------------------------------------------
def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each subcommand's parser by name."""
    parser = argparse.ArgumentParser(
        prog="rnnlab",
        description="Build, train, compare and sample recurrent neural networks.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    listing = commands.add_parser(
        "list", help="cells with their equations, and tasks", allow_abbrev=False
    )
    listing.add_argument("what", nargs="?", choices=("cells", "tasks"), help="only one kind")

    train = commands.add_parser(
        "train",
        help="train one model",
        allow_abbrev=False,
        description="Train one model. Every config field can be set as --section.field=value.",
    )
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.add_argument("--tensorboard", action="store_true", help="log to TensorBoard too")
    add_config_options(train)

    evaluate = commands.add_parser(
        "evaluate", help="evaluate a trained run on valid / test", allow_abbrev=False
    )
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--split", choices=("valid", "test", "all"), default="all")
    evaluate.add_argument("--which", choices=("best", "last"), default="best",
                          help="best validated parameters (best.pt) or the last (checkpoint.pt)")
    evaluate.add_argument("--batch-size", type=int, default=None)

    sample = commands.add_parser(
        "sample", help="generate text from a character or word model", allow_abbrev=False
    )
    sample.add_argument("run_dir")
    sample.add_argument("--prime", default="", help="text to start from")
    sample.add_argument("--length", type=int, default=300, help="symbols to generate")
    sample.add_argument("--temperature", type=float, default=0.8,
                        help="softmax temperature; 0 is greedy")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--which", choices=("best", "last"), default="best")

    compare = commands.add_parser(
        "compare",
        help="several configurations on one task side by side (default: LSTM vs Grid LSTM)",
        allow_abbrev=False,
        description=(
            "Train several configurations on one task with the same data and time budget, then "
            "print a table and write learning curves. CONFIG is [label:]key=value,key=value "
            "(keys: section.field, a shortcut or an unambiguous field name). With no CONFIG: "
            "seed 000's 3-layer stacked LSTM vs a 3-layer Grid LSTM of matched size on the "
            "`text` task."
        ),
    )
    compare.add_argument("configs", nargs="*", metavar="CONFIG")
    compare.add_argument("--budget-seconds", type=float, default=None,
                         help="training time per configuration [default: 90]")
    compare.add_argument("--out", default=None, help="output directory")
    compare.add_argument("--match-params", action=argparse.BooleanOptionalAction, default=True,
                         help="size later configurations to the first one's parameter count")
    compare.add_argument("--quiet", action="store_true", help="no progress output")
    add_config_options(compare)

    report = commands.add_parser(
        "report", help="table and learning curves from run directories", allow_abbrev=False
    )
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument("--out", default=None, help="output directory [default: reports/<time>]")
    report.add_argument("--x", choices=("step", "time"), default="step",
                        help="x axis of the curves")
    from rnnlab.cli import reproduce as reproduce_cli  # reproduce, gradflow

    reproduce_cli.register(commands)
    return parser, dict(commands.choices)


def parse(argv: list[str]):
    """(parser, subparser, namespace, extra): config options are gathered in ``args.config``."""
    parser, subcommands = build_parser()
    args, extra = parser.parse_known_args(argv)
    sub = subcommands[args.command]
    config_args = argparse.Namespace(
        **{k: v for k, v in vars(args).items() if "." in k}
    )
    for key in vars(config_args):
        delattr(args, key)
    args.config = config_args
    if extra and args.command not in ("train", "compare"):
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    return parser, sub, args, extra


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (also used as the console script)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, sub, args, extra = parse(argv)
    from rnnlab.train.trainer import TrainingDiverged

    try:
        if args.command == "list":
            return cmd_list(args, sub)
        if args.command == "train":
            return cmd_train(args, sub, extra, argv)
        if args.command == "evaluate":
            return cmd_evaluate(args, sub)
        if args.command == "sample":
            return cmd_sample(args, sub)
        if args.command == "compare":
            return cmd_compare(args, sub, extra, argv)
        if args.command == "report":
            return cmd_report(args, sub)
        if args.command in ("reproduce", "gradflow"):
            from rnnlab.cli import reproduce as reproduce_cli

            return reproduce_cli.run(args, sub, argv)
    except TrainingDiverged as error:
        print(f"rnnlab: training diverged: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (FileNotFoundError, FileExistsError, ValueError, TypeError) as error:
        if os.environ.get("RNNLAB_DEBUG"):
            raise
        print(f"rnnlab {args.command}: error: {error}", file=sys.stderr)
        print("(set RNNLAB_DEBUG=1 to see the traceback)", file=sys.stderr)
        return EXIT_ERROR
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
