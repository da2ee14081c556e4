"""Shared pieces of the study tests: a tiny task setting so that a trial takes well under a
second (memorisation of 3 symbols out of 4, three training steps)."""

from __future__ import annotations

TINY = {
    "task.length": 3,
    "task.symbols": 4,
    "task.valid_size": 16,
    "task.test_size": 16,
    "task.batch_size": 4,
    "task.eval_batch_size": 16,
    "train.steps_per_epoch": 3,
    "train.epochs": 1,
}


def tiny_args(extra_settings: dict | None = None) -> list[str]:
    """``rnnlab study run`` arguments for the tiny setting."""
    settings = {**TINY, **(extra_settings or {})}
    args = ["--task", "memorize"]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    return args
