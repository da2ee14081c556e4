"""The native step against the routes it replaced: one step without gradients, per layer call.

``rnnlab.engine`` runs a single step without gradients (T = 1, sampling, streaming) on the
native loop's prepared tables (the route table's ``native step``, ``fused.one_step``). Before
it, such a step ran the plan's instructions as torch ops (the ``small step``, up to 4,096
values) or the fused engine with its per-call setup. This times both on one ``rnnlab.RNN``
layer per shape, in one process, interleaved round after round (the order alternating), the
old routes obtained by telling the route table that no plan prepares steps; it prints the best
round of each and their ratio (new / old; below 1 is faster)::

    python benchmarks/native_step.py                       # lstm and gru, H 64 and 256
    python benchmarks/native_step.py --cells lstm --hidden 128 --batch 1 8 --rounds 9
"""

from __future__ import annotations

import argparse
import time

import torch

import rnnlab
from rnnlab import machine
from rnnlab.engine import fused


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru"])
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine.line(), flush=True)
    prepares = fused.prepares_steps
    switch = {"on": True}
    fused.prepares_steps = lambda comp: switch["on"] and prepares(comp)
    print(f"{'cell':>6} {'H':>5} {'B':>5} {'old µs':>9} {'native step µs':>15} {'new/old':>8}")
    try:
        for name in args.cells:
            for H in args.hidden:
                net = rnnlab.RNN(name, H, H)
                for B in args.batch:
                    x = torch.randn(1, B, H)
                    calls = max(50, 20000 // (B * H // 64 + 10))
                    best = {True: float("inf"), False: float("inf")}
                    with torch.inference_mode():
                        for r in range(args.rounds):
                            for on in ((True, False) if r % 2 else (False, True)):
                                switch["on"] = on
                                _, state = net(x)
                                for _ in range(20):
                                    _, state = net(x, state)
                                start = time.perf_counter()
                                for _ in range(calls):
                                    _, state = net(x, state)
                                best[on] = min(best[on], (time.perf_counter() - start) / calls)
                    print(f"{name:>6} {H:5d} {B:5d} {best[False] * 1e6:9.1f} "
                          f"{best[True] * 1e6:15.1f} {best[True] / best[False]:8.2f}", flush=True)
    finally:
        fused.prepares_steps = prepares


if __name__ == "__main__":
    main()
