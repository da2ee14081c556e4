"""The task interface: spaces, batches, the abstract task and its metric.

A task owns its data (generated, read from disk or downloaded), its vocabulary, its batching and
its metric. Everything a model sees is **time-major**: inputs are ``(T, B)`` int64 token ids when
the task's input space is :class:`Tokens`, otherwise ``(T, B, F)`` float32.

Spaces say what flows in and out of a model:

=============  ==========================================  =========================================
space          as input                                    as output (what ``logits`` must be)
=============  ==========================================  =========================================
``Tokens(V)``  ``(T, B)`` int64 ids in ``[0, V)``          ``(T, B, V)``: a softmax over V per step
``Features``   ``(T, B, F)`` float32                       (not an output space)
``Binary(K)``  ``(T, B, K)`` float32 0/1                   ``(T, B, K)``: K independent sigmoids
``Classes(C)`` (not an input space)                        ``(B, C)``: one softmax per sequence,
                                                           read from each sequence's final step
``Labels(V)``  (not an input space)                        ``(T, B, V)``: per-frame softmax over
                                                           V − 1 labels and the CTC blank (id 0)
=============  ==========================================  =========================================

Example::

    import rnnlab.tasks as tasks
    task = tasks.make("arithmetic")
    batch = next(task.batches("train", batch_size=4))   # inputs, targets (T, 4); mask (T, 4)
    logits = model(batch.inputs)                        # (T, 4, task.output.size)
    task.loss(logits, batch).backward()                 # cross-entropy on the answer only
    metric = task.metric()
    metric.update(logits.detach(), batch)
    metric.compute()    # {"loss", "bits_per_char", "perplexity", "accuracy", "sequence_accuracy"}
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

import torch
from torch import Tensor
from torch.nn import functional as F

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Tokens:
    """Categorical symbols. Input: int64 ids ``(T, B)``; output: per-step softmax over ``size``."""

    size: int


@dataclass(frozen=True)
class Features:
    """Real-valued vectors. Input only: float32 ``(T, B, size)``."""

    size: int


@dataclass(frozen=True)
class Binary:
    """Per-step multi-label 0/1 vectors (a piano roll: 88 keys).

    Input: float32 ``(T, B, size)``; output: ``size`` independent sigmoids per step.
    """

    size: int


@dataclass(frozen=True)
class Classes:
    """One label per sequence, output only; the model predicts it from each sequence's last step.

    Logits are ``(B, size)``.
    """

    size: int


@dataclass(frozen=True)
class Labels:
    """A label sequence per input sequence, aligned by CTC (Graves et al. 2006); output only.

    ``size`` counts the labels and the blank: logits are ``(T, B, size)``, one softmax per
    frame, id 0 the blank; targets are ``(S, B)`` label ids in ``[1, size)`` padded with 0.
    """

    size: int


Space = Tokens | Features | Binary | Classes | Labels


@dataclass
class Batch:
    """One batch, time-major.

    Attributes:
        inputs: ``(T, B)`` int64 if the task's input is :class:`Tokens`, else ``(T, B, F)`` float32.
        targets: :class:`Tokens` output: ``(T, B)`` int64; :class:`Binary`: ``(T, B, K)`` float32;
            :class:`Classes`: ``(B,)`` int64; :class:`Labels`: ``(S, B)`` int64 label ids,
            padded with 0 (the blank, never a label).
        mask: ``(T, B)`` bool, the target steps that count for loss and metric (``None``: all the
            steps within ``lengths``). Arithmetic, for example, counts only the answer characters.
        lengths: ``(B,)`` int64 valid length of each padded sequence (``None``: all ``T`` valid).
            A :class:`Classes` task reads each sequence's prediction at step ``lengths[b] - 1``.
        continues: ``True`` when this batch continues the previous batch's sequences (contiguous
            language-model streams): carry the recurrent state over, detached (truncated BPTT).
    """

    inputs: Tensor
    targets: Tensor
    mask: Tensor | None = None
    lengths: Tensor | None = None
    continues: bool = False

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Return this batch with every tensor moved to ``device``."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return replace(
            self,
            inputs=move(self.inputs),
            targets=move(self.targets),
            mask=move(self.mask),
            lengths=move(self.lengths),
        )

    @property
    def batch_size(self) -> int:
        return self.inputs.shape[1]

    @property
    def steps(self) -> int:
        return self.inputs.shape[0]

    def step_mask(self) -> Tensor | None:
        """``(T, B)`` bool: the steps that count, combining ``mask`` and ``lengths`` (None: all)."""
        mask = self.mask
        if self.lengths is not None:
            steps = torch.arange(self.inputs.shape[0], device=self.lengths.device)
            within = steps[:, None] < self.lengths[None, :]  # (T, B)
            mask = within if mask is None else mask & within
        return mask


class Metric(abc.ABC):
    """An accumulator over batches: ``update`` with each batch's logits, then ``compute``.

    ``primary`` names the main number in :meth:`compute`'s dict (e.g. ``"bits_per_char"``,
    ``"perplexity"``, ``"accuracy"``, ``"nll"``); ``higher_is_better`` says which way is good.
    """

    primary: str
    higher_is_better: bool

    @abc.abstractmethod
    def update(self, logits: Tensor, batch: Batch) -> None:
        """Add one batch. ``logits``: ``(T, B, V)``, ``(T, B, K)`` or ``(B, C)`` by output space."""

    @abc.abstractmethod
    def compute(self) -> dict[str, float]:
        """The metrics over everything added so far, e.g. ``{"loss": ..., "accuracy": ...}``."""


class Task(abc.ABC):
    """A benchmark task: its spaces, its batches for train / valid / test, its loss and metric.

    Subclasses set ``name``, ``input``, ``output``, ``stateful`` and ``causal`` and implement
    :meth:`batches`, :meth:`batches_per_epoch`, :meth:`metric` and :meth:`describe`.
    ``info`` holds provenance (files read, sha256 of data, split sizes) for run records.
    Tasks whose input or output is :class:`Tokens` also have ``vocab`` (``list[str]``, id ->
    symbol), ``encode(text) -> (N,) int64`` and ``decode(ids) -> str`` (and ``vocabulary``,
    the :class:`~rnnlab.tasks.vocab.Vocabulary` behind them).
    """

    name: str
    input: Tokens | Features | Binary
    output: Tokens | Binary | Classes
    stateful: bool = False
    info: dict
    # The training settings this task recommends ("section.field" -> value, its paper's recipe
    # where rnnlab reproduces one), applied by `rnnlab train` and `rnnlab compare` unless the
    # user sets them; never a stopping limit (the command's). Empty: the defaults of
    # rnnlab.train.config, which are the character model's.
    training_defaults: Mapping[str, object] = MappingProxyType({})

    @property
    def causal(self) -> bool:
        """True when the target at step t is a prediction from the inputs up to t only (language
        modelling, music, the synthetic sequence tasks): a model that reads later inputs would
        see the answer, and is refused. Per-sequence tasks (``Classes`` output: the label is read
        after the whole sequence) are not causal. A task family states it as a class attribute
        ``causal = True / False``; this default only covers families that do not."""
        return not isinstance(self.output, Classes)

    @abc.abstractmethod
    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        seq_len: int | None = None,
        start: int = 0,
        seed: int = 0,
    ) -> Iterator[Batch]:
        """Yield batches of ``split`` (``"train"``, ``"valid"`` or ``"test"``).

        ``train`` never ends (epoch after epoch, reshuffled per epoch from ``seed`` where
        shuffling applies); ``valid`` and ``test`` are one finite pass, identical on every call.
        ``start`` is the index of the first batch to yield, so that a resumed run continues at
        the same data position; skipping costs at most one epoch permutation. ``seq_len`` is the
        truncated-BPTT length of stream tasks; other tasks document how they use it.
        """

    @abc.abstractmethod
    def batches_per_epoch(
        self, split: str, batch_size: int, *, seq_len: int | None = None
    ) -> int | None:
        """Number of batches in one pass of ``split``; ``None`` for unbounded generated train."""

    def loss(self, logits: Tensor, batch: Batch) -> Tensor:
        """Scalar mean training loss for this task's output space (see :func:`output_loss`)."""
        return output_loss(self.output, logits, batch)

    @abc.abstractmethod
    def metric(self) -> Metric:
        """A fresh metric accumulator."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One paragraph on the task, its data and metric, with an example."""

    def __repr__(self) -> str:
        return f"<task {self.name}: {self.input} -> {self.output}>"


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def output_loss(output: Space, logits: Tensor, batch: Batch) -> Tensor:
    """The training loss for an output space, as a scalar mean.

    * :class:`Tokens`: cross-entropy (nats) averaged over the counted steps
      (``batch.step_mask()``); ``logits`` ``(T, B, V)``.
    * :class:`Binary`: binary cross-entropy summed over the K units, averaged over counted
      frames (the frame-level NLL of polyphonic music); ``logits`` ``(T, B, K)``.
    * :class:`Classes`: cross-entropy averaged over sequences; ``logits`` ``(B, C)``.
    * :class:`Labels`: the CTC loss (``torch.nn.functional.ctc_loss``, blank 0) averaged over
      sequences; ``logits`` ``(T, B, V)`` per frame, ``batch.lengths`` the frames of each.
    """
    nll, count = _nll_sum(output, logits, batch)
    return nll / max(count, 1)


