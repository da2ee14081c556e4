"""The ``rnnlab`` command line: list, train, evaluate, sample, compare, report, study, search,
translate, transcribe, reproduce, gradflow.

::

    rnnlab list [cells|bodies|tasks]             cells with their equations, bodies, tasks
    rnnlab train --cell=cifg --task=arithmetic   train one model (any --section.field=value)
    rnnlab train --task.path=my.txt              a character model of your own text file
    rnnlab train --resume runs/<id>              continue a killed run exactly
    rnnlab evaluate runs/<id> [--split=test]     the task's metric on valid / test
    rnnlab sample runs/<id> --prime "def "       text from a character or word model
    rnnlab compare [CONFIG ...]                  configurations side by side (no CONFIG: seed
                                                 000's 3-layer LSTM vs 3-layer Grid LSTM)
    rnnlab report runs/<a> runs/<b>              table and learning curves of finished runs
    rnnlab study run|report|dashboard            Greff et al.'s variant study (docs/study.md)
    rnnlab search run|top|export|report|retrain  evolutionary cell search (docs/search.md)
    rnnlab translate runs/<id> "forty-two"       translate with a numbers/parallel model
    rnnlab transcribe runs/<id> file.wav         digits a digits_ctc model hears
    rnnlab reproduce NAME | --list | --table     published results re-measured
    rnnlab gradflow lstm:cell=lstm               ‖∂C_T/∂h_t‖ per step back in time

Every config field is an option ``--section.field=value`` (``rnnlab train --help`` lists them
with their defaults and meaning); ``--cell``, ``--body``, ``--task`` and ``--seed`` are
shortcuts. Options of the chosen task go through as ``--task.<option>=value``.
``torchrun --nproc_per_node=N -m rnnlab train ...`` trains data-parallel.

Each subcommand is a module of ``rnnlab.cli`` with ``add_parser(subparsers)``, which adds its
parser and sets its handler with ``parser.set_defaults(handler=run)`` (``run(args, parser,
extra, argv) -> exit status``; ``takes_task_options=True`` lets unknown ``--task.*`` arguments
through as ``extra``). A new subcommand is one more name in :data:`COMMANDS`.

Exit status: 0 success, 1 error, 2 bad command line, 3 training diverged (NaN/inf), 130
interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rnnlab.cli.options import (  # noqa: F401  (EXIT_* are part of this module's interface)
    EXIT_DIVERGED,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    USER_ERRORS,
    Parser,
    fail,
    guarded,
)

# The subcommands, in the order `rnnlab --help` lists them: modules of rnnlab.cli.
COMMANDS = [
    "listing",
    "train",
    "evaluate",
    "sample",
    "compare",
    "report",
    "study",
    "search",
    "translate",
    "transcribe",
    "reproduce",
]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each subcommand's parser by name."""
    parser = Parser(
        prog="rnnlab",
        description="Build, train, compare and sample recurrent neural networks.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        importlib.import_module(f"rnnlab.cli.{name}").add_parser(subparsers)
    return parser, dict(subparsers.choices)


def parse(argv: list[str]):
    """(parser, subparser, namespace, extra): config options are gathered in ``args.config``."""
    parser, subcommands = build_parser()
    args, extra = parser.parse_known_args(argv)
    sub = subcommands[args.command]
    config_args = argparse.Namespace(**{k: v for k, v in vars(args).items() if "." in k})
    for key in vars(config_args):
        delattr(args, key)
    args.config = config_args
    if extra and not getattr(args, "takes_task_options", False):
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    return parser, sub, args, extra


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (also used as the console script).
    Every subcommand's failures go through one guard (rnnlab.cli.options.guarded)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, sub, args, extra = parse(argv)
    return guarded(args, lambda: args.handler(args, sub, extra, argv))


if __name__ == "__main__":
    sys.exit(main())
