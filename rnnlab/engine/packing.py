"""The one PackedSequence path of ``rnnlab.RNN`` and ``rnnlab.GridLSTM``.

A ``PackedSequence`` holds its sequences sorted by decreasing length (``sorted_indices`` says
which original sequence each sorted one is). Both modules run the padded batch in that sorted
order — the order the sequence engine's packed layout needs — with the state's batch axis put
in the same order, and hand back a ``PackedSequence`` with the input's own ordering and the
final state in the original order.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


class Unpacked(NamedTuple):
    """A packed batch opened up: x (T, B, F) and lengths (B,) in sorted order."""

    x: torch.Tensor
    lengths: torch.Tensor  # on CPU, decreasing
    like: PackedSequence

    def sort_state(self, state: tuple, dim: int = 1) -> tuple:
        """A state in the caller's batch order -> in the sorted order (batch axis ``dim``)."""
        order = self.like.sorted_indices
        if order is None:
            return tuple(state)
        return tuple(s.index_select(dim, order.to(s.device)) for s in state)

    def unsort_state(self, state: tuple, dim: int = 1) -> tuple:
        """The final state, sorted order -> the caller's batch order."""
        order = self.like.unsorted_indices
        if order is None:
            return tuple(state)
        return tuple(s.index_select(dim, order.to(s.device)) for s in state)

    def pack(self, output: torch.Tensor) -> PackedSequence:
        """A padded output (T, B, F) in sorted order -> packed like the input."""
        data = pack_padded_sequence(output, self.lengths, enforce_sorted=True).data
        return PackedSequence(data, self.like.batch_sizes, self.like.sorted_indices,
                              self.like.unsorted_indices)


def unpack(input: PackedSequence) -> Unpacked:
    """Open a PackedSequence into a padded batch in sorted (decreasing length) order."""
    padded, lengths = pad_packed_sequence(input, batch_first=False)  # original batch order
    if input.sorted_indices is not None:
        padded = padded.index_select(1, input.sorted_indices.to(padded.device))
        lengths = lengths.index_select(0, input.sorted_indices.cpu())
    return Unpacked(padded, lengths, input)
