"""The attention encoder–decoder (Bahdanau, Cho & Bengio 2015): the translation baseline."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.models.layout import split


class AttentionSeq2Seq(nn.Module):
    r"""Encoder–decoder with additive attention over ``source = target`` token sequences.

    A bidirectional encoder reads the source; at each decoder step u the decoder attends over
    the encoder's annotations with the previous decoder output::

        h_i = [→h_i; ←h_i]                               encoder (rnnlab.RNN, bidirectional)
        e_{u,i} = v · tanh(W_s s_{u−1} + W_h h_i + b)     α_u = softmax_i e_{u,i} (real i only)
        c_u = Σ_i α_{u,i} h_i                              context
        s_u = cell([E y_{u−1}; c_u], s_{u−1})              decoder, one step of ``cell``
        output_u = [s_u; c_u]                              (the head predicts y_u from it)

    ``s_0`` is ``tanh(W_0 mean_i h_i)`` (its other state fields zero). The decoder's first input
    is the separator ``=``, then the target tokens (teacher forcing): its output at step u reads
    only the source and y_1 … y_{u−1}. See :mod:`rnnlab.models.layout` for the layout.

    Args:
        vocab_size: token ids in ``[0, vocab_size)``.
        embedding_size: E, shared by encoder and decoder.
        hidden_size: H of the encoder (each direction) and the decoder.
        num_layers: encoder layers.
        separator: the id of ``=``; pad: the padding id.
        cell: the encoder's and decoder's cell (``rnnlab.cells.names()``). Default ``"lstm"``.
        attention_size: A, the width of the attention MLP. Default H.

    Shapes: ids (T, B) int64, lengths (B,) or None -> output (T, B, 3H), zeros at source
    positions.
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
        cell: str = "lstm",
        attention_size: int | None = None,
    ):
        import rnnlab

        super().__init__()
        H, A = hidden_size, attention_size or hidden_size
        self.separator, self.pad = separator, pad
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.encoder = rnnlab.RNN(cell, embedding_size, H, num_layers, bidirectional=True)
        self.decoder = rnnlab.cells.make(cell, embedding_size + 2 * H, H)
        self.start = nn.Linear(2 * H, H)  # W_0
        self.attend_state = nn.Linear(H, A, bias=False)  # W_s
        self.attend_memory = nn.Linear(2 * H, A)  # W_h, b
        self.score = nn.Linear(A, 1, bias=False)  # v
        self.output_size = 3 * H

    def forward(self, ids: Tensor, state=None, lengths: Tensor | None = None):
        parts = split(ids, self.separator, lengths, self.pad)
        source = self.embedding(parts.source)  # (S, B, E)
        packed = pack_padded_sequence(source, parts.source_lengths.cpu(), enforce_sorted=False)
        memory, _ = self.encoder(packed)
        memory, _ = pad_packed_sequence(memory, total_length=source.shape[0])  # (S, B, 2H)
        S, B = memory.shape[:2]
        real = torch.arange(S, device=ids.device)[:, None] < parts.source_lengths[None, :]
        keys = self.attend_memory(memory)  # (S, B, A)
        mean = (memory * real[..., None]).sum(0) / parts.source_lengths[:, None]
        h = torch.tanh(self.start(mean))  # (B, H)
        fields = self.decoder.initial_state(B)
        step_state = self.decoder.State(h, *(torch.zeros_like(h) for _ in fields[1:]))
        targets = self.embedding(parts.decoder)  # (U, B, E)
        outputs = []
        for u in range(targets.shape[0]):
            scores = self.score(torch.tanh(keys + self.attend_state(step_state[0]))).squeeze(-1)
            weights = scores.masked_fill(~real, float("-inf")).softmax(0)  # (S, B)
            context = (weights[..., None] * memory).sum(0)  # (B, 2H)
            h, step_state = self.decoder(torch.cat([targets[u], context], -1), step_state)
            outputs.append(torch.cat([h, context], -1))
        return parts.place(torch.stack(outputs)), None
