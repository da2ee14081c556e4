"""Connections across time: a cell that recurs on the state from ``d`` steps back.

A dilated layer (Chang et al. 2017, "Dilated Recurrent Neural Networks") computes

    output_t, state_t = cell(x_t, state_{t-d})

so step t reads the state written at step t − d, not t − 1. Such a layer is the same cell run
over ``d`` interleaved sub-sequences — steps ``j, j+d, j+2d, …`` for each phase ``j < d`` — which
never exchange information. ``dilated_unroll`` therefore lays the sub-sequences side by side as
``d · B`` rows of one batch and hands them to the engine (``rnnlab.engine.run``): one input GEMM
for all steps and one recurrent GEMM per step of ``T / d`` steps on ``d`` times the rows, the
same FLOPs as the undilated layer. With d = 3 and T = 7::

    step     0   1   2   3   4   5   6
    phase    0   1   2   0   1   2   0        step t reads the state of step t − 3
    reads   s0  s1  s2   0   1   2   3        (s_j: the incoming state slot j)

**State.** A dilated layer carries ``d`` state slots, not one: slot ``j`` is the state that step
``j`` of the next chunk reads. After a sequence of length L, slot ``i`` holds the state of step
``L − d + i`` (the last ``d`` steps, oldest first; where that step would precede the sequence,
the incoming slot passes through). Carrying these slots from one chunk to the next gives exactly
the states of one long unchunked pass, whatever the chunk lengths.
"""

from __future__ import annotations

import torch

from .entry import run


def dilated_unroll(cell, x: torch.Tensor, slots: tuple, lengths: torch.Tensor | None, d: int):
    """Run ``cell`` over ``x`` with dilation ``d``.

    Args:
        cell: a compiled Cell.
        x: (T, B, input_size).
        slots: one tensor per state field, each (d, B, hidden_size): the incoming state slots.
        lengths: None (every sequence has T steps) or (B,) lengths, in any order.
        d: the dilation, ≥ 1.

    Returns:
        output (T, B, hidden_size), zero after each sequence's end, and the new slots, each
        (d, B, hidden_size).
    """
    program, weights = cell.program, cell.weights()
    if d == 1:
        output, final = run(program, weights, x, tuple(s[0] for s in slots), lengths)
        return output, tuple(f[None] for f in final)
    T, B, F = x.shape
    steps = -(-T // d)  # sub-sequence length: ceil(T / d)
    if steps * d != T:
        padded = x.new_zeros(steps * d, B, F)
        padded[:T] = x
        x = padded
    rows = x.view(steps, d * B, F)  # row j·B + b: phase j of sequence b (a view, no copy)
    full = lengths is None
    lengths = torch.full((B,), T, dtype=torch.int64) if full else lengths.cpu()
    phase = torch.arange(d)[:, None]  # (d, 1)
    sub_lengths = ((lengths[None, :] - phase).clamp(min=0) + d - 1) // d  # (d, B): ceil
    sub_lengths = sub_lengths.reshape(-1)  # (d·B,), row order
    state = tuple(s.reshape(d * B, -1) for s in slots)
    # phases of equal length run as one plain batch; others (T not a multiple of d, packed
    # input) with their lengths, which run sorts and puts back
    out, final = run(program, weights, rows, state, sub_lengths)
    out = out.reshape(steps * d, B, -1)[:T]
    final = tuple(f.view(d, B, -1) for f in final)
    if full and T % d == 0:
        return out, final  # slot i is phase (T + i) mod d = i
    # new slot i of sequence b: the final state of phase (L_b + i) mod d
    take = ((lengths[None, :] + phase) % d).to(x.device)  # (d, B)
    columns = torch.arange(B, device=x.device)[None, :]
    return out, tuple(f[take, columns] for f in final)
