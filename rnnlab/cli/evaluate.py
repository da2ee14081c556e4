"""``rnnlab evaluate RUN_DIR``: the task's metric on valid / test with a run's parameters."""

from __future__ import annotations

from rnnlab.cli.options import add_which_option

NAME = "evaluate"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        NAME, help="evaluate a trained run on valid / test",
        description="Evaluate a trained run's parameters on its task's valid and test splits.",
    )
    parser.add_argument("run_dir", help="a run directory made by `rnnlab train`")
    parser.add_argument("--split", choices=("valid", "test", "all"), default="all",
                        help="which split")
    add_which_option(parser)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="sequences per batch; default: the run's eval batch size")
    parser.add_argument("--data", metavar="PATH", default=None,
                        help="evaluate on this file or folder instead of the data the run was "
                        "trained on (which is checked by sha256 otherwise)")
    parser.set_defaults(handler=run)
    return parser


def run(args, parser, extra, argv) -> int:
    from rnnlab.train.evaluate import evaluate
    from rnnlab.train.pretrained import load_trained

    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be a positive integer, got {args.batch_size}")
    config, task, model = load_trained(args.run_dir, args.which, data=args.data)
    splits = ("valid", "test") if args.split == "all" else (args.split,)
    batch_size = args.batch_size or config.task.eval_batch_size or config.task.batch_size
    metric = task.metric()
    print(f"{args.run_dir} ({args.which} parameters), task {task.name}, "
          f"primary metric {metric.primary}")
    for split in splits:
        values = evaluate(model, task, split, batch_size, seq_len=config.task.seq_len)
        print(f"{split}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    return 0