def _nll_sum(output: Space, logits: Tensor, batch: Batch) -> tuple[Tensor, int]:
    """Summed NLL in nats and the number of units it is summed over (steps, frames, sequences)."""
    _check_logits(output, logits, batch)
    if isinstance(output, Classes):
        return F.cross_entropy(logits, batch.targets, reduction="sum"), batch.targets.shape[0]
    if isinstance(output, Labels):
        return ctc_nll_sum(logits, batch), logits.shape[1]
    mask = batch.step_mask()
    if isinstance(output, Tokens):
        if mask is None:  # every step counts: one fused sum
            total = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), reduction="sum")
            return total, batch.targets.numel()
        per_step = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), reduction="none")
        per_step = per_step.view(batch.targets.shape)  # (T, B)
    elif isinstance(output, Binary):
        per_step = F.binary_cross_entropy_with_logits(
            logits, batch.targets.to(logits.dtype), reduction="none"
        ).sum(-1)  # (T, B): summed over keys
    else:
        raise TypeError(
            f"output space must be Tokens, Binary, Classes or Labels, got {output!r}"
        )
    if mask is None:
        return per_step.sum(), per_step.numel()
    return per_step.masked_fill(~mask, 0.0).sum(), int(mask.sum())


def ctc_nll_sum(logits: Tensor, batch: Batch) -> Tensor:
    """Summed CTC negative log-likelihood (nats) of ``batch.targets`` given per-frame logits.

    Frames after ``batch.lengths[b]`` are not read. An alignment that cannot exist (more labels
    than frames allow) counts as zero loss rather than infinity (``zero_infinity``), so one
    impossible utterance cannot stop training.
    """
    steps, batch_size = logits.shape[:2]
    frames = batch.lengths if batch.lengths is not None else torch.full((batch_size,), steps)
    targets = batch.targets.t()  # (B, S)
    return F.ctc_loss(
        logits.log_softmax(-1).float(),
        targets,
        frames.to(torch.int64),
        (targets > 0).sum(1),
        blank=0,
        reduction="sum",
        zero_infinity=True,
    )


