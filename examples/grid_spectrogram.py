"""A 3-D Grid LSTM over spectrograms (time × frequency bands × depth): spoken digits.

Log-mel spectrograms of the Free Spoken Digit Dataset (40 mel bands per 10 ms frame) are cut
into frequency bands of 10 mels every 6 (6 overlapping bands, as in time-frequency LSTMs), scanned
forward in time from both top corners (low → high and high → low frequency), so the output at
frame t only depends on frames up to t. The digit is read from each recording's last frame.
Without the data folder it runs on random spectrograms (shapes and speed only). About 20 s on
2 CPU cores::

    python examples/grid_spectrogram.py
    python examples/grid_spectrogram.py --steps 1500 --hidden-size 32   # a real run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

import rnnlab.tasks
from rnnlab.grid import SpectrogramGridLSTM
from rnnlab.tasks.download import data_dir


class DigitRecogniser(nn.Module):
    """SpectrogramGridLSTM → the last valid frame's outputs over all bands → 10 logits."""

    def __init__(self, mels: int, band: int, stride: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.grid = SpectrogramGridLSTM(
            band,
            hidden_size,
            num_layers,
            band_stride=stride,
            corners=("top_left", "top_right"),
            combine="concat",
        )
        bands = (mels - band) // stride + 1
        self.head = nn.Linear(bands * self.grid.output_size, 10)

    def forward(self, spectrograms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # spectrograms (B, T, F), zero-padded after each recording's ``lengths`` frames.
        features = self.grid(spectrograms)  # (B, T, bands, 2 · hidden)
        last = features[torch.arange(len(lengths)), lengths - 1]  # (B, bands, 2 · hidden)
        return self.head(last.flatten(1))


def data_folder(given: str | None) -> Path:
    """``--data``, else ``$RNNLAB_DATA``, else the shared data folder beside the repository."""
    if given:
        return Path(given)
    return data_dir() or Path(__file__).resolve().parents[2] / "shared" / "data"


def spectrogram_batches(folder: Path, split: str, batch_size: int):
    """(spectrograms (B, T, 40), lengths (B,), digits (B,)) from FSDD, or random ones."""
    if (folder / "fsdd").is_dir():
        task = rnnlab.tasks.make("fsdd", path=folder / "fsdd", download=False)
        for batch in task.batches(split, batch_size):
            yield batch.inputs.transpose(0, 1), batch.lengths, batch.targets
    else:
        generator = torch.Generator().manual_seed(0 if split == "train" else 1)
        while True:
            lengths = torch.randint(20, 60, (batch_size,), generator=generator)
            frames = torch.randn(batch_size, 60, 40, generator=generator)
            frames = frames * (torch.arange(60)[:, None] < lengths[:, None, None])
            yield frames, lengths, torch.randint(0, 10, (batch_size,), generator=generator)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder holding fsdd/")
    parser.add_argument("--steps", type=int, default=30, help="training batches")
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
    if not (folder / "fsdd").is_dir():
        print(f"no {folder / 'fsdd'}: random spectrograms, so the accuracy means nothing")
    model = DigitRecogniser(40, 10, 6, args.hidden_size, args.num_layers)
    print(
        f"SpectrogramGridLSTM, 2 corners, {args.num_layers} layers of {args.hidden_size}: "
        f"{sum(p.numel() for p in model.parameters())} parameters"
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    train = spectrogram_batches(folder, "train", args.batch_size)
    for step in range(1, args.steps + 1):
        spectrograms, lengths, digits = next(train)
        loss = nn.functional.cross_entropy(model(spectrograms, lengths), digits)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 10 == 0 or step == 1:
            print(f"step {step:4d}  train loss {loss.item():.3f}")

    correct = total = 0
    with torch.no_grad():
        valid = spectrogram_batches(folder, "valid", 100)
        for spectrograms, lengths, digits in (next(valid) for _ in range(2)):
            correct += (model(spectrograms, lengths).argmax(-1) == digits).sum().item()
            total += len(digits)
    print(f"valid accuracy on {total} recordings: {correct / total:.3f}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
