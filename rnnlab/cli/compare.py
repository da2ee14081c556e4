"""``rnnlab compare [CONFIG ...]``: configurations side by side on one task."""

from __future__ import annotations

import argparse
import math

from rnnlab.cli.options import add_config_options, command_defaults, config_from_args
from rnnlab.train.compare import DEFAULT_BUDGET, SOURCE, parse_spec, seed_experiment_config
from rnnlab.train.config import ConfigError
from rnnlab.train.progress import flush_output, write_line

NAME = "compare"
DESCRIPTION = f"""\
Train several configurations on one task with the same data and time budget, then print a table
and write learning curves. CONFIG is [label:]key=value,key=value (keys: section.field, a
shortcut or an unambiguous field name; any body: body=grid_deep,tied=true). With no CONFIG:
seed 000's 3-layer stacked LSTM vs a 3-layer Grid LSTM of matched size on the `text` task.

Defaults: the seed experiment's settings (shown below), then the chosen task's own training
settings (`rnnlab list tasks`: e.g. batch 8 and RMSProp for the music tasks), then yours. The
comparison is at equal time, {DEFAULT_BUDGET:g} s per configuration (--budget-seconds, the same
setting as --train.budget_seconds: give one of the two); a limit you give instead, such as
--train.max_steps=300, lifts that default budget and compares at equal steps.
"""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        NAME,
        help="several configurations on one task side by side (default: LSTM vs Grid LSTM)",
        description=DESCRIPTION,
    )
    parser.add_argument("configs", nargs="*", metavar="CONFIG", help="configurations to train")
    parser.add_argument(
        "--budget-seconds", type=float, default=argparse.SUPPRESS,
        help="training time per configuration; the same as --train.budget_seconds [default: "
        f"{DEFAULT_BUDGET:g}; a limit you give, such as --train.max_steps, lifts it]",
    )
    parser.add_argument("--out", default=None,
                        help="output directory; default: <run.root>/compare-<time>-<task>")
    parser.add_argument("--match-params", action=argparse.BooleanOptionalAction, default=True,
                        help="size later configurations to the first one's parameter count")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_config_options(parser, command_defaults(seed_experiment_config(), SOURCE))
    parser.set_defaults(handler=run, takes_task_options=True)
    return parser


def run(args, parser, extra, argv) -> int:
    from rnnlab.train.compare import compare

    given = vars(args.config)
    budget = getattr(args, "budget_seconds", None)
    if budget is not None:
        if "train.budget_seconds" in given:
            parser.error(
                f"--budget-seconds={budget:g} and --train.budget_seconds="
                f"{given['train.budget_seconds']} both set the time budget per configuration; "
                "give one of them"
            )
        if not (math.isfinite(budget) and budget > 0):
            parser.error(f"--budget-seconds must be > 0, got {budget}")
        given["train.budget_seconds"] = repr(budget)
    try:  # a task the configurations name (all the same one) brings its training defaults too
        tasks = {setting.partition("=")[2] for spec in args.configs
                 for setting in parse_spec(spec)[1] if setting.startswith("task.name=")}
    except ConfigError as error:
        parser.error(str(error))
    if len(tasks) == 1 and "task.name" not in given:
        given["task.name"] = tasks.pop()
    config, limits = config_from_args(parser, args.config, extra, seed_experiment_config(),
                                      source=SOURCE)
    if args.quiet:
        config.run.quiet = True
    try:
        text, out_dir, _ = compare(
            config, args.configs or None, out=args.out, match_params=args.match_params,
            argv=argv, limits=limits,
        )
    except ConfigError as error:
        parser.error(str(error))
    write_line("")
    write_line(text)
    write_line(f"\nwritten: {out_dir / 'table.md'}, {out_dir / 'curves.png'}")
    flush_output()
    return 0
