"""A 3-D Grid LSTM over spectrograms (time × frequency bands × depth): spoken digits.

Log-mel spectrograms of the Free Spoken Digit Dataset (40 mel bands per 10 ms frame) are cut
into frequency bands of 10 mels every 6 (6 overlapping bands, as in time-frequency LSTMs),
scanned forward in time from both top corners (low → high and high → low frequency), so the
output at frame t only depends on frames up to t; the digit is read from each recording's last
frame: ``--model.body=grid_spectrogram`` through the trainer. Without the data folder it reads
scikit-learn's 8 × 8 digits row by row as 8-bin "spectrograms" (bands of 4 every 2).
About a minute on 2 CPU cores (the final evaluation covers the whole valid and test splits)::

    python examples/grid_spectrogram.py
    python examples/grid_spectrogram.py --steps 1500 --hidden-size 32   # a real run
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnlab.tasks.download import data_dir
from rnnlab.train import ExperimentConfig, apply_overrides, train


def data_folder(given: str | None) -> Path:
    """``--data``, else ``$RNNLAB_DATA``, else the shared data folder beside the repository."""
    if given:
        return Path(given)
    return data_dir() or Path(__file__).resolve().parents[2] / "shared" / "data"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder holding fsdd/")
    parser.add_argument("--steps", type=int, default=30, help="training batches")
    parser.add_argument("--hidden-size", type=int, default=16)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--run-dir", default=None, help="run directory; default runs/<time>-...")
    args = parser.parse_args(argv)

    folder = data_folder(args.data) / "fsdd"
    if folder.is_dir():
        task = ["task.name=fsdd", f"task.path={folder}", "task.download=false",
                "model.band_size=10", "model.band_stride=6"]
    else:
        print(f"no {folder}: using scikit-learn's 8 x 8 digits, read row by row, instead")
        task = ["task.name=digits", "model.band_size=4", "model.band_stride=2"]
    config = apply_overrides(ExperimentConfig(), [
        *task,
        "model.body=grid_spectrogram",
        "model.corners=top_left,top_right",
        "model.combine=concat",
        f"model.hidden_size={args.hidden_size}",
        f"model.num_layers={args.num_layers}",
        "train.lr=1e-2",
        "train.clip_norm=1",
        "train.epochs=none",
        f"train.max_steps={args.steps}",
        "task.eval_batch_size=100",
        "task.eval_max_batches=2",
        "run.threads=1",
        *([f"run.dir={args.run_dir}"] if args.run_dir else []),
    ])
    run, summary = train(config)
    print(f"run directory: {run.path}")


if __name__ == "__main__":
    main()
