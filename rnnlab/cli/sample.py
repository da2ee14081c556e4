"""``rnnlab sample RUN_DIR``: text from a character or word model."""

from __future__ import annotations

from rnnlab.cli.options import add_which_option

NAME = "sample"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        NAME, help="generate text from a character or word model",
        description="Generate text from a trained character or word language model. Needs only "
        "the run directory (it holds the vocabulary), not the corpus.",
    )
    parser.add_argument("run_dir", help="a run directory made by `rnnlab train`")
    parser.add_argument("--prime", default="", help="text to start from")
    parser.add_argument("--length", type=int, default=300, help="symbols to generate")
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="softmax temperature; 0 is greedy")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    add_which_option(parser)
    parser.set_defaults(handler=run)
    return parser


def run(args, parser, extra, argv) -> int:
    import math

    from rnnlab.train.pretrained import load_for_sampling
    from rnnlab.train.sampling import sample

    if args.length < 0:
        parser.error(f"--length must be >= 0, got {args.length}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        parser.error(f"--temperature must be >= 0 (0 is greedy), got {args.temperature}")
    task, model = load_for_sampling(args.run_dir, args.which)
    text = sample(
        model, task, prime=args.prime, length=args.length, temperature=args.temperature,
        seed=args.seed,
    )
    print(text)
    return 0
