"""One step at a time (sampling, streaming): per-step latency of T=1, B=1 calls with the state
carried, under ``torch.inference_mode``, against torch.nn.LSTM of the same size (issue 11).

torch.nn.LSTM on the CPU has two paths: oneDNN's RNN (the default where torch has oneDNN) and
torch's own loop (``torch.backends.mkldnn.flags(enabled=False)``). oneDNN is the faster one on
whole sequences, but one step at a time it is 2-5x slower here (it prepares the weights on every
call), so both are timed and the ratios are against the faster of the two ("best nn.LSTM").

Peers run interleaved, round after round, each keeping its best round, all in one process:

    python benchmarks/step_latency.py                      # H = 128 and 512, 3 layers, 1 thread
    python benchmarks/step_latency.py --hidden 64 1024 --layers 2 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import time
import warnings

import torch

import rnnlab
from rnnlab import machine


class WithoutOneDNN(torch.nn.Module):
    """``module`` with oneDNN switched off: torch.nn.LSTM's own CPU loop. The switch is made
    once around the timed calls (``switched``), as a user would, not on every call (entering
    torch's flags context and a warnings filter per call costs ~20 µs, which the peer would
    pay and a user would not)."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args):
        return self.module(*args)

    @staticmethod
    @contextlib.contextmanager
    def switched():
        with warnings.catch_warnings():  # torch notes that oneDNN's TF32 needs an Intel GPU
            warnings.simplefilter("ignore", UserWarning)
            with torch.backends.mkldnn.flags(enabled=False):
                yield


def per_step(model, x, calls: int) -> float:
    """Seconds per call of ``model`` on x with its state carried from call to call."""
    with torch.inference_mode(), getattr(model, "switched", contextlib.nullcontext)():
        _, state = model(x)
        start = time.perf_counter()
        for _ in range(calls):
            _, state = model(x, state)
        return (time.perf_counter() - start) / calls


class LayerGemms(torch.nn.Module):
    """Only the GEMMs of a layer stack's step: per layer ``addmm`` of (1, k) by (k, n) — an
    LSTM layer's (2H, 4H), a 2-D grid layer's (2H, 8H) — the arithmetic floor that the whole
    step's other work (gates, slicing, dispatch) adds to. Called like the models."""

    def __init__(self, layers: int, rows: int, cols: int):
        super().__init__()
        self.w = [torch.randn(rows, cols) for _ in range(layers)]
        self.b = [torch.randn(cols) for _ in range(layers)]
        self.h = torch.randn(1, rows)

    def forward(self, x, state=None):
        for w, b in zip(self.w, self.b):
            torch.addmm(b, self.h, w)
        return x, state


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200, help="calls per round")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine.line())  # the CPU model, threads and load: a speed claim names them
    torch.manual_seed(0)
    print(f"T=1, B=1, {args.layers} layers, {args.threads} thread(s), inference_mode; best of "
          f"{args.rounds} rounds of {args.calls} calls, and the median round")
    print(f"{'H':>6} {'model':<16} {'µs/step':>10} {'median':>10} {'× best nn.LSTM':>15}")
    for H in args.hidden:
        lstm = torch.nn.LSTM(H, H, args.layers)
        models = {
            "nn.LSTM": lstm,
            "nn.LSTM no oneDNN": WithoutOneDNN(lstm),
            "rnnlab lstm": rnnlab.RNN("lstm", H, H, num_layers=args.layers),
            "rnnlab gru": rnnlab.RNN("gru", H, H, num_layers=args.layers),
            "GridLSTM": rnnlab.GridLSTM(H, H, args.layers),
            # the arithmetic alone: each layer's GEMM of one row (what the goals leave for the
            # rest of a step is the peer's time minus these)
            "LSTM GEMMs only": LayerGemms(args.layers, 2 * H, 4 * H),
            "grid GEMMs only": LayerGemms(args.layers, 2 * H, 8 * H),
        }
        x = torch.randn(1, 1, H)
        times = {name: [] for name in models}
        for model in models.values():  # warm up: plans, native library, caches
            per_step(model, x, 5)
        for _ in range(args.rounds):
            for name, model in models.items():
                times[name].append(per_step(model, x, args.calls))
        base = min(min(times["nn.LSTM"]), min(times["nn.LSTM no oneDNN"]))
        for name, values in times.items():
            values.sort()
            best, median = values[0], values[len(values) // 2]
            print(f"{H:>6} {name:<16} {best * 1e6:>10.0f} {median * 1e6:>10.0f} "
                  f"{best / base:>15.2f}")


if __name__ == "__main__":
    main()
