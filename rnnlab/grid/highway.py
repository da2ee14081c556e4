"""Highway network: the feed-forward relative of the 1-D Grid LSTM.

Seed 000 calls the 1-D Grid LSTM "a feedforward NN with LSTM cells instead of transfer
functions … very closely related to Highway Networks". Both let a deep stack pass its input
through gated, almost unchanged, at initialisation. ``HighwayNetwork`` is the comparison that
sentence invites; ``rnnlab reproduce highway-vs-grid`` runs it beside
:class:`~rnnlab.grid.deep.DeepGridLSTM` and a plain deep network at equal depth and parameters.
"""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


class HighwayNetwork(nn.Module):
    r"""A deep feed-forward network of highway layers (Srivastava, Greff & Schmidhuber 2015).

    ::

        h_0 = I x
        T_l = σ(W_T h_{l-1} + b_T)                    transform gate
        H_l = α(W_H h_{l-1} + b_H)                    α = ReLU (default) or tanh
        h_l = H_l ⊙ T_l + h_{l-1} ⊙ (1 − T_l)          for l = 1 … L
        output = h_L

    ``b_T`` starts negative (``transform_bias``, default −2: "Training Very Deep Networks",
    2015, recommends −1 to −3), so each layer starts by carrying its input through.

    Args:
        input_size: features of x.
        hidden_size: width of every layer; also the output size.
        num_layers: L.
        activation: ``"relu"`` or ``"tanh"`` for H.
        transform_bias: initial value of every ``b_T``.

    Shape:
        input (*, input_size) → output (*, hidden_size). Parameters: ``input_size ·
        hidden_size`` for I, then ``2 · (hidden_size² + hidden_size)`` per layer.

    Example::

        >>> net = HighwayNetwork(input_size=16, hidden_size=32, num_layers=8)
        >>> net(torch.randn(4, 16)).shape
        torch.Size([4, 32])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        activation: str = "relu",
        transform_bias: float = -2.0,
    ):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.output_size = hidden_size
        self.activation = activation
        self.transform_bias = transform_bias
        self.projection = nn.Linear(input_size, hidden_size, bias=False)  # I x, as the 1-D grid
        # one GEMM per layer for both H and T: rows [H; T]
        self.layers = nn.ModuleList(nn.Linear(hidden_size, 2 * hidden_size)
                                    for _ in range(num_layers))
        with torch.no_grad():
            for layer in self.layers:
                layer.bias[hidden_size:] = transform_bias

    def __reduce_ex__(self, protocol):
        from rnnlab.serialization import reduce  # rebuilt from options and tensors

        return reduce(self, protocol)

    def _pickle_config(self) -> dict:
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "activation": self.activation,
                "transform_bias": self.transform_bias}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"HighwayNetwork expects input (*, input_size={self.input_size}), "
                f"got {tuple(x.shape)}"
            )
        alpha = ACTIVATIONS[self.activation]
        h = self.projection(x)
        for layer in self.layers:
            pre_h, pre_t = layer(h).chunk(2, dim=-1)
            gate = torch.sigmoid(pre_t)
            h = h + gate * (alpha(pre_h) - h)  # = H·T + h·(1 − T)
        return h

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"activation={self.activation!r}")
