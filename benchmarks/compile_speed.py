"""rnnlab under ``torch.compile`` against eager, in one process.

A 2-layer rnnlab ``lstm`` (input 64, hidden 128) with a linear head, T=50, B=16: eager and
``torch.compile(model, fullgraph=True)`` (inductor by default) run interleaved call after call,
training (forward + backward of the mean output) and inference (no_grad); prints the compile
time and the median milliseconds of each, and compiled over eager. The fused engine is one
custom op to the compiler (``rnnlab::sequence``), so what compiling can change is the graph
around it.

    python benchmarks/compile_speed.py                    # 1 thread, inductor, 31 calls each
    python benchmarks/compile_speed.py --backend aot_eager --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import rnnlab
from rnnlab import machine


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = rnnlab.RNN("lstm", 64, 128, num_layers=2)
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--calls", type=int, default=31, help="timed calls of each (median)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine.line())  # the CPU model, threads and load: a speed claim names them
    torch.manual_seed(0)
    model = Model()
    x = torch.randn(50, 16, 64)
    compiled = torch.compile(model, fullgraph=True, backend=args.backend)
    print(f"T=50 B=16, 2 x lstm(64 -> 128) + linear, {args.threads} thread(s), "
          f"backend {args.backend}; median ms of {args.calls} calls")
    for mode in ("training", "inference"):
        def call(m, mode=mode):
            start = time.perf_counter()
            if mode == "training":
                model.zero_grad(set_to_none=True)
                m(x).mean().backward()
            else:
                with torch.no_grad():
                    m(x)
            return time.perf_counter() - start

        compile_seconds = call(compiled)  # the first call compiles
        call(model)
        times: dict = {"eager": [], "compiled": []}
        for _ in range(args.calls):
            times["eager"].append(call(model))
            times["compiled"].append(call(compiled))
        eager, comp = (statistics.median(times[k]) for k in ("eager", "compiled"))
        print(f"{mode:>9}: compile {compile_seconds:5.1f} s; eager {eager * 1e3:6.2f} ms, "
              f"compiled {comp * 1e3:6.2f} ms, compiled / eager {comp / eager:.2f}")


if __name__ == "__main__":
    main()
