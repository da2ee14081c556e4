"""Issue 6: every cell trains at least as fast as torch.nn.LSTM on CPU, per FLOP.

All figures come from one process. For each hidden size H the peers run interleaved, round
after round, and each keeps its best time (at least ``--repeat`` rounds after one warm-up
round, more while the best times still improve, at most ``--max-repeat``), so that load from
other processes on the machine disturbs the comparison as little as possible. The column
``med`` gives the per-FLOP ratio from the median times of the same rounds instead: a peer
whose times scatter (torch.nn.LSTM at small sizes has rare fast calls) gains from keeping its
best, so the two together say more than either; the mutants' distribution is from medians.

Measured, per model and mode (train = forward + backward of the summed outputs; inference =
forward under no_grad), on x of shape (T, B, I):

* tokens/s, and its ratio to torch.nn.LSTM (goal 1: rnnlab ``lstm`` >= 1.0x);
* achieved GFLOP/s, counting only the model's own GEMM work: forward 2·B·(in·out) per linear
  map per step (= 2·(weight matrix entries) per token), backward twice that; and its ratio
  to torch.nn.LSTM's (goal 2: every registered cell >= 0.9x);
* the share of this machine's GEMM speed for the same shapes (goal 3: >= 80% at H >= 512):
  the time the LSTM's GEMMs alone take, one after the other, each by the fastest of
  torch.mm and the BLAS calls of rnnlab's native loop (packed or not), timed in the same
  rounds (printed for the LSTM-shaped models).

Peers: torch.nn.LSTM, torch.nn.GRU, a hand-written Python loop over nn.LSTMCell, and
torchrecurrent's PeepholeLSTM and MUT1-3 when that package is installed.

    python benchmarks/speed.py                        # defaults: 5-10 minutes on 2 cores
    python benchmarks/speed.py --quick                # a smaller run, about a minute
    python benchmarks/speed.py --hidden 256 --cells lstm gru mut1 --repeat 9
    python benchmarks/speed.py --regularisers --threads 1   # issue 25: each regulariser's
                                                            # training tokens/s vs the plain cell
    python benchmarks/speed.py --regularisers --cells grid  # the same for a 2-layer GridLSTM
    RNNLAB_FAST=python python benchmarks/speed.py     # the engine without its C++ loop
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

import rnnlab
from rnnlab import machine
from rnnlab.engine.fast import native
from rnnlab.grid import GridLSTM


class LSTMCellLoop(nn.Module):
    """The usual hand-written loop: one nn.LSTMCell call per time step."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)

    def forward(self, x):
        h = x.new_zeros(x.shape[1], self.cell.hidden_size)
        c = torch.zeros_like(h)
        outs = []
        for t in range(x.shape[0]):
            h, c = self.cell(x[t], (h, c))
            outs.append(h)
        return torch.stack(outs), (h, c)


def gemm_flops_per_token(model: nn.Module) -> int:
    """Forward FLOPs per token of the model's GEMMs: 2 per weight-matrix entry."""
    return sum(2 * p.numel() for p in model.parameters() if p.dim() == 2)


def rnnlab_model(name: str, I: int, H: int) -> nn.Module:
    try:
        return rnnlab.RNN(name, I, H)
    except ValueError:  # MUT1/MUT2 add the raw input: learn a projection when I != H
        return rnnlab.RNN(name, I, H, raw_input="project")


def mutant_graphs(count: int, I: int, H: int) -> list:
    """Search-made cells: 1-10 mutation steps from each zoo cell in turn (seed 0)."""
    import random

    from rnnlab.lang.mutate import mutate_steps

    rng = random.Random(0)
    zoo = []
    for name in rnnlab.cells.names():
        options = {"raw_input": "project"} if name in ("mut1", "mut2") else {}
        zoo.append(rnnlab.cells.graph(name, I, H, **options))
    return [mutate_steps(zoo[k % len(zoo)], rng, rng.randint(1, 10)) for k in range(count)]


def reads_state_through_a_matrix(model: nn.Module) -> bool:
    """Whether the step of the model's first cell has a GEMM (a matrix applied to the state)."""
    from rnnlab.engine.fast.lanes import step_lanes

    cell = next(iter(model.cells.values()))
    return bool(step_lanes(cell.program).gemms)


def distribution(values: list[float]) -> str:
    """min, deciles 1 and 9, quartiles, median and max of sorted values."""
    q = [values[int(f * (len(values) - 1))] for f in (0, 0.1, 0.25, 0.5, 0.75, 0.9, 1)]
    return (f"min {q[0]:.2f}, 10% {q[1]:.2f}, 25% {q[2]:.2f}, median {q[3]:.2f}, "
            f"75% {q[4]:.2f}, 90% {q[5]:.2f}, max {q[6]:.2f}")


