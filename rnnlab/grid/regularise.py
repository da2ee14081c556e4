"""Regularisers of a Grid LSTM: each dimension's cell graph regularised, and locked dropout of the
grid's input and output.

A grid dimension whose transform is a cell — an LSTM transform (the zoo cells ``grid_lstm``,
``grid_lstm_standard``) or a zoo cell (``CellTransform``) — is one step of that cell with input
x = the other dimensions' hidden vectors and state (h_k, m_k) (see ``cell_transform.py``). The
regularisers of ``rnnlab.lang.regularise`` transform that cell graph, so on a grid they mean, for
every such dimension k of every block:

* ``recurrent_dropout`` — locked dropout of h_k where it enters dimension k's own recurrent
  product: ``R_k h_k`` becomes ``R_k (μ_k ⊙ h_k)``. One mask per sequence and layer, the same at
  every position of the grid (every time step; every pixel of an image grid); the other
  dimensions read h_k unmasked.
* ``weight_drop`` — DropConnect of dimension k's recurrent matrices ``R_k`` (the rows of ``W_k``
  that read h_k), one mask per matrix per call: a tied grid's one matrix has one mask, shared by
  every layer, an untied grid one mask per layer.
* ``zoneout`` — each unit of h_k and m_k keeps the value it entered the block with, with
  probability p, a new mask at every block (every position and layer): zoneout along time for
  the time dimension, along depth for the depth dimension (the layer passes its input through).
  A probability for every field or ``{"h": p_h, "m": p_m}`` (a zoo cell's own field names).
* ``layer_norm`` — in each gate's pre-activation the part read from the other dimensions and the
  part read from h_k are normalised apart, each with its own gain, and the memory m' where the
  step reads it (``h' = tanh(o ⊙ LN(m'))``); gains start at 1, shifts at 0. Parameters per
  weight copy (per layer, or one set when tied). True or ``"gate"``: each gate's own
  statistics; ``"joint"``: all gates' together (``rnnlab.lang.regularise.layer_norm``).

and on the grid as a whole:

* ``input_dropout`` — locked dropout of the grid's input features before the projection
  ``I x``: one mask per sequence (per image), the same at every position.
* ``output_dropout`` — locked dropout of the grid's output (the top layer's depth vectors), one
  mask per sequence, the same at every position; the carried state keeps the unmasked values.

Sequence masks (recurrent dropout) are drawn **per layer, tied or not**: layer l's blocks have
their own mask, as the layers of a stack do, though a tied grid's layers share their weights.
A 1-D grid (``DeepGridLSTM``) has no other dimension: its cell is the zoo cell without the maps
of x (``u = σ(R_u h + b_u)`` …), run along depth, so recurrent dropout drops each layer's input
h_{l−1} (the same units at every time step of a sequence), weight drop masks each layer's W,
zoneout keeps h_{l−1}, m_{l−1} across a layer, and layer norm normalises ``W_l h_{l−1}``.

Evaluation uses every mask's expectation: with dropouts and weight drop alone the grid computes
the unregularised grid itself (the same code, bit for bit); zoneout's ``p·s + (1 − p)·s_new`` and
layer norm keep their cell. Activation dimensions (``tanh``, ``relu``, ``identity``) have no cell
graph and are not regularised.

The regularised cells run on the engine (``rnnlab.engine.run``) from the block's own weights:
an LSTM dimension's ``W_k`` and ``b_k`` are split into the cell's ``W_g``, ``R_g``, ``b_g``
(``DimensionCell``, a ``rnnlab.cells.Cell`` per weight copy holding only what regularisation
adds); a zoo-cell dimension is a cell made with the regularisers (``rnnlab.cells.make``).
``GridBlock.draw`` draws one call's masks (``Masks``).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from rnnlab import cells
from rnnlab.cells import Cell
from rnnlab.lang import Graph
from rnnlab.lang.mutate import replace_with_ancestor
from rnnlab.lang.regularise import layer_norm_gains, regularise

# The options acting on each dimension's cell graph, and those acting on the grid's input and
# output; together rnnlab.lang.regularise.OPTIONS.
CELL_OPTIONS = ("recurrent_dropout", "weight_drop", "zoneout", "layer_norm")
GRID_OPTIONS = ("input_dropout", "output_dropout")


def grid_dropout(name: str, p) -> float:
    """An input or output dropout probability, checked: in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {p!r}")
    return float(p)


def cell_options(recurrent_dropout=0.0, weight_drop=0.0, zoneout=0.0, layer_norm=False) -> dict:
    """The cell regularisers that are on (0, False and an empty zoneout dict are off)."""
    given = {"recurrent_dropout": recurrent_dropout, "weight_drop": weight_drop,
             "zoneout": zoneout, "layer_norm": layer_norm}
    return {name: value for name, value in given.items()
            if value is not False and value != 0 and value != {}}


