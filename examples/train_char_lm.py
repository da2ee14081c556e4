"""Train a small character model on the stdlib corpus from Python, then sample from it.

    python examples/train_char_lm.py                 # about a minute on two cores
    python examples/train_char_lm.py --cell=gru --steps=500

The same as ``rnnlab train --cell=... --train.max_steps=...`` followed by
``rnnlab sample <run> --prime "def "``, written against the library API. The budget is in
steps, so a run means the same on any machine (a time budget trains a slow machine less).
"""

import argparse

from rnnlab.train.config import ExperimentConfig, apply_overrides
from rnnlab.train.pretrained import load_trained
from rnnlab.train.sampling import sample
from rnnlab.train.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm", help="any name from rnnlab.cells.names()")
    parser.add_argument("--steps", type=int, default=1000, help="training batches")
    parser.add_argument("--run-dir", default=None, help="run directory; default runs/<time>-...")
    args = parser.parse_args()

    config = apply_overrides(
        ExperimentConfig(),
        [
            f"model.cell={args.cell}",
            "model.hidden_size=128",
            "model.num_layers=2",
            "train.epochs=none",
            f"train.max_steps={args.steps}",
            "train.eval_every=100",
            "task.eval_batch_size=256",
            "task.eval_max_batches=1",
            "run.threads=1",
            *([f"run.dir={args.run_dir}"] if args.run_dir else []),
        ],
    )
    run, summary = train(config)
    print(f"run directory: {run.path}")
    print(f"test bits per character: {summary['test']['bits_per_char']:.3f}")

    _, task, model = load_trained(run.path)
    print(sample(model, task, prime="def ", length=300, temperature=0.7))


if __name__ == "__main__":
    main()
