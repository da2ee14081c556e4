"""``rnnlab report RUN_DIR ...``: a table and learning curves of finished runs."""

from __future__ import annotations

NAME = "report"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        NAME, help="table and learning curves from run directories",
        description="A table and learning curves of finished runs.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories")
    parser.add_argument("--out", default=None, help="output directory; default: reports/<time>")
    parser.add_argument("--x", choices=("step", "time"), default="step",
                        help="x axis of the curves")
    parser.set_defaults(handler=run)
    return parser


def run(args, parser, extra, argv) -> int:
    from rnnlab.train.report import report

    text, out_dir = report(args.run_dirs, args.out, x=args.x)
    print(text)
    print(f"\nwritten: {out_dir / 'report.md'}, {out_dir / 'curves.png'}")
    return 0
