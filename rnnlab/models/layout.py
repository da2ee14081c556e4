"""The ``source = target`` layout of the translation tasks, split for encoder–decoder bodies.

A translation example is one token sequence ``s_1 … s_m = t_1 … t_n ⏎`` read with teacher
forcing (:mod:`rnnlab.tasks.translation`): input position p predicts the token at p + 1, and
only the target tokens count. An encoder–decoder reads it as

    source          s_1 … s_m                    positions 0 … m − 1 (m = the ``=`` position)
    decoder input   =  t_1 … t_n                 positions m … m + n: step u predicts t_{u+1}

and writes its decoder outputs back at positions m … m + n; the source positions get zeros (no
target is read there). Output at position p never depends on an input after p.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Split:
    """One batch split at each sequence's separator.

    Attributes:
        source: (S, B) ids, padded with ``pad``; source_lengths (B,).
        decoder: (U, B) ids, the separator then the target prefix; decoder_lengths (B,).
        at: (B,) position of the separator in each sequence.
    """

    source: Tensor
    source_lengths: Tensor
    decoder: Tensor
    decoder_lengths: Tensor
    at: Tensor
    steps: int

    def place(self, outputs: Tensor) -> Tensor:
        """Decoder outputs (U, B, D) -> (T, B, D) at positions at[b] + u, zeros elsewhere."""
        U, B, D = outputs.shape
        positions = self.at[None, :] + torch.arange(U, device=outputs.device)[:, None]  # (U, B)
        valid = torch.arange(U, device=outputs.device)[:, None] < self.decoder_lengths[None, :]
        placed = outputs.new_zeros(self.steps + U, B, D)  # room for every shifted row
        index = torch.where(valid, positions, self.steps + torch.arange(U)[:, None].to(positions))
        placed = placed.scatter(0, index[..., None].expand(U, B, D), outputs)
        return placed[: self.steps]


def split(ids: Tensor, separator: int, lengths: Tensor | None = None, pad: int = 0) -> Split:
    """Split (T, B) ids at the first ``separator`` of each sequence (see the module docstring)."""
    if ids.dim() != 2:
        raise ValueError(f"expected token ids (T, B), got shape {tuple(ids.shape)}")
    T, B = ids.shape
    device = ids.device
    lengths = torch.full((B,), T, device=device) if lengths is None else lengths.to(device)
    is_sep = ids == separator
    found = is_sep.any(0)
    if not bool(found.all()):
        missing = int((~found).nonzero()[0])
        raise ValueError(
            f"sequence {missing} of the batch has no separator (id {separator}): an "
            "encoder-decoder body needs 'source=target' sequences (tasks numbers, parallel)"
        )
    at = is_sep.int().argmax(0)  # (B,) first separator
    source_lengths = at
    decoder_lengths = lengths - at
    S, U = max(int(source_lengths.max()), 1), int(decoder_lengths.max())
    steps = torch.arange(max(S, U), device=device)[:, None]
    source = torch.where(steps[:S] < source_lengths, ids.gather(0, steps[:S].clamp(max=T - 1)
                         .expand(S, B)), torch.full_like(steps[:S].expand(S, B), pad))
    decoder_index = (at[None, :] + steps[:U]).clamp(max=T - 1)
    decoder = torch.where(steps[:U] < decoder_lengths, ids.gather(0, decoder_index),
                          torch.full_like(decoder_index, pad))
    return Split(source, source_lengths.clamp(min=1), decoder, decoder_lengths, at, T)
