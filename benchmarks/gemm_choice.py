"""The native loop's GEMM chosen per machine and shape (issue 23): for each shape, MKL's packed
weights against plain sgemm (what ``RNNLAB_NATIVE_PACK=auto`` measures and keeps), then whole
training steps of an LSTM with the GEMMs always packed (the old behaviour) against ``auto``,
interleaved round after round in one process, medians:

    python benchmarks/gemm_choice.py                  # the default shapes, 1 thread
    python benchmarks/gemm_choice.py --lstm 8:1024 32:256 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import rnnlab
from rnnlab import machine
from rnnlab.engine.fast import native

# (rows, n, k): the recurrent GEMM of an LSTM step (n = 4H, k = H) at a few batch sizes
SHAPES = [(1, 512, 128), (32, 512, 128), (32, 1024, 256), (128, 1024, 256), (32, 2048, 512),
          (8, 4096, 1024), (32, 4096, 1024)]


def train_step(model, x) -> float:
    start = time.perf_counter()
    out, _ = model(x)
    out.square().mean().backward()
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lstm", nargs="*", default=["8:1024", "128:256", "32:256"],
                        help="B:H of the LSTM training steps timed (T = 50, input H)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(machine.line())  # the CPU model, threads and load: a speed claim names them
    if native.load() is None or not native._state["packs"][0]:
        print("no native loop or no packed-GEMM API here:", native.why_unavailable())
        return
    print("\nrows x n x k      packed (us)  plain (us)  packed/plain  auto picks")
    for m, n, k in SHAPES:
        packed, plain = native.gemm_times(m, n, k, fresh=True)  # (kept for auto)
        pick = "packed" if native.packed_is_faster(m, [(n, k)]) else "plain"
        print(f"{m:>4} x {n:>4} x {k:>4}  {packed * 1e6:11.1f}  {plain * 1e6:10.1f}  "
              f"{packed / plain:12.2f}  {pick}")
    print("\nLSTM training step, T = 50 (median of rounds; packed = the GEMM before this choice)")
    print("   B     H   packed (ms)  auto (ms)  auto/packed")
    for spec in args.lstm:
        B, H = (int(v) for v in spec.split(":"))
        model = rnnlab.RNN("lstm", H, H)
        x = torch.randn(50, B, H)
        times: dict = {"1": [], "auto": []}
        for r in range(args.rounds + 1):
            for pack in times:
                with rnnlab.engine.backend("native", native_pack=pack):
                    elapsed = train_step(model, x)
                if r:  # the first round warms up (and measures the shapes for auto)
                    times[pack].append(elapsed)
        packed, auto = statistics.median(times["1"]), statistics.median(times["auto"])
        print(f"{B:>4} {H:>5} {packed * 1e3:13.2f} {auto * 1e3:10.2f} {auto / packed:12.2f}")


if __name__ == "__main__":
    main()
