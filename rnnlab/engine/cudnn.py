"""Whole networks of the cells cuDNN computes, run by torch's own RNN function.

cuDNN (through ``torch._VF.lstm`` / ``gru`` / ``rnn_tanh`` / ``rnn_relu``, the functions
``torch.nn.LSTM`` / ``GRU`` / ``RNN`` call; on CPU the same functions run torch's own loop)
computes four cells exactly:

=========  =====================================================  ==========================
cell       equations (rnnlab's names)                             torch's gate blocks
=========  =====================================================  ==========================
lstm       i, f, o = σ(W_* x + R_* h + b_*), z = tanh(…)          [i; f; g; o], g = z
           c' = f ⊙ c + i ⊙ z, h' = o ⊙ tanh(c')
gru_torch  r, z = σ(W_i* x + W_h* h + b_*)                        [r; z; n]
           n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
           h' = (1 − z) ⊙ n + z ⊙ h
rnn        h' = tanh(W x + R h + b)                               one block
ReLU RNN   h' = relu(W x + R h + b) (a cell written so; not in    one block
           the zoo)
=========  =====================================================  ==========================

A cell takes this route when its graph *is* one of these equations — the same ops over the
same parameter names, whatever the cell's name, its node names or the order of the terms of a
sum — and it has no regulariser masks. ``forget_bias`` is only the initial value of ``b_f``, so
any value runs here. torch keeps two biases per gate block, ``b_ih`` and ``b_hh``, whose sum
is rnnlab's one bias: it goes to ``b_ih`` with zeros in ``b_hh``, except GRU's ``b_hn``, which
sits inside the reset product and so is ``b_hh``'s n block.

``network_weights`` assembles the paper-named parameters into torch's flat weight list on every
call, as one concatenation viewed back into the list (so cuDNN may find them in one contiguous
buffer): a differentiable copy, so gradients flow back to ``W_i``, ``R_i``, … ``forward`` runs
all layers and both directions of an ``rnnlab.RNN`` in one call, with torch's dropout between
layers and packed sequences through torch's packed form. The route table
(``rnnlab.engine.route.network_route``) decides when.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import _VF
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells import zoo
from ..lang import Graph, cell, relu


@cell("rnn_relu", state=("h",))
def rnn_relu(x, state, p):
    """Elman RNN with ReLU: h' = relu(W x + R h + b) (torch.nn.RNN(nonlinearity="relu"))."""
    h = relu(p.W @ x + p.R @ state.h + p.b)
    return h, (h,)


@dataclass(frozen=True)
class TorchCell:
    """One cell torch's RNN functions compute: the function and where its weights come from.

    Each tuple lists, block by block in torch's gate order, the rnnlab parameter that block is;
    ``None`` in ``bias_hh`` is a zero block (rnnlab holds ``b_ih + b_hh`` in ``bias_ih``'s)."""

    mode: str  # torch's name: "LSTM", "GRU", "RNN_TANH", "RNN_RELU"
    function: Callable  # torch._VF.lstm, …: (input, [batch_sizes,] hx, weights, has_biases, …)
    weight_ih: tuple[str, ...]
    weight_hh: tuple[str, ...]
    bias_ih: tuple[str, ...]
    bias_hh: tuple[str | None, ...]

    @property
    def has_cell_state(self) -> bool:
        """Whether torch's function takes and returns (h, c) rather than h."""
        return self.mode == "LSTM"


LSTM = TorchCell("LSTM", _VF.lstm, ("W_i", "W_f", "W_z", "W_o"), ("R_i", "R_f", "R_z", "R_o"),
                 ("b_i", "b_f", "b_z", "b_o"), (None, None, None, None))
GRU = TorchCell("GRU", _VF.gru, ("W_ir", "W_iz", "W_in"), ("W_hr", "W_hz", "W_hn"),
                ("b_r", "b_z", "b_in"), (None, None, "b_hn"))
