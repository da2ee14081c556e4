"""``rnnlab transcribe RUN_DIR file.wav``: the digits a CTC speech model hears."""

from __future__ import annotations

from rnnlab.cli.options import add_beam_option, add_which_option, check_beam

NAME = "transcribe"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        NAME, help="print the digits a speech model (digits_ctc) hears in WAV files",
        description="Transcribe 16-bit PCM WAV files (any sample rate; resampled to 8 kHz) with "
        "a model trained on digits_ctc: greedy CTC decoding, or prefix beam search with --beam. "
        "Needs only the run directory (it holds the feature statistics), not the recordings.",
    )
    parser.add_argument("run_dir", help="a run directory made by `rnnlab train --task=digits_ctc`")
    parser.add_argument("wav", nargs="+", help="WAV files to transcribe")
    add_beam_option(parser)
    add_which_option(parser)
    parser.set_defaults(handler=run)
    return parser


def run(args, parser, extra, argv) -> int:
    from rnnlab.tasks.speech import read_wav
    from rnnlab.train.decoding import transcribe
    from rnnlab.train.pretrained import load_for_transcription

    check_beam(args, parser)
    signals = []
    for path in args.wav:  # read every file first: a bad one fails before the model loads
        try:
            signals.append(read_wav(path))
        except OSError as error:
            raise ValueError(f"cannot read {path}: {error.strerror}") from None
    task, model = load_for_transcription(args.run_dir, args.which)
    for path, signal in zip(args.wav, signals):
        heard = transcribe(model, task, signal, beam=args.beam)
        print(f"{path}: {heard}" if len(args.wav) > 1 else heard)
    return 0
