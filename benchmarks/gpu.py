"""Issue 24: every zoo cell on a GPU against cuDNN's torch.nn.LSTM, forward and forward+backward.

One command, under 8 minutes on one GPU (a time budget skips what would not fit, and says so):

    python benchmarks/gpu.py                              # CUDA, (B, T, H) = (16, 1024, 768),
                                                          #   (64, 100, 512), (64, 100, 1024)
    python benchmarks/gpu.py --cells lstm gru mut1        # some cells only
    python benchmarks/gpu.py --device cpu --small         # a smoke test on the CPU, seconds

For each size, one layer of each model (input size = H) runs on x of shape (T, B, H), the peers
interleaved call after call for ``--repeats`` rounds after one warm-up call each; the median
time of each gives tokens/s (B·T per call) and the ratio to torch.nn.LSTM (cuDNN on CUDA).
Modes: ``fwd`` = forward under no_grad; ``fwd+bwd`` = forward and backward of the mean output,
with the parameters' gradients. ``/FLOP`` is the same ratio per FLOP of the GEMMs (2 per
weight-matrix entry and token; a cell with more matrices than the LSTM does more work per
token). ``route`` is what ``rnnlab.engine.explain`` says runs the cell on this device: ``cudnn``
for the cells cuDNN computes, otherwise today's fallback. ``--cuda-graphs`` adds a peer
``CELL +graphs`` for every cell on the generated Triton route: the same module with its step
loops replayed from CUDA graphs (``rnnlab.engine.backend(cuda_graphs=True)``; captured on the
second call of a buffer layout, so the warm-up and the first round pay for the capture).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
import warnings

import torch
from torch import nn

import rnnlab
from rnnlab import machine

SIZES = ((16, 1024, 768), (64, 100, 512), (64, 100, 1024))  # (B, T, H); FlashRNN's first
SMALL_SIZES = ((2, 8, 16), (4, 5, 8))
BASELINE = "nn.LSTM"
GRAPHS = " +graphs"  # the suffix of a peer run with CUDA graphs
# torch's warning when the weights handed to cuDNN are not laid out as one buffer of its own
# layout: cuDNN then copies them on every call (correct, slower)
COMPACTED = "not part of single contiguous chunk of memory"


def device_line(device: torch.device) -> str:
    """The accelerator a number was measured on (the GPU model, CUDA and cuDNN versions)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return (f"GPU {props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA "
                f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    return f"no GPU: device {device} (a smoke test; these numbers say nothing of GPU speed)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make(name: str, H: int) -> nn.Module:
    if name == BASELINE:
        return nn.LSTM(H, H)
    try:
        return rnnlab.RNN(name, H, H)
    except ValueError:  # MUT1/MUT2 read the raw input: learn a projection where needed
        return rnnlab.RNN(name, H, H, raw_input="project")


def gemm_flops_per_token(model: nn.Module) -> int:
    """Forward FLOPs per token of the model's GEMMs: 2 per weight-matrix entry."""
    return sum(2 * p.numel() for p in model.parameters() if p.dim() == 2)


def route_of(name: str, model: nn.Module, device: torch.device) -> str:
    """The route's name (``cudnn``, ``fused (native)``, ``reference`` …) for the report."""
    if name == BASELINE:
        return "cudnn" if device.type == "cuda" else "torch"
    return rnnlab.engine.explain(model.cells["layer0"], device=device).split(":")[0]


def call(model: nn.Module, x: torch.Tensor, backward: bool, device: torch.device,
         graphs: bool = False) -> float:
    """Seconds of one forward (no_grad) or forward+backward call, the device synchronised;
    ``graphs``: with the Triton route's loops replayed from CUDA graphs."""
    switch = rnnlab.engine.backend(cuda_graphs=True) if graphs else contextlib.nullcontext()
    synchronize(device)
    start = time.perf_counter()
    with switch:
        if backward:
            out, _ = model(x)
            out.mean().backward()
        else:
            with torch.no_grad():
                model(x)
    synchronize(device)
    return time.perf_counter() - start


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, cpu")
    parser.add_argument("--small", action="store_true",
                        help=f"tiny sizes {SMALL_SIZES} instead of {SIZES}: a smoke test")
    parser.add_argument("--sizes", nargs="+", metavar="B,T,H",
                        help="sizes to run instead, e.g. 16,1024,768")
    parser.add_argument("--cells", nargs="+", default=None,
                        help="cells to run (default: every registered cell)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (medians)")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds after which the remaining measurements are skipped")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="also time each Triton-route cell with its loops in CUDA graphs")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device is available; run with --device cpu --small for the "
                     "smoke test")
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes]
    else:
        sizes = SMALL_SIZES if args.small else SIZES
    cells = args.cells or rnnlab.cells.names()
    began = time.perf_counter()
    print(machine.line())  # the CPU, threads and load: a speed claim names its machine
    print(device_line(device))
    print(f"one layer, input size H, float32; median of {args.repeats} interleaved rounds "
          "after one warm-up call each")
    header = (f"{'B':>4} {'T':>5} {'H':>5} {'model':<20} {'route':<15} "
              f"{'mode':<8} {'ms':>9} {'tokens/s':>12} {'x LSTM':>7} {'/FLOP':>6}")
    print(header)
    rows = []
    compacted: set[str] = set()
    for B, T, H in sizes:
        torch.manual_seed(0)
        names = [BASELINE] + [c for c in cells if c != BASELINE]
        models = {name: make(name, H).to(device) for name in names}
        routes = {name: route_of(name, model, device) for name, model in models.items()}
        if args.cuda_graphs:  # the same module again, its loops replayed from CUDA graphs
            for name in [n for n in models if routes[n] == "fused (triton)"]:
                models[name + GRAPHS], routes[name + GRAPHS] = models[name], routes[name]
        x = torch.randn(T, B, H, device=device)
        for mode, backward in (("fwd", False), ("fwd+bwd", True)):
            times: dict[str, list[float]] = {name: [] for name in models}
            skipped = []
            for name, model in models.items():  # warm-up: plans, cuDNN's algorithms, caches
                if time.perf_counter() - began > args.budget:
                    skipped.append(name)
                    continue
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    call(model, x, backward, device, name.endswith(GRAPHS))
                if any(COMPACTED in str(w.message) for w in caught):
                    compacted.add(name)
            for _ in range(args.repeats):
                for name, model in models.items():
                    if name in skipped or time.perf_counter() - began > args.budget:
                        continue
                    times[name].append(call(model, x, backward, device,
                                            name.endswith(GRAPHS)))
            base = times[BASELINE]
            base_median = statistics.median(base) if base else None
            base_flops = gemm_flops_per_token(models[BASELINE])
            for name, model in models.items():
                row = {"B": B, "T": T, "H": H, "model": name, "route": routes[name],
                       "mode": mode, "device": str(device)}
                if not times[name]:
                    row["skipped"] = "time budget"
                    print(f"{B:>4} {T:>5} {H:>5} {name:<20} {routes[name]:<15} {mode:<8} "
                          f"{'skipped (time budget)':>37}")
                    rows.append(row)
                    continue
                median = statistics.median(times[name])
                tokens = B * T / median
                ratio = base_median / median if base_median else float("nan")
                per_flop = ratio * gemm_flops_per_token(model) / base_flops
                row.update(ms=median * 1e3, tokens_per_s=tokens, ratio=ratio,
                           ratio_per_flop=per_flop, rounds=len(times[name]))
                rows.append(row)
                print(f"{B:>4} {T:>5} {H:>5} {name:<20} {routes[name]:<15} {mode:<8} "
                      f"{median * 1e3:>9.2f} {tokens:>12,.0f} {ratio:>7.2f} {per_flop:>6.2f}")
        del models, x
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if compacted:
        print(f"cuDNN copied the assembled weights into its layout on each call for: "
              f"{', '.join(sorted(compacted))} (torch's weight-format warning)")
    print(f"total {time.perf_counter() - began:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"machine": machine.describe(), "device": device_line(device),
                       "rows": rows}, out, indent=1)
    return rows


if __name__ == "__main__":
    main()
