"""Orders in which the blocks of a grid are computed: wavefront (fast) and naive (reference).

(A third order for sequence grids, one layer at a time, is in ``layerwise.py``; the registry of
all of them is ``rnnlab.grid.scan.SCHEDULES``. ``single_step`` is naive's order for the one
step of a sequence grid called one step at a time, which ``GridScan`` runs whatever the
schedule.)

The grid has K input axes of sizes S_1 … S_K (time; or rows and columns of an image) and a
depth axis of L layers, so N = K + 1 dimensions. Block ``(p, l)`` at input position
``p = (p_1, …, p_K)`` and layer ``l`` runs ``block`` with weight copy ``l`` (or the one shared
copy when tied) on the vectors it receives:

    dimension k < K (input axis k+1):  from block (p − e_{k+1}, l); at the first position along
                                       that axis, from ``state`` for k = 0 and zeros otherwise
    dimension K (depth):               from block (p, l − 1); at l = 0, hidden = the projected
                                       input at p, memory = zeros

The output at p is the depth-dimension hidden vector of block (p, L − 1). ``state`` carries
dimension 0 (the first input axis, i.e. time): the vectors entering the first position and
those leaving the last valid position, per layer and per position on the other input axes.

Every block on the hyperplane ``p_1 + … + p_K + l = s`` reads only blocks on hyperplane s − 1,
so ``wavefront`` computes a whole hyperplane per step: S_1 + … + S_K + L − K sequential steps
(T + L − 1 for a T × L sequence grid) instead of S_1 ⋯ S_K · L, each step one GEMM per block
stage over all its blocks. ``naive`` visits the blocks one at a time in lexicographic order;
both give the same result up to floating-point summation order.

A regularised block (``rnnlab.grid.regularise``) has its masks drawn once per call
(``GridBlock.draw``, or given as ``masks``): block (p, l) reads layer l's sequence masks, the same
at every position p.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch
import torch.nn.functional as F

from rnnlab.grid.block import BlockState, GridBlock
from rnnlab.grid.regularise import Masks


class State(NamedTuple):
    """Dimension-0 vectors that a grid carries along its first input axis (time).

    ``h``, ``m``: (num_layers, S_2, …, S_K, B, hidden_size); for a sequence grid
    (num_layers, B, hidden_size), one hidden and one memory vector per layer.
    """

    h: torch.Tensor
    m: torch.Tensor


def _grid_shape(block: GridBlock, inputs: torch.Tensor, state: State):
    num_axes = block.num_dims - 1
    if num_axes < 1:
        raise ValueError("a grid schedule needs a block with at least one input axis and depth")
    sizes = tuple(inputs.shape[:num_axes])
    num_layers = state.h.shape[0]
    if block.copies not in (1, num_layers):
        raise ValueError(
            f"the block holds {block.copies} weight copies but the grid has {num_layers} "
            "layers; expected 1 (tied) or one per layer (untied)"
        )
    return num_axes, sizes, num_layers


def _valid(p1: torch.Tensor, size: int, lengths: torch.Tensor | None) -> torch.Tensor:
    """Which blocks sit at a real position along axis 1: (…, 1, 1) or (…, B, 1) with lengths."""
    inside = ((p1 >= 0) & (p1 < size))[..., None, None]
    if lengths is None:
        return inside
    return inside & (p1[..., None] < lengths)[..., None]


def _shift(values, values_window, window, axis):
    """Values over ``window`` where position r reads ``values`` at r − e_axis (zeros elsewhere).

    ``values`` (*box, B, d) covers the box ``values_window`` (inclusive (lo, hi) per box axis);
    the result has the sizes of ``window`` followed by (B, d).
    """
    target = [(lo - (j == axis), hi - (j == axis)) for j, (lo, hi) in enumerate(window)]
    crop, pad = [], []
    for (lo, hi), (have_lo, have_hi) in zip(target, values_window, strict=True):
        a, b = max(lo, have_lo), min(hi, have_hi)
        if a > b:
            return values.new_zeros(*(hi - lo + 1 for lo, hi in window), *values.shape[-2:])
        crop.append(slice(a - have_lo, b - have_lo + 1))
        pad.append((a - lo, hi - b))
    core = values[tuple(crop)]
    if any(before or after for before, after in pad):
        core = F.pad(core, [0, 0, 0, 0] + [n for pair in reversed(pad) for n in pair])
    return core


def _neighbours(previous, axis, window, inputs):
    """(h, m) that box axis ``axis``'s dimension reads over ``window`` from the last step.

    ``previous`` is ``(window, hs, ms)``, the last step's window and its outputs per box axis,
    or None before the first step (then every neighbour is outside the grid: zeros).
    """
    if previous is None:
        shape = (*(hi - lo + 1 for lo, hi in window), *inputs.shape[-2:])
        return inputs.new_zeros(shape), inputs.new_zeros(shape)
    last_window, hs, ms = previous
    return (
        _shift(hs[axis], last_window, window, axis),
        _shift(ms[axis], last_window, window, axis),
    )


def wavefront(
    block: GridBlock,
    inputs: torch.Tensor,
    state: State,
    lengths: torch.Tensor | None = None,
    masks: Masks | None = None,
) -> tuple[torch.Tensor, State]:
    """Compute a grid one anti-diagonal hyperplane per step.

    Args:
        block: a ``GridBlock`` with N = K + 1 dimensions (K input axes, then depth) and one
            weight copy (tied) or one per layer.
        inputs: (S_1, …, S_K, B, d) the projected input entering depth at layer 0.
        state: ``State`` with ``h``, ``m`` (L, S_2, …, S_K, B, d), dimension 0 entering p_1 = 0.
        lengths: optional (B,) number of valid positions along axis 1 per batch element; blocks
            past the end leave ``state`` untouched and give unspecified outputs.
        masks: a regularised block's masks for this call (``GridBlock.draw``); drawn here when
            omitted.

    Returns:
        outputs (S_1, …, S_K, B, d), the top layer's depth hidden vectors, and the new ``State``
        (dimension 0 leaving the last valid position along axis 1).

    The hyperplane ``s`` is stored skewed: a block is addressed by its box coordinates
    ``r = (l, p_2, …, p_K)`` and sits at ``p_1 = s − Σ r``. Only the bounding box of the
    hyperplane's real blocks is computed; a dimension k ≥ 1 then reads the previous step's
    outputs shifted by one along its box axis, and dimension 0 reads the carried ``state``.
    """
    num_axes, sizes, num_layers = _grid_shape(block, inputs, state)
    batch, d = inputs.shape[num_axes:]
    if masks is None:
        masks = block.draw(batch, num_layers, inputs)
    rest = sizes[1:]  # input axes 2..K, box axes 1..K-1
    box = (num_layers, *rest)
    span = sum(n - 1 for n in sizes) + num_layers - 1
    steps = span + 1
    device = inputs.device

    # inputs skewed once: bottom[s, p_2, …] = inputs[s − Σ p_j, p_2, …], zeros outside the grid.
    axes = torch.meshgrid(*(torch.arange(n, device=device) for n in (steps, *rest)), indexing="ij")
    p1 = axes[0] - sum(axes[1:])
    p1 = torch.where((p1 >= 0) & (p1 < sizes[0]), p1, sizes[0])
    padded = torch.cat([inputs, inputs.new_zeros(1, *inputs.shape[1:])])
    # One unbind, not a select per step: each select's backward would zero-fill all of bottom.
    bottom = padded[(p1, *axes[1:])].unbind(0)  # steps × (*rest, B, d)

    carry_h, carry_m = state.h.clone(), state.m.clone()  # written in place, window by window
    previous = None  # (window, h, m): last step's outputs per box axis, each (*window, B, d)
    tops = []
    for s in range(steps):
        window = [(max(0, s - (span - (n - 1))), min(n - 1, s)) for n in box]
        box_slice = tuple(slice(lo, hi + 1) for lo, hi in window)
        (lo, hi), rest_window, rest_slice = window[0], window[1:], box_slice[1:]

        # Dimension 0 reads the carried vectors; dimension j ≥ 1 (box axis j) its neighbour's.
        edges = [(carry_h[box_slice], carry_m[box_slice])]
        edges += [_neighbours(previous, j, window, inputs) for j in range(1, num_axes)]
        # Depth (box axis 0): layer 0 reads the projected input, layer l ≥ 1 layer l − 1.
        depth = []
        if lo == 0:
            x = bottom[s][rest_slice].unsqueeze(0)
            depth.append((x, torch.zeros_like(x)))
        if hi >= 1:
            depth.append(_neighbours(previous, 0, [(max(lo, 1), hi), *rest_window], inputs))
        edges.append((torch.cat([h for h, _ in depth]), torch.cat([m for _, m in depth])))

        h_in = torch.stack([h for h, _ in edges], dim=-2)  # (*window, B, N, d)
        m_in = torch.stack([m for _, m in edges], dim=-2)
        out = block(BlockState(h_in, m_in), slice(lo, hi + 1) if block.copies > 1 else None,
                    None if masks is None else masks.at(range(lo, hi + 1)))
        out_h, out_m = out.h.unbind(-2), out.m.unbind(-2)  # per dimension, one backward each

        # Blocks at a real position update the carry; those before or past the grid keep it.
        first, last = s - sum(b for _, b in window), s - sum(a for a, _ in window)
        if lengths is None and first >= 0 and last < sizes[0]:
            carry_h[box_slice], carry_m[box_slice] = out_h[0], out_m[0]
        else:
            p1 = s - sum(
                torch.arange(a, b + 1, device=device).view(-1, *[1] * (len(box) - 1 - j))
                for j, (a, b) in enumerate(window)
            )
            valid = _valid(p1, sizes[0], lengths)
            carry_h[box_slice] = torch.where(valid, out_h[0], edges[0][0])
            carry_m[box_slice] = torch.where(valid, out_m[0], edges[0][1])

        # Box axis 0 is fed by depth (dimension K), box axis j ≥ 1 by dimension j.
        feeds = [num_axes, *range(1, num_axes)]
        previous = (window, [out_h[k] for k in feeds], [out_m[k] for k in feeds])
        if hi == num_layers - 1:
            top = out_h[num_axes][-1]  # (*rest window, B, d)
            pad = [
                n
                for (a, b), n_all in zip(reversed(rest_window), reversed(rest), strict=True)
                for n in (a, n_all - 1 - b)
            ]
            tops.append(F.pad(top, [0, 0, 0, 0, *pad]) if any(pad) else top)

    # Unskew: the output at p left the top layer at step s = p_1 + Σ_{j≥2} p_j + L − 1.
    skewed = torch.stack(tops)  # (steps − L + 1, *rest, B, d)
    axes = torch.meshgrid(*(torch.arange(n, device=device) for n in sizes), indexing="ij")
    outputs = skewed[(axes[0] + sum(axes[1:]), *axes[1:])]
    return outputs, State(carry_h, carry_m)


def naive(
    block: GridBlock,
    inputs: torch.Tensor,
    state: State,
    lengths: torch.Tensor | None = None,
    masks: Masks | None = None,
) -> tuple[torch.Tensor, State]:
    """Compute a grid one block at a time, positions in lexicographic order, layers innermost.

    Same arguments and results as ``wavefront``; the reference that the fast order is tested
    against, and the baseline it is benchmarked against.
    """
    num_axes, sizes, num_layers = _grid_shape(block, inputs, state)
    batch, d = inputs.shape[num_axes:]
    if masks is None:
        masks = block.draw(batch, num_layers, inputs)
    zeros = inputs.new_zeros(batch, d)
    carry = {
        (l, *r): (state.h[(l, *r)], state.m[(l, *r)])
        for l in range(num_layers)
        for r in itertools.product(*map(range, sizes[1:]))
    }
    leaving = {}  # (k, p, l) → (h, m) of dimension k ≥ 1 leaving block (p, l)
    per_copy = block.per_copy()  # split the stacked weights once, not once per block
    outputs = []
    for p in itertools.product(*map(range, sizes)):
        depth = (inputs[p], zeros)
        for l in range(num_layers):
            edges = [carry[(l, *p[1:])]]
            for k in range(1, num_axes):
                before = (*p[:k], p[k] - 1, *p[k + 1 :])
                edges.append(leaving.get((k, before, l), (zeros, zeros)))
            edges.append(depth)
            h = torch.stack([e[0] for e in edges], dim=-2)  # (B, N, d)
            m = torch.stack([e[1] for e in edges], dim=-2)
            out = block.forward_with(BlockState(h, m), per_copy[l if block.copies > 1 else 0],
                                     None if masks is None else masks.at(l))
            new = (out.h[:, 0], out.m[:, 0])
            if lengths is not None:
                valid = (p[0] < lengths)[:, None]
                new = tuple(torch.where(valid, a, b) for a, b in zip(new, edges[0], strict=True))
            carry[(l, *p[1:])] = new
            for k in range(1, num_axes):
                leaving[(k, p, l)] = (out.h[:, k], out.m[:, k])
            depth = (out.h[:, num_axes], out.m[:, num_axes])
        outputs.append(depth[0])
    outputs = torch.stack(outputs).view(*sizes, batch, d)
    keys = list(carry)
    h = torch.stack([carry[key][0] for key in keys]).view(num_layers, *sizes[1:], batch, d)
    m = torch.stack([carry[key][1] for key in keys]).view(num_layers, *sizes[1:], batch, d)
    return outputs, State(h, m)


def single_step(block: GridBlock, inputs: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    """One step of a sequence grid whose block runs without masks: ``naive`` for T = 1, lean.

    Same arguments and results as ``naive`` for ``inputs`` (1, B, d), no lengths and a block
    that runs without masks (``GridBlock.plain``). A grid called one step at a time (sampling,
    streaming) spends most of each step in Python, so each layer here is only the block's
    equations: for a block of one GEMM and one transform (``GridBlock.one_transform``, the
    usual grid) ``H = [h^time; h^depth]`` by one ``cat``, the GEMM and the transform, as
    ``forward_with`` computes them; for any other block, ``forward_with``.
    """
    _, _, num_layers = _grid_shape(block, inputs, state)
    x = inputs[0]  # (B, d)
    h_depth, m_depth = x, torch.zeros_like(x)
    transform = block.one_transform
    if transform is not None:  # each copy's (W, b) of the one stage, split once
        fused = list(zip(block.weights[0].unbind(0), block.biases[0].unbind(0), strict=True))
    else:
        per_copy = block.per_copy()
    copies = range(num_layers) if block.copies > 1 else [0] * num_layers
    hs, ms = [], []
    for copy, h_time, m_time in zip(copies, state.h, state.m, strict=True):
        m = torch.stack([m_time, m_depth], -2)  # (B, 2, d)
        if transform is not None:
            W, b = fused[copy]
            z = torch.addmm(b, torch.cat([h_time, h_depth], -1), W)  # (B, 2 · width · d)
            h, m = transform(z.unflatten(-1, (2, -1)), m)
        else:
            h, m = block.forward_with(BlockState(torch.stack([h_time, h_depth], -2), m),
                                      per_copy[copy])
        (h_time, h_depth), (m_time, m_depth) = h.unbind(-2), m.unbind(-2)
        hs.append(h_time)
        ms.append(m_time)
    return h_depth.unsqueeze(0), State(torch.stack(hs), torch.stack(ms))
