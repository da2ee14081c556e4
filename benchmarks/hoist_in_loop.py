"""The input projection inside the native loop against one GEMM over all rows beforehand.

Times rnnlab's ``lstm`` (from the same torch.nn.LSTM weights) with the native loop computing
``X_t = x_t W + b`` step by step (``NativeLoops.hoists_in_loop = True``, the default) and with
the projection done by one torch GEMM over all T·B rows before the loop (``False``), and
torch.nn.LSTM, interleaved call after call in one process; prints median milliseconds and each
variant's tokens/s over nn.LSTM's.

    python benchmarks/hoist_in_loop.py                      # 1 thread, inference
    python benchmarks/hoist_in_loop.py --threads 2 --train
"""

from __future__ import annotations

import argparse
import statistics

import torch
from speed import run_once  # the same timed pass as speed.py
from torch import nn

import rnnlab
from rnnlab import machine
from rnnlab.engine.fast import native


def timer(model, x: torch.Tensor, train: bool, in_loop: bool | None = None):
    """A callable timing one pass of ``model`` on x (with the given native hoist setting)."""
    def run() -> float:
        if in_loop is not None:
            native.NativeLoops.hoists_in_loop = in_loop
        return run_once(model, x, train)
    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train", action="store_true", help="forward + backward (default: "
                        "inference under no_grad)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    if native.load() is None:
        raise SystemExit(f"the native engine is unavailable: {native.why_unavailable()}")
    torch.set_num_threads(args.threads)
    print(machine.line())  # the CPU model, threads and load: a speed claim names them
    torch.manual_seed(0)
    T, B, I = 100, 32, 128
    print(f"T={T} B={B} I={I}, {args.threads} thread(s), "
          f"{'training' if args.train else 'inference'}; median ms of {args.rounds} rounds")
    for H in args.hidden:
        x = torch.randn(T, B, I, requires_grad=args.train)
        reference = nn.LSTM(I, H)
        ours = rnnlab.RNN.from_torch(reference)

        runs = {"nn.LSTM": timer(reference, x, args.train),
                "all rows before": timer(ours, x, args.train, False),
                "in the loop": timer(ours, x, args.train, True)}
        times: dict = {name: [] for name in runs}
        try:
            for run in runs.values():  # warm-up
                run()
            for _ in range(args.rounds):
                for name, run in runs.items():
                    times[name].append(run())
        finally:
            native.NativeLoops.hoists_in_loop = True
        median = {name: statistics.median(v) for name, v in times.items()}
        print(f"H={H:>5}  " + "  ".join(
            f"{name} {median[name] * 1e3:8.2f} ms ({median['nn.LSTM'] / median[name]:.2f})"
            for name in runs))


if __name__ == "__main__":
    main()