def grid_options(input_dropout=0.0, recurrent_dropout=0.0, output_dropout=0.0, weight_drop=0.0,
                 zoneout=0.0, layer_norm=False) -> dict:
    """All six regularisers of a grid module that are on, in ``OPTIONS`` order; input and
    output dropout checked here, the cell ones when the block regularises its cells."""
    on = {"input_dropout": grid_dropout("input_dropout", input_dropout)}
    on |= cell_options(recurrent_dropout=recurrent_dropout)
    on["output_dropout"] = grid_dropout("output_dropout", output_dropout)
    on |= cell_options(weight_drop=weight_drop, zoneout=zoneout, layer_norm=layer_norm)
    return {name: value for name, value in on.items() if value != 0}


def describe(options: dict) -> str:
    """The regularisers that are on, for a module's ``extra_repr``: ``input_dropout=0.2, …``."""
    return ", ".join(f"{name}={value!r}" for name, value in options.items())


def of_cells(options: dict) -> dict:
    """The options (``grid_options``) that act on the cells, for ``GridBlock``."""
    return {name: value for name, value in options.items() if name in CELL_OPTIONS}


def locked_dropout(x: torch.Tensor, p: float, training: bool, batch_axis: int | None):
    """``x`` times one inverted-dropout mask per row of ``batch_axis`` over the last axis (the
    features), the same along every other axis (every position of a sequence or image); one
    mask for all of x when ``batch_axis`` is None. x itself when not training or p = 0."""
    if not training or p == 0:
        return x
    shape = [1] * x.dim()
    shape[-1] = x.shape[-1]
    if batch_axis is not None:
        shape[batch_axis] = x.shape[batch_axis]
    keep = 1.0 - p
    return x * (x.new_empty(shape).bernoulli_(keep) / keep)


def dimension_graph(cell: str, num_dims: int, hidden_size: int) -> Graph:
    """The zoo cell ``cell`` as dimension k of an N-dimensional block.

    N ≥ 2: the cell at input size (N − 1)·d, x the other dimensions' hidden vectors (in
    dimension order) and state (h_k, m_k). N = 1: the cell without its maps of x (``W_g x +
    R_g h + b_g`` becomes ``R_g h + b_g``; x is a 1-wide placeholder the step does not read).
    """
    if num_dims > 1:
        return cells.graph(cell, (num_dims - 1) * hidden_size, hidden_size)
    graph = cells.graph(cell, 1, hidden_size)
    for name in list(graph.nodes):
        node = graph.nodes.get(name)
        if node is None or node.op != "add" or len(node.args) != 2:
            continue
        reads_x = [a for a in node.args if graph.nodes[a].op == "linear"
                   and graph.nodes[a].args == ("x",)]
        if len(reads_x) == 1:
            other = node.args[1] if node.args[0] == reads_x[0] else node.args[0]
            graph = replace_with_ancestor(graph, name, other)
    graph = graph.pruned().validate()
    if any(node.op == "linear" and node.args == ("x",) for node in graph.nodes.values()):
        raise ValueError(
            f"cell {cell!r} reads its input x other than in sums W x + R h, so it has no form "
            "without x for the one dimension of a 1-D grid block")
    return graph


