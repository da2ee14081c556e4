"""``rnnlab list [cells|tasks|bodies]``: the cells with their equations, the tasks, the bodies."""

from __future__ import annotations

NAME = "list"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        NAME, help="cells with their equations, model bodies, and tasks",
        description="List the cells (with their equations), the model bodies and the tasks.",
    )
    parser.add_argument("what", nargs="?", choices=("cells", "bodies", "tasks"),
                        help="only one kind")
    parser.set_defaults(handler=run)
    return parser


def run(args, parser, extra, argv) -> int:
    import rnnlab.cells
    import rnnlab.tasks
    from rnnlab.train.bodies import BODIES, body_settings
    from rnnlab.train.progress import write_line  # a reader that stops early (| head) is fine

    if args.what in (None, "cells"):
        write_line(
            "cells (rnnlab.cells.names(); use with --cell=NAME or rnnlab.RNN(NAME, ...)):\n"
        )
        for name in rnnlab.cells.names():
            summary = (rnnlab.cells.doc(name) or "").strip().split("\n")[0]
            write_line(f"[{name}] {summary}".rstrip())
            write_line(str(rnnlab.cells.make(name, 8, 8)).rstrip())
            write_line("")
    if args.what in (None, "bodies"):
        write_line(
            "model bodies (use with --model.body=NAME; settings as --model.SETTING=VALUE):\n"
        )
        for name, body in BODIES.items():
            write_line(f"[{name}] {body.summary}")
            write_line(f"  settings: {', '.join(body_settings(name))}")
            write_line("")
    if args.what in (None, "tasks"):
        write_line("tasks (use with --task=NAME; options as --task.OPTION=VALUE):\n")
        for name, text in rnnlab.tasks.describe_all().items():
            options = ", ".join(
                key for key in rnnlab.tasks.factory_options(name) if key not in ("args", "kwargs")
            )
            write_line(f"[{name}] {text}")
            if options:
                write_line(f"  options: {options}")
            defaults = rnnlab.tasks.training_defaults(name)
            if defaults:
                write_line("  training defaults (train, compare): "
                           + ", ".join(f"{key}={value}" for key, value in defaults.items()))
            write_line("")
    return 0