RNN_TANH = TorchCell("RNN_TANH", _VF.rnn_tanh, ("W",), ("R",), ("b",), (None,))
RNN_RELU = TorchCell("RNN_RELU", _VF.rnn_relu, ("W",), ("R",), ("b",), (None,))

# the equations each torch cell computes, as cells written in the cell language
_TEMPLATES = ((zoo.lstm, LSTM), (zoo.gru_torch, GRU), (zoo.rnn, RNN_TANH), (rnn_relu, RNN_RELU))
_COMMUTATIVE = ("add", "mul")


def signature(graph: Graph) -> str:
    """The equations of ``graph`` as text that does not depend on its node names or on the
    order of the terms of a sum or product (chains flattened, operands sorted); parameters
    keep their names and states are numbered by position."""
    nodes = graph.nodes
    memo: dict[str, str] = {}

    def operands(name: str) -> list[str]:
        op, out, todo = nodes[name].op, [], list(nodes[name].args)
        while todo:
            arg = todo.pop()
            if nodes[arg].op == op:
                todo.extend(nodes[arg].args)
            else:
                out.append(arg)
        return out

    def text(name: str) -> str:
        if name in memo:
            return memo[name]
        node = nodes[name]
        if node.op == "state":
            s = f"state{graph.states.index(node.ref)}"
        elif node.op == "input":
            s = "x"
        elif node.op in _COMMUTATIVE:
            s = f"{node.op}({','.join(sorted(text(a) for a in operands(name)))})"
        else:
            head = node.op + (f"[{node.ref}]" if node.ref is not None else "") + (
                f"[{node.value!r}]" if node.value is not None else "")
            s = f"{head}({','.join(text(a) for a in node.args)})"
        memo[name] = s
        return s

    roots = [text(graph.output)] + [text(graph.writes[s]) for s in graph.states]
    return "\n".join(roots)


_KNOWN: dict[str, TorchCell] = {}  # template signature -> its torch cell (filled on first use)
_SEEN: dict[int, tuple[TorchCell | None, str]] = {}  # id(graph) -> (kind, reason); see kind_of


def _known() -> dict[str, TorchCell]:
    if not _KNOWN:
        for defn, kind in _TEMPLATES:
            _KNOWN[signature(defn.graph(2, 3))] = kind
    return _KNOWN


def kind_of(graph: Graph) -> tuple[TorchCell | None, str]:
    """Which torch cell ``graph`` is, and why: ``(LSTM, "…")``, or ``(None, why not)``.
    Remembered per graph object for as long as it lives."""
    found = _SEEN.get(id(graph))
    if found is None:
        found = _classify(graph)
        _SEEN[id(graph)] = found
        weakref.finalize(graph, _SEEN.pop, id(graph), None)
    return found


def _classify(graph: Graph) -> tuple[TorchCell | None, str]:
    if graph.masks:
        return None, (f"cell {graph.name!r} is regularised ({', '.join(sorted(graph.masks))}): "
                      "cuDNN has no masks inside its step")
    kind = _known().get(signature(graph))
    if kind is None:
        return None, (f"cell {graph.name!r} is not one cuDNN computes (lstm, gru_torch, rnn, "
                      "a ReLU RNN)")
    return kind, f"cell {graph.name!r} is torch's {kind.mode}"


def network_kind(net) -> tuple[TorchCell | None, str]:
    """Whether torch's RNN function computes the whole ``rnnlab.RNN`` ``net`` in one call:
    ``(kind, reason)`` or ``(None, why not)``."""
    if net.skip:
        return None, "skip connections: torch's RNN functions feed each layer the one below only"
    if any(d != 1 for d in net.dilations):
        return None, f"dilations {net.dilations}: cuDNN recurs on the previous step only"
    kind, reason = None, ""
    for layer in net.cells.values():
        found, reason = kind_of(layer.graph)
        if found is None or (kind is not None and found is not kind):
            return None, reason if found is None else "the layers are different cells"
        kind = found
    return kind, (f"{reason}: cuDNN runs all {net.num_layers} layer(s) and "
                  f"{net.num_directions} direction(s) in one call")


