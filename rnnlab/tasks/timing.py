"""Timing tasks of Gers, Schraudolph & Schmidhuber (2002), the tasks peepholes were made for.

"Learning Precise Timing with LSTM Recurrent Networks" (JMLR 3:115–143) shows that an LSTM whose
gates see the cell state ("peephole connections") learns to measure and to produce precise
time intervals. rnnlab generates two of its task families from a seed (see
:mod:`rnnlab.tasks.synthetic` for how seeds, splits and batches work):

``msd`` — measuring spike delays. The input is one channel, 1.0 at spike steps and 0.0
elsewhere. Spikes come ``spikes`` times, each interval drawn uniformly from
``[min_delay, max_delay]``, the first at a random phase. At every spike after the first the
model names the interval since the previous spike: a softmax over the ``max_delay - min_delay
+ 1`` possible delays, read only at those steps. To answer, the network must count steps
between events it cannot see coming::

    input   1 . . . . . . . . . . . 1 . . . . . . . . . 1 . .      (min 10, max 20)
    target                          12                  10

``gts`` — generating timed spikes. One cue spike arrives at a random step in
``[0, period)``; from then on the model must emit a spike every ``period`` steps, with no
further input, until the sequence ends — and nothing anywhere else::

    input   . . 1 . . . . . . . . . . . . . . . . . . . . . .      (period 8)
    target  . . . . . . . . . . 1 . . . . . . . 1 . . . . . .

Metrics: ``msd``: ``accuracy`` (delays named exactly; primary) and ``sequence_accuracy`` (every
delay of a sequence right). ``gts``: ``accuracy`` = TP / (TP + FP + FN) over steps with a
spike predicted where the logit is > 0 (primary), ``sequence_accuracy`` (every step of a
sequence right: each spike on time, none elsewhere), and the Bernoulli ``nll``.

What rnnlab's tasks take from the paper, and what they change: the paper's MSD streams have
delays such as 49 vs 50 steps and its networks were trained online with one sequence at a time;
here the defaults are shorter (10–20 steps, four spikes; period 10) so that the three-cell
comparison in ``rnnlab reproduce gers-timing`` fits a CPU budget, and every length is an
option. The paper regresses the delay with a linear output; rnnlab names it as a class, which
scores exactness directly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rnnlab.tasks import register
from rnnlab.tasks.base import (
    Batch,
    Binary,
    BinaryMetric,
    Features,
    TokenMetric,
    Tokens,
    check_positive,
)
from rnnlab.tasks.synthetic import GeneratedTask

# Training defaults (Task.training_defaults): gers-timing's recipe (rnnlab/reproduce/entries.py).
TIMING_TRAINING = {
    "task.batch_size": 32,
    "task.eval_batch_size": 500,
    "train.lr": 1e-2,
    "train.clip_norm": 1.0,
    "train.eval_every": 100,
}


@register("msd")
class SpikeDelays(GeneratedTask):
    """Measuring spike delays (Gers et al. 2002): name the interval between consecutive spikes.

    Args:
        min_delay, max_delay: each interval is uniform in ``[min_delay, max_delay]`` steps.
            Defaults 10 and 20.
        spikes: spikes per sequence (``spikes - 1`` delays to name). Default 4.
        valid_size, test_size: fixed evaluation examples. Default 1000 each. They are kept out
            of training only when the task has at least four times as many distinct sequences
            (``(max_delay - min_delay + 1) ** spikes``); ``info["heldout"]`` says which.
    Inputs ``(T, B, 1)`` float32 with ``T = spikes * max_delay``; targets ``(T, B)`` int64, the
    delay minus ``min_delay``, counted (``mask``) only at spike steps after the first.
    """

    name = "msd"
    training_defaults = TIMING_TRAINING
    summary = (
        "Measuring spike delays (Gers, Schraudolph & Schmidhuber 2002, the task peephole LSTMs "
        "were made for): one input channel carries spikes (1.0) separated by random intervals "
        "of 10-20 steps (min_delay=, max_delay=), 4 per sequence (spikes=); at each spike after "
        "the first the model names the interval since the previous one (a softmax over the "
        "possible delays). Generated from a seed. Metric: accuracy of the named delays, plus "
        "whole-sequence accuracy. Example: spikes at steps 3, 15, 25 -> delays 12, 10."
    )

    def __init__(
        self,
        min_delay: int = 10,
        max_delay: int = 20,
        spikes: int = 4,
        valid_size: int = 1000,
        test_size: int = 1000,
    ):
        super().__init__(valid_size, test_size)
        check_positive("min_delay", min_delay)
        check_positive("spikes", spikes)
        if max_delay < min_delay:
            raise ValueError(f"max_delay must be >= min_delay ({min_delay}), got {max_delay}")
        if spikes < 2:
            raise ValueError(f"spikes must be >= 2 (one delay needs two spikes), got {spikes}")
        self.min_delay, self.max_delay, self.spikes = min_delay, max_delay, spikes
        self.steps = spikes * max_delay
        self.input = Features(1)
        self.output = Tokens(max_delay - min_delay + 1)
        self.vocab = [str(d) for d in range(min_delay, max_delay + 1)]
        # A phase and spikes - 1 gaps, each one of (max - min + 1) values: the paper's hard case
        # (49 vs 50, 4 spikes) has 16 distinct sequences, too few to hold any out. Then valid
        # and test measure the timing skill on sequences training sees too, as for gts.
        distinct = (max_delay - min_delay + 1) ** spikes
        self.exclude_heldout = distinct >= 4 * (valid_size + test_size)
        self.info.update(min_delay=min_delay, max_delay=max_delay, spikes=spikes,
                         heldout=self.exclude_heldout)

    def generate(self, rng, count):
        """Each example: the spike steps, ``(spikes,)`` int64, strictly increasing."""
        phase = rng.integers(0, self.max_delay - self.min_delay + 1, size=(count, 1))
        gaps = rng.integers(self.min_delay, self.max_delay + 1, size=(count, self.spikes - 1))
        return list(np.cumsum(np.concatenate([phase, gaps], axis=1), axis=1))

    def collate(self, examples) -> Batch:
        times = torch.from_numpy(np.stack(examples))  # (B, spikes)
        batch = times.shape[0]
        columns = torch.arange(batch)
        inputs = torch.zeros(self.steps, batch, 1)
        inputs[times.t(), columns] = 1.0
        targets = torch.zeros(self.steps, batch, dtype=torch.int64)
        mask = torch.zeros(self.steps, batch, dtype=torch.bool)
        later = times[:, 1:].t()  # (spikes - 1, B)
        targets[later, columns] = (times.diff(dim=1).t() - self.min_delay).to(torch.int64)
        mask[later, columns] = True
        return Batch(inputs=inputs, targets=targets, mask=mask)

    def metric(self) -> TokenMetric:
        return TokenMetric("accuracy", sequences=True)


class SpikeMetric(BinaryMetric):
    """:class:`BinaryMetric` for spike trains, with ``accuracy`` (TP / (TP + FP + FN)) as the
    primary number and ``sequence_accuracy``: the fraction of sequences whose every counted
    step is right (each spike on time, none elsewhere)."""

    primary = "accuracy"
    higher_is_better = True

    def __init__(self):
        super().__init__()
        self.sequences_correct = 0
        self.sequences_seen = 0

    @torch.no_grad()
    def update(self, logits: Tensor, batch: Batch) -> None:
        super().update(logits, batch)
        right = ((logits > 0) == (batch.targets > 0.5)).all(-1)  # (T, B)
        mask = batch.step_mask()
        if mask is not None:
            right = right | ~mask
        self.sequences_correct += int(right.all(0).sum())
        self.sequences_seen += right.shape[1]

    def compute(self) -> dict[str, float]:
        out = super().compute()
        out["sequence_accuracy"] = self.sequences_correct / max(self.sequences_seen, 1)
        return out


@register("gts")
class TimedSpikes(GeneratedTask):
    """Generating timed spikes (Gers et al. 2002): after a cue, a spike every ``period`` steps.

    Args:
        period: steps between output spikes. Default 10.
        length: steps per sequence. Default 60.
        valid_size, test_size: fixed evaluation examples. Default 1000 each.
    Inputs ``(length, B, 1)`` float32: 1.0 at the cue, a step uniform in ``[0, period)``;
    targets ``(length, B, 1)`` float32: 1.0 at ``cue + k * period`` for k ≥ 1; every step counts.
    """

    name = "gts"
    training_defaults = TIMING_TRAINING
    # Only `period` distinct sequences exist (one per cue step): test measures producing the
    # rhythm, not generalising to unseen inputs, so valid/test examples are not held out.
    exclude_heldout = False
    summary = (
        "Generating timed spikes (Gers, Schraudolph & Schmidhuber 2002): one cue spike arrives "
        "at a random step; from then on the model must emit a spike every 10 steps (period=) "
        "with no further input, and nothing anywhere else, over 60 steps (length=). Generated "
        "from a seed. Metric: spike accuracy TP/(TP+FP+FN) and whole-sequence accuracy (every "
        "spike on time, no extra one). Example (period 4): cue at 1 -> spikes at 5, 9, 13, ..."
    )

    def __init__(
        self, period: int = 10, length: int = 60, valid_size: int = 1000, test_size: int = 1000
    ):
        super().__init__(valid_size, test_size)
        check_positive("period", period)
        check_positive("length", length)
        if length < 2 * period:
            raise ValueError(
                f"length must be >= 2 * period ({2 * period}) so that a spike follows every "
                f"cue, got {length}"
            )
        self.period, self.length = period, length
        self.input = Features(1)
        self.output = Binary(1)
        self.info.update(period=period, length=length)

    def generate(self, rng, count):
        """Each example: the cue step, an int in ``[0, period)``."""
        return rng.integers(0, self.period, size=count).tolist()

    def collate(self, examples) -> Batch:
        cues = torch.tensor(examples, dtype=torch.int64)  # (B,)
        steps = torch.arange(self.length)[:, None]  # (T, 1)
        since = steps - cues[None, :]  # (T, B)
        inputs = (since == 0).to(torch.float32)[..., None]
        targets = ((since > 0) & (since % self.period == 0)).to(torch.float32)[..., None]
        return Batch(inputs=inputs, targets=targets)

    def metric(self) -> SpikeMetric:
        return SpikeMetric()
