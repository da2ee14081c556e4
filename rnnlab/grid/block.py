"""The N-dimensional Grid LSTM block (Kalchbrenner, Danihelka & Graves 2016, section 3).

A block receives N hidden vectors and N memory vectors, one of each per dimension, and returns
N of each. With ``H = [h_1; …; h_N]`` (the hidden vectors concatenated), dimension k computes

    (h'_k, m'_k) = transform_k(W_k H + b_k, m_k)

where ``transform_k`` is the LSTM transform (``m'_k = g_f ⊙ m_k + g_u ⊙ g_c``,
``h'_k = tanh(g_o ⊙ m'_k)``), its usual-output form, or a non-LSTM ``h'_k = α(V_k H + b_k)``
(see ``transform.py``), or one step of a gated cell of the zoo (see ``cell_transform.py``).
Each dimension keeps its own memory.

Priority dimensions (the paper's section 3.4) are computed after the others: the block works in
stages, first all non-priority dimensions together from the incoming ``H``, then each priority
dimension in the order given, each reading an ``H`` in which every dimension computed before it
already holds its new hidden vector.

Speed: the dimensions of one stage read the same ``H``, so their weights sit side by side in one
matrix and a stage is one GEMM. A block module can also hold ``copies`` independent weight sets
of the same configuration, stacked along a leading axis (one per layer of a grid that is untied
along depth), so that many blocks with different weights run as one batched GEMM
(``torch.baddbmm``); with one copy (tied weights), blocks are rows of one plain GEMM.

Regularisers (``recurrent_dropout``, ``weight_drop``, ``zoneout``, ``layer_norm``; see
``rnnlab.grid.regularise``) transform the cell graph of every LSTM and zoo-cell dimension. A
regularised dimension runs its regularised cell on the engine, from the block's own weights, one
dimension at a time instead of in the stage's GEMM; ``draw`` draws one call's masks, and the
schedules place them on each block's rows (``Masks.at``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from rnnlab.engine.entry import run
from rnnlab.grid.cell_transform import CellTransform
from rnnlab.grid.regularise import DimensionCell, Drawn, Masks, cell_options
from rnnlab.grid.transform import LSTM, TRANSFORMS, Transform

TransformSpec = str | Transform | CellTransform


class BlockState(NamedTuple):
    """The vectors on a block's edges: ``h`` and ``m``, each (…, N, hidden_size).

    ``h[..., k, :]`` and ``m[..., k, :]`` are dimension k's hidden and memory vectors.
    """

    h: torch.Tensor
    m: torch.Tensor


@dataclass(frozen=True)
class _Group:
    """Dimensions of one stage that share a transform: a contiguous chunk of the stage's GEMM."""

    transform: Transform
    dims: tuple[int, ...]
    start: int  # first column of the chunk in the stage's pre-activations
    stop: int


@dataclass(frozen=True)
class _Stage:
    """Dimensions computed together from one ``H``.

    ``groups``: built-in transforms, fused into one GEMM whose weights are ``weights[slot]``;
    ``cells``: dimensions run by zoo cells.
    """

    dims: tuple[int, ...]
    groups: tuple[_Group, ...]
    cells: tuple[int, ...]
    slot: int | None


class Weights(NamedTuple):
    """What one ``forward_with`` call runs with (see ``GridBlock.weights_for``).

    ``stages``: per stage, the fused (W, b), or None for a stage of zoo cells only.
    ``copies``: the copy every row uses (an int), or the copy of each row of the leading axis
    (a range).
    """

    stages: list[tuple[torch.Tensor, torch.Tensor] | None]
    copies: int | range


def resolve_transform(spec: TransformSpec) -> Transform | CellTransform:
    """A transform from its name in ``TRANSFORMS``, ``"cell:<zoo name>"``, or an instance."""
    if isinstance(spec, (Transform, CellTransform)):
        return spec
    if isinstance(spec, str) and spec in TRANSFORMS:
        return TRANSFORMS[spec]
    if isinstance(spec, str) and spec.startswith("cell:"):
        return CellTransform(spec.removeprefix("cell:"))
    raise ValueError(
        f"unknown Grid LSTM transform {spec!r}; expected one of {sorted(TRANSFORMS)}, "
        "'cell:<name>' for a cell of rnnlab.cells, or a Transform or CellTransform instance"
    )


