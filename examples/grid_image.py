"""A 3-D Grid LSTM (rows × columns × depth) classifying MNIST digits, a few training steps.

Each image is cut into 4 × 4 patches (a 7 × 7 grid of 16 pixels each), scanned from all four
corners by separate grids whose outputs are concatenated, averaged over the image and
classified. Reads MNIST from the shared data folder; without it, trains on random images (to
show the shapes and the speed only). About 20 s on 2 CPU cores::

    python examples/grid_image.py
    python examples/grid_image.py --steps 1000 --hidden-size 32   # a real run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

import rnnlab.tasks
from rnnlab.grid import ImageGridLSTM
from rnnlab.tasks.download import data_dir


class DigitClassifier(nn.Module):
    """Patches → ImageGridLSTM (four corners, concatenated) → mean over positions → 10 logits."""

    def __init__(self, patch: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.patch = patch
        self.grid = ImageGridLSTM(
            patch * patch, hidden_size, num_layers, corners="all", combine="concat"
        )
        self.head = nn.Linear(self.grid.output_size, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # (B, 28, 28) → (B, 7, 7, 16): each grid position reads one patch of pixels.
        patches = images.unfold(1, self.patch, self.patch).unfold(2, self.patch, self.patch)
        patches = patches.flatten(-2)
        features = self.grid(patches)  # (B, 7, 7, 4 · hidden)
        return self.head(features.mean(dim=(1, 2)))


def data_folder(given: str | None) -> Path:
    """``--data``, else ``$RNNLAB_DATA``, else the shared data folder beside the repository."""
    if given:
        return Path(given)
    return data_dir() or Path(__file__).resolve().parents[2] / "shared" / "data"


def image_batches(folder: Path, split: str, batch_size: int):
    """(images (B, 28, 28) in [0, 1], labels (B,)) from MNIST, or random ones without it."""
    if (folder / "mnist").is_dir():
        task = rnnlab.tasks.make("mnist", path=folder / "mnist", form="rows", download=False)
        for batch in task.batches(split, batch_size):
            yield batch.inputs.transpose(0, 1), batch.targets  # rows (28, B, 28) → (B, 28, 28)
    else:
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        while True:
            images = torch.rand(batch_size, 28, 28, generator=generator)
            yield images, torch.randint(0, 10, (batch_size,), generator=generator)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder holding mnist/")
    parser.add_argument("--steps", type=int, default=80, help="training batches")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden-size", type=int, default=16)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (a small grid runs many small ops, "
        "which a busy machine slows down a lot when they are split across threads)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()

    folder = data_folder(args.data)
    if not (folder / "mnist").is_dir():
        print(f"no {folder / 'mnist'}: random images, so the accuracy means nothing")
    model = DigitClassifier(4, args.hidden_size, args.num_layers)
    print(
        f"ImageGridLSTM, 4 corners, {args.num_layers} layers of {args.hidden_size}: "
        f"{sum(p.numel() for p in model.parameters())} parameters"
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    train = image_batches(folder, "train", args.batch_size)
    for step in range(1, args.steps + 1):
        images, labels = next(train)
        loss = nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == 1:
            print(f"step {step:4d}  train loss {loss.item():.3f}")

    correct = total = 0
    with torch.no_grad():
        test = image_batches(folder, "test", 250)
        for images, labels in (next(test) for _ in range(2)):
            correct += (model(images).argmax(-1) == labels).sum().item()
            total += len(labels)
    print(f"test accuracy on {total} images: {correct / total:.3f}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
