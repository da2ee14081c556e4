"""Training throughput of rnnlab's ``lstm`` against its peers, in one process.

Peers: torch.nn.LSTM (C++ loop), and a hand-written Python loop over torch.nn.LSTMCell.
Each measures tokens/s of a training step (forward + backward of the sum of outputs) on the
same input; the table reports ratios to torch.nn.LSTM. Timings are the best of ``--repeat``
runs so that other load on the machine disturbs them less.

    python benchmarks/lstm_speed.py                      # T=100, B=32, I=128, H=128 and 256
    python benchmarks/lstm_speed.py --hidden 512 --repeat 5
"""

from __future__ import annotations

import argparse

import torch
from speed import LSTMCellLoop, run_once  # the same peer and timing as speed.py
from torch import nn

import rnnlab
from rnnlab import machine


def tokens_per_second(model: nn.Module, x: torch.Tensor, repeat: int, train: bool) -> float:
    """Best-of-``repeat`` throughput of one forward (+ backward when training)."""
    model.train(train)
    run_once(model, x, train)  # warm-up, not counted
    best = min(run_once(model, x, train) for _ in range(repeat))
    return x.shape[0] * x.shape[1] / best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="sequence length T")
    parser.add_argument("--batch", type=int, default=32, help="batch size B")
    parser.add_argument("--input", type=int, default=128, help="input size I")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 256], help="hidden sizes")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (best is kept)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine.line())  # the CPU model, threads and load: a speed claim names them
    torch.manual_seed(0)
    print(f"T={args.steps} B={args.batch} I={args.input} threads={torch.get_num_threads()} "
          f"torch {torch.__version__}; tokens/s, best of {args.repeat}")
    header = f"{'H':>5} {'mode':>9} {'model':>22} {'tokens/s':>10} {'vs nn.LSTM':>10}"
    print(header)
    print("-" * len(header))
    for H in args.hidden:
        x = torch.randn(args.steps, args.batch, args.input)
        reference = nn.LSTM(args.input, H)
        models = {
            "torch.nn.LSTM": reference,
            "rnnlab lstm": rnnlab.RNN.from_torch(reference),
            "python LSTMCell loop": LSTMCellLoop(args.input, H),
        }
        for train in (True, False):
            mode = "train" if train else "inference"
            base = None
            for name, model in models.items():
                speed = tokens_per_second(model, x, args.repeat, train)
                base = base or speed
                print(f"{H:>5} {mode:>9} {name:>22} {speed:>10.0f} {speed / base:>10.2f}")


if __name__ == "__main__":
    main()
