"""``rnnlab train``: train one model, or continue a run with ``--resume``."""

from __future__ import annotations

from rnnlab.cli.options import add_config_options, command_defaults, config_from_args
from rnnlab.train.config import RUN, ExperimentConfig
from rnnlab.train.progress import flush_output

NAME = "train"
DESCRIPTION = """\
Train one model. Every config field can be set as --section.field=value.

Your own text: --task=text --task.path=corpus.txt (a UTF-8 file, or a folder: every text file
under it, in sorted order) trains a character model on it; the run directory keeps its
vocabulary, so `rnnlab sample RUN_DIR` works even after the corpus moves.

Defaults: the fields' below, then the chosen task's own training settings (`rnnlab list
tasks`), then yours. Training stops at the first limit reached; a limit you give (e.g.
--train.budget_seconds=600) lifts the default ones (train.epochs=10). The run's first progress
line says which limits are in force and where each came from.
"""

# What a resumed run may change in its model section: neither changes a parameter or what the
# model computes (every other model setting does, or only acted when the model was made).
RESUMABLE_MODEL_SETTINGS = ("dropout", "schedule")


def add_parser(subparsers):
    parser = subparsers.add_parser(NAME, help="train one model", description=DESCRIPTION)
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--tensorboard", action="store_true", help="log to TensorBoard too")
    add_config_options(parser, command_defaults(ExperimentConfig()))
    parser.set_defaults(handler=run, takes_task_options=True)
    return parser


def run(args, parser, extra, argv) -> int:
    from rnnlab.train.run import RunDir
    from rnnlab.train.trainer import train

    if args.resume:
        run_dir = RunDir(args.resume)
        base = run_dir.config()
        try:  # checkpoint.pt, or the previous one (a run killed mid-rotation)
            run_dir.require_resumable()
        except FileNotFoundError as error:
            parser.error(str(error))
        config, limits = config_from_args(parser, args.config, extra, base, source=RUN,
                                          defaults=False)
        changed = model_changes(base, config)
        if changed:
            parser.error(
                f"the model settings differ from {run_dir.path}'s: {'; '.join(changed)}; a "
                "resumed run keeps the model its checkpoint holds (only model."
                f"{' and model.'.join(RESUMABLE_MODEL_SETTINGS)} may change): drop these "
                "options, or start a new run"
            )
    else:
        config, limits = config_from_args(parser, args.config, extra, ExperimentConfig())
    if args.quiet:
        config.run.quiet = True
    if args.tensorboard:
        config.run.tensorboard = True
    train(config, argv=argv, resume=args.resume, limits=limits)
    flush_output()
    return 0


def model_changes(saved: ExperimentConfig, given: ExperimentConfig) -> list[str]:
    """``"model.cell: 'lstm' -> 'gru'"`` for each model setting of ``given`` that differs from
    the ``saved`` run's, except those a resumed run may change."""
    old, new = vars(saved.model), vars(given.model)  # another body has other settings
    return [
        f"model.{name}: {old.get(name)!r} -> {new.get(name)!r}"
        for name in {**old, **new}
        if name not in RESUMABLE_MODEL_SETTINGS and new.get(name) != old.get(name)
    ]
