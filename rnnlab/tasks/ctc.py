"""CTC decoding and the label error metric (Graves et al. 2006).

A CTC model emits, at every frame, a distribution over the labels and a *blank* (id 0). A path
(one symbol per frame) reads as a label sequence after merging repeated symbols and removing
blanks: ``_ 3 3 _ _ 1 _ 1`` -> ``3 1 1``.

* :func:`greedy_decode` takes the most likely symbol at every frame (the best path).
* :func:`beam_decode` is prefix beam search: it keeps the ``beam`` most likely label prefixes,
  each with the probability of the paths that read as it and end in a blank or in its last
  label, summing over alignments as the CTC loss does; it can beat the best path when the
  probability of a label sequence is spread over many alignments.

:class:`LabelErrorMetric` scores hypotheses against references with jiwer's word-level edit
operations over label strings: ``error_rate = (S + D + I) / N`` over the whole split (the
digit error rate for spoken digits; the word error rate in speech recognition), and
``sequence_error_rate``, the fraction of utterances not exactly right.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from rnnlab.tasks.base import Batch, Labels, Metric, _nll_sum

BLANK = 0


def greedy_decode(logits: Tensor, lengths: Tensor | None = None) -> list[list[int]]:
    """Best-path decoding of ``(T, B, V)`` logits -> B label-id lists (blank 0 removed)."""
    best = logits.argmax(-1).t().tolist()  # (B, T)
    out = []
    for b, path in enumerate(best):
        frames = path if lengths is None else path[: int(lengths[b])]
        labels, previous = [], BLANK
        for symbol in frames:
            if symbol != previous and symbol != BLANK:
                labels.append(symbol)
            previous = symbol
        out.append(labels)
    return out


def _logsumexp(*values: float) -> float:
    top = max(values)
    if top == -math.inf:
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


def _add(grown: dict, prefix: tuple, blank: float = -math.inf, label: float = -math.inf):
    """Add path probability (log) to ``prefix``'s blank-ending and label-ending totals."""
    old = grown.setdefault(prefix, [-math.inf, -math.inf])
    old[0], old[1] = _logsumexp(old[0], blank), _logsumexp(old[1], label)


def beam_decode(logits: Tensor, lengths: Tensor | None = None, beam: int = 8) -> list[list[int]]:
    """Prefix beam search over ``(T, B, V)`` logits -> B label-id lists.

    For each prefix it tracks log P(paths reading as the prefix, ending in blank) and
    log P(…, ending in its last label); extending by the same label as the last one is only
    possible from a blank-ending path (otherwise the repeat merges). ``beam=1`` keeps one prefix.
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    log_probs = logits.float().log_softmax(-1).transpose(0, 1).tolist()  # (B, T, V)
    out = []
    for b, frames in enumerate(log_probs):
        if lengths is not None:
            frames = frames[: int(lengths[b])]
        beams = {(): (0.0, -math.inf)}  # prefix -> (log p ending blank, log p ending label)
        for frame in frames:
            grown: dict[tuple, list[float]] = {}
            for prefix, (p_blank, p_label) in beams.items():
                total = _logsumexp(p_blank, p_label)
                _add(grown, prefix, blank=total + frame[BLANK])
                for symbol in range(1, len(frame)):
                    p = frame[symbol]
                    if prefix and prefix[-1] == symbol:
                        _add(grown, prefix, label=p_label + p)  # a repeat merges into the prefix
                        _add(grown, prefix + (symbol,), label=p_blank + p)  # new, after a blank
                    else:
                        _add(grown, prefix + (symbol,), label=total + p)
            ranked = sorted(grown.items(), key=lambda kv: _logsumexp(*kv[1]), reverse=True)
            beams = {prefix: tuple(p) for prefix, p in ranked[:beam]}
        best = max(beams.items(), key=lambda kv: _logsumexp(*kv[1]))[0]
        out.append(list(best))
    return out


def targets_of(batch: Batch) -> list[list[int]]:
    """The reference label-id lists of a :class:`Labels` batch (padding 0 removed)."""
    return [[int(v) for v in column if v > 0] for column in batch.targets.t()]


class LabelErrorMetric(Metric):
    """Per-utterance CTC loss, label error rate (primary) and sequence error rate.

    Args:
        decode: ``"greedy"`` (best path) or ``"beam"`` (prefix beam search, ``beam`` wide).
    ``compute()``: ``loss`` (CTC nats per utterance), ``error_rate`` ((S + D + I) / N over all
    reference labels, by jiwer), ``sequence_error_rate`` and ``sequence_accuracy``.
    """

    primary = "error_rate"
    higher_is_better = False

    def __init__(self, decode: str = "greedy", beam: int = 8):
        if decode not in ("greedy", "beam"):
            raise ValueError(f"decode must be 'greedy' or 'beam', got {decode!r}")
        self.decode, self.beam = decode, beam
        self.nll = 0.0
        self.utterances = 0
        self.errors = 0  # S + D + I
        self.reference_labels = 0
        self.exact = 0

    def hypotheses(self, logits: Tensor, lengths: Tensor | None) -> list[list[int]]:
        if self.decode == "greedy":
            return greedy_decode(logits, lengths)
        return beam_decode(logits, lengths, self.beam)

    @torch.no_grad()
    def update(self, logits: Tensor, batch: Batch) -> None:
        nll, count = _nll_sum(Labels(logits.shape[-1]), logits, batch)
        self.nll += float(nll)
        self.utterances += count
        references = targets_of(batch)
        hypotheses = self.hypotheses(logits, batch.lengths)
        spelled = [" ".join(map(str, r)) for r in references]
        heard = [" ".join(map(str, h)) for h in hypotheses]
        if any(not r for r in spelled):
            raise ValueError("a reference label sequence is empty: every utterance needs labels")
        import jiwer  # here: 0.16 s (rapidfuzz) that a command not scoring speech should not pay

        edits = jiwer.process_words(spelled, heard)
        self.errors += edits.substitutions + edits.deletions + edits.insertions
        self.reference_labels += sum(len(r) for r in references)
        self.exact += sum(r == h for r, h in zip(references, hypotheses))

    def compute(self) -> dict[str, float]:
        if self.utterances == 0:
            raise ValueError("metric has no utterances: call update() with a batch first")
        wrong = 1.0 - self.exact / self.utterances
        return {
            "loss": self.nll / self.utterances,
            "error_rate": self.errors / max(self.reference_labels, 1),
            "sequence_error_rate": wrong,
            "sequence_accuracy": 1.0 - wrong,
        }
