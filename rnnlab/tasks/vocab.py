"""A vocabulary: symbols <-> int64 ids, for characters, bytes or words."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor


class Vocabulary:
    """An ordered list of distinct symbols; a symbol's id is its index.

    ``words=False``: every symbol is one character and ``encode`` reads text character by
    character (fast, through numpy). ``words=True``: ``encode`` splits text on whitespace and
    ``decode`` joins with spaces.

    >>> v = Vocabulary(["a", "b", "c"])
    >>> v.encode("cab").tolist(), v.decode([0, 1])
    ([2, 0, 1], 'ab')
    """

    def __init__(self, symbols: Sequence[str], *, words: bool = False):
        symbols = list(symbols)
        if not symbols:
            raise ValueError("a vocabulary needs at least one symbol, got none")
        if len(set(symbols)) != len(symbols):
            raise ValueError("vocabulary symbols must be distinct")
        if not words and any(len(s) != 1 for s in symbols):
            bad = next(s for s in symbols if len(s) != 1)
            raise ValueError(f"a character vocabulary needs one-character symbols, got {bad!r}")
        self.symbols = symbols
        self.words = words
        self.index = {s: i for i, s in enumerate(symbols)}
        if not words:
            codes = np.array([ord(s) for s in symbols], dtype=np.int64)
            self._order = np.argsort(codes)
            self._sorted_codes = codes[self._order]

    def __len__(self) -> int:
        return len(self.symbols)

    def __repr__(self) -> str:
        kind = "words" if self.words else "characters"
        return f"Vocabulary({len(self)} {kind})"

    def encode(self, text: str) -> Tensor:
        """``text`` -> ``(N,)`` int64 ids. Unknown symbols raise ValueError naming them."""
        if self.words:
            return self.encode_symbols(text.split())
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        return self.encode_codes(codes)

    def encode_codes(self, codes: np.ndarray) -> Tensor:
        """Character code points (or byte values, for a latin-1 byte vocabulary) -> ids."""
        if self.words:
            raise TypeError("encode_codes needs a character vocabulary")
        codes = np.asarray(codes, dtype=np.int64)
        where = np.searchsorted(self._sorted_codes, codes)
        where = np.minimum(where, len(self._sorted_codes) - 1)
        known = self._sorted_codes[where] == codes
        if not known.all():
            unknown = sorted({chr(c) for c in codes[~known][:1000].tolist()})
            raise ValueError(
                f"{int((~known).sum())} characters are not in the vocabulary, e.g. {unknown[:10]}; "
                "build the vocabulary from text that contains them"
            )
        return torch.from_numpy(self._order[where])

    def encode_symbols(self, symbols: Iterable[str]) -> Tensor:
        """A sequence of symbols (words, or multi-character tokens) -> ``(N,)`` int64 ids."""
        ids = []
        for s in symbols:
            if s not in self.index:
                raise ValueError(f"symbol {s!r} is not in the vocabulary of {len(self)} symbols")
            ids.append(self.index[s])
        return torch.tensor(ids, dtype=torch.int64)

    def decode(self, ids: Tensor | Iterable[int]) -> str:
        """Ids -> text (characters joined, or words joined by spaces)."""
        if isinstance(ids, Tensor):
            ids = ids.flatten().tolist()
        joiner = " " if self.words else ""
        return joiner.join(self.symbols[i] for i in ids)


def char_vocabulary(text: str) -> Vocabulary:
    """The sorted set of characters of ``text``."""
    codes = np.unique(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32))
    return Vocabulary([chr(c) for c in codes.tolist()])
