"""``rnnlab translate RUN_DIR "three hundred and twelve"``: translate with a trained model."""

from __future__ import annotations

from rnnlab.cli.options import add_beam_option, add_which_option, check_beam

NAME = "translate"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        NAME, help="translate text with a model of a translation task (numbers, parallel)",
        description="Translate each SOURCE with a model trained on a translation task (greedy "
        "decoding, or beam search with --beam). With --evaluate, score free-running "
        "translations of a split instead: exact match and corpus BLEU (sacrebleu).",
    )
    parser.add_argument("run_dir", help="a run directory made by `rnnlab train`")
    parser.add_argument("source", nargs="*", help="text to translate (one argument each)")
    add_beam_option(parser)
    parser.add_argument("--evaluate", metavar="SPLIT", choices=("valid", "test"), default=None,
                        help="score the split's translations instead of translating SOURCE")
    parser.add_argument("--limit", type=int, default=None,
                        help="with --evaluate: only the split's first LIMIT examples")
    add_which_option(parser)
    parser.set_defaults(handler=run)
    return parser


def run(args, parser, extra, argv) -> int:
    from rnnlab.train.decoding import translate, translation_scores
    from rnnlab.train.pretrained import load_trained

    check_beam(args, parser)
    if (args.evaluate is None) == (not args.source):
        parser.error("give either SOURCE text to translate or --evaluate SPLIT, not both")
    _, task, model = load_trained(args.run_dir, args.which)
    if args.evaluate:
        scores = translation_scores(model, task, args.evaluate, beam=args.beam, limit=args.limit)
        print(f"{args.evaluate}: exact match {scores['exact_match']:.4f}, BLEU "
              f"{scores['bleu']:.2f} over {scores['examples']} examples (beam {args.beam})")
        return 0
    for line in translate(model, task, args.source, beam=args.beam):
        print(line)
    return 0
