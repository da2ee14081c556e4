"""``rnnlab transcribe RUN_DIR file.wav``: the digits a CTC speech model hears."""

from __future__ import annotations

NAME = "transcribe"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        NAME, help="print the digits a speech model (digits_ctc) hears in WAV files",
        description="Transcribe 16-bit PCM WAV files (any sample rate; resampled to 8 kHz) with "
        "a model trained on digits_ctc: greedy CTC decoding, or prefix beam search with --beam.",
    )
    parser.add_argument("run_dir", help="a run directory made by `rnnlab train --task=digits_ctc`")
    parser.add_argument("wav", nargs="+", help="WAV files to transcribe")
    parser.add_argument("--beam", type=int, default=1, help="beam width; 1 is greedy")
    parser.add_argument("--which", choices=("best", "last"), default="best",
                        help="best validated parameters (best.pt) or the last (checkpoint.pt)")
    parser.set_defaults(handler=run)
    return parser


def run(args, parser, extra, argv) -> int:
    from rnnlab.tasks.speech import read_wav
    from rnnlab.train.decoding import transcribe
    from rnnlab.train.pretrained import load_trained

    if args.beam < 1:
        parser.error(f"--beam must be >= 1, got {args.beam}")
    signals = []
    for path in args.wav:  # read every file first: a bad one fails before the model loads
        try:
            signals.append(read_wav(path))
        except OSError as error:
            raise ValueError(f"cannot read {path}: {error.strerror}") from None
    _, task, model = load_trained(args.run_dir, args.which)
    for path, signal in zip(args.wav, signals):
        heard = transcribe(model, task, signal, beam=args.beam)
        print(f"{path}: {heard}" if len(args.wav) > 1 else heard)
    return 0
