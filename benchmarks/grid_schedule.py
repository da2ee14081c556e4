"""Training speed of the Grid LSTM's wavefront schedule vs the naive order vs a stacked LSTM.

Measures tokens per second of one forward + backward pass (T · B tokens) of

- ``GridLSTM(schedule="wavefront")``: one batched GEMM per anti-diagonal, T + L − 1 steps;
- the same module with ``schedule="naive"``: one block at a time, T · L steps;
- ``torch.nn.LSTM`` with about the same number of parameters (same FLOPs per token);
- ``rnnlab.RNN("lstm", …)`` likewise, when the tree has it;

all in this process, interleaved, the median of ``--repeats`` timed passes each, and prints the
ratios to the wavefront schedule. Run::

    python benchmarks/grid_schedule.py                       # small defaults, well under 2 min
    python benchmarks/grid_schedule.py --hidden-size 256 --num-layers 4 --seq-len 100
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

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


def seconds_per_pass(model: nn.Module, x: torch.Tensor) -> float:
    """Wall time of one forward + backward pass (loss: mean of the output)."""
    start = time.perf_counter()
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
    parser.add_argument("--repeats", type=int, default=7, help="timed passes per model")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    grid = GridLSTM(args.input_size, args.hidden_size, args.num_layers, tied=args.tied)
    lstm_size = matching_lstm_size(count_parameters(grid), args.input_size, args.num_layers)
    models = {
        "grid wavefront": Schedule(grid, "wavefront"),
        "grid naive": Schedule(grid, "naive"),
        f"nn.LSTM h={lstm_size}": nn.LSTM(args.input_size, lstm_size, args.num_layers),
    }
    try:
        from rnnlab import RNN
    except ImportError:
        print("rnnlab.RNN is not in this tree yet: not measured")
    else:
        models[f"rnnlab.RNN lstm h={lstm_size}"] = RNN(
            "lstm", args.input_size, lstm_size, args.num_layers
        )

    x = torch.randn(args.seq_len, args.batch_size, args.input_size)
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():  # warm-up pass
        seconds_per_pass(model, x)
    for _ in range(args.repeats):  # interleaved, so load changes hit every model alike
        for name, model in models.items():
            model.zero_grad(set_to_none=True)
            times[name].append(seconds_per_pass(model, x))

    tokens = args.seq_len * args.batch_size
    print(
        f"T={args.seq_len} B={args.batch_size} input={args.input_size} "
        f"hidden={args.hidden_size} layers={args.num_layers} tied={args.tied} "
        f"threads={args.threads} repeats={args.repeats} (median forward+backward)"
    )
    rate = {name: tokens / statistics.median(t) for name, t in times.items()}
    base = rate["grid wavefront"]
    print(f"{'model':<28}{'params':>10}{'tokens/s':>12}{'wavefront ÷ this':>18}")
    for name, model in models.items():
        params = count_parameters(model)
        print(f"{name:<28}{params:>10}{rate[name]:>12.0f}{base / rate[name]:>18.2f}")


if __name__ == "__main__":
    main()