def _check_logits(output: Space, logits: Tensor, batch: Batch) -> None:
    if isinstance(output, Labels):
        expected = (batch.inputs.shape[0], batch.targets.shape[1], output.size)
        if tuple(logits.shape) != expected:
            raise ValueError(
                f"logits must have shape {expected} (T, B, labels + blank): one softmax per "
                f"input frame, for output {output}, got {tuple(logits.shape)}"
            )
        return
    if isinstance(output, Classes):
        expected = (batch.targets.shape[0], output.size)
        what = "(B, C): one row per sequence, read from its last step"
    else:
        expected = (*batch.targets.shape[:2], output.size)
        what = "(T, B, V) for Tokens or (T, B, K) for Binary, time-major"
    if tuple(logits.shape) != expected:
        raise ValueError(
            f"logits must have shape {expected} ({what}) for output {output}, "
            f"got {tuple(logits.shape)}"
        )


def argmax_equals(logits: Tensor, targets: Tensor) -> Tensor:
    """``logits.argmax(-1) == targets`` (argmax: the first maximal index, NaN counting as the
    maximum), computed without an argmax over every row: torch's CPU argmax is not vectorised
    (10.7 ms for 400 × 10,000 logits, against 0.6 ms for ``amax``). Only rows whose target
    logit attains the row's maximum (or is NaN) can be right; ties among those are settled by
    the argmax of those rows alone."""
    target = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    candidate = (target >= logits.amax(-1)) | target.isnan()
    right = torch.zeros_like(candidate)
    if bool(candidate.any()):
        rows = candidate.nonzero(as_tuple=True)
        right[rows] = logits[rows].argmax(-1) == targets[rows]
    return right