def peers(I: int, H: int, with_torchrecurrent: bool) -> dict[str, nn.Module]:
    models = {"torch.nn.LSTM": nn.LSTM(I, H), "torch.nn.GRU": nn.GRU(I, H),
              "LSTMCell loop": LSTMCellLoop(I, H)}
    if with_torchrecurrent:
        try:
            import torchrecurrent as tr
        except ImportError:
            return models
        models["torchrecurrent PeepholeLSTM"] = tr.PeepholeLSTM(I, H)
        for k in (1, 2, 3):
            models[f"torchrecurrent MUT{k}"] = getattr(tr, f"MUT{k}")(I, H)
    return models


def run_once(model: nn.Module, x: torch.Tensor, train: bool) -> float:
    start = time.perf_counter()
    if train:
        model.zero_grad(set_to_none=True)
        out, _ = model(x)
        out.sum().backward()
    else:
        with torch.no_grad():
            model(x)
    return time.perf_counter() - start


def best_times(entries: dict, rounds: int, max_rounds: int, coarse=(),
               samples: dict | None = None) -> dict[str, float]:
    """Interleaved rounds over ``entries`` (name -> callable returning seconds); the first is a
    warm-up. At least ``rounds`` timed rounds, and more (up to ``max_rounds``) until three
    rounds in a row improve no best time by over 3%: a burst of load from another process then
    costs rounds, not a wrong table. Entries named in ``coarse`` (slow Python loops, far
    behind) run in the first two timed rounds only. ``samples``, when given, receives every
    timed round's seconds per entry."""
    best = {name: float("inf") for name in entries}
    quiet = 0
    for k in range(max_rounds + 1):
        improved = False
        for name, run in entries.items():
            if name in coarse and k > 2:
                continue
            elapsed = run()
            if k and elapsed < 0.97 * best[name]:
                improved = True
            if k:
                best[name] = min(best[name], elapsed)
                if samples is not None:
                    samples.setdefault(name, []).append(elapsed)
        quiet = 0 if improved else quiet + 1
        if k >= rounds and quiet >= 3:
            break
    return best


