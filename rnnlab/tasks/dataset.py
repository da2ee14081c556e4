"""Tasks over a fixed set of examples per split (music, spoken digits, MNIST, 8×8 digits).

Train is reshuffled every epoch: epoch ``e`` visits the examples in the order
``default_rng([crc32(name), seed, e]).permutation(n)``, so a run resumed at batch ``start``
needs one permutation to find its place. Valid and test are visited in stored order. Every
epoch has ``ceil(n / batch_size)`` batches; the last one may be smaller.
"""

from __future__ import annotations

import abc
import math
import zlib
from collections.abc import Iterator

import numpy as np

from rnnlab.tasks.base import SPLITS, Batch, Task, check_positive, check_split


class DatasetTask(Task):
    """A task with a fixed list of examples per split; subclasses implement :meth:`size` and
    :meth:`collate`."""

    stateful = False
    summary = "A task over a fixed dataset."

    @abc.abstractmethod
    def size(self, split: str) -> int:
        """Number of examples in ``split``."""

    @abc.abstractmethod
    def collate(self, split: str, indices: np.ndarray) -> Batch:
        """The batch of examples ``indices`` (int array) of ``split``."""

    def order(self, epoch: int, seed: int) -> np.ndarray:
        """The train visiting order of ``epoch``."""
        rng = np.random.default_rng([zlib.crc32(self.name.encode()), seed, epoch])
        return rng.permutation(self.size("train"))

    def batches_per_epoch(self, split, batch_size, *, seq_len=None) -> int:
        check_split(split)
        check_positive("batch_size", batch_size)
        return math.ceil(self.size(split) / batch_size)

    def batches(self, split, batch_size, *, seq_len=None, start=0, seed=0) -> Iterator[Batch]:
        """Yield batches of ``split``; see the module docstring. ``seq_len`` is unused."""
        per_epoch = self.batches_per_epoch(split, batch_size)
        if start < 0 or seed < 0:
            raise ValueError(f"start and seed must be >= 0, got start={start}, seed={seed}")
        if split != "train":
            everything = np.arange(self.size(split))
            for j in range(start, per_epoch):
                yield self.collate(split, everything[j * batch_size : (j + 1) * batch_size])
            return
        epoch, j = divmod(start, per_epoch)
        while True:
            order = self.order(epoch, seed)
            for k in range(j, per_epoch):
                yield self.collate(split, order[k * batch_size : (k + 1) * batch_size])
            epoch, j = epoch + 1, 0

    def describe(self) -> str:
        sizes = ", ".join(f"{s} {self.size(s):,}" for s in SPLITS)
        return f"{self.summary} Loaded: {sizes} examples."