class TokenMetric(Metric):
    """Next-token metrics: mean NLL, bits per symbol, perplexity, accuracy.

    ``compute()`` returns ``loss`` (nats per counted token), ``bits_per_char`` (= loss / ln 2),
    ``perplexity`` (= exp loss), ``accuracy`` (argmax correct, per counted token) and, with
    ``sequences=True``, ``sequence_accuracy``: the fraction of sequences whose counted tokens are
    all correct (whole-answer accuracy for arithmetic, addition, copy).
    """

    def __init__(self, primary: str = "bits_per_char", sequences: bool = False):
        choices = ("bits_per_char", "perplexity", "accuracy", "sequence_accuracy")
        if primary not in choices:
            raise ValueError(f"primary must be one of {choices}, got {primary!r}")
        if primary == "sequence_accuracy" and not sequences:
            raise ValueError("primary='sequence_accuracy' needs sequences=True")
        self.primary = primary
        self.higher_is_better = primary in ("accuracy", "sequence_accuracy")
        self.sequences = sequences
        self.nll = 0.0
        self.correct = 0
        self.count = 0
        self.sequences_correct = 0
        self.sequences_seen = 0

    @torch.no_grad()
    def update(self, logits: Tensor, batch: Batch) -> None:
        nll, count = _nll_sum(Tokens(logits.shape[-1]), logits, batch)
        mask = batch.step_mask()
        if mask is None:
            mask = torch.ones_like(batch.targets, dtype=torch.bool)
        right = argmax_equals(logits, batch.targets) & mask  # (T, B)
        self.nll += float(nll)
        self.count += count
        self.correct += int(right.sum())
        if self.sequences:
            counted = mask.any(0)  # (B,) sequences with at least one counted step
            whole = (right | ~mask).all(0) & counted
            self.sequences_correct += int(whole.sum())
            self.sequences_seen += int(counted.sum())

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("metric has no counted tokens: call update() with a batch first")
        loss = self.nll / self.count
        out = {
            "loss": loss,
            "bits_per_char": loss / math.log(2),
            "perplexity": math.exp(min(loss, 700.0)),
            "accuracy": self.correct / self.count,
        }
        if self.sequences:
            out["sequence_accuracy"] = self.sequences_correct / max(self.sequences_seen, 1)
        return out


class BinaryMetric(Metric):
    """Polyphonic-music metrics: frame-level NLL and frame accuracy.

    ``nll``: the sum over the K keys of the Bernoulli NLL (nats), averaged over counted frames,
    the number Boulanger-Lewandowski et al. (2012), Chung et al. (2014) and Greff et al. (2016)
    report. ``accuracy``: the frame-level accuracy of Bay et al. (2009),
    ``TP / (TP + FP + FN)`` summed over all frames, with keys predicted on where ``logit > 0``.
    ``loss`` equals ``nll``.
    """

    primary = "nll"
    higher_is_better = False

    def __init__(self):
        self.nll = 0.0
        self.frames = 0
        self.tp = self.fp = self.fn = 0

    @torch.no_grad()
    def update(self, logits: Tensor, batch: Batch) -> None:
        nll, frames = _nll_sum(Binary(logits.shape[-1]), logits, batch)
        self.nll += float(nll)
        self.frames += frames
        on = logits > 0
        truth = batch.targets > 0.5
        mask = batch.step_mask()
        if mask is not None:
            on = on & mask[..., None]
            truth = truth & mask[..., None]
        self.tp += int((on & truth).sum())
        self.fp += int((on & ~truth).sum())
        self.fn += int((~on & truth).sum())

    def compute(self) -> dict[str, float]:
        if self.frames == 0:
            raise ValueError("metric has no counted frames: call update() with a batch first")
        nll = self.nll / self.frames
        return {
            "loss": nll,
            "nll": nll,
            "accuracy": self.tp / max(self.tp + self.fp + self.fn, 1),
        }


class ClassMetric(Metric):
    """Sequence-classification metrics: ``loss`` (mean CE, nats), ``accuracy`` and ``error``."""

    primary = "accuracy"
    higher_is_better = True

    def __init__(self):
        self.nll = 0.0
        self.correct = 0
        self.count = 0

    @torch.no_grad()
    def update(self, logits: Tensor, batch: Batch) -> None:
        nll, count = _nll_sum(Classes(logits.shape[-1]), logits, batch)
        self.nll += float(nll)
        self.count += count
        self.correct += int(argmax_equals(logits, batch.targets).sum())

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("metric has no sequences: call update() with a batch first")
        accuracy = self.correct / self.count
        return {"loss": self.nll / self.count, "accuracy": accuracy, "error": 1.0 - accuracy}
