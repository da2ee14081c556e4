"""Padding never changes a metric: every metric over a padded batch equals the same metric over
its sequences one at a time, unpadded.

The padded steps are chosen to be noticed if they were read: some predict the padded target
(an extra right answer), some predict something else (a wrong one spoiling a whole sequence),
music keys are predicted on and off in padded frames (false positives, false negatives), and
CTC padding frames shout a label (an insertion). One test is parametrised over every
:class:`~rnnlab.tasks.base.Metric` in ``rnnlab.tasks`` and over both ways a batch marks its
padding (``lengths``, ``mask``); a new metric class fails
:func:`test_every_metric_class_has_a_padding_case` until it gets a case here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

import rnnlab.tasks
from rnnlab.tasks.base import Batch, BinaryMetric, ClassMetric, Metric, TokenMetric
from rnnlab.tasks.ctc import LabelErrorMetric
from rnnlab.tasks.timing import SpikeMetric

LENGTHS = (5, 2, 4, 3)  # sequence 0 fills the batch; the others are padded to 5 steps
STEPS = max(LENGTHS)


def valid_right(b: int) -> bool:
    """Sequences whose valid steps are all predicted right: a wrong padded step must not spoil
    their whole-sequence accuracy."""
    return b in (0, 1)


def padding_right(b: int) -> bool:
    """Padding predicted right in even sequences (extra right answers if counted), wrong in odd
    ones (extra errors if counted)."""
    return b % 2 == 0


@dataclass
class Sequence:
    logits: torch.Tensor  # (T, V) over all STEPS, padding included
    targets: torch.Tensor  # (T,) or (T, K) over all STEPS; (S,) labels for CTC
    length: int


def token_sequences(generator: torch.Generator) -> list[Sequence]:
    size = 5
    out = []
    for b, n in enumerate(LENGTHS):
        logits = torch.randn(STEPS, size, generator=generator)
        best = logits.argmax(-1)
        wrong = (best + 1) % size
        targets = torch.randint(0, size, (STEPS,), generator=generator)
        if valid_right(b):
            targets[:n] = best[:n]
        targets[n:] = best[n:] if padding_right(b) else wrong[n:]
        out.append(Sequence(logits, targets, n))
    return out


def binary_sequences(generator: torch.Generator) -> list[Sequence]:
    keys = 4
    out = []
    for b, n in enumerate(LENGTHS):
        logits = 3 * torch.randn(STEPS, keys, generator=generator)
        on = (logits > 0).float()
        targets = (torch.rand(STEPS, keys, generator=generator) > 0.5).float()
        if valid_right(b):
            targets[:n] = on[:n]
        targets[n:] = on[n:] if padding_right(b) else 1.0 - on[n:]
        logits[n:, 0] = 5.0  # a key predicted on in every padded frame
        targets[n:, 0] = 1.0 if padding_right(b) else 0.0
        out.append(Sequence(logits, targets, n))
    return out


def label_sequences(generator: torch.Generator) -> list[Sequence]:
    size = 4  # labels 1..3 and the blank 0
    references = ([1, 3], [2], [3, 1], [1])
    out = []
    for reference, n in zip(references, LENGTHS, strict=True):
        logits = torch.randn(STEPS, size, generator=generator)
        for t, label in enumerate(reference):  # the valid frames lean towards the reference
            logits[t, label] += 2.0
        logits[n:, 2] = 10.0  # padding frames shout label 2
        out.append(Sequence(logits, torch.tensor(reference), n))
    return out


def class_sequences(generator: torch.Generator) -> list[Sequence]:
    size = 3
    logits = torch.randn(len(LENGTHS), size, generator=generator)
    targets = torch.tensor([0, 2, 1, 2])
    return [Sequence(logits[b], targets[b], n) for b, n in enumerate(LENGTHS)]


def padded_batch(sequences: list[Sequence], marked_by: str) -> tuple[torch.Tensor, Batch]:
    """All sequences in one batch padded to STEPS, padding marked by ``lengths`` or ``mask``."""
    lengths = torch.tensor([s.length for s in sequences])
    logits = torch.stack([s.logits for s in sequences], dim=-2)  # (T, B, V) or (B, C)
    if sequences[0].targets.dim() == 0:  # Classes: one label per sequence
        targets = torch.stack([s.targets for s in sequences])
    elif sequences[0].targets.shape[0] != STEPS:  # Labels: (S, B), padded with the blank
        labels = max(len(s.targets) for s in sequences)
        targets = torch.zeros(labels, len(sequences), dtype=torch.int64)
        for b, s in enumerate(sequences):
            targets[: len(s.targets), b] = s.targets
    else:
        targets = torch.stack([s.targets for s in sequences], dim=1)  # (T, B) or (T, B, K)
    inputs = torch.zeros(STEPS, len(sequences), 1)
    if marked_by == "lengths":
        return logits, Batch(inputs=inputs, targets=targets, lengths=lengths)
    within = torch.arange(STEPS)[:, None] < lengths[None, :]  # (T, B)
    return logits, Batch(inputs=inputs, targets=targets, mask=within)


def alone(sequence: Sequence) -> tuple[torch.Tensor, Batch]:
    """One sequence as a batch of one, cut to its length: no padding at all."""
    n = sequence.length
    inputs = torch.zeros(n, 1, 1)
    if sequence.targets.dim() == 0:  # Classes
        return sequence.logits[None], Batch(inputs=inputs, targets=sequence.targets[None])
    if sequence.targets.shape[0] != STEPS:  # Labels
        return sequence.logits[:n, None], Batch(inputs=inputs, targets=sequence.targets[:, None])
    return sequence.logits[:n, None], Batch(inputs=inputs, targets=sequence.targets[:n, None])


@dataclass(frozen=True)
class Case:
    metric: Callable[[], Metric]
    sequences: Callable[[torch.Generator], list[Sequence]]
    marks: tuple[str, ...] = ("lengths", "mask")  # how this output space's batches mark padding
    per_step: bool = True  # logits per step; a Classes metric sees one row per sequence only


CASES = {
    "token": Case(TokenMetric, token_sequences),
    "token_sequences": Case(lambda: TokenMetric("sequence_accuracy", sequences=True),
                            token_sequences),
    "binary": Case(BinaryMetric, binary_sequences),
    "spike": Case(SpikeMetric, binary_sequences),
    "class": Case(ClassMetric, class_sequences, marks=("lengths",), per_step=False),
    # CTC reads frames by `lengths` only (its targets are label sequences, not per step)
    "label_greedy": Case(LabelErrorMetric, label_sequences, marks=("lengths",)),
    "label_beam": Case(lambda: LabelErrorMetric("beam", beam=3), label_sequences,
                       marks=("lengths",)),
}


def case_params(per_step_only: bool = False) -> list:
    return [
        pytest.param(name, marked_by, id=f"{name}-{marked_by}")
        for name, case in CASES.items()
        if case.per_step or not per_step_only
        for marked_by in case.marks
    ]


@pytest.mark.parametrize(("name", "marked_by"), case_params())
def test_a_padded_batch_scores_as_its_sequences_alone(name, marked_by):
    case = CASES[name]
    sequences = case.sequences(torch.Generator().manual_seed(0))
    one_by_one = case.metric()
    for sequence in sequences:
        one_by_one.update(*alone(sequence))
    padded = case.metric()
    padded.update(*padded_batch(sequences, marked_by))
    expected = one_by_one.compute()
    assert padded.compute() == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(("name", "marked_by"), case_params(per_step_only=True))
def test_the_padding_would_change_the_metric_if_it_were_read(name, marked_by):
    """The padded steps of each case are ones a metric would notice: scored as valid steps
    (the same batch without its padding marked), they change the result. (A Classes metric
    sees one row of logits per sequence: padding in time never reaches it, only the model's
    last-step read, tested in tests/train.)"""
    case = CASES[name]
    sequences = case.sequences(torch.Generator().manual_seed(0))
    logits, batch = padded_batch(sequences, marked_by)
    honest = case.metric()
    honest.update(logits, batch)
    blind = case.metric()
    blind.update(logits, Batch(inputs=batch.inputs, targets=batch.targets))
    assert blind.compute() != pytest.approx(honest.compute(), rel=1e-6, abs=1e-9)


def metric_classes() -> set[type]:
    """Every Metric subclass defined in rnnlab.tasks (all its modules imported)."""
    for module in pkgutil.iter_modules(rnnlab.tasks.__path__):
        importlib.import_module(f"rnnlab.tasks.{module.name}")
    found, todo = set(), [Metric]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith("rnnlab.tasks") and sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def test_every_metric_class_has_a_padding_case():
    covered = {type(case.metric()) for case in CASES.values()}
    missing = metric_classes() - covered
    assert not missing, f"metrics without a padding case in CASES: {sorted(map(str, missing))}"
