"""Training speed of the Grid LSTM's schedules against stacked LSTMs, in achieved GFLOP/s.

Measures one forward + backward pass (loss: mean of the output) on x (T, B, input_size) of

- ``GridLSTM(schedule="layerwise")``: one layer at a time, the depth inputs of all T steps in
  one GEMM, one small GEMM per step (L · T steps);
- the same module with ``schedule="wavefront"``: one batched GEMM per anti-diagonal
  (T + L − 1 steps), and ``schedule="naive"``: one block at a time (T · L steps);
- ``torch.nn.LSTM`` with about the same number of parameters (so about the same FLOPs);
- ``rnnlab.RNN("lstm", …)`` likewise, when the tree has it;

all in this process, interleaved round after round so that other load on the machine hits
every model alike, one warm-up round, then ``--repeats`` timed passes each. It prints the
median tokens/s, and achieved GFLOP/s from the median and from the best pass, counting only
each model's own GEMM work: a forward pass does 2 · rows · in · out FLOPs per GEMM (2 per
weight-matrix entry per token, the grid's tied block once per layer), a training pass about
3 × that. Ratios are to torch.nn.LSTM.
Run::

    python benchmarks/grid_schedule.py                       # defaults: about a minute
    python benchmarks/grid_schedule.py --tied
    python benchmarks/grid_schedule.py --hidden-size 256 --seq-len 100 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from rnnlab import machine
from rnnlab.grid import GridLSTM


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def lstm_parameters(input_size: int, hidden_size: int, num_layers: int) -> int:
    """Parameters of ``torch.nn.LSTM(input_size, hidden_size, num_layers)`` (two biases)."""
    first = 4 * hidden_size * (input_size + hidden_size + 2)
    return first + (num_layers - 1) * 4 * hidden_size * (2 * hidden_size + 2)


def matching_lstm_size(target: int, input_size: int, num_layers: int) -> int:
    """The stacked LSTM hidden size whose parameter count is closest to ``target``."""
    sizes = range(1, 8 * int(target**0.5) + 2)
    return min(sizes, key=lambda h: abs(lstm_parameters(input_size, h, num_layers) - target))


def grid_flops_per_token(grid: GridLSTM) -> int:
    """Forward GEMM FLOPs per token: the projection ``I x``, then one block per layer.

    A block's stage GEMMs are (N · d) × out_s: 2 · D · out_s FLOPs each per token, whichever
    schedule splits them into parts.
    """
    block = sum(2 * w.shape[1] * w.shape[2] for w in grid.block.weights)
    return 2 * grid.input_size * grid.hidden_size + grid.num_layers * block


def lstm_flops_per_token(input_size: int, hidden_size: int, num_layers: int) -> int:
    """Forward GEMM FLOPs per token of a stacked LSTM: W x and R h per layer, 4 gates."""
    first = 2 * (input_size + hidden_size) * 4 * hidden_size
    return first + (num_layers - 1) * 2 * (2 * hidden_size) * 4 * hidden_size


def seconds_per_pass(model: nn.Module, x: torch.Tensor, inference: bool = False) -> float:
    """Wall time of one forward + backward pass (loss: mean of the output), or of one forward
    pass under ``torch.inference_mode`` with ``inference``."""
    start = time.perf_counter()
    if inference:
        with torch.inference_mode():
            model(x)
        return time.perf_counter() - start
    output, _ = model(x)
    output.mean().backward()
    return time.perf_counter() - start


class Schedule(nn.Module):
    """A GridLSTM run with a given schedule (the same weights for every schedule)."""

    def __init__(self, grid: GridLSTM, schedule: str):
        super().__init__()
        self.grid, self.schedule = grid, schedule

    def forward(self, x):
        self.grid.schedule = self.schedule
        return self.grid(x)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seq-len", type=int, default=50, help="T, time steps per sequence")
    parser.add_argument("--batch-size", type=int, default=32, help="B, sequences per batch")
    parser.add_argument("--input-size", type=int, default=64, help="features per step")
    parser.add_argument("--hidden-size", type=int, default=128, help="Grid LSTM hidden size")
    parser.add_argument("--num-layers", type=int, default=3, help="L, layers of every model")
    parser.add_argument("--tied", action="store_true", help="tie the grid's weights along depth")
    parser.add_argument("--schedules", nargs="+", default=["layerwise", "wavefront", "naive"])
    parser.add_argument("--repeats", type=int, default=7, help="timed passes per model")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--inference", action="store_true",
                        help="time forward passes under torch.inference_mode instead")
    args = parser.parse_args(argv)
    factor = 1 if args.inference else 3  # training FLOPs = 3 × forward GEMM FLOPs
    torch.set_num_threads(args.threads)
    print(machine.line())  # the CPU model, threads and load: a speed claim names them
    torch.manual_seed(args.seed)

    grid = GridLSTM(args.input_size, args.hidden_size, args.num_layers, tied=args.tied)
    # A tied grid has 1/L of the parameters but the same FLOPs as an untied one: match FLOPs.
    untied = GridLSTM(args.input_size, args.hidden_size, args.num_layers)
    lstm_size = matching_lstm_size(count_parameters(untied), args.input_size, args.num_layers)
    lstm_flops = lstm_flops_per_token(args.input_size, lstm_size, args.num_layers)
    models = {f"grid {name}": Schedule(grid, name) for name in args.schedules}
    flops = dict.fromkeys(models, grid_flops_per_token(grid))
    models[f"nn.LSTM h={lstm_size}"] = nn.LSTM(args.input_size, lstm_size, args.num_layers)
    try:
        from rnnlab import RNN
    except ImportError:
        print("rnnlab.RNN is not in this tree yet: not measured")
    else:
        models[f"rnnlab.RNN lstm h={lstm_size}"] = RNN(
            "lstm", args.input_size, lstm_size, args.num_layers
        )
    for name in models:
        flops.setdefault(name, lstm_flops)

    x = torch.randn(args.seq_len, args.batch_size, args.input_size)
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():  # warm-up pass
        seconds_per_pass(model, x, args.inference)
    for _ in range(args.repeats):  # interleaved, so load changes hit every model alike
        for name, model in models.items():
            model.zero_grad(set_to_none=True)
            times[name].append(seconds_per_pass(model, x, args.inference))

    tokens = args.seq_len * args.batch_size
    print(
        f"T={args.seq_len} B={args.batch_size} input={args.input_size} "
        f"hidden={args.hidden_size} layers={args.num_layers} tied={args.tied} "
        f"threads={args.threads} repeats={args.repeats} "
        + ("(inference_mode forward)" if args.inference else
           "(forward+backward; training FLOPs = 3 × forward GEMM FLOPs)")
    )
    base = next(name for name in models if name.startswith("nn.LSTM"))
    gflops = {
        how: {name: factor * flops[name] * tokens / pick(t) / 1e9 for name, t in times.items()}
        for how, pick in (("median", statistics.median), ("best", min))
    }
    print(
        f"{'model':<26}{'params':>9}{'MFLOP/tok':>11}{'tokens/s':>10}"
        f"{'GFLOP/s':>9}{'÷ nn.LSTM':>11}{'best GFLOP/s':>14}{'÷ nn.LSTM':>11}"
    )
    for name, model in models.items():
        median, best = gflops["median"], gflops["best"]
        print(
            f"{name:<26}{count_parameters(model):>9}{factor * flops[name] / 1e6:>11.2f}"
            f"{tokens / statistics.median(times[name]):>10.0f}{median[name]:>9.2f}"
            f"{median[name] / median[base]:>11.2f}"
            f"{best[name]:>14.2f}{best[name] / best[base]:>11.2f}"
        )


if __name__ == "__main__":
    main()
