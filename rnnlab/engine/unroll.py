"""Run one compiled cell over a time-major sequence.

``unroll`` is the whole engine loop: the cell's x-dependent work for all T steps is done before
the loop (one GEMM), then each step does the cell's recurrent GEMM(s) and its elementwise code.
Variable lengths follow torch's packed layout: the batch is sorted by decreasing length and at
step t only the first ``batch_sizes[t]`` rows are computed.

``unroll`` first offers the sequence to the fused engine (``rnnlab.engine.fused``: the whole
loop as one autograd op with a generated backward step, in C++ where a compiler is available);
where that engine does not apply, or is switched off (``RNNLAB_FAST=0``,
``rnnlab.engine.fused.backend("reference")``), it runs the reference loop below: the cell's
plan's step (``Program.step``: torch ops), called T times under autograd.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..cells import Cell
from . import fused


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
    sizes = batch_sizes_of(lengths) if lengths is not None else None
    result = fused.fused_unroll(cell, x, state, lengths, sizes)
    if result is not None:
        return result
    return reference_unroll(cell, x, state, lengths)


def reference_unroll(cell: Cell, x: torch.Tensor, state: tuple,
                     lengths: torch.Tensor | None = None):
    """``unroll`` by stepping the cell's plan with torch ops under autograd (same arguments)."""
    weights = cell.weights()
    sizes = batch_sizes_of(lengths) if lengths is not None else None
    return step_loop(cell.program.step, cell.program.hoist(x, weights), tuple(state), weights,
                     sizes, x.shape[0])


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


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each sequence of x (T, B, F) within its own length; padding stays in place."""
    if lengths is None:
        return x.flip(0)
    T, B = x.shape[:2]
    t = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
    L = lengths.to(x.device).unsqueeze(0)  # (1, B)
    index = torch.where(t < L, L - 1 - t, t)  # (T, B)
    return x.gather(0, index.unsqueeze(-1).expand(T, B, x.shape[2]))
