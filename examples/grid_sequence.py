"""A 2-D Grid LSTM (time × depth) as a character language model, trained for a few steps.

The seed deck's experiment in miniature: next-character prediction on Tiny Shakespeare with a
3-layer Grid LSTM, carrying the state across batches (truncated BPTT, detached between
batches). Without the data folder it trains on the Grid LSTM paper's 15-digit addition task
(generated) instead. About 20 s on 2 CPU cores::

    python examples/grid_sequence.py
    python examples/grid_sequence.py --steps 2000 --hidden-size 256   # a real run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

import rnnlab.tasks
from rnnlab.grid import GridLSTM
from rnnlab.tasks.download import data_dir


class CharModel(nn.Module):
    """Embedding → GridLSTM → logits over the vocabulary."""

    def __init__(self, vocab_size: int, hidden_size: int, num_layers: int, tied: bool):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden_size)
        self.grid = GridLSTM(hidden_size, hidden_size, num_layers, tied=tied)
        self.head = nn.Linear(self.grid.output_size, vocab_size)

    def forward(self, tokens, state=None):
        output, state = self.grid(self.embedding(tokens), state)  # (T, B, H)
        return self.head(output), state


def data_folder(given: str | None) -> Path:
    """``--data``, else ``$RNNLAB_DATA``, else the shared data folder beside the repository."""
    if given:
        return Path(given)
    return data_dir() or Path(__file__).resolve().parents[2] / "shared" / "data"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="folder holding tinyshakespeare/input.txt")
    parser.add_argument("--steps", type=int, default=50, help="training batches")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64, help="truncated-BPTT length")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=3)
    parser.add_argument("--tied", action="store_true", help="one block's weights at every layer")
    parser.add_argument("--lr", type=float, default=3e-3)
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

    text = data_folder(args.data) / "tinyshakespeare"
    if (text / "input.txt").exists():
        task = rnnlab.tasks.make("tinyshakespeare", path=text, download=False)
    else:
        print(f"no {text / 'input.txt'}: training on generated 15-digit addition instead")
        task = rnnlab.tasks.make("addition")
    print(f"task: {task!r}")
    model = CharModel(len(task.vocab), args.hidden_size, args.num_layers, args.tied)
    print(
        f"GridLSTM, {args.num_layers} layers of {args.hidden_size}, tied={args.tied}: "
        f"{sum(p.numel() for p in model.parameters())} parameters"
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

    state = None
    batches = task.batches("train", args.batch_size, seq_len=args.seq_len)
    for step in range(1, args.steps + 1):
        batch = next(batches)
        # Continue the same character streams: keep the state, cut its history.
        state = rnnlab.detach(state) if batch.continues else None
        logits, state = model(batch.inputs, state)
        loss = task.loss(logits, batch)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 10 == 0 or step == 1:
            print(f"step {step:4d}  train loss {loss.item():.3f} nats/symbol")

    metric = task.metric()
    state = None
    with torch.no_grad():
        for i, batch in enumerate(task.batches("valid", args.batch_size, seq_len=args.seq_len)):
            state = state if batch.continues else None
            logits, state = model(batch.inputs, state)
            metric.update(logits, batch)
            if i == 9:  # a slice of the validation split keeps the example short
                break
    scores = ", ".join(f"{k} {v:.3f}" for k, v in metric.compute().items())
    print(f"valid (first 10 batches): {scores}")
    print(f"done in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
