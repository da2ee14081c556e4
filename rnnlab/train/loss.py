"""The training objective's reduction: how the summed NLL of a batch is normalised.

``token`` (rnnlab's default)
    NLL / (number of counted steps): a mean per token, independent of unroll length.
``sequence``
    NLL / (number of sequences in the batch): summed over the unrolled time steps and averaged
    over the batch, as Zaremba et al. (2014) and most RNN papers of the time write the loss.
    At unroll T with every step counted the gradient is exactly T times the ``token`` one, so
    "lr 1, clip 5" means what the paper meant only with this reduction.

Both are the same for a ``Classes`` output (one prediction per sequence). The value that is
logged stays the per-token mean in both cases, so learning curves remain comparable.
"""

from __future__ import annotations

from torch import Tensor

from rnnlab.tasks.base import _nll_sum

REDUCTIONS = ("token", "sequence")


def training_loss(task, logits: Tensor, batch, reduction: str) -> tuple[Tensor, Tensor]:
    """(objective to differentiate, per-token mean loss for logging).

    ``token`` calls the task's own ``loss`` (so a task that overrides it keeps its loss);
    ``sequence`` divides the summed NLL by the batch's sequence count.
    """
    if reduction == "token":
        loss = task.loss(logits, batch)
        return loss, loss
    if reduction != "sequence":
        raise ValueError(f"train.loss_reduction must be one of {REDUCTIONS}, got {reduction!r}")
    nll, count = _nll_sum(task.output, logits, batch)
    objective = nll / batch.batch_size
    return objective, (nll / max(count, 1)).detach()