class GridBlock(nn.Module):
    r"""An N-dimensional Grid LSTM block: N hidden and N memory vectors in, N of each out.

    Equations (Kalchbrenner et al. 2016, eqs. 3–5), for each dimension k::

        H        = [h_1; …; h_N]                    (N · hidden_size)
        z_k      = W_k H + b_k
        LSTM:      g_u, g_f, g_o = σ(z_k^u), σ(z_k^f), σ(z_k^o);  g_c = tanh(z_k^c)
                   m'_k = g_f ⊙ m_k + g_u ⊙ g_c;   h'_k = tanh(g_o ⊙ m'_k)
        non-LSTM:  h'_k = α(z_k);  m'_k = m_k (unused)
        zoo cell:  _, (h'_k, m'_k) = cell_k([h_j for j ≠ k], (h_k, m_k))

    Args:
        num_dims: N, the number of dimensions (at least 1).
        hidden_size: size d of every hidden and memory vector.
        transforms: one transform per dimension: a name from ``rnnlab.grid.transform.TRANSFORMS``
            (``"lstm"`` the paper's form, ``"lstm_standard"`` with ``h' = g_o ⊙ tanh(m')``,
            ``"tanh"``, ``"relu"``, ``"identity"``), a ``Transform``, or a zoo cell as
            ``CellTransform("gru")`` or ``"cell:gru"``; a single value applies to every
            dimension. Default ``"lstm"``.
        priority: dimensions computed after all others, in this order; each reads the new
            hidden vectors of every dimension computed before it. Default none.
        copies: number of independent weight sets (e.g. one per layer of an untied grid);
            ``forward``'s ``index`` chooses which copies run. Default 1.
        recurrent_dropout, weight_drop, zoneout, layer_norm: regularisers of the cell graph of
            every LSTM and zoo-cell dimension (``rnnlab.grid.regularise``): locked dropout of
            h_k where it enters dimension k's recurrent product (one mask per sequence and
            layer), DropConnect of its recurrent matrices (one mask per call), zoneout of its
            state fields (a probability, or ``{field: p}``; a new mask at every block), layer
            normalisation of its pre-activations and memory. Default 0 and False: none.

    Parameters (``D = N · d``; the weights are stored input-major for ``x @ W``):
        ``weights[s]``: (copies, D, out_s) and ``biases[s]``: (copies, out_s) for stage s, the
        columns of its dimensions side by side, ``4d`` for an LSTM dimension (gates in the order
        u, f, o, c) and ``d`` for a non-LSTM one. ``dimension_parameters(k)`` returns
        dimension k's ``W_k`` (out_k, D) and ``b_k`` in the paper's orientation.
        Initialisation: weights ~ U(−1/√D, 1/√D); biases 0, LSTM forget gates +1.
        A zoo-cell dimension k has its own modules instead, ``cells[str(k)][copy]``, built and
        initialised by ``rnnlab.cells.make``. With regularisers, an LSTM dimension k has
        ``dimension_cells[str(k)][copy]`` (``DimensionCell``s, its regularised cell), holding
        only its layer-norm gains and shifts, (d,) each.

    Shape:
        ``forward(state, index=None)`` with ``state = BlockState(h, m)``:

        - one copy (``copies == 1``, ``index=None``): ``h``, ``m`` (*, N, d), any leading axes,
          all rows sharing the weights;
        - ``index`` an int: ``h``, ``m`` (*, N, d), run with copy ``index``;
        - ``index`` a slice of n copies: ``h``, ``m`` (n, *, N, d), row i of the leading axis
          runs with copy ``index.start + i``.

        Returns the new ``BlockState`` with the same shapes. ``masks`` (a regularised block):
        this call's ``Masks`` placed on its rows (``draw(…).at(layers)``); drawn for the call
        when omitted (in training, then, every call has new sequence masks).

    Example::

        >>> block = GridBlock(3, 16, transforms=("lstm", "lstm", "tanh"), priority=(2,))
        >>> state = BlockState(torch.zeros(8, 3, 16), torch.zeros(8, 3, 16))
        >>> block(state).h.shape
        torch.Size([8, 3, 16])
    """

    def __init__(
        self,
        num_dims: int,
        hidden_size: int,
        transforms: TransformSpec | Sequence[TransformSpec] = "lstm",
        priority: Sequence[int] = (),
        copies: int = 1,
        recurrent_dropout: float = 0.0,
        weight_drop: float = 0.0,
        zoneout: float | dict[str, float] = 0.0,
        layer_norm: bool | str = False,
    ):
        super().__init__()
        if num_dims < 1:
            raise ValueError(f"num_dims must be at least 1, got {num_dims}")
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be positive, got {hidden_size}")
        if copies < 1:
            raise ValueError(f"copies must be at least 1, got {copies}")
        if isinstance(transforms, (str, Transform, CellTransform)):
            transforms = [transforms] * num_dims
        if len(transforms) != num_dims:
            raise ValueError(
                f"transforms must give one transform per dimension: expected {num_dims}, "
                f"got {len(transforms)} ({list(transforms)!r})"
            )
        priority = tuple(priority)
        if len(set(priority)) != len(priority) or not all(0 <= k < num_dims for k in priority):
            raise ValueError(
                f"priority must list distinct dimensions in 0..{num_dims - 1}, got {priority}"
            )
        self.num_dims = num_dims
        self.hidden_size = hidden_size
        self.copies = copies
        self.transforms = tuple(resolve_transform(t) for t in transforms)
        self.priority = priority

        first = tuple(k for k in range(num_dims) if k not in priority)
        stage_dims = ([first] if first else []) + [(k,) for k in priority]
        stages, widths = [], []
        for dims in stage_dims:
            stage, width = self._plan_stage(dims, len(widths))
            stages.append(stage)
            if width:
                widths.append(width)
        self.stages = tuple(stages)
        fan_in = num_dims * hidden_size
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(copies, fan_in, width)) for width in widths
        )
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(copies, width)) for width in widths)
        self.regularisers = cell_options(recurrent_dropout, weight_drop, zoneout, layer_norm)
        self.cells = nn.ModuleDict(
            {
                str(k): nn.ModuleList(
                    t.build(num_dims, hidden_size, **self.regularisers) for _ in range(copies)
                )
                for k, t in enumerate(self.transforms)
                if isinstance(t, CellTransform)
            }
        )
        # The dimensions whose cell graph is regularised: every LSTM and zoo-cell dimension.
        self.regularised = tuple(
            k for k, t in enumerate(self.transforms) if isinstance(t, (LSTM, CellTransform))
        ) if self.regularisers else ()
        if self.regularisers and not self.regularised:
            raise ValueError(
                f"{', '.join(self.regularisers)} act on the cell graphs of a block's LSTM and "
                f"zoo-cell dimensions; this block's transforms {list(transforms)} have none"
            )
        # An empty dict without regularisers: the block then prints and saves as before.
        self.dimension_cells = nn.ModuleDict({
            str(k): nn.ModuleList(
                DimensionCell(t.cell, t.gates, k, num_dims, hidden_size, **self.regularisers)
                for _ in range(copies)
            )
            for k, t in enumerate(self.transforms) if isinstance(t, LSTM)
        }) if self.regularisers else {}
        # Dropout and weight drop alone: evaluation is the plain block (their expectation 1);
        # zoneout (expectation p) and layer norm change the cell, and a zoo cell made with
        # masks steps only with them.
        self.plain_in_evaluation = not self.cells and not {"zoneout", "layer_norm"} & set(
            self.regularisers)
        self.reset_parameters()

    def _plan_stage(self, dims: tuple[int, ...], slot: int) -> tuple[_Stage, int]:
        """A stage of ``dims`` whose fused weights would be ``weights[slot]``; and their width."""
        fused = [k for k in dims if isinstance(self.transforms[k], Transform)]
        groups, start = [], 0
        for transform in dict.fromkeys(self.transforms[k] for k in fused):
            members = tuple(k for k in fused if self.transforms[k] == transform)
            stop = start + len(members) * transform.width * self.hidden_size
            groups.append(_Group(transform, members, start, stop))
            start = stop
        cells = tuple(k for k in dims if k not in fused)
        return _Stage(dims, tuple(groups), cells, slot if groups else None), start

    def reset_parameters(self) -> None:
        """Weights ~ U(−1/√D, 1/√D), biases as each transform says; zoo cells keep their own."""
        bound = 1.0 / math.sqrt(self.num_dims * self.hidden_size)
        for weight in self.weights:
            nn.init.uniform_(weight, -bound, bound)
        for stage in self.stages:
            for group in stage.groups:
                bias = self.biases[stage.slot][:, group.start : group.stop]
                group.transform.init_bias(bias.unflatten(-1, (len(group.dims), -1)))
        for cells in self.dimension_cells.values():
            for cell in cells:
                cell.reset_parameters()

    def dimension_parameters(self, k: int, copy: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Dimension k's ``W_k`` (out_k, N · d) and ``b_k`` (out_k,) in copy ``copy`` (views)."""
        if str(k) in self.cells:
            raise ValueError(
                f"dimension {k} is a zoo cell ({self.transforms[k]!r}); its parameters are "
                f"those of block.cells['{k}'][{copy}]"
            )
        stage, columns = self.columns(k)
        slot = self.stages[stage].slot
        return self.weights[slot][copy, :, columns].T, self.biases[slot][copy, columns]

    def columns(self, k: int) -> tuple[int, slice]:
        """Where dimension k's pre-activations are computed: its stage and its columns there.

        ``weights_for(…).stages[stage]`` is that stage's fused (W, b); ``W[..., columns]`` is
        dimension k's ``W_k`` input-major (N · d, out_k). Only for built-in transforms.
        """
        for index, stage in enumerate(self.stages):
            for group in stage.groups:
                if k in group.dims:
                    width = (group.stop - group.start) // len(group.dims)
                    start = group.start + group.dims.index(k) * width
                    return index, slice(start, start + width)
        if str(k) in self.cells:
            raise ValueError(
                f"dimension {k} is a zoo cell ({self.transforms[k]!r}); it computes its own "
                "pre-activations and has no columns in the block's fused weights"
            )
        raise ValueError(f"dimension must be in 0..{self.num_dims - 1}, got {k}")

    def forward(
        self, state: BlockState, index: int | slice | None = None, masks: Masks | None = None
    ) -> BlockState:
        h, m = state
        expected = (self.num_dims, self.hidden_size)
        if tuple(h.shape[-2:]) != expected or h.shape != m.shape:
            raise ValueError(
                f"block state must be h and m of equal shape (…, {expected[0]}, {expected[1]}) "
                f"(num_dims, hidden_size); got h {tuple(h.shape)} and m {tuple(m.shape)}"
            )
        if isinstance(index, int):
            new = self.forward_with(
                BlockState(h.unsqueeze(0), m.unsqueeze(0)),
                self.weights_for(slice(index, index + 1)),
                masks,
            )
            return BlockState(new.h.squeeze(0), new.m.squeeze(0))
        return self.forward_with(state, self.weights_for(index), masks)

    @property
    def one_transform(self) -> Transform | None:
        """The transform of every dimension when the block is one stage of one built-in
        transform (one GEMM, then one transform over all dimensions), else None."""
        stage = self.stages[0]
        if len(self.stages) == 1 and len(stage.groups) == 1 and not stage.cells:
            return stage.groups[0].transform
        return None

    @property
    def plain(self) -> bool:
        """Whether a call now runs the plain block, without masks (``draw`` gives None): no
        regularisers, or in evaluation with dropouts and weight drop alone."""
        return not self.regularised or (not self.training and self.plain_in_evaluation)

    def draw(self, batch_size: int, num_layers: int, like: torch.Tensor) -> Masks | None:
        """One call's masks for a grid of ``num_layers`` layers over ``batch_size`` sequences.

        For every regularised dimension: its sequence masks, (num_layers, B, d) per mask field
        (one per sequence and layer, the same at every position), and its prepared weights per
        copy (weight drop: one mask per matrix and call). In evaluation the masks are their
        expectation. None when the block runs as the plain block: no regularisers, or in
        evaluation with dropouts and weight drop alone.
        """
        if self.plain:
            return None
        dims = {}
        per_copy = [self._columns_of(weights) for weights in self.per_copy()]
        for k in self.regularised:
            if str(k) in self.cells:
                cells = self.cells[str(k)]
                weights = [cell.weights() for cell in cells]
            else:
                cells = self.dimension_cells[str(k)]
                weights = [cell.weights_from(W[k].T, b[k])
                           for cell, (W, b) in zip(cells, per_copy, strict=True)]
            cell = cells[0]  # the copies' masks are alike: drawn by the first
            state = tuple(mask.view(num_layers, batch_size, -1)
                          for mask in cell.state_masks(num_layers * batch_size, like))
            dims[k] = Drawn(cell, weights, state)
        return Masks(dims)

    def weights_for(self, index: slice | None) -> Weights:
        """The weights that ``index`` selects: ``None`` for the one copy, or a slice of copies.

        Per fused stage, ``None`` gives W (D, out_s) and b (out_s,); a slice of n copies gives
        W (n, D, out_s) and b (n, out_s). The whole range and the single copy are used without
        a slicing op, so their gradients reach the parameters without a zero-filled buffer per
        call.
        """
        if index is None:
            if self.copies != 1:
                raise ValueError(
                    f"this block holds {self.copies} weight copies (untied); pass index= "
                    "an int or a slice of copies"
                )
            stages = [(w.squeeze(0), b.squeeze(0)) for w, b in self._fused()]
            return Weights(self._by_stage(stages), 0)
        copies = range(*index.indices(self.copies))
        if copies == range(self.copies):
            return Weights(self._by_stage(list(self._fused())), copies)
        return Weights(self._by_stage([(w[index], b[index]) for w, b in self._fused()]), copies)

    def per_copy(self) -> list[Weights]:
        """Each copy's weights, W (D, out_s) per stage, split once for many ``forward_with``."""
        split = [(w.unbind(0), b.unbind(0)) for w, b in self._fused()]
        return [
            Weights(self._by_stage([(w[c], b[c]) for w, b in split]), c) for c in range(self.copies)
        ]

    def _fused(self):
        return zip(self.weights, self.biases, strict=True)

    def _by_stage(self, fused: list) -> list:
        return [None if stage.slot is None else fused[stage.slot] for stage in self.stages]

    def forward_with(
        self, state: BlockState, weights: Weights, masks: Masks | None = None
    ) -> BlockState:
        """The block's equations with the given weights (see ``weights_for``, ``per_copy``).

        With W (D, out_s) every row of ``state`` shares the weights; with W (n, D, out_s) the
        state's leading axis has n rows, row i using W[i]. Shapes are checked by ``forward``,
        not here (the schedules call this in their inner loop). ``masks``: see ``forward``.
        """
        if masks is None and self.regularised:
            h = state.h
            masks = self.draw(h.shape[-3] if h.dim() > 2 else 1, 1, h)
            masks = None if masks is None else masks.at(0)
        if masks is not None:
            return self._forward_masked(state, weights, masks)
        h, m = state
        transform = self.one_transform
        if transform is not None:  # no per-dimension bookkeeping
            z = _affine(h.flatten(-2), *weights.stages[0])  # (…, N · width · d)
            h, m = transform(z.unflatten(-1, (self.num_dims, -1)), m)
            return BlockState(h, m)
        hs, ms = list(h.unbind(-2)), list(m.unbind(-2))
        for stage, fused in zip(self.stages, weights.stages, strict=True):
            new = {}  # every dimension of a stage reads the H the stage started with
            if fused is not None:
                z = _affine(torch.cat(hs, dim=-1), *fused)  # H with the newest vectors
                for group in stage.groups:
                    z_group = z[..., group.start : group.stop].unflatten(-1, (len(group.dims), -1))
                    m_group = torch.stack([ms[k] for k in group.dims], dim=-2)
                    h_new, m_new = group.transform(z_group, m_group)
                    for i, k in enumerate(group.dims):
                        new[k] = h_new[..., i, :], m_new[..., i, :]
            for k in stage.cells:
                new[k] = self._cell_step(k, hs, ms[k], weights.copies)
            for k, (h_k, m_k) in new.items():
                hs[k], ms[k] = h_k, m_k
        return BlockState(torch.stack(hs, dim=-2), torch.stack(ms, dim=-2))

    def _columns_of(self, weights: Weights) -> tuple[dict, dict]:
        """Each fused dimension's W_k (D, out_k) and b_k of one copy's ``weights``: splits, so
        their gradients join with one ``cat`` and no zero-filled buffer per dimension."""
        W_of, b_of = {}, {}
        for stage, fused in zip(self.stages, weights.stages, strict=True):
            if fused is None:
                continue
            dims = sorted((k for g in stage.groups for k in g.dims),
                          key=lambda k: self.columns(k)[1].start)
            widths = [self.transforms[k].width * self.hidden_size for k in dims]
            W_of.update(zip(dims, fused[0].split(widths, dim=-1), strict=True))
            b_of.update(zip(dims, fused[1].split(widths, dim=-1), strict=True))
        return W_of, b_of

    def _forward_masked(self, state: BlockState, weights: Weights, masks: Masks) -> BlockState:
        """``forward_with`` of a regularised block: each regularised dimension runs its cell;
        activation dimensions keep their columns of the stage's weights."""
        hs, ms = list(state.h.unbind(-2)), list(state.m.unbind(-2))
        for stage, fused in zip(self.stages, weights.stages, strict=True):
            new = {}  # every dimension of a stage reads the H the stage started with
            for group in stage.groups:
                if group.dims[0] in masks:
                    continue
                W, b = fused
                columns = slice(group.start, group.stop)
                z = _affine(torch.cat(hs, dim=-1), W[..., columns], b[..., columns])
                m_group = torch.stack([ms[k] for k in group.dims], dim=-2)
                h_new, m_new = group.transform(z.unflatten(-1, (len(group.dims), -1)), m_group)
                for i, k in enumerate(group.dims):
                    new[k] = h_new[..., i, :], m_new[..., i, :]
            for k in stage.dims:
                if k in masks:
                    new[k] = self._masked_step(k, hs, ms[k], weights.copies, masks)
                elif k in stage.cells:
                    new[k] = self._cell_step(k, hs, ms[k], weights.copies)
            for k, (h_k, m_k) in new.items():
                hs[k], ms[k] = h_k, m_k
        return BlockState(torch.stack(hs, dim=-2), torch.stack(ms, dim=-2))

    def _masked_step(self, k, hs, m, copies, masks: Masks):
        """Regularised dimension k: its cell with x = the other hidden vectors (a 1-wide zero
        placeholder in a 1-D block), state (h_k, m_k) and this call's masks."""
        others = hs[:k] + hs[k + 1 :]
        x = torch.cat(others, dim=-1) if others else hs[k].new_zeros(*hs[k].shape[:-1], 1)
        if isinstance(copies, int):
            return _run_masked(masks, k, copies, x, hs[k], m)
        rows = [_run_masked(masks, k, c, x[i], hs[k][i], m[i], i) for i, c in enumerate(copies)]
        return torch.stack([h_row for h_row, _ in rows]), torch.stack([m_row for _, m_row in rows])

    def _cell_step(self, k, hs, m, copies):
        """Dimension k's zoo cell: x = the other hidden vectors, state = (h_k, m_k)."""
        x = torch.cat(hs[:k] + hs[k + 1 :], dim=-1)  # (…, (N − 1) · d)
        step, cells = self.transforms[k], self.cells[str(k)]
        if isinstance(copies, int):
            return step(cells[copies], x, hs[k], m)
        rows = [step(cells[c], x[i], hs[k][i], m[i]) for i, c in enumerate(copies)]
        return torch.stack([h_row for h_row, _ in rows]), torch.stack([m_row for _, m_row in rows])

    def extra_repr(self) -> str:
        names = {v: k for k, v in TRANSFORMS.items()}
        transforms = [names.get(t, repr(t)) for t in self.transforms]
        regularisers = "".join(f", {k}={v!r}" for k, v in self.regularisers.items())
        return (
            f"num_dims={self.num_dims}, hidden_size={self.hidden_size}, "
            f"transforms={transforms}, priority={self.priority}, copies={self.copies}"
            f"{regularisers}"
        )


def _run_masked(masks: Masks, k: int, copy: int, x, h, m, i: int | None = None):
    """One step of regularised dimension k's cell with copy ``copy``'s weights over rows of any
    leading shape (ending with the batch): x (…, I), h and m (…, d) → (h', m'); ``i``: see
    ``Masks.state``."""
    drawn = masks.dims[k]
    lead, d = h.shape[:-1], h.shape[-1]
    rows = masks.rows(k, x.reshape(1, -1, x.shape[-1]))
    carried = (h.reshape(-1, d), m.reshape(-1, d))[: 1 + drawn.memory]
    _, new = run(drawn.cell.program, drawn.weights[copy], rows,
                 (*carried, *masks.state(k, tuple(lead), i)))
    return new[0].view(*lead, d), (new[1].view(*lead, d) if drawn.memory else m)


def _affine(H: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``H W + b``: one GEMM for shared weights (D, out), one batched GEMM for (n, D, out)."""
    if weight.dim() == 2:
        return torch.addmm(bias, H.reshape(-1, H.shape[-1]), weight).view(*H.shape[:-1], -1)
    if H.shape[0] != weight.shape[0]:
        raise ValueError(
            f"{weight.shape[0]} weight copies selected but the state's leading axis has "
            f"{H.shape[0]} rows; expected one row per selected copy"
        )
    rows = H.reshape(H.shape[0], -1, H.shape[-1])  # (n, M, D)
    return torch.baddbmm(bias.unsqueeze(1), rows, weight).view(*H.shape[:-1], -1)
