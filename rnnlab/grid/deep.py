"""The 1-D Grid LSTM: a deep feed-forward network of LSTM blocks along depth."""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.engine import settings
from rnnlab.grid.block import BlockState, GridBlock
from rnnlab.grid.regularise import describe, grid_options, locked_dropout, of_cells
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
        input_dropout, recurrent_dropout, output_dropout, weight_drop, zoneout, layer_norm: the
            regularisers (``rnnlab.grid.regularise``), keyword only, default off. The LSTM
            transform is its zoo cell without the maps of x, run along depth: recurrent dropout
            drops h_{l−1} where it enters layer l (one mask per sequence and layer), weight drop
            each layer's W (one mask per call), zoneout keeps h_{l−1}, m_{l−1} across a layer
            with probability p (a new mask at every block), layer norm normalises
            ``W_l h_{l−1}`` per gate and the memory. Input and output dropout: locked dropout
            of x and of the output. A sequence is a row of the input's axis −2 (B of a
            (T, B, input_size) input): its masks are the same along the leading axes (time).

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
        *,
        input_dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        output_dropout: float = 0.0,
        weight_drop: float = 0.0,
        zoneout: float | dict[str, float] = 0.0,
        layer_norm: bool | str = False,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.regularisers = grid_options(input_dropout, recurrent_dropout, output_dropout,
                                         weight_drop, zoneout, layer_norm)
        self.input_dropout, self.output_dropout = input_dropout, output_dropout
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = hidden_size
        self.num_layers = num_layers
        self.tied = tied
        self.projection = nn.Linear(input_size, hidden_size, bias=False)  # the paper's I x
        self.block = GridBlock(1, hidden_size, transform, copies=1 if tied else num_layers,
                               **of_cells(self.regularisers))

    def __reduce_ex__(self, protocol):
        from rnnlab.serialization import reduce  # rebuilt from options and tensors

        return reduce(self, protocol)

    def _pickle_config(self) -> dict:
        from rnnlab.serialization import transform_data

        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "tied": self.tied,
                "transform": transform_data(self.block.transforms[0]), **self.regularisers}

    def extra_repr(self) -> str:
        return describe(self.regularisers)  # empty without: the module prints as before

    @settings.held  # the environment read once for every block of the call
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"DeepGridLSTM expects input (*, input_size={self.input_size}), "
                f"got {tuple(x.shape)}"
            )
        sequences = -2 if x.dim() > 1 else None  # the batch axis: one mask per sequence
        x = locked_dropout(x, self.input_dropout, self.training, sequences)
        h = self.projection(x).unsqueeze(-2)  # (*, 1, d): one dimension
        state = BlockState(h, torch.zeros_like(h))
        per_copy = self.block.per_copy()
        masks = self.block.draw(x.shape[-2] if x.dim() > 1 else 1, self.num_layers, h)
        for l in range(self.num_layers):
            state = self.block.forward_with(state, per_copy[0 if self.tied else l],
                                            None if masks is None else masks.at(l))
        return locked_dropout(state.h.squeeze(-2), self.output_dropout, self.training,
                              sequences)
