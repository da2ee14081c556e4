"""Issue 15: a dilated layer runs at the speed per FLOP of the undilated one.

A layer of dilation d is the same cell over d interleaved sub-sequences, laid side by side as
d·B rows (rnnlab/engine/dilation.py): the same GEMM work as the undilated layer, T/d steps of
d times the rows. This benchmark times rnnlab.RNN with dilations (d,) for d = 1, 2, 4, 8 and
torch.nn.LSTM (d = 1 only) in one process, interleaved round after round (best of the rounds,
see speed.py's best_times), training (forward + backward of the summed outputs) and
inference, and prints tokens/s and the ratio to rnnlab's own d = 1 layer.

    python benchmarks/dilation_speed.py                       # T=128 B=32 I=H=256, 1 thread
    python benchmarks/dilation_speed.py --hidden 512 --threads 2 --repeat 7
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from speed import best_times, run_once  # noqa: E402

import rnnlab  # noqa: E402
from rnnlab import machine  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--dilations", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine.line())  # the CPU model, threads and load: a speed claim names them
    torch.manual_seed(0)
    H = args.hidden
    x = torch.randn(args.steps, args.batch, H)
    models = {f"d={d}": rnnlab.RNN(args.cell, H, H, dilations=(d,)) for d in args.dilations}
    if args.cell == "lstm":
        models["nn.LSTM"] = torch.nn.LSTM(H, H)
    tokens = args.steps * args.batch
    print(f"T={args.steps} B={args.batch} I=H={H} cell={args.cell} threads={args.threads}")
    print(f"{'model':>10} {'train tok/s':>12} {'vs d=1':>7} {'infer tok/s':>12} {'vs d=1':>7}")
    results = {}
    for train in (True, False):
        entries = {name: (lambda m=m, t=train: run_once(m, x, t)) for name, m in models.items()}
        results[train] = best_times(entries, args.repeat, 4 * args.repeat)
    base = f"d={args.dilations[0]}"
    for name in models:
        cols = []
        for train in (True, False):
            rate = tokens / results[train][name]
            cols += [f"{rate:12,.0f}", f"{results[train][base] / results[train][name]:7.2f}"]
        print(f"{name:>10} " + " ".join(cols))


if __name__ == "__main__":
    main()
