"""``rnnlab train``: train one model, or continue a run with ``--resume``."""

from __future__ import annotations

from rnnlab.cli.options import add_config_options, config_from_args
from rnnlab.train.config import ExperimentConfig

NAME = "train"
DESCRIPTION = """\
Train one model. Every config field can be set as --section.field=value.

Your own text: --task=text --task.path=corpus.txt (a UTF-8 file, or a folder: every text file
under it, in sorted order) trains a character model on it; the run directory keeps its
vocabulary, so `rnnlab sample RUN_DIR` works even after the corpus moves.
"""


def add_parser(subparsers):
    parser = subparsers.add_parser(NAME, help="train one model", description=DESCRIPTION)
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--tensorboard", action="store_true", help="log to TensorBoard too")
    add_config_options(parser)
    parser.set_defaults(handler=run, takes_task_options=True)
    return parser


def run(args, parser, extra, argv) -> int:
    from rnnlab.train.run import RunDir
    from rnnlab.train.trainer import train

    if args.resume:
        run_dir = RunDir(args.resume)
        base = run_dir.config()
        if not run_dir.file("checkpoint.pt").is_file():
            parser.error(
                f"{run_dir.path} has no checkpoint.pt to resume from (the run stopped before its "
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
