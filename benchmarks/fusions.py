"""The plan's layer-norm fusions on and off: training steps of one model, in one process.

The fused engine's plan joins instructions of layer norm into row instructions
(``rnnlab.engine.fast.plan``): ``fuse_norms`` (a norm and the product with its gain) and
``fuse_gains`` (that product and the sum that reads it; the backward's product dy ⊙ g and the
norm's adjoint). This times a training step (forward and backward, T × B tokens) of each
model with the fusions as they are and with ``fuse_gains`` (``--off gains``) or both
(``--off both``) switched off, in one process, round after round in alternating order (the
plans made anew at every switch, a warm-up step after it), and prints the medians and the
ratio of tokens/s (with / without; above 1 is faster) beside the plain model's, so that each
is also a fraction of the plain cell's speed::

    python benchmarks/fusions.py                          # LSTM, GRU, 2-layer grid; H = 256
    python benchmarks/fusions.py --models lstm --layer-norm joint --rounds 15
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import rnnlab
from rnnlab import machine
from rnnlab.engine import fused
from rnnlab.engine.fast import plan
from rnnlab.grid import GridLSTM


def _model(name: str, I: int, H: int, layer_norm) -> torch.nn.Module:
    if name == "grid":
        return GridLSTM(I, H, 2, layer_norm=layer_norm)
    return rnnlab.RNN(name, I, H, layer_norm=layer_norm)


def _step_seconds(model: torch.nn.Module, x: torch.Tensor, steps: int) -> float:
    """Seconds of one training step (forward, backward), the mean over ``steps`` after one."""
    def once():
        y, _ = model(x)
        y.pow(2).mean().backward()

    once()
    start = time.perf_counter()
    for _ in range(steps):
        once()
    return (time.perf_counter() - start) / steps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lstm", "gru", "grid"],
                        help="registered cells (one rnnlab.RNN layer) or 'grid' (2-layer GridLSTM)")
    parser.add_argument("--layer-norm", default="gate", choices=["gate", "joint"])
    parser.add_argument("--off", default="gains", choices=["gains", "both"],
                        help="the fusions switched off in the 'without' rounds")
    parser.add_argument("--steps", type=int, default=100, help="sequence length T")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--per-round", type=int, default=3, help="timed steps per round")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine.line(), flush=True)  # the CPU model, threads and load: a speed claim names them
    print(f"T={args.steps} B={args.batch} I={args.input} H={args.hidden}, layer_norm="
          f"{args.layer_norm}, off: {args.off}; medians of {args.rounds} rounds")
    passes = {"fuse_gains": plan.fuse_gains, "fuse_norms": plan.fuse_norms}
    off = ("fuse_gains",) if args.off == "gains" else ("fuse_gains", "fuse_norms")

    def switch(on: bool) -> None:
        for name, function in passes.items():
            setattr(plan, name, function if on or name not in off else (lambda code, *_: code))
        fused._CACHE.clear()  # the plans made anew with or without the fusions
        fused._PLANS.clear()

    tokens = args.steps * args.batch
    print(f"{'model':>6} {'plain tok/s':>12} {'without':>9} {'with':>9} {'with/without':>13} "
          f"{'without/plain':>14} {'with/plain':>11}", flush=True)
    try:
        for name in args.models:
            torch.manual_seed(0)
            x = torch.randn(args.steps, args.batch, args.input)
            plain = _model(name, args.input, args.hidden, False)
            normed = _model(name, args.input, args.hidden, args.layer_norm)
            times: dict = {"plain": [], True: [], False: []}
            for r in range(args.rounds):
                order = (True, False) if r % 2 else (False, True)
                times["plain"].append(_step_seconds(plain, x, args.per_round))
                for on in order:
                    switch(on)
                    times[on].append(_step_seconds(normed, x, args.per_round))
            median = {k: statistics.median(v) for k, v in times.items()}
            print(f"{name:>6} {tokens / median['plain']:12.0f} {tokens / median[False]:9.0f} "
                  f"{tokens / median[True]:9.0f} {median[False] / median[True]:13.3f} "
                  f"{median['plain'] / median[False]:14.3f} "
                  f"{median['plain'] / median[True]:11.3f}", flush=True)
    finally:
        switch(True)


if __name__ == "__main__":
    main()
