"""Truncated BPTT carries the recurrent state only into a batch that continues the previous
one (``Batch.continues``): a batch that starts new sequences — the first of each epoch of a
stream task, every batch of a generated task — starts from a zero state.

Checked at the level of one training step (:meth:`Trainer.train_step`, whose loss is computed
before its update) against the model run from a zero state and from the carried state with the
same parameters; and likewise for evaluation and for the search's lean training loop.
"""

from __future__ import annotations

import pytest
import torch
from train_helpers import TEXT, tiny_config

import rnnlab.tasks as tasks
from rnnlab.search import evaluate as search_evaluate
from rnnlab.train.evaluate import evaluate
from rnnlab.train.run import RunDir
from rnnlab.train.trainer import Trainer, build

ARITHMETIC = ["task.name=arithmetic", "task.digits=2"]


def config_for(task: list[str] = TEXT):
    """A tiny config; its step limit is never reached (the tests take steps one by one)."""
    return tiny_config("train.max_steps=100", task=task)


def make_trainer(tmp_path, task: list[str] = TEXT) -> Trainer:
    config = config_for(task)
    task_, model = build(config)
    return Trainer(config, task_, model, RunDir(tmp_path / "run"))


def loss_from(trainer: Trainer, batch, state) -> float:
    """The training loss of ``batch`` from ``state`` with the trainer's current parameters
    (the default per-token reduction; no dropout or input noise in these configs, so training
    mode is deterministic)."""
    trainer.model.train()
    with torch.no_grad():
        logits, _ = trainer.model(batch.inputs, state, batch.lengths)
    return float(trainer.task.loss(logits, batch))


def step_reads(trainer: Trainer, batch) -> str:
    """Take one training step on ``batch``; say which state its loss was computed from."""
    from_zero = loss_from(trainer, batch, None)
    from_carried = loss_from(trainer, batch, trainer.carried)
    assert from_zero != pytest.approx(from_carried, rel=1e-6), "the check cannot tell them apart"
    value = trainer.train_step(batch)[0]
    if value == pytest.approx(from_zero, rel=1e-6):
        return "zero"
    if value == pytest.approx(from_carried, rel=1e-6):
        return "carried"
    return f"neither ({value} vs zero {from_zero}, carried {from_carried})"


def test_a_stream_batch_continuing_the_last_reads_the_carried_state_a_new_epoch_does_not(
    tmp_path,
):
    trainer = make_trainer(tmp_path)
    size, length = trainer.config.task.batch_size, trainer.config.task.seq_len
    per_epoch = trainer.task.batches_per_epoch("train", size, seq_len=length)
    stream = trainer.task.batches("train", size, seq_len=length, start=per_epoch - 2)
    before_last, last, first_of_next_epoch = (next(stream) for _ in range(3))
    assert last.continues and not first_of_next_epoch.continues
    trainer.train_step(before_last)
    assert step_reads(trainer, last) == "carried"
    assert step_reads(trainer, first_of_next_epoch) == "zero"


def test_no_batch_of_a_generated_task_reads_the_previous_batchs_state(tmp_path):
    # Equal batch sizes: a wrongly carried state would fit and go unnoticed but for this check.
    trainer = make_trainer(tmp_path, task=ARITHMETIC)
    stream = trainer.task.batches("train", trainer.config.task.batch_size)
    trainer.train_step(next(stream))
    for _ in range(2):
        batch = next(stream)
        assert not batch.continues
        assert trainer.carried is not None  # truncated BPTT keeps it, for a batch that continues
        assert step_reads(trainer, batch) == "zero"


def test_evaluation_starts_every_batch_of_a_generated_task_from_zero():
    task, model = build(config_for(ARITHMETIC))
    size = 8
    batches = [b for _, b in zip(range(3), task.batches("valid", size), strict=False)]
    assert all(b.batch_size == size and not b.continues for b in batches)
    metric = task.metric()
    model.eval()
    with torch.no_grad():
        for batch in batches:
            metric.update(model(batch.inputs, None, batch.lengths)[0], batch)
    assert evaluate(model, task, "valid", size, max_batches=3) == pytest.approx(metric.compute())


# --- the search's lean loop (rnnlab.search.evaluate) ------------------------------------------
SEARCH_TEXT = {"text": {"chars": 20000}}


def test_the_search_carries_state_only_into_continuing_batches(monkeypatch):
    budget = search_evaluate.Budget(hidden=4, batch_size=32, seq_len=400, eval_batches=1,
                                    task_options=SEARCH_TEXT)
    task = search_evaluate.get_task("text", SEARCH_TEXT["text"])
    per_epoch = task.batches_per_epoch("train", budget.batch_size, seq_len=budget.seq_len)
    steps = per_epoch + 2  # over an epoch's end: the next epoch starts new streams
    expected = [b.continues for _, b in zip(range(steps), task.batches(
        "train", budget.batch_size, seq_len=budget.seq_len), strict=False)]
    assert not all(expected[1:]) and any(expected)
    seen = []
    original = search_evaluate._Model.forward

    def forward(self, ids, state):
        if self.training:
            seen.append(state)
        return original(self, ids, state)

    monkeypatch.setattr(search_evaluate._Model, "forward", forward)
    search_evaluate.train_once("lstm", "text", {"lr": 1e-3}, budget, seed=0, steps=steps)
    assert [state is not None for state in seen] == expected
    assert all(not t.requires_grad for state in seen if state is not None for t in state)


def test_the_search_validation_carries_state_across_a_stream():
    torch.manual_seed(0)
    task = search_evaluate.get_task("text", SEARCH_TEXT["text"])
    model = search_evaluate._Model("lstm", task.output.size, 4, {})
    in_batches = search_evaluate.Budget(seq_len=8, eval_batches=3)
    one_pass = search_evaluate.Budget(seq_len=24, eval_batches=1)
    assert search_evaluate._validate(model, task, in_batches, 4) == pytest.approx(
        search_evaluate._validate(model, task, one_pass, 4), rel=1e-5
    )


def test_the_search_validation_starts_every_generated_batch_from_zero():
    torch.manual_seed(0)
    task = tasks.make("arithmetic", digits=2)
    model = search_evaluate._Model("lstm", task.output.size, 4, {})
    budget = search_evaluate.Budget(eval_batches=3)
    metric = task.metric()
    model.eval()
    with torch.no_grad():
        for _, batch in zip(range(3), task.batches("valid", 8), strict=False):
            metric.update(model(batch.inputs, None)[0], batch)
    assert search_evaluate._validate(model, task, budget, 8) == pytest.approx(metric.compute())
