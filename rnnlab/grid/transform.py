"""The per-dimension transforms of a Grid LSTM block: pre-activations in, new (h, m) out.

A block computes, for each dimension k, the pre-activations ``z_k = W_k H + b_k`` of the
concatenated hidden vectors ``H = [h_1; …; h_N]`` (one fused GEMM, see ``block.py``) and hands
them to the dimension's transform, which applies the elementwise part of the equations
(Kalchbrenner, Danihelka & Graves 2016, "Grid Long Short-Term Memory", eqs. 3–5):

    LSTM transform (the paper's form, "lstm"): the zoo cell ``grid_lstm``
        g_u = σ(z_u)   g_f = σ(z_f)   g_o = σ(z_o)   g_c = tanh(z_c)
        m'  = g_f ⊙ m + g_u ⊙ g_c
        h'  = tanh(g_o ⊙ m')
    LSTM transform, the usual output ("lstm_standard", as torch.nn.LSTM): ``grid_lstm_standard``
        h'  = g_o ⊙ tanh(m')
    Non-LSTM transform ("tanh", "relu", "identity"):
        h'  = α(z)       the dimension has no memory; its memory slot is returned unchanged

``z`` packs the gate pre-activations in the order (u, f, o, c), each ``hidden_size`` wide. An
LSTM transform's equations are its zoo cell's (``rnnlab/cells/zoo.py``), and its elementwise
part runs on the engine: the cell's plan from given pre-activations on
(``rnnlab.engine.plans.gates_program``) through ``rnnlab.engine.run``. A non-LSTM transform is
one activation with nothing carried, applied directly. A transform is a small frozen dataclass:
equal transforms on dimensions of one stage are applied in a single pass over all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from rnnlab.engine.entry import run
from rnnlab.engine.plans import gates_program


@dataclass(frozen=True)
class Transform:
    """Elementwise part of one dimension's transform.

    ``width``: how many ``hidden_size``-wide blocks of pre-activations the transform reads
    (4 for an LSTM, 1 for a non-LSTM dimension).
    """

    width = 1

    def init_bias(self, bias: torch.Tensor) -> None:
        """Initialise this dimension's bias in place; ``bias`` is (…, width · hidden_size)."""
        with torch.no_grad():
            bias.zero_()

    def __call__(self, z: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z`` (…, width · d) pre-activations, ``m`` (…, d) memory → ``(h', m')``, each (…, d)."""
        raise NotImplementedError


@dataclass(frozen=True)
class LSTM(Transform):
    """An LSTM transform: the step of zoo cell ``cell`` on the gates' pre-activations.

    ``cell`` is a registered cell whose gates ``u, f, o, c`` each read ``W_g x + R_g h + b_g``
    and whose state is ``(h, m)``: ``"grid_lstm"`` (the paper's ``h' = tanh(g_o ⊙ m')``) or
    ``"grid_lstm_standard"`` (``h' = g_o ⊙ tanh(m')``). The forget-gate bias starts at +1
    (Gers et al. 2000; Jozefowicz et al. 2015 "LSTM-b"), the other biases at 0.
    """

    cell: str = "grid_lstm"
    width = 4
    gates = ("u", "f", "o", "c")  # the order of the pre-activations' blocks

    def init_bias(self, bias: torch.Tensor) -> None:
        d = bias.shape[-1] // self.width
        forget = self.gates.index("f") * d
        with torch.no_grad():
            bias.zero_()
            bias[..., forget : forget + d] = 1.0

    def __call__(self, z: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = m.shape[-1]
        program = gates_program(self.cell, d, self.gates)
        # every row is one sequence of one step: (1, rows, 4d) and memory (rows, d)
        h, (m_new,) = run(program, {}, z.reshape(1, -1, self.width * d), (m.reshape(-1, d),))
        return h.view(m.shape), m_new.view(m.shape)


@dataclass(frozen=True)
class Activation(Transform):
    """A non-LSTM dimension: ``h' = α(V H + b)``; no memory, its slot passes through unchanged."""

    alpha: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, z: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.alpha(z), m


def _identity(z: torch.Tensor) -> torch.Tensor:
    return z


TRANSFORMS: dict[str, Transform] = {
    "lstm": LSTM("grid_lstm"),
    "lstm_standard": LSTM("grid_lstm_standard"),
    "tanh": Activation(torch.tanh),
    "relu": Activation(torch.relu),
    "identity": Activation(_identity),
}
