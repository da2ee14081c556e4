"""Run one compiled cell over a time-major sequence.

``unroll`` is the whole engine loop: the cell's x-dependent work for all T steps is done before
the loop (one GEMM), then each step does the cell's recurrent GEMM(s) and its elementwise code.
Variable lengths follow torch's packed layout: the batch is sorted by decreasing length and at
step t only the first ``batch_sizes[t]`` rows are computed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..cells import Cell


def batch_sizes_of(lengths: torch.Tensor) -> list[int]:
    """Sorted (decreasing) lengths (B,) -> number of active rows at each step, length max(L)."""
    counts = torch.bincount(lengths.cpu(), minlength=int(lengths.max()) + 1)
    return (counts.sum() - counts.cumsum(0))[: int(lengths.max())].tolist()


def unroll(cell: Cell, x: torch.Tensor, state: tuple, lengths: torch.Tensor | None = None):
    """Run ``cell`` over x.

    Args:
        cell: a compiled Cell.
        x: (T, B, input_size).
        state: tuple of (B, hidden_size) tensors, the cell's state fields.
        lengths: None (every sequence has T steps) or (B,) lengths sorted in decreasing order.

    Returns:
        output (T, B, hidden_size) with zeros after each sequence's end, and the state after
        each sequence's last step.
    """
    weights = cell.weights()
    hoisted = [t.unbind(0) for t in cell.program.hoist(x, weights)]
    step = cell.program.step
    outputs = []
    if lengths is None:
        for t in range(x.shape[0]):
            h, state = step(tuple(a[t] for a in hoisted), state, weights)
            outputs.append(h)
        return torch.stack(outputs), state
    B = x.shape[1]
    finished: list[tuple] = []  # states of rows that ended, highest rows first
    rows = B
    for t, active in enumerate(batch_sizes_of(lengths)):
        if active < rows:
            finished.append(tuple(s[active:rows] for s in state))
            state = tuple(s[:active] for s in state)
            rows = active
        h, state = step(tuple(a[t][:active] for a in hoisted), state, weights)
        outputs.append(F.pad(h, (0, 0, 0, B - active)) if active < B else h)
    finished.append(state)
    final = tuple(torch.cat(parts) for parts in zip(*finished[::-1]))
    output = torch.stack(outputs)
    if output.shape[0] < x.shape[0]:  # padding beyond the longest sequence
        output = F.pad(output, (0, 0, 0, 0, 0, x.shape[0] - output.shape[0]))
    return output, final


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each sequence of x (T, B, F) within its own length; padding stays in place."""
    if lengths is None:
        return x.flip(0)
    T, B = x.shape[:2]
    t = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
    L = lengths.to(x.device).unsqueeze(0)  # (1, B)
    index = torch.where(t < L, L - 1 - t, t)  # (T, B)
    return x.gather(0, index.unsqueeze(-1).expand(T, B, x.shape[2]))