def network_weights(net, kind: TorchCell) -> list[torch.Tensor]:
    """torch's flat weight list for ``net`` — per layer, per direction: ``weight_ih``,
    ``weight_hh`` and (unless the biases were removed) ``bias_ih``, ``bias_hh`` — assembled
    from the paper-named parameters in one differentiable concatenation and viewed back.

    Assembled on every call that needs gradients; otherwise (no_grad, inference_mode, frozen
    parameters) once, and reused while no parameter has changed (an in-place update bumps a
    tensor's version, ``.to()`` makes new tensors), so that sampling one step at a time does
    not copy the weights every step."""
    params = [p for c in net.cells.values() for p in c.parameters(recurse=False)]
    if torch.is_grad_enabled() and any(p.requires_grad for p in params):
        return _assemble(net, kind)
    key = (kind.mode, torch.is_inference_mode_enabled(),
           *((p._version, p.data_ptr(), p.dtype, p.device) for p in params))
    cached = net.__dict__.get("_cudnn_weights")
    if cached is None or cached[0] != key:
        cached = (key, _assemble(net, kind))
        net.__dict__["_cudnn_weights"] = cached
    return cached[1]


def _assemble(net, kind: TorchCell) -> list[torch.Tensor]:
    has_biases = not net.cells["layer0"].biases_removed
    H = net.hidden_size
    pieces, shapes = [], []
    for layer in range(net.num_layers):
        for suffix in ("", "_reverse")[:net.num_directions]:
            c = net.cells[f"layer{layer}{suffix}"]
            for names in (kind.weight_ih, kind.weight_hh):
                blocks = [getattr(c, n) for n in names]
                pieces += [b.reshape(-1) for b in blocks]
                shapes.append((len(names) * H, blocks[0].shape[1]))
            if has_biases:
                ref = getattr(c, kind.bias_ih[0])
                pieces += [getattr(c, n) for n in kind.bias_ih]
                pieces += [ref.new_zeros(H) if n is None else getattr(c, n)
                           for n in kind.bias_hh]
                shapes += [(len(kind.bias_ih) * H,)] * 2
    flat = torch.cat(pieces)
    sizes = [int(torch.Size(s).numel()) for s in shapes]
    return [part.view(shape) for part, shape in zip(torch.split(flat, sizes), shapes)]


def forward(net, kind: TorchCell, x: torch.Tensor, state: tuple,
            lengths: torch.Tensor | None) -> tuple[torch.Tensor, tuple]:
    """Run every layer and direction of ``net`` in one call of torch's RNN function.

    Args:
        net: an ``rnnlab.RNN`` that ``network_kind`` accepts.
        kind: its torch cell.
        x: (T, B, input_size), time-major.
        state: the state fields, each (num_layers · D, B, hidden_size), rows as torch's.
        lengths: None, or (B,) lengths on the CPU in decreasing order (x and state sorted so).

    Returns:
        output (T, B, D · hidden_size), zero after each sequence's end, and the final state
        fields, each (num_layers · D, B, hidden_size).
    """
    weights = network_weights(net, kind)
    has_biases = len(weights) == 4 * net.num_layers * net.num_directions
    hx = tuple(s.contiguous() for s in state)
    hx = hx if kind.has_cell_state else hx[0]
    options = (has_biases, net.num_layers, net.dropout, net.training, net.bidirectional)
    if lengths is None:
        result = kind.function(x, hx, weights, *options, False)
        return result[0], tuple(result[1:])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=True)
    result = kind.function(packed.data, packed.batch_sizes, hx, weights, *options)
    output, _ = pad_packed_sequence(PackedSequence(result[0], packed.batch_sizes),
                                    total_length=x.shape[0])
    return output, tuple(result[1:])