class DimensionCell(Cell):
    """An LSTM dimension of a block as its zoo cell's graph, regularised, for one weight copy.

    A ``rnnlab.cells.Cell`` of ``regularise(dimension_graph(cell, N, d), **options)``
    (``print`` shows the equations with their masks; ``program`` is its plan, masks are drawn as
    any cell draws them) whose ``W_g``, ``R_g`` and ``b_g`` are not its own: they are the block's
    weights, handed over on every call (``weights_from``). Its parameters are what the
    regularisers add: the layer-norm gains ``g_*`` (start at 1) and shifts (start at 0, as the
    block's biases), each (d,).

    Args:
        cell: the zoo cell of the transform (``LSTM.cell``), whose gates read
            ``W_g x + R_g h + b_g``.
        gates: the order of the gates in the block's columns (``LSTM.gates``).
        dimension, num_dims, hidden_size: k, N and d of the block.
        options: the regularisers (``CELL_OPTIONS``), passed to ``rnnlab.lang.regularise``.
    """

    def __init__(self, cell: str, gates: tuple[str, ...], dimension: int, num_dims: int,
                 hidden_size: int, **options):
        base = dimension_graph(cell, num_dims, hidden_size)
        own = {f"{kind}_{g}" for g in gates for kind in ("W", "R", "b")}
        if not set(base.params) <= own:
            raise ValueError(
                f"cell {cell!r} has parameters {sorted(set(base.params) - own)} besides its "
                f"gates' W_g, R_g, b_g ({', '.join(gates)}), so it cannot take a block's weights")
        super().__init__(regularise(base, **options))
        for name in base.params:  # the block's
            delattr(self, name)
        self.gates = gates
        self.dimension = dimension
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Layer-norm gains 1, shifts 0."""
        gains = layer_norm_gains(self.graph)
        with torch.no_grad():
            for name, parameter in self.named_parameters(recurse=False):
                parameter.fill_(1.0 if name in gains else 0.0)

    def weights(self):
        raise TypeError("a DimensionCell's W_g, R_g and b_g are its block's: prepare its "
                        "weights with weights_from(W_k, b_k) (GridBlock.draw does)")

    def weights_from(self, W_k: torch.Tensor, b_k: torch.Tensor) -> dict:
        """The prepared weights of one call from the block's ``W_k`` (out_k, N · d) and ``b_k``
        (out_k,) of this copy; in training with weight drop, each recurrent matrix times a new
        mask (one per call)."""
        d = self.hidden_size
        blocks = W_k.split(d, dim=1)  # the columns reading h_1 … h_N
        params = dict(self.named_parameters(recurse=False))
        for g, R_g, b_g in zip(self.gates, blocks[self.dimension].split(d), b_k.split(d),
                               strict=True):
            params[f"R_{g}"], params[f"b_{g}"] = R_g, b_g
        others = blocks[:self.dimension] + blocks[self.dimension + 1:]
        if others:
            for g, W_g in zip(self.gates, torch.cat(others, dim=1).split(d), strict=True):
                params[f"W_{g}"] = W_g
        if self.drawing:
            for mask in self.graph.masks.values():
                if mask.kind == "weight" and mask.p > 0:
                    R = params[mask.target]
                    params[mask.target] = R * self._bernoulli(R.shape, mask.p, R)
        return self.program.prepare(params)

    def extra_repr(self) -> str:
        return f"dimension={self.dimension}, {super().extra_repr()}"

    def __repr__(self) -> str:
        return "Dimension" + super().__repr__()


@dataclasses.dataclass(frozen=True)
class Drawn:
    """One regularised dimension's draw for a call: its cell (``program``, ``graph``,
    ``step_masks``), its prepared weights per copy, and its sequence masks, each
    (num_layers, B, d), one per layer."""

    cell: nn.Module
    weights: list[dict]
    state: tuple[torch.Tensor, ...]

    @property
    def memory(self) -> bool:
        """Whether the cell carries a memory besides h (else m passes through unchanged)."""
        return len(self.cell.graph.carried) == 2


@dataclasses.dataclass(frozen=True)
class Masks:
    """One call's masks of a regularised block (``GridBlock.draw``), and which layers the rows
    of a block call belong to (``at``).

    ``dims``: dimension -> its ``Drawn``. ``layers``: None (not placed yet), an int (every row
    of the call is that layer) or a range (the leading axis of the rows runs over these layers).
    """

    dims: dict[int, Drawn]
    layers: int | range | None = None

    def at(self, layers: int | range) -> Masks:
        """These masks for a block call whose rows are ``layers`` (see the class)."""
        return dataclasses.replace(self, layers=layers)

    def __contains__(self, k: int) -> bool:
        return k in self.dims

    def state(self, k: int, lead: tuple[int, ...], i: int | None = None):
        """Dimension k's sequence masks for rows of shape ``lead`` (ending with the batch),
        each (rows, d); ``i``: the row's position on the leading axis of a call over a range of
        layers run copy by copy (then ``lead`` is that row's shape)."""
        layers = self.layers
        out = []
        for mask in self.dims[k].state:  # (L, B, d)
            if isinstance(layers, range) and i is None:  # the leading axis is the layers
                mask = mask[layers.start:layers.stop]
                mask = mask.view(mask.shape[0], *[1] * (len(lead) - 2), *mask.shape[1:])
            else:
                mask = mask[layers[i] if isinstance(layers, range) else layers]  # (B, d)
            d = mask.shape[-1]
            out.append(mask.expand(*lead, d).reshape(-1, d) if lead else mask.reshape(1, d))
        return tuple(out)

    def rows(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """x (T, rows, I) followed by dimension k's zoneout masks for those steps and rows,
        drawn now (the engine's input rows, ``Cell.with_step_masks``); x itself without."""
        masks = self.dims[k].cell.step_masks(x.shape[0], x.shape[1], x)
        return x if masks is None else torch.cat([x, masks], dim=-1)
