"""Losses and metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from rnnlab.tasks.base import (
    Batch,
    Binary,
    BinaryMetric,
    Classes,
    ClassMetric,
    TokenMetric,
    Tokens,
    output_loss,
)


def token_case():
    """T=2, B=2, V=2; logits chosen so the probabilities are simple."""
    logits = torch.zeros(2, 2, 2)
    logits[0, 0] = torch.tensor([math.log(3.0), 0.0])  # p = (3/4, 1/4)
    logits[0, 1] = torch.tensor([0.0, 0.0])  # p = (1/2, 1/2)
    logits[1, 0] = torch.tensor([0.0, math.log(7.0)])  # p = (1/8, 7/8)
    logits[1, 1] = torch.tensor([math.log(9.0), 0.0])  # p = (9/10, 1/10)
    targets = torch.tensor([[0, 1], [1, 1]])
    return logits, targets


def test_token_metric_unmasked_by_hand():
    logits, targets = token_case()
    metric = TokenMetric("bits_per_char")
    metric.update(logits, Batch(inputs=targets, targets=targets))
    nll = -(math.log(3 / 4) + math.log(1 / 2) + math.log(7 / 8) + math.log(1 / 10)) / 4
    out = metric.compute()
    assert out["loss"] == pytest.approx(nll)
    assert out["bits_per_char"] == pytest.approx(nll / math.log(2))
    assert out["perplexity"] == pytest.approx(math.exp(nll))
    # argmax: (0, tie -> 0, 1, 0) vs targets (0, 1, 1, 1): right at [0,0] and [1,0]
    assert out["accuracy"] == pytest.approx(2 / 4)
    assert metric.primary == "bits_per_char" and not metric.higher_is_better


def test_token_metric_mask_and_sequence_accuracy_by_hand():
    logits, targets = token_case()
    mask = torch.tensor([[False, True], [True, True]])
    batch = Batch(inputs=targets, targets=targets, mask=mask)
    metric = TokenMetric("sequence_accuracy", sequences=True)
    metric.update(logits, batch)
    out = metric.compute()
    nll = -(math.log(1 / 2) + math.log(7 / 8) + math.log(1 / 10)) / 3
    assert out["loss"] == pytest.approx(nll)
    assert out["accuracy"] == pytest.approx(1 / 3)  # only [1, 0] is right
    # sequence 0 counts one step ([1,0], right) -> whole; sequence 1 has wrong steps
    assert out["sequence_accuracy"] == pytest.approx(1 / 2)
    assert float(output_loss(Tokens(2), logits, batch)) == pytest.approx(nll)
    assert metric.higher_is_better


def test_lengths_act_as_a_mask():
    logits, targets = token_case()
    by_length = Batch(inputs=targets, targets=targets, lengths=torch.tensor([1, 2]))
    by_mask = Batch(inputs=targets, targets=targets, mask=torch.tensor([[1, 1], [0, 1]]).bool())
    assert float(output_loss(Tokens(2), logits, by_length)) == pytest.approx(
        float(output_loss(Tokens(2), logits, by_mask))
    )
    expected = -(math.log(3 / 4) + math.log(1 / 2) + math.log(1 / 10)) / 3
    assert float(output_loss(Tokens(2), logits, by_length)) == pytest.approx(expected)


def test_metric_accumulates_over_batches_weighted_by_tokens():
    logits, targets = token_case()
    whole = TokenMetric()
    whole.update(logits, Batch(inputs=targets, targets=targets))
    split = TokenMetric()
    split.update(logits[:1], Batch(inputs=targets[:1], targets=targets[:1]))
    split.update(logits[1:], Batch(inputs=targets[1:], targets=targets[1:]))
    assert split.compute() == pytest.approx(whole.compute())


def test_binary_nll_sums_keys_and_averages_frames():
    # K=2 keys, T=2, B=1, second frame padded away by lengths
    logits = torch.tensor([[[0.0, math.log(3.0)]], [[5.0, 5.0]]])  # p(on) = 1/2, 3/4
    targets = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]]])
    batch = Batch(inputs=targets, targets=targets, lengths=torch.tensor([1]))
    frame_nll = -(math.log(1 / 2) + math.log(1 / 4))
    assert float(output_loss(Binary(2), logits, batch)) == pytest.approx(frame_nll)
    metric = BinaryMetric()
    metric.update(logits, batch)
    out = metric.compute()
    assert out["nll"] == pytest.approx(frame_nll) and out["loss"] == out["nll"]
    # frame 0 predictions (logit > 0): key 0 off (logit 0), key 1 on; truth key 0 on
    # TP 0, FP 1, FN 1 -> accuracy 0
    assert out["accuracy"] == 0.0
    assert metric.primary == "nll" and not metric.higher_is_better


def test_binary_frame_accuracy_by_hand():
    logits = torch.tensor([[[2.0, 2.0, -2.0, 2.0]]])  # on, on, off, on
    targets = torch.tensor([[[1.0, 0.0, 1.0, 1.0]]])  # TP 2, FP 1, FN 1
    metric = BinaryMetric()
    metric.update(logits, Batch(inputs=targets, targets=targets))
    assert metric.compute()["accuracy"] == pytest.approx(2 / 4)


def test_class_metric_by_hand():
    logits = torch.tensor([[math.log(4.0), 0.0], [0.0, 0.0], [0.0, math.log(2.0)]])
    targets = torch.tensor([0, 1, 0])
    batch = Batch(inputs=torch.zeros(1, 3, 1), targets=targets)
    metric = ClassMetric()
    metric.update(logits, batch)
    out = metric.compute()
    nll = -(math.log(4 / 5) + math.log(1 / 2) + math.log(1 / 3)) / 3
    assert out["loss"] == pytest.approx(nll)
    assert float(output_loss(Classes(2), logits, batch)) == pytest.approx(nll)
    assert out["accuracy"] == pytest.approx(1 / 3)  # [0] right, [1] tie -> 0 wrong, [2] wrong
    assert out["error"] == pytest.approx(2 / 3)


def test_wrong_logit_shape_says_what_was_expected():
    targets = torch.zeros(3, 2, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"logits must have shape \(3, 2, 5\)"):
        output_loss(Tokens(5), torch.zeros(2, 3, 5), Batch(inputs=targets, targets=targets))


def test_empty_metric_refuses_to_compute():
    with pytest.raises(ValueError, match="call update"):
        TokenMetric().compute()


def test_batch_to_moves_every_tensor():
    batch = Batch(
        inputs=torch.zeros(2, 1, dtype=torch.int64),
        targets=torch.zeros(2, 1, dtype=torch.int64),
        mask=torch.ones(2, 1, dtype=torch.bool),
        lengths=torch.tensor([2]),
        continues=True,
    )
    moved = batch.to("meta")
    assert all(
        t.device.type == "meta" for t in (moved.inputs, moved.targets, moved.mask, moved.lengths)
    )
    assert moved.continues and batch.inputs.device.type == "cpu"


def test_argmax_equals_is_argmax_on_ties_nan_and_inf():
    """The metrics' accuracy test (``argmax_equals``) gives exactly ``argmax(-1) == targets``:
    the first maximal index wins a tie, a NaN counts as the maximum, ±inf as values."""
    from rnnlab.tasks.base import argmax_equals

    g = torch.Generator().manual_seed(0)
    for trial in range(400):
        shape = tuple(int(v) for v in torch.randint(1, 6, (2,), generator=g))
        V = int(torch.randint(1, 9, (1,), generator=g))
        x = torch.randint(-2, 3, (*shape, V), generator=g).float()  # many ties
        if trial % 3 == 0:
            x[torch.rand(x.shape, generator=g) < 0.2] = float("nan")
        if trial % 5 == 0:
            x[torch.rand(x.shape, generator=g) < 0.2] = float("inf")
        targets = torch.randint(0, V, shape, generator=g)
        assert torch.equal(argmax_equals(x, targets), x.argmax(-1) == targets), (x, targets)
