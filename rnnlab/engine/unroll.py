"""Run one zoo cell (a ``rnnlab.cells.Cell``) over a time-major sequence.

``unroll`` is ``rnnlab.engine.run`` for a cell: its plan and its prepared weights. The cell's
x-dependent work for all T steps is done before the loop (one GEMM), then each step does the
cell's recurrent GEMM(s) and its elementwise code, on whatever executor the route table
(``rnnlab.engine.route``) chooses. ``reference_unroll`` runs the reference executor directly:
what every other executor is tested against.
"""

from __future__ import annotations

import torch

from ..cells import Cell
from . import reference
from .entry import run


def unroll(cell: Cell, x: torch.Tensor, state: tuple, lengths: torch.Tensor | None = None):
    """Run ``cell`` over x.

    Args:
        cell: a compiled Cell.
        x: (T, B, input_size).
        state: tuple of (B, hidden_size) tensors, the cell's state fields.
        lengths: None (every sequence has T steps) or (B,) lengths, in any order.

    Returns:
        output (T, B, hidden_size) with zeros after each sequence's end, and the state after
        each sequence's last step.
    """
    return run(cell.program, cell.weights(), x, state, lengths)


def reference_unroll(cell: Cell, x: torch.Tensor, state: tuple,
                     lengths: torch.Tensor | None = None):
    """``unroll`` by stepping the cell's plan with torch ops under autograd (same arguments,
    lengths sorted decreasing)."""
    sizes = reference.batch_sizes_of(lengths) if lengths is not None else None
    return reference.sequence(cell.program, cell.weights(), x, state, sizes)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each sequence of x (T, B, F) within its own length; padding stays in place."""
    if lengths is None:
        return x.flip(0)
    T, B = x.shape[:2]
    t = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
    L = lengths.to(x.device).unsqueeze(0)  # (1, B)
    index = torch.where(t < L, L - 1 - t, t)  # (T, B)
    return x.gather(0, index.unsqueeze(-1).expand(T, B, x.shape[2]))
