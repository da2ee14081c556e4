"""The 1-D Grid LSTM: a deep feed-forward network of LSTM blocks along depth."""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.grid.block import BlockState, GridBlock
from rnnlab.grid.transform import Transform


class DeepGridLSTM(nn.Module):
    r"""1-D Grid LSTM (Kalchbrenner et al. 2016, section 3.2): LSTM blocks stacked along depth.

    A feed-forward network whose layers are one-dimensional Grid LSTM blocks, i.e. LSTM
    transforms in place of tanh or ReLU units (close to Highway Networks)::

        h_0 = I x,   m_0 = 0
        g_u, g_f, g_o = σ(W_l^{u,f,o} h_{l-1} + b),  g_c = tanh(W_l^c h_{l-1} + b)
        m_l = g_f ⊙ m_{l-1} + g_u ⊙ g_c,   h_l = tanh(g_o ⊙ m_l)       for l = 1 … L
        output = h_L

    The paper solves k-bit parity with this network, the k bits given all at once as x.

    Args:
        input_size: features of x.
        hidden_size: size of the hidden and memory vectors; also the output size.
        num_layers: L, blocks along depth.
        tied: one block's weights at every layer (True) or a weight set per layer (False).
        transform: the blocks' transform, ``"lstm"`` (the paper's), ``"lstm_standard"``, or a
            non-LSTM ``"tanh"``, ``"relu"``, ``"identity"`` (then a plain deep network).

    Shape:
        input (*, input_size) → output (*, hidden_size).

    Example::

        >>> net = DeepGridLSTM(input_size=16, hidden_size=32, num_layers=8)
        >>> net(torch.randn(4, 16)).shape
        torch.Size([4, 32])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        tied: bool = False,
        transform: str | Transform = "lstm",
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.num_layers = num_layers
        self.tied = tied
        self.projection = nn.Linear(input_size, hidden_size, bias=False)  # the paper's I x
        self.block = GridBlock(1, hidden_size, transform, copies=1 if tied else num_layers)

    def __reduce_ex__(self, protocol):
        from rnnlab.serialization import reduce  # rebuilt from options and tensors

        return reduce(self, protocol)

    def _pickle_config(self) -> dict:
        from rnnlab.serialization import transform_data

        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "tied": self.tied,
                "transform": transform_data(self.block.transforms[0])}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"DeepGridLSTM expects input (*, input_size={self.input_size}), "
                f"got {tuple(x.shape)}"
            )
        h = self.projection(x).unsqueeze(-2)  # (*, 1, d): one dimension
        state = BlockState(h, torch.zeros_like(h))
        per_copy = self.block.per_copy()
        for l in range(self.num_layers):
            state = self.block.forward_with(state, per_copy[0 if self.tied else l])
        return state.h.squeeze(-2)
