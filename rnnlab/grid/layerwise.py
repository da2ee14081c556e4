"""The layerwise schedule of a sequence grid: one layer at a time, as a stacked LSTM runs.

In a T × L sequence grid (time × depth, see ``schedule.py``) block (t, l) reads
``H = [h^time_{t-1,l}; h^depth_{t,l-1}]``. Once layer l − 1 is done, the depth vectors entering
layer l are known at every step, so every part of the block's ``W H + b`` that reads them is ONE
GEMM over all T · B rows, as a stacked LSTM computes its input projections; only the parts that
read time vectors stay in the time loop. The depth dimension feeds nothing along time, so
unless the time dimension reads its new hidden vector (time priority) it runs after the loop,
all T · B rows in one GEMM too. Per layer, with ``W_k = [W_k^time; W_k^depth]`` split by the rows
that read each vector (input-major, ``x @ W``):

    time first (no priority, or depth priority):
        before the loop   P = h^depth_{·,l-1} W_time^depth + b_time                  (T·B rows)
        step t            (h, m)^time_t = transform_time(P_t + h^time_{t-1} W_time^time,
                                                         m^time_{t-1})                 (B rows)
        after the loop    (h, m)^depth = transform_depth([v; h^depth_{·,l-1}] W_depth + b_depth,
                                                         m^depth_{·,l-1})            (T·B rows)
                          v_t = h^time_{t-1}, or h^time_t (the new one) with depth priority

    depth first (time priority: the time dimension reads the depth's new hidden vector):
        before the loop   P = h^depth_{·,l-1} W_depth^depth + b_depth                (T·B rows)
        step t            [g^depth; g^time] = h^time_{t-1} [W_depth^time, W_time^time] + [0; b_time]
                          (h, m)^depth_t = transform_depth(P_t + g^depth, m^depth_{t,l-1})
                          (h, m)^time_t  = transform_time(g^time + h^depth_t W_time^depth,
                                                          m^time_{t-1})

So each step is one (B × d) · (d × 4d) GEMM for LSTM transforms (two, d × 8d and d × 4d, with
time priority), L · T steps in all, against T + L − 1 larger steps for the wavefront; the FLOPs
are the same, but most of them now run in GEMMs of T · B rows.

With an LSTM time transform (``"lstm"``, ``"lstm_standard"``) the time-first loop, hoisted GEMM
included, is one autograd op with a hand-derived backward (``recurrence.py``), so a layer's
backward graph does not grow with T. Otherwise the loop runs under autograd, and stays O(T):
the hoisted pre-activations are split with one ``unbind`` and the per-step results joined with
one ``torch.stack`` (indexing per step would give each step a zero-filled T-sized gradient).

Sequence ends (``lengths``): past its length a sequence's time state stays frozen, and blocks
there read the frozen vectors, exactly as in the other schedules (so even their unspecified
outputs agree).

A zoo-cell dimension (``CellTransform``) computes its own pre-activations, so nothing of it can
be hoisted: a block with one runs the wavefront schedule instead.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rnnlab.grid.block import GridBlock, Weights
from rnnlab.grid.recurrence import LSTMRecurrence
from rnnlab.grid.schedule import State, _grid_shape, wavefront
from rnnlab.grid.transform import LSTM, StandardLSTM, Transform

TIME, DEPTH = 0, 1  # the dimensions of a sequence grid's block


def layerwise(
    block: GridBlock,
    inputs: torch.Tensor,
    state: State,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, State]:
    """Compute a sequence grid one layer at a time, each layer's depth inputs in one GEMM.

    Same arguments and results as ``wavefront`` for a grid with one input axis: ``inputs``
    (T, B, d) the projected input, ``state`` with ``h``, ``m`` (L, B, d), ``lengths`` (B,).
    """
    num_axes, _, _ = _grid_shape(block, inputs, state)
    if num_axes != 1:
        raise ValueError(
            "the layerwise schedule runs sequence grids (one input axis and depth); this grid "
            f"has {num_axes} input axes: use schedule='wavefront'"
        )
    if block.cells:
        return wavefront(block, inputs, state, lengths)
    valid = None  # which sequences are still running at each step: (T, B, 1)
    if lengths is not None:
        steps = torch.arange(inputs.shape[0], device=inputs.device)
        valid = (steps[:, None] < lengths)[..., None]
    depth_first = block.columns(DEPTH)[0] < block.columns(TIME)[0]
    per_copy = block.per_copy()  # split the stacked weights once, not once per layer
    below = inputs, torch.zeros_like(inputs)  # depth (h, m) entering layer 0: I x and 0
    finals = []
    for l, entering in enumerate(zip(state.h.unbind(0), state.m.unbind(0), strict=True)):
        weights = per_copy[0 if block.copies == 1 else l]
        run = _depth_first if depth_first else _time_first
        below, final = run(block, weights, below, entering, valid)
        finals.append(final)
    h, m = zip(*finals, strict=True)
    return below[0], State(torch.stack(h), torch.stack(m))


class _Dimension(NamedTuple):
    """One dimension of a layer's blocks: its transform and ``W_k``'s rows by what they read."""

    transform: Transform
    reads_time: torch.Tensor  # (d, out_k): the rows of W_k (input-major) that read h^time
    reads_depth: torch.Tensor  # (d, out_k): the rows that read h^depth
    bias: torch.Tensor  # (out_k,)


def _dimensions(block: GridBlock, weights: Weights) -> tuple[_Dimension, _Dimension]:
    """The time and depth dimensions, their weights split out of the fused stage weights.

    Splits (views), not slices: their gradients are joined with one ``cat`` and no zero-filled
    buffer per slice.
    """
    d, found = block.hidden_size, {}
    for stage, (W, b) in zip(block.stages, weights.stages, strict=True):
        dims = sorted(stage.dims, key=lambda k: block.columns(k)[1].start)
        widths = [block.transforms[k].width * d for k in dims]
        for k, W_k, b_k in zip(dims, W.split(widths, dim=1), b.split(widths), strict=True):
            found[k] = _Dimension(block.transforms[k], *W_k.split(d), b_k)
    return found[TIME], found[DEPTH]


def _freeze(valid, t, new, old):
    """The time state after step t: the new one where the sequence is running, else the old."""
    if valid is None:
        return new
    return tuple(torch.where(valid[t], a, b) for a, b in zip(new, old, strict=True))


def _time_first(block, weights, below, entering, valid):
    """One layer whose time dimension does not read the depth's new vector (see the module).

    ``below``: depth (h, m) entering the layer, each (T, B, d); ``entering``: time (h, m) at
    t = 0, each (B, d); ``valid``: None or (T, B, 1). Returns the depth (h, m) leaving
    upward and the final time (h, m).
    """
    h_below, m_below = below
    steps, batch, d = h_below.shape
    time, depth = _dimensions(block, weights)
    priority = block.columns(TIME)[0] < block.columns(DEPTH)[0]  # depth reads the new h^time
    if type(time.transform) in (LSTM, StandardLSTM):  # the whole loop as one autograd op
        standard = type(time.transform) is StandardLSTM
        Hs, h, m, computed = LSTMRecurrence.apply(
            h_below, time.reads_depth, time.bias, time.reads_time, *entering, valid, standard
        )
        if not priority:
            v = Hs.split([steps, 1])[0]  # h^time_{t-1}
        else:
            v = computed if valid is not None else Hs.split([1, steps])[1]  # h^time_t
    else:
        P = torch.addmm(time.bias, h_below.reshape(-1, d), time.reads_depth)
        h, m = entering
        before, computed = [], []  # h^time entering each step, and the one computed there
        for t, P_t in enumerate(P.view(steps, batch, -1).unbind(0)):
            before.append(h)
            new = time.transform(torch.addmm(P_t, h, time.reads_time), m)
            computed.append(new[0])
            h, m = _freeze(valid, t, new, (h, m))
        v = torch.stack(computed if priority else before)
    # The depth dimension of all T blocks at once: [v; h^depth_{·,l-1}] W_depth + b_depth.
    z = torch.addmm(depth.bias, h_below.reshape(-1, d), depth.reads_depth)
    z.addmm_(v.reshape(-1, d), depth.reads_time)  # in place: addmm's backward needs no result
    return depth.transform(z.view(steps, batch, -1), m_below), (h, m)


def _depth_first(block, weights, below, entering, valid):
    """One layer whose time dimension reads the depth's new hidden vector (time priority).

    Same arguments and results as ``_time_first``.
    """
    h_below, m_below = below
    steps, batch, d = h_below.shape
    time, depth = _dimensions(block, weights)
    P = torch.addmm(depth.bias, h_below.reshape(-1, d), depth.reads_depth)
    # Both dimensions' parts that read h^time_{t-1}, side by side: one GEMM per step.
    R = torch.cat([depth.reads_time, time.reads_time], dim=1)  # (d, out_depth + out_time)
    bias = torch.cat([torch.zeros_like(depth.bias), time.bias])  # the depth bias is in P
    widths = [depth.bias.shape[0], time.bias.shape[0]]
    h, m = entering
    up_h, up_m = [], []
    rows = zip(P.view(steps, batch, -1).unbind(0), m_below.unbind(0), strict=True)
    for t, (P_t, m_t) in enumerate(rows):
        g_depth, g_time = torch.addmm(bias, h, R).split(widths, dim=-1)
        h_depth, m_depth = depth.transform(P_t + g_depth, m_t)
        new = time.transform(torch.addmm(g_time, h_depth, time.reads_depth), m)
        h, m = _freeze(valid, t, new, (h, m))
        up_h.append(h_depth)
        up_m.append(m_depth)
    return (torch.stack(up_h), torch.stack(up_m)), (h, m)
