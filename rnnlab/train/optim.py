"""Optimisers, learning-rate schedules and gradient clipping.

Schedules are pure functions of (step, epoch), so a resumed run needs no scheduler state:

* ``constant``: ``lr``.
* ``zaremba`` (Zaremba et al. 2014): ``lr / lr_decay ** max(0, epoch + 1 - decay_after)`` with
  ``epoch`` counted from 0; their small PTB model: lr 1, halved per epoch after epoch 4.
* ``cosine``: ``lr * (1 + cos(pi * step / total)) / 2`` over the run's total steps.

Clipping (Pascanu et al. 2013): by norm, ``g <- g * clip_norm / ||g||`` when
``||g|| > clip_norm`` over all parameters together; by value, each element clamped to
``[-clip_value, clip_value]``. Value clipping is applied first.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rnnlab.train.config import TrainConfig


def make_optimizer(parameters, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (optionally with momentum / Nesterov), Adam or RMSprop, as ``config`` says."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    raise ValueError(f"optimizer must be one of sgd, adam, rmsprop; got {config.optimizer!r}")


def learning_rate(config: TrainConfig, step: int, epoch: int, total_steps: int | None) -> float:
    """The learning rate for optimiser step ``step`` (0-based) in epoch ``epoch`` (0-based)."""
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "zaremba":
        return config.lr / config.lr_decay ** max(0, epoch + 1 - config.decay_after)
    if config.schedule == "cosine":
        if not total_steps:
            raise ValueError("the cosine schedule needs a known number of total steps")
        progress = min(step / total_steps, 1.0)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"schedule must be one of constant, zaremba, cosine; got {config.schedule!r}")


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_gradients(model: nn.Module, config: TrainConfig) -> float:
    """Clip by value then by norm as configured; return the global gradient norm before clipping
    by norm (inf or nan when a gradient is not finite)."""
    parameters = [p for p in model.parameters() if p.grad is not None]
    if config.clip_value is not None:
        torch.nn.utils.clip_grad_value_(parameters, config.clip_value)
    max_norm = config.clip_norm if config.clip_norm is not None else math.inf
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    return float(norm)
