"""Language modelling on a contiguous token stream, cut for truncated BPTT.

A split's tokens ``s_0 … s_{N-1}`` are laid out as ``B`` parallel streams of ``n = (N-1) // B``
steps each (stream ``b`` starts at token ``b·n``; the last ``N-1 - B·n`` tokens are dropped, as
is usual). Batch ``j`` of an epoch is steps ``[j·L, (j+1)·L)`` of every stream, ``L = seq_len``;
its targets are the same window shifted by one token. Consecutive batches continue the same
streams (``Batch.continues``), so the model carries its state across them, detached. An epoch
has ``ceil(n / L)`` batches (the last may be shorter). Train repeats the same epoch forever; the
layout does not depend on ``seed``.

    inputs  (L, B) int64:  x[t, b] = s[b·n + j·L + t]
    targets (L, B) int64:  y[t, b] = s[b·n + j·L + t + 1]
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from rnnlab.tasks.base import Batch, Task, TokenMetric, Tokens, check_positive, check_split
from rnnlab.tasks.vocab import Vocabulary


class StreamTask(Task):
    """Next-token prediction on contiguous streams (character- or word-level LM).

    Subclasses load their corpus and call :meth:`setup`. Metric: ``bits_per_char`` for
    character tasks, ``perplexity`` for word tasks (both always reported, with accuracy).
    """

    stateful = True
    causal = True  # the target at t is the token after input t
    summary = "Language modelling on a contiguous token stream."
    unit = "char"  # "char" or "word": picks the primary metric

    def setup(self, vocab: Vocabulary, splits: dict[str, Tensor], seq_len: int, info: dict):
        check_positive("seq_len", seq_len)
        for split in ("train", "valid", "test"):
            if split not in splits or splits[split].numel() < 2:
                raise ValueError(
                    f"{self.name}: the {split} split needs at least 2 tokens, got "
                    f"{0 if split not in splits else splits[split].numel()}; the corpus is "
                    "empty or too short"
                )
        self.vocabulary = vocab
        self.vocab = vocab.symbols  # list[str]: id -> symbol
        # ids stay in the corpus's compact dtype (uint8 for 100M-byte corpora); each batch is
        # converted to int64 as it is cut
        self.splits = {k: v.contiguous() for k, v in splits.items()}
        self.seq_len = seq_len
        self.input = Tokens(len(vocab))
        self.output = Tokens(len(vocab))
        self.info = {
            **info,
            "vocab_size": len(vocab),
            "tokens": {k: int(v.numel()) for k, v in self.splits.items()},
        }

    def encode(self, text: str) -> Tensor:
        """Text -> ``(N,)`` int64 ids."""
        return self.vocabulary.encode(text)

    def decode(self, ids: Tensor) -> str:
        """Ids -> text."""
        return self.vocabulary.decode(ids)

    def _streams(self, split: str, batch_size: int) -> tuple[Tensor, Tensor]:
        check_split(split)
        check_positive("batch_size", batch_size)
        data = self.splits[split]
        n = (data.numel() - 1) // batch_size
        if n < 1:
            raise ValueError(
                f"{self.name} {split} has {data.numel()} tokens, too few for batch_size "
                f"{batch_size}; use batch_size <= {data.numel() - 1}"
            )
        x = data[: batch_size * n].view(batch_size, n).t()  # (n, B)
        y = data[1 : batch_size * n + 1].view(batch_size, n).t()  # (n, B)
        return x, y

    def batches_per_epoch(self, split, batch_size, *, seq_len=None) -> int:
        x, _ = self._streams(split, batch_size)
        return math.ceil(x.shape[0] / (seq_len or self.seq_len))

    def batches(self, split, batch_size, *, seq_len=None, start=0, seed=0) -> Iterator[Batch]:
        """Yield ``(L, B)`` windows of the ``B`` streams; see the module docstring.

        ``seq_len`` defaults to the task's ``seq_len``; ``seed`` is unused (no shuffling).
        """
        length = seq_len or self.seq_len
        check_positive("seq_len", length)
        x, y = self._streams(split, batch_size)
        per_epoch = math.ceil(x.shape[0] / length)
        index = start
        while split == "train" or index < per_epoch:
            j = index % per_epoch
            window = slice(j * length, (j + 1) * length)
            yield Batch(
                inputs=x[window].to(torch.int64).contiguous(),
                targets=y[window].to(torch.int64).contiguous(),
                continues=j > 0,
            )
            index += 1

    def metric(self) -> TokenMetric:
        return TokenMetric("perplexity" if self.unit == "word" else "bits_per_char")

    def describe(self) -> str:
        counts = ", ".join(f"{k} {v:,}" for k, v in self.info["tokens"].items())
        return f"{self.summary} Loaded: {len(self.vocab)} symbols; tokens: {counts}."