def gemm_seconds(m: int, n: int, k: int, calls: int) -> float:
    """Time of ``calls`` GEMMs (m×k)·(k×n): the fastest of torch.mm and the native loop's
    BLAS calls (packed and plain), each timed once here."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    reps = max(1, min(calls, 50))
    start = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b, out=out)
    best = (time.perf_counter() - start) / reps
    for packed in (True, False):
        t = native.time_gemm(m, n, k, reps, packed)
        if t is not None:
            best = min(best, t)
    return best * calls


def lstm_gemms(T: int, B: int, I: int, H: int, train: bool):
    """A callable timing the LSTM's GEMMs of one sequence at this machine's GEMM speed."""
    G = 4 * H
    shapes = [(T * B, G, I, 1), (B, G, H, T)]  # input projection; one recurrent GEMM per step
    if train:
        shapes += [(T * B, I, G, 1), (I, G, T * B, 1),  # dx = dX Wᵀ, dW = xᵀ dX
                   (B, H, G, T), (H, G, T * B, 1)]  # dh = dG Rᵀ per step, dR = hᵀ dG
    return lambda: sum(gemm_seconds(*shape) for shape in shapes)


def timed(model: nn.Module, x: torch.Tensor, train: bool):
    def run():
        model.train(train)
        return run_once(model, x, train)
    return run


# Issue 25: each regulariser (a transformation of the cell graph, docs/regularisers.md) at
# p = 0.25 (zoneout 0.1 on every state field), all four dropouts together, layer norm (per
# gate; with zoneout; with the gates' joint statistics), against the same cell unregularised
# (goal: >= 0.85x).
REGULARISERS = {
    "input_dropout": {"input_dropout": 0.25},
    "recurrent_dropout": {"recurrent_dropout": 0.25},
    "output_dropout": {"output_dropout": 0.25},
    "weight_drop": {"weight_drop": 0.25},
    "all four": {"input_dropout": 0.25, "recurrent_dropout": 0.25, "output_dropout": 0.25,
                 "weight_drop": 0.25},
    "zoneout": {"zoneout": 0.1},
    "layer_norm": {"layer_norm": True},
    "layer_norm+zoneout": {"layer_norm": True, "zoneout": 0.1},
    "layer_norm=joint": {"layer_norm": "joint"},  # all gates' statistics (Ba et al.)
}


def _with_cpu_time(run, seconds: list[float]):
    """``run`` (returning wall seconds) that also appends the process's CPU seconds to
    ``seconds``."""
    def measured() -> float:
        start = time.process_time()
        elapsed = run()
        seconds.append(time.process_time() - start)
        return elapsed
    return measured


def regularisers(args, cells: list[str]) -> None:
    """Training tokens/s of each regulariser over the plain cell's, interleaved rounds at each
    --cell-hidden size (the models share their weights). Ratios: of the best times, of the
    median times, ``paired``: the median over rounds of the ratio within each round (the
    regulariser's call and the plain cell's a moment apart, so that load which comes and goes
    on a shared machine moves both), and ``cpu``: the same for the process's CPU time, which
    time slices given to other processes do not count (their pressure on caches and memory
    still does)."""
    T, B, I = args.steps, args.batch, args.input
    # "grid": a 2-layer GridLSTM (rnnlab.grid), whose regularised dimensions leave the block's
    # fused GEMM and run their cells through the engine (docs/regularisers.md)
    def grid(H: int, **options) -> nn.Module:
        return GridLSTM(I, H, 2, **options)

    chosen = {what: options for what, options in REGULARISERS.items()
              if not args.only or what in args.only}
    header = (f"{'H':>5} {'cell':>10} {'regulariser':>18} {'tokens/s':>10} {'best':>6} "
              f"{'median':>6} {'paired':>6} {'cpu':>6}  explain")
    print(header)
    print("-" * len(header))
    for H in args.cell_hidden:
        x = torch.randn(T, B, I)
        for name in cells:
            plain = grid(H) if name == "grid" else rnnlab_model(name, I, H)
            models = {"plain": plain}
            for what, options in chosen.items():
                model = grid(H, **options) if name == "grid" else rnnlab.RNN(name, I, H,
                                                                              **options)
                # the plain cell's weights (layer norm's gains are extra: they stay 1)
                model.load_state_dict(plain.state_dict(), strict=not options.get("layer_norm"))
                models[what] = model
            cpu: dict[str, list[float]] = {}
            entries = {what: _with_cpu_time(timed(model, x, True), cpu.setdefault(what, []))
                       for what, model in models.items()}
            samples: dict = {}
            best = best_times(entries, args.repeat, args.max_repeat, samples=samples)
            median = {what: statistics.median(v) for what, v in samples.items()}
            for what, model in models.items():
                how = ("grid" if name == "grid" else
                       rnnlab.engine.explain(next(iter(model.cells.values()))))
                paired = statistics.median(
                    p / t for p, t in zip(samples["plain"], samples[what], strict=True))
                on_cpu = statistics.median(  # (the first round is the warm-up)
                    p / t for p, t in zip(cpu["plain"][1:], cpu[what][1:], strict=True))
                print(f"{H:>5} {name:>10} {what:>18} {T * B / median[what]:>10.0f} "
                      f"{best['plain'] / best[what]:>6.2f} "
                      f"{median['plain'] / median[what]:>6.2f} {paired:>6.2f} {on_cpu:>6.2f}  "
                      f"{how.split(':')[0]}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="sequence length T")
    parser.add_argument("--batch", type=int, default=32, help="batch size B")
    parser.add_argument("--input", type=int, default=128, help="input size I")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 128, 256, 512, 1024],
                        help="hidden sizes for rnnlab lstm and the peers (goals 1, 3, 5)")
    parser.add_argument("--cells", nargs="*", default=None,
                        help="rnnlab cells for goal 2 (default: every registered cell)")
    parser.add_argument("--cell-hidden", type=int, nargs="+", default=[256],
                        help="hidden sizes at which every cell is measured (goal 2)")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds (best is kept)")
    parser.add_argument("--max-repeat", type=int, default=12,
                        help="more rounds while the best times still improve")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--no-peers", action="store_true", help="only nn.LSTM and rnnlab")
    parser.add_argument("--mutants", type=int, default=0,
                        help="also N random search-made cells (1-10 mutations of zoo cells) at "
                             "the first --cell-hidden size; prints their GFLOP/s distribution")
    parser.add_argument("--quick", action="store_true",
                        help="T=50, H 128 256, cells lstm gru mut1 peephole, 3 rounds")
    parser.add_argument("--regularisers", action="store_true",
                        help="only the regulariser table (issue 25): each regulariser's "
                             "training tokens/s over the plain cell's at --cell-hidden "
                             "(cells: --cells, default lstm gru)")
    parser.add_argument("--only", nargs="+", choices=list(REGULARISERS), default=None,
                        help="with --regularisers: only these regularisers (and the plain cell)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.hidden, args.repeat, args.max_repeat = 50, [128, 256], 3, 6
        args.cells = args.cells or ["lstm", "gru", "mut1", "peephole", "fgr"]
    if args.threads:
        torch.set_num_threads(args.threads)
    cells = args.cells if args.cells is not None else rnnlab.cells.names()
    T, B, I = args.steps, args.batch, args.input
    torch.manual_seed(0)
    engine = rnnlab.engine.get_backend()
    if engine in ("auto", "native"):
        engine += f" (native: {native.why_unavailable()})"
    print(machine.line())
    print(f"T={T} B={B} I={I}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"rnnlab engine {engine}")
    print(f"best of {args.repeat} interleaved rounds; load average at start "
          f"{os.getloadavg()[0]:.1f}")
    started = time.time()
    header = (f"{'H':>5} {'mode':>5} {'model':>28} {'tokens/s':>10} {'vs LSTM':>8} "
              f"{'GFLOP/s':>8} {'/LSTM':>6} {'%peak':>6} {'med':>5}")
    if args.regularisers:
        regularisers(args, args.cells or ["lstm", "gru"])
        print(f"total {time.time() - started:.0f} s; load average at end "
              f"{os.getloadavg()[0]:.1f}")
        return
    print(header)
    print("-" * len(header))
    sizes = sorted(set(args.hidden) | set(args.cell_hidden))
    for H in sizes:
        x = torch.randn(T, B, I)
        models = {"torch.nn.LSTM": nn.LSTM(I, H)} if args.no_peers else peers(
            I, H, with_torchrecurrent=True)
        if H in args.hidden:
            models["rnnlab lstm"] = rnnlab.RNN.from_torch(models["torch.nn.LSTM"])
        if H in args.cell_hidden:
            for name in cells:
                if f"rnnlab {name}" not in models:
                    models[f"rnnlab {name}"] = rnnlab_model(name, I, H)
        if args.mutants and H == args.cell_hidden[0]:
            for k, graph in enumerate(mutant_graphs(args.mutants, I, H)):
                model = rnnlab.RNN(graph, I, H)
                if model(x[:2])[0].requires_grad:  # some mutants no longer read a parameter
                    models[f"mutant {k}"] = model
        if H not in args.hidden:  # only the cells (and nn.LSTM as the reference) here
            models = {k: v for k, v in models.items()
                      if k == "torch.nn.LSTM" or k.startswith("rnnlab")}
        for train in (True, False):
            mode = "train" if train else "infer"
            entries = {name: timed(model, x, train) for name, model in models.items()}
            entries["LSTM GEMMs alone"] = lstm_gemms(T, B, I, H, train)
            slow = {n for n in models if n.startswith(("LSTMCell", "torchrecurrent"))}
            samples: dict = {}
            times = best_times(entries, args.repeat, args.max_repeat, coarse=slow,
                               samples=samples)
            median = {name: statistics.median(v) for name, v in samples.items()}
            peak = times.pop("LSTM GEMMs alone")
            factor = 3 if train else 1
            base = times["torch.nn.LSTM"]
            base_flops = gemm_flops_per_token(models["torch.nn.LSTM"])
            ratios = []
            for name, model in models.items():
                flops = factor * gemm_flops_per_token(model) * T * B
                gflops = flops / times[name] / 1e9
                base_gflops = factor * base_flops * T * B / base / 1e9
                share = factor * base_flops * T * B / peak / 1e9  # peak GFLOP/s, LSTM shapes
                pct = f"{100 * gflops / share:5.0f}%" if "LSTM" in name or name.endswith(
                    " lstm") else ""
                # per-FLOP ratio from the median times (the two models' FLOPs over time)
                med = (gemm_flops_per_token(model) / median[name]) / (
                    base_flops / median["torch.nn.LSTM"])
                if name.startswith("mutant"):
                    if flops:
                        ratios.append((med, reads_state_through_a_matrix(model)))
                    continue
                print(f"{H:>5} {mode:>5} {name:>28} {T * B / times[name]:>10.0f} "
                      f"{base / times[name]:>8.2f} {gflops:>8.1f} {gflops / base_gflops:>6.2f} "
                      f"{pct:>6} {med:>5.2f}", flush=True)
            # all mutants, then apart: those whose step multiplies the state by a matrix (an
            # LSTM's kind of work), and those whose only matrix is the input projection (one
            # GEMM over x, then elementwise work: less GEMM per byte moved)
            for what, group in (("mutants", ratios),
                                ("with a recurrent matrix", [r for r in ratios if r[1]]),
                                ("input projection only", [r for r in ratios if not r[1]])):
                if group:
                    print(f"{H:>5} {mode:>5} {len(group)} {what}, GFLOP/s over nn.LSTM's "
                          f"(medians): {distribution(sorted(r[0] for r in group))}", flush=True)
    print(f"total {time.time() - started:.0f} s; load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
