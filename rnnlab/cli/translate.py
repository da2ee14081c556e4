"""``rnnlab translate RUN_DIR "three hundred and twelve"``: translate with a trained model."""

from __future__ import annotations

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
    parser.add_argument("--beam", type=int, default=1, help="beam width; 1 is greedy")
    parser.add_argument("--evaluate", metavar="SPLIT", choices=("valid", "test"), default=None,
                        help="score the split's translations instead of translating SOURCE")
    parser.add_argument("--limit", type=int, default=None,
                        help="with --evaluate: only the split's first LIMIT examples")
    parser.add_argument("--which", choices=("best", "last"), default="best",
                        help="best validated parameters (best.pt) or the last (checkpoint.pt)")
    parser.set_defaults(handler=run)
    return parser


def run(args, parser, extra, argv) -> int:
    from rnnlab.train.decoding import translate, translation_scores
    from rnnlab.train.pretrained import load_trained

    if args.beam < 1:
        parser.error(f"--beam must be >= 1, got {args.beam}")
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
