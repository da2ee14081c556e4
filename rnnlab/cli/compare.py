"""``rnnlab compare [CONFIG ...]``: configurations side by side on one task."""

from __future__ import annotations

import argparse

from rnnlab.cli.options import add_config_options, config_from_args
from rnnlab.train.config import ConfigError

NAME = "compare"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        NAME,
        help="several configurations on one task side by side (default: LSTM vs Grid LSTM)",
        description=(
            "Train several configurations on one task with the same data and time budget, then "
            "print a table and write learning curves. CONFIG is [label:]key=value,key=value "
            "(keys: section.field, a shortcut or an unambiguous field name; any body: "
            "body=grid_deep,tied=true). With no CONFIG: seed 000's 3-layer stacked LSTM vs a "
            "3-layer Grid LSTM of matched size on the `text` task."
        ),
    )
    parser.add_argument("configs", nargs="*", metavar="CONFIG", help="configurations to train")
    parser.add_argument("--budget-seconds", type=float, default=90.0,
                        help="training time per configuration")
    parser.add_argument("--out", default=None,
                        help="output directory; default: <run.root>/compare-<time>-<task>")
    parser.add_argument("--match-params", action=argparse.BooleanOptionalAction, default=True,
                        help="size later configurations to the first one's parameter count")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_config_options(parser)
    parser.set_defaults(handler=run, takes_task_options=True)
    return parser


def run(args, parser, extra, argv) -> int:
    import math

    from rnnlab.train.compare import compare, seed_experiment_config

    if not (math.isfinite(args.budget_seconds) and args.budget_seconds > 0):
        parser.error(f"--budget-seconds must be > 0, got {args.budget_seconds}")
    base = seed_experiment_config(args.budget_seconds)
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
