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

The time-first loop runs on the sequence engine (``rnnlab.engine``): a grid dimension is one
step of a registered cell — the LSTM transforms are the zoo cells ``grid_lstm`` (the paper's
``h' = tanh(g_o ⊙ m')``) and ``grid_lstm_standard``, whose paper-named weights are views of the
block's; a ``CellTransform`` dimension is its own cell — so the time dimension of a layer is the
engine's unroll of that cell over x = h^depth_{·,l-1} (hoisted GEMM, fused loop and backward,
one autograd op whose graph does not grow with T), and a zoo-cell depth dimension is one step
of its cell over all T·B rows. A non-LSTM built-in time transform (``tanh``, ``relu``…) runs
its loop under autograd, O(T): the hoisted pre-activations are split with one ``unbind`` and
the per-step results joined with one ``torch.stack``.

Sequence ends (``lengths``): past its length a sequence's time state stays frozen, and blocks
there read the frozen vectors, exactly as in the other schedules (so even their unspecified
outputs agree): the engine runs the sequences sorted by length and the frozen vectors are put
back where each sequence has ended. Every engine call goes through ``rnnlab.engine.run``.

With time priority (depth first) a block with a zoo-cell dimension runs the wavefront schedule.

A regularised block (``rnnlab.grid.regularise``) runs each regularised dimension's cell in the
same places: the time dimension's loop over the layer's T steps carries layer l's sequence masks
as state fields (one per sequence, the same at every step), the depth dimension's one step over
T·B rows reads them on every row of a sequence, and zoneout's step masks ride in the input rows.
With time priority it runs the wavefront schedule, as a zoo cell does.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rnnlab.engine.entry import run
from rnnlab.engine.plans import cell_program, stacked_weights
from rnnlab.grid.block import GridBlock, Weights
from rnnlab.grid.cell_transform import CellTransform
from rnnlab.grid.regularise import Masks
from rnnlab.grid.schedule import State, _grid_shape, wavefront
from rnnlab.grid.transform import LSTM, Transform

TIME, DEPTH = 0, 1  # the dimensions of a sequence grid's block


def layerwise(
    block: GridBlock,
    inputs: torch.Tensor,
    state: State,
    lengths: torch.Tensor | None = None,
    masks: Masks | None = None,
) -> tuple[torch.Tensor, State]:
    """Compute a sequence grid one layer at a time, each layer's depth inputs in one GEMM.

    Same arguments and results as ``wavefront`` for a grid with one input axis: ``inputs``
    (T, B, d) the projected input, ``state`` with ``h``, ``m`` (L, B, d), ``lengths`` (B,),
    ``masks`` a regularised block's masks for the call (drawn here when omitted).
    """
    num_axes, _, num_layers = _grid_shape(block, inputs, state)
    if num_axes != 1:
        raise ValueError(
            "the layerwise schedule runs sequence grids (one input axis and depth); this grid "
            f"has {num_axes} input axes: use schedule='wavefront'"
        )
    depth_first = block.columns(DEPTH)[0] < block.columns(TIME)[0] if not block.cells else \
        TIME in block.priority and (DEPTH not in block.priority
                                    or block.priority.index(TIME) < block.priority.index(DEPTH))
    if masks is None:
        masks = block.draw(inputs.shape[1], num_layers, inputs)
    if (block.cells or masks is not None) and depth_first:
        return wavefront(block, inputs, state, lengths, masks)
    valid = None  # which sequences are still running at each step: (T, B, 1)
    if lengths is not None:
        steps = torch.arange(inputs.shape[0], device=inputs.device)
        valid = (steps[:, None] < lengths)[..., None]
    per_copy = block.per_copy()  # split the stacked weights once, not once per layer
    below = inputs, torch.zeros_like(inputs)  # depth (h, m) entering layer 0: I x and 0
    finals = []
    for l, entering in enumerate(zip(state.h.unbind(0), state.m.unbind(0), strict=True)):
        copy = 0 if block.copies == 1 else l
        if depth_first:
            below, final = _depth_first(block, per_copy[copy], below, entering, valid)
        else:
            below, final = _time_first(block, per_copy[copy], copy, below, entering, valid,
                                       lengths, None if masks is None else masks.at(l))
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
    for stage, fused in zip(block.stages, weights.stages, strict=True):
        if fused is None:  # zoo cells only
            continue
        W, b = fused
        fused_dims = [k for group in stage.groups for k in group.dims]
        dims = sorted(fused_dims, key=lambda k: block.columns(k)[1].start)
        widths = [block.transforms[k].width * d for k in dims]
        for k, W_k, b_k in zip(dims, W.split(widths, dim=1), b.split(widths), strict=True):
            found[k] = _Dimension(block.transforms[k], *W_k.split(d), b_k)
    return found.get(TIME), found.get(DEPTH)


