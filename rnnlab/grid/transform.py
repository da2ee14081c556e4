"""The per-dimension transforms of a Grid LSTM block: pre-activations in, new (h, m) out.

A block computes, for each dimension k, the pre-activations ``z_k = W_k H + b_k`` of the
concatenated hidden vectors ``H = [h_1; …; h_N]`` (one fused GEMM, see ``block.py``) and hands
them to the dimension's transform, which applies the elementwise part of the equations
(Kalchbrenner, Danihelka & Graves 2016, "Grid Long Short-Term Memory", eqs. 3–5):

    LSTM transform (the paper's form, "lstm"):
        g_u = σ(z_u)   g_f = σ(z_f)   g_o = σ(z_o)   g_c = tanh(z_c)
        m'  = g_f ⊙ m + g_u ⊙ g_c
        h'  = tanh(g_o ⊙ m')
    LSTM transform, the usual output ("lstm_standard", as torch.nn.LSTM):
        h'  = g_o ⊙ tanh(m')
    Non-LSTM transform ("tanh", "relu", "identity"):
        h'  = α(z)       the dimension has no memory; its memory slot is returned unchanged

``z`` packs the gate pre-activations in the order (u, f, o, c), each ``hidden_size`` wide. A
transform is a small frozen dataclass: equal transforms on dimensions of one stage are applied
in a single elementwise pass over all of those dimensions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


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
    """The paper's LSTM transform: ``m' = g_f ⊙ m + g_u ⊙ g_c``, ``h' = tanh(g_o ⊙ m')``.

    The forget-gate bias starts at +1 (Gers et al. 2000; Jozefowicz et al. 2015 "LSTM-b"),
    the other biases at 0.
    """

    width = 4
    cell = "grid_lstm"  # the zoo cell computing this transform (one dimension, one step)

    def init_bias(self, bias: torch.Tensor) -> None:
        d = bias.shape[-1] // 4
        with torch.no_grad():
            bias.zero_()
            bias[..., d : 2 * d] = 1.0

    def __call__(self, z: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = m.shape[-1]
        z_sigmoid, z_c = z.split([3 * d, d], dim=-1)  # split, not slices: no zero-filled grads
        g_u, g_f, g_o = torch.sigmoid(z_sigmoid).chunk(3, dim=-1)
        g_c = torch.tanh(z_c)
        m = torch.addcmul(g_f * m, g_u, g_c)  # g_f ⊙ m + g_u ⊙ g_c
        return self.output(g_o, m), m

    def output(self, g_o: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return torch.tanh(g_o * m)


@dataclass(frozen=True)
class StandardLSTM(LSTM):
    """The usual LSTM output instead of the paper's: ``h' = g_o ⊙ tanh(m')``."""

    cell = "grid_lstm_standard"

    def output(self, g_o: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return g_o * torch.tanh(m)


@dataclass(frozen=True)
class Activation(Transform):
    """A non-LSTM dimension: ``h' = α(V H + b)``; no memory, its slot passes through unchanged."""

    alpha: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, z: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.alpha(z), m


def _identity(z: torch.Tensor) -> torch.Tensor:
    return z


TRANSFORMS: dict[str, Transform] = {
    "lstm": LSTM(),
    "lstm_standard": StandardLSTM(),
    "tanh": Activation(torch.tanh),
    "relu": Activation(torch.relu),
    "identity": Activation(_identity),
}
