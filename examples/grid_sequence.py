"""A 2-D Grid LSTM (time × depth) as a character language model, trained for a few steps.

The seed deck's experiment in miniature: next-character prediction on Tiny Shakespeare with a
3-layer Grid LSTM (``--model.body=grid``), carrying the state across batches (truncated BPTT).
Without the data folder it trains on the Grid LSTM paper's 15-digit addition task (generated)
instead. The same as ``rnnlab train --body=grid --task=tinyshakespeare ...``, through the
trainer, so the run directory holds the config, metrics, checkpoints and curves.
About a minute on 2 CPU cores (the final evaluation covers the whole valid and test splits)::

    python examples/grid_sequence.py
    python examples/grid_sequence.py --steps 2000 --hidden-size 256   # a real run
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
    parser.add_argument("--data", help="folder holding tinyshakespeare/input.txt")
    parser.add_argument("--steps", type=int, default=50, help="training batches")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=3)
    parser.add_argument("--tied", action="store_true", help="one block's weights at every layer")
    parser.add_argument("--run-dir", default=None, help="run directory; default runs/<time>-...")
    args = parser.parse_args(argv)

    text = data_folder(args.data) / "tinyshakespeare"
    if (text / "input.txt").exists():
        task = ["task.name=tinyshakespeare", f"task.path={text}", "task.download=false"]
    else:
        print(f"no {text / 'input.txt'}: training on generated 15-digit addition instead")
        task = ["task.name=addition"]
    config = apply_overrides(ExperimentConfig(), [
        *task,
        "model.body=grid",
        f"model.hidden_size={args.hidden_size}",
        f"model.num_layers={args.num_layers}",
        f"model.tied={args.tied}",
        "task.seq_len=64",
        "train.lr=3e-3",
        "train.clip_norm=1",
        "train.epochs=none",
        f"train.max_steps={args.steps}",
        "task.eval_batch_size=128",
        "task.eval_max_batches=2",  # periodic validation on a slice; the final is whole
        "run.threads=1",  # a small grid's many small ops do not gain from a second thread
        *([f"run.dir={args.run_dir}"] if args.run_dir else []),
    ])
    run, summary = train(config)
    print(f"run directory: {run.path}")


if __name__ == "__main__":
    main()
