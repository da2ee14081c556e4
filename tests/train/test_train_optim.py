"""Optimisers, schedules and clipping."""

import math

import pytest
import torch

from rnnlab.train.config import TrainConfig
from rnnlab.train.optim import clip_gradients, learning_rate, make_optimizer


def test_zaremba_small_schedule():
    # Zaremba et al. 2014, small model: lr 1, halved every epoch after the 4th.
    config = TrainConfig(optimizer="sgd", lr=1.0, schedule="zaremba", lr_decay=2, decay_after=4)
    per_epoch = [learning_rate(config, 0, epoch, None) for epoch in range(7)]
    assert per_epoch == [1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125]


def test_cosine_and_constant():
    config = TrainConfig(lr=0.2, schedule="cosine")
    assert learning_rate(config, 0, 0, 100) == pytest.approx(0.2)
    assert learning_rate(config, 50, 0, 100) == pytest.approx(0.1)
    assert learning_rate(config, 100, 0, 100) == pytest.approx(0.0)
    assert learning_rate(TrainConfig(lr=0.3), 1000, 40, None) == 0.3


def test_optimizers():
    parameters = [torch.nn.Parameter(torch.ones(2))]
    sgd = make_optimizer(parameters, TrainConfig(optimizer="sgd", momentum=0.9, nesterov=True))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    assert isinstance(make_optimizer(parameters, TrainConfig(optimizer="adam")), torch.optim.Adam)
    rms = make_optimizer(parameters, TrainConfig(optimizer="rmsprop", momentum=0.5))
    assert isinstance(rms, torch.optim.RMSprop) and rms.defaults["momentum"] == 0.5


def _with_gradient(values):
    layer = torch.nn.Linear(len(values), 1, bias=False)
    layer.weight.grad = torch.tensor([values])
    return layer


def test_clip_by_norm():
    layer = _with_gradient([3.0, 4.0])  # norm 5
    norm = clip_gradients(layer, TrainConfig(clip_norm=1.0))
    assert norm == pytest.approx(5.0)
    assert layer.weight.grad.norm().item() == pytest.approx(1.0, rel=1e-5)
    layer = _with_gradient([0.3, 0.4])
    clip_gradients(layer, TrainConfig(clip_norm=1.0))
    torch.testing.assert_close(layer.weight.grad, torch.tensor([[0.3, 0.4]]))


def test_clip_by_value():
    layer = _with_gradient([-3.0, 0.5, 2.0])
    clip_gradients(layer, TrainConfig(clip_norm=None, clip_value=1.0))
    torch.testing.assert_close(layer.weight.grad, torch.tensor([[-1.0, 0.5, 1.0]]))


def test_a_non_finite_gradient_shows_in_the_norm():
    layer = _with_gradient([float("inf"), 1.0])
    assert not math.isfinite(clip_gradients(layer, TrainConfig(clip_norm=None)))
