"""``rnnlab translate RUN_DIR "three hundred and twelve"``: translate with a trained model."""

from __future__ import annotations

import sys

from rnnlab.cli.options import EXIT_ERROR, add_beam_option, add_which_option, check_beam, fail

NAME = "translate"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        NAME, help="translate text with a model of a translation task (numbers, parallel)",
        description="Translate each SOURCE with a model trained on a translation task (greedy "
        "decoding, or beam search with --beam): one line each on stdout. A character the model "
        "never saw is replaced by its lower case when the model saw that; a SOURCE that still "
        "holds one gets an empty line and an error on stderr (exit status 1), the others are "
        "translated; a SOURCE outside what the model was trained on (numbers: a number beyond "
        "the task's range) gets a note on stderr. With --evaluate, score free-running "
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
    from rnnlab.train.decoding import normalise_source, translate, translation_scores
    from rnnlab.train.pretrained import load_trained

    check_beam(args, parser)
    if (args.evaluate is None) == (not args.source):
        parser.error("give either SOURCE text to translate or --evaluate SPLIT, not both")
    _, task, model = load_trained(args.run_dir, args.which, command=NAME)
    if args.evaluate:
        scores = translation_scores(model, task, args.evaluate, beam=args.beam, limit=args.limit)
        print(f"{args.evaluate}: exact match {scores['exact_match']:.4f}, BLEU "
              f"{scores['bleu']:.2f} over {scores['examples']} examples (beam {args.beam})")
        return 0
    readable = []  # each SOURCE as the model reads it; None: refused
    for source in args.source:
        try:
            readable.append(normalise_source(task, source))
        except ValueError as error:
            readable.append(None)
            fail(NAME, f"{error}; not translated")
    translations = iter(translate(model, task, [s for s in readable if s is not None],
                                  beam=args.beam))
    out_of_domain = getattr(task, "out_of_domain", None)  # numbers knows its range
    for source in readable:
        note = out_of_domain(source) if source is not None and out_of_domain else None
        if note:
            print(f"rnnlab {NAME}: note: {note}", file=sys.stderr)
        print("" if source is None else next(translations))
    return EXIT_ERROR if None in readable else 0
