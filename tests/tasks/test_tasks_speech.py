"""Connected spoken digits (digits_ctc), CTC loss and decoding."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from rnnlab.tasks.base import Batch, Labels, output_loss
from rnnlab.tasks.ctc import LabelErrorMetric, beam_decode, greedy_decode


def collapse(path):
    out, previous = [], 0
    for s in path:
        if s != previous and s != 0:
            out.append(s)
        previous = s
    return tuple(out)


def brute_force(log_probs):
    """{labelling: probability} by enumerating every path of a (T, V) log-prob table."""
    T, V = log_probs.shape
    totals = {}
    for path in itertools.product(range(V), repeat=T):
        p = math.exp(sum(log_probs[t, s] for t, s in enumerate(path)))
        key = collapse(path)
        totals[key] = totals.get(key, 0.0) + p
    return totals


def test_greedy_collapses_repeats_and_removes_blanks():
    path = [0, 3, 3, 0, 0, 1, 0, 1, 1, 2]
    logits = torch.full((len(path), 1, 4), -5.0)
    logits[torch.arange(len(path)), 0, torch.tensor(path)] = 5.0
    assert greedy_decode(logits) == [[3, 1, 1, 2]]
    assert greedy_decode(logits, torch.tensor([6])) == [[3, 1]]


def test_beam_search_finds_the_most_probable_labelling():
    generator = torch.Generator().manual_seed(0)
    disagreements = 0
    for _ in range(25):
        logits = torch.randn(5, 1, 3, generator=generator) * 1.5
        table = brute_force(logits[:, 0].log_softmax(-1).double())
        best = max(table, key=table.get)
        assert tuple(beam_decode(logits, beam=16)[0]) == best
        disagreements += tuple(greedy_decode(logits)[0]) != best
    assert disagreements > 0  # the cases where summing over alignments matters were drawn


def test_ctc_loss_is_the_negative_log_of_all_alignments():
    torch.manual_seed(1)
    logits = torch.randn(4, 2, 3)
    targets = torch.tensor([[1, 2], [2, 0]])  # (S, B): labellings (1, 2) and (2,)
    batch = Batch(inputs=torch.zeros(4, 2, 1), targets=targets, lengths=torch.tensor([4, 3]))
    loss = output_loss(Labels(3), logits, batch)
    first = brute_force(logits[:, 0].log_softmax(-1).double())[(1, 2)]
    second = brute_force(logits[:3, 1].log_softmax(-1).double())[(2,)]
    expected = -(math.log(first) + math.log(second)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_label_error_metric_counts_edit_operations():
    def logits_for(paths, steps=6):
        out = torch.full((steps, len(paths), 4), -5.0)
        for b, path in enumerate(paths):
            for t, s in enumerate(path):
                out[t, b, s] = 5.0
            out[len(path):, b, 0] = 5.0
        return out

    targets = torch.tensor([[1, 3], [2, 3], [3, 0]])  # references (1 2 3), (3 3)
    batch = Batch(inputs=torch.zeros(6, 2, 1), targets=targets)
    metric = LabelErrorMetric()
    metric.update(logits_for([[1, 2, 0, 3], [3, 0, 3, 0, 3]]), batch)  # exact; one insertion
    result = metric.compute()
    assert result["error_rate"] == pytest.approx(1 / 5)
    assert result["sequence_error_rate"] == pytest.approx(0.5)


@pytest.fixture(scope="module")
def digits(need, build):
    return build("digits_ctc", path=str(need("fsdd/recordings.tar.xz")), valid_size=20,
                 test_size=20)


def test_utterances_are_deterministic_and_labelled(digits):
    first = next(digits.batches("train", 3, start=5, seed=2))
    again = next(digits.batches("train", 3, start=5, seed=2))
    other = next(digits.batches("train", 3, start=5, seed=3))
    torch.testing.assert_close(first.inputs, again.inputs)
    assert not torch.equal(first.targets, other.targets)
    valid = [b.inputs for b in digits.batches("valid", 8)]
    for a, b in zip(valid, [b.inputs for b in digits.batches("valid", 8)], strict=True):
        torch.testing.assert_close(a, b)
    assert first.inputs.shape[2] == 40 and first.targets.min() >= 0
    labels = first.targets.t()
    counts = (labels > 0).sum(1)
    assert torch.all((counts >= 1) & (counts <= 7))
    assert torch.all(labels[labels > 0] <= 10)


def test_splits_never_share_a_recording(digits):
    rng = np.random.default_rng(0)
    used = {split: set() for split in ("train", "valid", "test")}
    for split in used:
        for _ in range(30):
            signal, spoken, names = digits.utterance(rng, split)
            assert [int(n[0]) for n in names] == spoken
            assert len({n.split("_")[1] for n in names}) == 1  # one speaker per utterance
            used[split].update(names)
    index = {split: {int(n.split("_")[2][:-4]) for n in names} for split, names in used.items()}
    assert max(index["test"]) < 5 and 5 <= min(index["valid"]) <= max(index["valid"]) < 10
    assert min(index["train"]) >= 10


def test_speaker_split_holds_out_voices(need, build):
    task = build("digits_ctc", path=str(need("fsdd/recordings.tar.xz")), split="speaker",
                 valid_size=4, test_size=4)
    rng = np.random.default_rng(1)
    speakers = {s: {n.split("_")[1] for _ in range(10) for n in task.utterance(rng, s)[2]}
                for s in ("train", "valid", "test")}
    assert speakers["test"] == {"yweweler"} and speakers["valid"] == {"theo"}
    assert not speakers["train"] & {"theo", "yweweler"}


def test_noise_at_the_requested_snr(need, build):
    clean = build("digits_ctc", path=str(need("fsdd/recordings.tar.xz")), valid_size=2,
                  test_size=2)
    noisy = build("digits_ctc", path=str(need("fsdd/recordings.tar.xz")), snr=10.0,
                  valid_size=2, test_size=2)
    a, _, _ = clean.utterance(np.random.default_rng(3), "train")
    b, _, _ = noisy.utterance(np.random.default_rng(3), "train")
    snr = 10 * math.log10(a.square().mean() / (b - a).square().mean())
    assert snr == pytest.approx(10.0, abs=0.5)


def test_bad_options_are_one_line(need):
    import rnnlab.tasks as tasks

    for options, message in ((dict(max_digits=0), "max_digits must be >= min_digits"),
                             (dict(split="random"), "split must be 'recording' or 'speaker'"),
                             (dict(silence=0.0), "silence must be at least 0.05")):
        with pytest.raises(ValueError, match=message):
            tasks.make("digits_ctc", path=str(need("fsdd/recordings.tar.xz")), **options)


def test_transcribing_needs_only_the_statistics_the_task_records(digits):
    import json

    from rnnlab.tasks.speech import Transcriber

    info = json.loads(json.dumps(digits.info))  # as a run's task.json holds it
    assert len(info["features"]["mean"]) == len(info["features"]["std"]) == 40
    carried = Transcriber.from_info(info, "task.json")
    signal, _, _ = digits.utterance(np.random.default_rng(0), "test")
    assert torch.equal(carried.transcribe_signal(signal), digits.transcribe_signal(signal))
    assert (carried.input, carried.output, carried.vocab, carried.causal) == \
        (digits.input, digits.output, digits.vocab, digits.causal)
    for damaged in ({"mean": [0.0] * 40}, {"mean": [0.0] * 40, "std": [0.0] * 40},
                    {"mean": [0.0] * 39, "std": [1.0] * 39}, "x"):
        with pytest.raises(ValueError, match="task.json is damaged: 'features' must hold"):
            Transcriber.from_info({"features": damaged}, "task.json")
