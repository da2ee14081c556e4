"""A 3-D Grid LSTM (rows × columns × depth) classifying digits, a few training steps.

Each image is cut into patches (MNIST: 4 × 4 pixels, a 7 × 7 grid), scanned from all four
corners by separate grids whose outputs are concatenated, averaged over the image and
classified: ``--model.body=grid_image`` through the trainer. Reads MNIST from the shared data
folder; without it, uses scikit-learn's 8 × 8 digits (2 × 2 patches).
About a minute on 2 CPU cores (the final evaluation covers the whole valid and test splits)::

    python examples/grid_image.py
    python examples/grid_image.py --steps 1000 --hidden-size 32   # a real run
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
    parser.add_argument("--data", help="folder holding mnist/")
    parser.add_argument("--steps", type=int, default=80, help="training batches")
    parser.add_argument("--hidden-size", type=int, default=16)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--run-dir", default=None, help="run directory; default runs/<time>-...")
    args = parser.parse_args(argv)

    folder = data_folder(args.data) / "mnist"
    if folder.is_dir():
        task = ["task.name=mnist", f"task.path={folder}", "task.form=rows",
                "task.download=false", "model.patch=4"]
    else:
        print(f"no {folder}: using scikit-learn's 8 x 8 digits instead")
        task = ["task.name=digits", "model.patch=2"]
    config = apply_overrides(ExperimentConfig(), [
        *task,
        "model.body=grid_image",
        "model.corners=all",
        "model.combine=concat",
        f"model.hidden_size={args.hidden_size}",
        f"model.num_layers={args.num_layers}",
        "train.lr=1e-2",
        "train.epochs=none",
        f"train.max_steps={args.steps}",
        "task.eval_batch_size=250",
        "task.eval_max_batches=2",
        "run.threads=1",
        *([f"run.dir={args.run_dir}"] if args.run_dir else []),
    ])
    run, summary = train(config)
    print(f"run directory: {run.path}")


if __name__ == "__main__":
    main()
