"""A 2-D Grid LSTM's whole stack as one cell: one step of every layer in one engine call.

One step at a time (sampling, streaming), a grid of L layers computes per layer a GEMM of
``H = [h^time_l; h^depth_{l-1}]`` and its two LSTM transforms (``schedule.single_step``): a few
torch calls per layer around a small GEMM, which at small sizes cost more than the arithmetic.
Written out, that step is itself a recurrent cell — input ``x`` (the depth edge entering layer
1, with memory 0), state ``(h^time_l, m^time_l)`` for every layer, output ``h^depth_L`` — and
the cell language says it in the grid's own equations (Kalchbrenner et al. 2016, eqs. 3-5,
or the usual LSTM output): for layer l and dimension k ∈ {time, depth}, gate g ∈ {u, f, o, c},

    z_{l,k,g} = A_{l,k,g} h^time_l + B_{l,k,g} h^depth_{l-1} + b_{l,k,g}

with ``[A; B]`` the columns of the block's weight W_l (2d × 8d) that dimension k's gate g
reads. So the stack compiles to one plan (``rnnlab.engine.plans.grid_stack_program``) whose
native step is one call: per layer a GEMM of ``h^time_l`` (ready when the step starts) and one
of ``h^depth_{l-1}`` (layer 1's: its input part), the same arithmetic as the block's
``[h^time_l; h^depth_{l-1}] W_l``, and the elementwise work (``rnnlab.engine.route``'s native
step). The paper-named parameters of that cell are views of
the block's weights, assembled once and reused while the block's weights are unchanged (as
``Cell.weights`` does), so nothing here reads the compiler's own weight names.

The grid's input projection ``P x`` enters layer 1's depth edge, so the stacked cell reads x
itself through ``B P`` (folded once with the weights): the projection is no call of its own.
``step`` runs it for a block ``single_step`` would run without gradients: a 2-D block of one
GEMM and one LSTM transform (the paper's or the usual output) and no masks.
"""

from __future__ import annotations

import weakref

import torch

from rnnlab.cells.module import PreparedWeights
from rnnlab.engine import settings
from rnnlab.engine.entry import run
from rnnlab.engine.plans import GRID_GATES, grid_stack_parameters, grid_stack_program

_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # block -> its StackStep


class StackStep:
    """The stack's plan and its prepared weights for one block, reused while the block's
    weights are unchanged (their versions and storage)."""

    def __init__(self, block, layers: int, input_size: int):
        self.layers, self.input_size, self.tied = layers, input_size, block.copies == 1
        self.standard = block.one_transform.cell == "grid_lstm_standard"
        self.program = grid_stack_program(layers, input_size, block.hidden_size, self.tied,
                                          self.standard)
        self.prepared = PreparedWeights()

    def weights(self, block, projection: torch.Tensor) -> dict:
        w, b = block.weights[0], block.biases[0]
        return self.prepared.get(self.program, (w, b, projection), lambda: grid_stack_parameters(
            w.detach(), b.detach(), self.tied, projection.detach()))


def applies(block, projection: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether ``step`` runs this block, input projection and input: one 2-D stage of one
    LSTM transform, no gradients wanted, no masks, weights that keep a version counter, and
    not under backend ``reference`` (which steps each layer)."""
    from rnnlab.grid.transform import LSTM

    transform = block.one_transform
    if (not isinstance(transform, LSTM) or transform.gates != GRID_GATES or block.num_dims != 2
            or block.weights[0].is_inference() or torch.compiler.is_compiling()
            or settings.current().backend == "reference"):  # the reference: layer by layer
        return False
    return not torch.is_grad_enabled() or not (
        x.requires_grad or projection.requires_grad
        or any(p.requires_grad for p in block.parameters()))


def step(block, projection: torch.Tensor, x: torch.Tensor, h: torch.Tensor, m: torch.Tensor):
    """``single_step(block, x @ projectionᵀ, State(h, m))``'s result through the stack's plan:
    x (1, B, input_size), projection (d, input_size), h and m (L, B, d) -> (output (1, B, d),
    h', m')."""
    layers = h.shape[0]
    cached = _STEPS.get(block)
    if cached is None or cached.layers != layers or cached.input_size != x.shape[-1]:
        cached = _STEPS[block] = StackStep(block, layers, x.shape[-1])
    state = tuple(t for pair in zip(h.unbind(0), m.unbind(0), strict=True) for t in pair)
    output, finals = run(cached.program, cached.weights(block, projection), x, state)
    return output, torch.stack(finals[0::2]), torch.stack(finals[1::2])
