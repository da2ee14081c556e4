"""The reference executor: a cell's plan stepped with torch ops under autograd.

The bottom of the engine. Every other executor computes what ``sequence`` computes here, and
the route table (``rnnlab.engine.route``) falls back to it wherever they do not apply. Time-major
throughout: x (T, B, input_size), state fields (B, hidden_size).

Variable lengths follow torch's packed layout: the batch is sorted by decreasing length and at
step t only the first ``batch_sizes[t]`` rows are computed (``batch_sizes_of``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..lang.compile import Program


def batch_sizes_of(lengths: torch.Tensor) -> list[int]:
    """Sorted (decreasing) lengths (B,) -> number of active rows at each step, length max(L)."""
    counts = torch.bincount(lengths.cpu(), minlength=int(lengths.max()) + 1)
    return (counts.sum() - counts.cumsum(0))[: int(lengths.max())].tolist()


def sequence(program: Program, weights: dict, x: torch.Tensor, state: tuple,
             sizes: list[int] | None = None):
    """The plan over x (T, B, I) from ``state``: its hoist, then its step T times.

    ``sizes``: None, or the active rows at each step (``batch_sizes_of``). Returns output
    (T, B, H), zero after each sequence's end, and the state after each one's last step."""
    return step_loop(program.step, program.hoist(x, weights), tuple(state), weights, sizes,
                     x.shape[0])


def one_step(program: Program, weights: dict, x: torch.Tensor, state: tuple):
    """``sequence`` for T = 1 without a time axis in between: x (1, B, I) -> ((1, B, H), state).

    The hoist runs on the rows x[0] themselves (``hoist`` would reshape x and each hoisted
    value to and from (T, B, n): views that a small step, as in sampling, pays for one by one)."""
    h, new = program.step(program.hoist_rows(x[0], weights), tuple(state), weights)
    return h.unsqueeze(0), new


def step_loop(step, hoisted: list, state: tuple, weights: dict, sizes: list[int] | None,
              T: int):
    """The reference time loop: ``step`` over T steps of hoisted inputs (each (T, B, n)).

    ``sizes`` is None or the active rows at each step (``batch_sizes_of(lengths)``).
    """
    B = state[0].shape[0]
    hoisted = [t.unbind(0) for t in hoisted]
    outputs = []
    if sizes is None:
        for t in range(T):
            h, state = step(tuple(a[t] for a in hoisted), state, weights)
            outputs.append(h)
        return torch.stack(outputs), state
    finished: list[tuple] = []  # states of rows that ended, highest rows first
    rows = B
    for t, active in enumerate(sizes):
        if active < rows:
            finished.append(tuple(s[active:rows] for s in state))
            state = tuple(s[:active] for s in state)
            rows = active
        h, state = step(tuple(a[t][:active] for a in hoisted), state, weights)
        outputs.append(F.pad(h, (0, 0, 0, B - active)) if active < B else h)
    finished.append(state)
    final = tuple(torch.cat(parts) for parts in zip(*finished[::-1]))
    output = torch.stack(outputs)
    if output.shape[0] < T:  # padding beyond the longest sequence
        output = F.pad(output, (0, 0, 0, 0, 0, T - output.shape[0]))
    return output, final
