"""Peak training memory of rnnlab ``lstm`` against torch.nn.LSTM (issue 11's memory goal).

Each model runs in its own process (max RSS only grows): two forward + backward passes over
x (T, B, I); printed is the increase of the process's max RSS over what it held before.

    python benchmarks/peak_memory.py                  # T=1000, B=32, I=128, H=256, 1 thread
    python benchmarks/peak_memory.py --steps 500 --hidden 512
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys


def measure(which: str, T: int, B: int, I: int, H: int) -> float:
    """MB by which this process's max RSS grows over two training passes of ``which``."""
    import torch

    import rnnlab

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(T, B, I)
    model = torch.nn.LSTM(I, H) if which == "nn.LSTM" else rnnlab.RNN("lstm", I, H)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(2):
        model.zero_grad()
        output, _ = model(x)
        output.sum().backward()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--input", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--one", choices=["nn.LSTM", "rnnlab lstm"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from rnnlab import machine  # here: the measured children import torch themselves

    print(machine.line())  # the CPU model, threads and load: a speed claim names them
    sizes = (args.steps, args.batch, args.input, args.hidden)
    if args.one:
        print(f"{measure(args.one, *sizes):.0f}")
        return
    results = {}
    for which in ("nn.LSTM", "rnnlab lstm"):
        out = subprocess.run([sys.executable, __file__, "--one", which, "--steps", str(sizes[0]),
                              "--batch", str(sizes[1]), "--input", str(sizes[2]),
                              "--hidden", str(sizes[3])], capture_output=True, text=True,
                             env=os.environ, check=True)
        results[which] = float(out.stdout.strip())
    print(f"T={sizes[0]} B={sizes[1]} I={sizes[2]} H={sizes[3]}: max RSS increase over two "
          "training passes")
    for which, mb in results.items():
        print(f"  {which:<12} +{mb:.0f} MB  ({mb / results['nn.LSTM']:.2f}x nn.LSTM)")


if __name__ == "__main__":
    main()
