"""The Reencoder: translation with a 3-D Grid LSTM instead of an encoder–decoder."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnlab.models.layout import split


class Reencoder(nn.Module):
    r"""A 3-D Grid LSTM over target steps × source positions × depth (Kalchbrenner et al. 2016).

    Seed 000: "machine translation — 3D Grid-LSTM instead of encoder decoder". Every target step
    re-reads the whole source: the block at (u, i, l) — decoder step u, source position i,
    layer l — is a 3-D Grid LSTM block (``rnnlab.grid.ImageGridLSTM``, scanned from the top-left
    corner) whose bottom layer reads the pair (source token i, previous target token)::

        x_{u,i} = [E s_i; E y_{u−1}]            (y_0 is the separator "=")
        block (u, i, l) reads  (u − 1, i, l)      the previous target step, same source position
                               (u, i − 1, l)      the previous source position, same target step
                               (u, i, l − 1)      the layer below (x_{u,i} projected at l = 0)
        output_u = h^depth(u, m − 1, L)          read at the last source position, top layer

                    i = 0     1     2    …   m−1
            u = 0   [ ]  →  [ ]  →  [ ]  …  [ ] ─→ predicts y_1
                     ↓        ↓        ↓          ↓
            u = 1   [ ]  →  [ ]  →  [ ]  …  [ ] ─→ predicts y_2
                     ↓        ↓        ↓          ↓
                   …

    Output u depends on every source token and on y_1 … y_u's predecessors only, so the target
    is never read ahead. The work is O(n · m · L) blocks, the order of attention's, with no
    separate encoder memory (seed 000's "relation to attention"). Padding source positions lie
    right of the read position and padding target steps below the last real row, so neither
    reaches a counted output.

    Args:
        vocab_size, embedding_size: token embedding E (shared by source and target).
        hidden_size: d of every block. num_layers: L.
        separator, pad: ids of "=" and of padding.
        tied, transforms: as ``ImageGridLSTM``.

    Shapes: ids (T, B), lengths (B,) or None -> output (T, B, d), zeros at source positions.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        separator: int,
        pad: int = 0,
        tied: bool = False,
        transforms: str = "lstm",
    ):
        from rnnlab.grid import ImageGridLSTM

        super().__init__()
        self.separator, self.pad = separator, pad
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.grid = ImageGridLSTM(2 * embedding_size, hidden_size, num_layers, tied=tied,
                                  transforms=transforms)
        self.output_size = hidden_size

    def forward(self, ids: Tensor, state=None, lengths: Tensor | None = None):
        parts = split(ids, self.separator, lengths, self.pad)
        source = self.embedding(parts.source)  # (S, B, E)
        target = self.embedding(parts.decoder)  # (U, B, E)
        S, U = source.shape[0], target.shape[0]
        pairs = torch.cat([source[None].expand(U, -1, -1, -1),
                           target[:, None].expand(-1, S, -1, -1)], -1)  # (U, S, B, 2E)
        grid = self.grid(pairs.permute(2, 0, 1, 3))  # (B, U, S, d)
        last = (parts.source_lengths - 1).to(ids.device)  # (B,)
        read = grid[torch.arange(grid.shape[0], device=ids.device), :, last]  # (B, U, d)
        return parts.place(read.transpose(0, 1)), None
