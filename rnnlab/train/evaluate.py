"""Evaluation: one pass over a split with the task's metric."""

from __future__ import annotations

import torch
from torch import nn

from rnnlab.tasks.base import Classes, Labels


def evaluate(
    model: nn.Module,
    task,
    split: str,
    batch_size: int,
    *,
    seq_len: int | None = None,
    max_batches: int | None = None,
) -> dict[str, float]:
    """The task's metrics (``metric().compute()``) over ``split`` (at most ``max_batches``).

    Stream tasks carry the recurrent state from batch to batch, as in training; the model is put
    in eval mode (no dropout, no input noise) and left there.
    """
    values, _ = evaluate_counted(
        model, task, split, batch_size, seq_len=seq_len, max_batches=max_batches
    )
    return values


@torch.no_grad()
def evaluate_counted(
    model: nn.Module,
    task,
    split: str,
    batch_size: int,
    *,
    seq_len: int | None = None,
    max_batches: int | None = None,
    device: str | torch.device | None = None,
) -> tuple[dict[str, float], str]:
    """:func:`evaluate` and what the metrics were counted on: ``"25,600 tokens"``,
    ``"1,000 sequences"`` or ``"3,512 frames"``. Every batch is moved to ``device`` (default:
    where the model's parameters are)."""
    model.eval()
    if device is None:
        device = next(model.parameters()).device
    metric = task.metric()
    state = None
    seen = 0
    for batch in task.batches(split, batch_size, seq_len=seq_len):
        if max_batches is not None and seen >= max_batches:
            break
        batch = batch.to(device)
        logits, state = model(batch.inputs, state if batch.continues else None, batch.lengths)
        metric.update(logits, batch)
        seen += 1
    if seen == 0:
        raise ValueError(
            f"task {task.name!r} gave no {split} batches of size {batch_size}; "
            "use a smaller task.eval_batch_size"
        )
    if isinstance(task.output, Classes):
        counted, unit = metric.count, "sequences"
    elif isinstance(task.output, Labels):
        counted, unit = metric.utterances, "utterances"
    elif hasattr(metric, "frames"):
        counted, unit = metric.frames, "frames"
    else:
        counted = getattr(metric, "count", 0)
        unit = "characters" if getattr(task, "unit", None) == "char" else "tokens"
    return metric.compute(), f"{counted:,} {unit}"
