"""One step of a whole ``rnnlab.RNN`` stack in one engine call.

One step at a time (sampling, streaming), a stack of L layers makes L engine calls, each with
its route, its weights and its Python around a small GEMM. For a unidirectional stack without
skip connections or dilations, the step of all layers together is itself a cell — layer l reads
layer l−1's output as its input (``rnnlab.engine.plans.stacked_graph``) — so it compiles to one
plan, which the route table runs as one native step. Its parameters are the layers' own
(``W_i@0``, ``R_i@1``, …: each layer's paper-named parameters with the layer's number),
assembled once and reused while none has changed (as ``Cell.weights`` does). ``step`` runs it
where ``applies`` says the layer-by-layer loop would compute the same without gradients.
"""

from __future__ import annotations

import weakref

import torch

from ..cells.module import PreparedWeights
from ..lang.compile import Program, compile_graph
from . import settings
from .entry import run
from .plans import stacked_graph


class _Stack:
    """A network's stacked plan (None where its structure does not stack) and its prepared
    weights."""

    def __init__(self, net):
        self.cells = [net.cells[f"layer{layer}"] for layer in range(net.num_layers)]
        self.modules = net.cells  # (the network's layers when this was made)
        first = self.cells[0].graph
        stackable = (net.num_layers >= 2 and net.num_directions == 1 and not net.skip
                     and all(d == 1 for d in net.dilations)
                     and not any(c.graph.masks for c in self.cells)
                     and all(c.graph.resized(first.input_size, first.hidden_size) == first
                             for c in self.cells[1:]))
        self.program: Program | None = (
            compile_graph(stacked_graph(first, net.num_layers)) if stackable else None)
        self.prepared = PreparedWeights()

    def tensors(self) -> dict:
        """Every layer's parameters and buffers under the stacked cell's names."""
        named = {}
        for layer, cell in enumerate(self.cells):
            for name, t in (*cell._parameters.items(), *cell._buffers.items()):
                if t is not None:
                    named[f"{name}@{layer}"] = t
        return named

    def sources(self) -> list:
        """The same tensors, unnamed (what a step checks for changes)."""
        return [t for cell in self.cells
                for t in (*cell._parameters.values(), *cell._buffers.values()) if t is not None]

    def weights(self) -> dict:
        return self.prepared.get(self.program, self.sources(),
                                 lambda: {k: v.detach() for k, v in self.tensors().items()})


_STACKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # network -> its _Stack


def _stack(net) -> _Stack:
    found = _STACKS.get(net)
    if found is None or found.modules is not net.cells or any(
            a is not b for a, b in zip(found.cells, net.cells.values())):  # layers replaced
        found = _STACKS[net] = _Stack(net)
    return found


def applies(net, x: torch.Tensor, state: tuple) -> bool:
    """Whether ``step`` computes this call: one step (T = 1) of a unidirectional stack of at
    least two layers without skip connections, dilations or random masks (nor dropout between
    layers in training mode), whose layers share one cell structure, without gradients,
    outside torch.compile's trace, and not under backend ``reference`` (which steps each
    layer's own plan)."""
    if (x.shape[0] != 1 or net.num_layers < 2 or torch.compiler.is_compiling()
            or (net.dropout and net.training)  # dropout between layers, drawn per call
            or settings.current().backend == "reference"):  # the reference: layer by layer
        return False
    stack = _stack(net)
    if stack.program is None:
        return False
    first = stack.cells[0]
    weight = next(iter(first._parameters.values()))
    if weight.is_inference():  # made under inference_mode: no version counter to key on
        return False
    return not torch.is_grad_enabled() or not (
        x.requires_grad or any(s.requires_grad for s in state)
        or any(t.requires_grad for t in stack.sources()))


def step(net, x: torch.Tensor, state: tuple) -> tuple[torch.Tensor, tuple]:
    """The stack's step: x (1, B, input_size), state fields (L, B, H) -> (output (1, B, H),
    new state fields (L, B, H))."""
    stack = _stack(net)
    fields = len(state)
    layers = [field.unbind(0) for field in state]
    flat = tuple(layers[f][layer] for layer in range(net.num_layers) for f in range(fields))
    output, finals = run(stack.program, stack.weights(), x, flat)
    return output, tuple(torch.stack(finals[f::fields]) for f in range(fields))