def _freeze(valid, t, new, old):
    """The time state after step t: the new one where the sequence is running, else the old."""
    if valid is None:
        return new
    return tuple(torch.where(valid[t], a, b) for a, b in zip(new, old, strict=True))


def _time_first(block, weights, copy, below, entering, valid, lengths, masks=None):
    """One layer whose time dimension does not read the depth's new vector (see the module).

    ``below``: depth (h, m) entering the layer, each (T, B, d); ``entering``: time (h, m) at
    t = 0, each (B, d); ``valid``: None or (T, B, 1); ``lengths``: None or (B,); ``masks``:
    None or the layer's masks (``Masks.at(l)``). Returns the depth (h, m) leaving upward and
    the final time (h, m).
    """
    h_below, m_below = below
    steps, batch, d = h_below.shape
    time, depth = _dimensions(block, weights)
    priority = DEPTH in block.priority and (  # depth reads the new h^time
        TIME not in block.priority or block.priority.index(TIME) < block.priority.index(DEPTH))
    time_cell = _cell_of(block, TIME, copy, time, masks)
    if time_cell is not None:  # the whole loop on the engine
        program, w, memory = time_cell
        extra = _sequence_masks(masks, TIME, (batch,))
        out, final = run(program, w, _rows(masks, TIME, h_below),
                         (*entering[:1 + memory], *extra), lengths)
        h, m = final[0], (final[1] if memory else entering[1])
        before = torch.cat([entering[0].unsqueeze(0), out[:-1]])  # h^time entering each step
        computed = out
        if valid is not None:  # past its end a sequence holds its final (frozen) vectors
            before = torch.where(valid, before, h)
            if priority:  # what a block there computes from the frozen state
                rows = steps * batch
                frozen = tuple(s.unsqueeze(0).expand(steps, batch, d).reshape(rows, d)
                               for s in (h, m)[:1 + memory])
                frozen += _sequence_masks(masks, TIME, (steps, batch))
                again, _ = run(program, w, _rows(masks, TIME, h_below.reshape(1, rows, d)),
                               frozen)
                computed = torch.where(valid, out, again.view(steps, batch, d))
        v = computed if priority else before
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
    depth_cell = _cell_of(block, DEPTH, copy, depth, masks)
    if depth_cell is not None:  # one step of the cell over all T·B rows
        program, w, memory = depth_cell
        rows = steps * batch
        state = (h_below.reshape(rows, d), m_below.reshape(rows, d))[:1 + memory]
        state += _sequence_masks(masks, DEPTH, (steps, batch))
        _, new = run(program, w, _rows(masks, DEPTH, v.reshape(1, rows, d)), state)
        m_up = new[1].view(steps, batch, d) if memory else m_below
        return (new[0].view(steps, batch, d), m_up), (h, m)
    # The depth dimension of all T blocks at once: [v; h^depth_{·,l-1}] W_depth + b_depth.
    z = torch.addmm(depth.bias, h_below.reshape(-1, d), depth.reads_depth)
    z.addmm_(v.reshape(-1, d), depth.reads_time)  # in place: addmm's backward needs no result
    return depth.transform(z.view(steps, batch, -1), m_below), (h, m)


def _cell_of(block, k, copy, dim, masks=None):
    """Dimension k of a 2-D block as (plan, prepared weights, carries memory) of the cell that
    computes it, or None for a built-in non-LSTM transform (see the module docstring); a
    regularised dimension's cell and this call's weights from ``masks``."""
    if masks is not None and k in masks:
        drawn = masks.dims[k]
        return drawn.cell.program, drawn.weights[copy], drawn.memory
    transform = block.transforms[k]
    if isinstance(transform, CellTransform):
        cell = block.cells[str(k)][copy]
        return cell.program, cell.weights(), len(cell.graph.states) == 2
    if not isinstance(transform, LSTM):
        return None
    d = block.hidden_size
    program = cell_program(transform.cell, d, d)
    W, R = (dim.reads_depth, dim.reads_time) if k == TIME else (dim.reads_time, dim.reads_depth)
    return program, stacked_weights(program, W, R, dim.bias, transform.gates), True


def _sequence_masks(masks, k, lead):
    """Dimension k's sequence masks for rows ``lead`` (…, B), or () when it has none."""
    return masks.state(k, lead) if masks is not None and k in masks else ()


def _rows(masks, k, x):
    """x (T, rows, I) as dimension k's cell reads it: with its zoneout masks, if any."""
    return masks.rows(k, x) if masks is not None and k in masks else x


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
