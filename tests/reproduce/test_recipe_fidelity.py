"""The recipe-fidelity settings: loss reduction, whole-model init, direct feature input,
test batch and final-weight evaluation, held-out examples kept out of generated train data."""

from __future__ import annotations

import math

import pytest
import torch

import rnnlab.tasks
from rnnlab.reproduce import entries
from rnnlab.tasks.base import Batch, Binary, Tokens
from rnnlab.tasks.synthetic import heldout_overlap
from rnnlab.train.config import ConfigError, ExperimentConfig, apply_overrides
from rnnlab.train.loss import training_loss
from rnnlab.train.model import SequenceModel, count_parameters
from rnnlab.train.trainer import train


def _grad_norm(model, loss) -> float:
    model.zero_grad()
    loss.backward()
    return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))


@pytest.mark.parametrize("steps", [20, 35])
def test_sequence_reduction_gradient_is_unroll_times_token_gradient(steps):
    """Zaremba's loss (sum over time, mean over batch) gives gradients T times the per-token
    mean's, so "lr 1, clip 5" only means the paper's step size with it."""
    torch.manual_seed(0)
    task = rnnlab.tasks.make("copy", length=5, symbols=8)
    config = ExperimentConfig()
    model = SequenceModel(Tokens(10), Tokens(10), config.model)
    batch = Batch(inputs=torch.randint(0, 10, (steps, 4)), targets=torch.randint(0, 10, (steps, 4)))
    task.output = Tokens(10)
    logits, _ = model(batch.inputs)
    token, token_logged = training_loss(task, logits, batch, "token")
    per_token = _grad_norm(model, token)
    logits, _ = model(batch.inputs)
    summed, summed_logged = training_loss(task, logits, batch, "sequence")
    per_sequence = _grad_norm(model, summed)
    assert per_sequence / per_token == pytest.approx(steps, rel=1e-4)
    assert float(summed.detach()) == pytest.approx(steps * float(token.detach()), rel=1e-5)
    # what is logged stays the per-token mean, so curves stay comparable
    assert float(summed_logged) == pytest.approx(float(token_logged.detach()), rel=1e-5)


def test_sequence_reduction_counts_only_masked_steps_over_the_batch():
    task = rnnlab.tasks.make("copy", length=4, symbols=8)
    batch = next(task.batches("train", 6))
    logits = torch.randn(*batch.targets.shape, task.output.size)
    summed, logged = training_loss(task, logits, batch, "sequence")
    counted = int(batch.step_mask().sum())
    assert counted == 6 * 4  # only the reproduction counts
    assert float(summed) == pytest.approx(float(logged) * counted / 6, rel=1e-5)


def test_zaremba_init_puts_every_parameter_inside_a_tenth():
    config = entries.get("zaremba-ptb-small").runs[0].config()
    model = SequenceModel(Tokens(500), Tokens(500), config.model)
    names = [name for name, _ in model.named_parameters()]
    assert any(n.startswith("input.") for n in names) and any(n.startswith("head.") for n in names)
    for name, p in model.named_parameters():
        largest = float(p.detach().abs().max())
        assert largest <= 0.1, name
        assert largest > 0.05, f"{name} was not drawn from U(-0.1, 0.1)"
    # forget_bias=0: b_f is drawn like every parameter, no +1 offset
    b_f = [p for n, p in model.named_parameters() if n.endswith("b_f")]
    assert len(b_f) == 2 and all(abs(float(b.detach().mean())) < 0.03 for b in b_f)


def test_whole_model_init_adds_the_forget_bias_and_scales_by_fan_in():
    config = ExperimentConfig()
    apply_overrides(config, ["model.init_all=uniform:0.1", "model.forget_bias=1",
                             "model.hidden_size=64"])
    model = SequenceModel(Tokens(50), Tokens(50), config.model)
    (b_f,) = [p.detach() for n, p in model.named_parameters() if n.endswith("b_f")]
    assert 0.9 <= float(b_f.min()) and float(b_f.max()) <= 1.1
    apply_overrides(config, ["model.init_all=scaled:2.0", "model.forget_bias=0"])
    model = SequenceModel(Tokens(50), Tokens(50), config.model)
    head = model.head.weight.detach()  # (50, 64): fan-in 64
    assert float(head.abs().max()) <= 2.0 / 8.0 and float(head.abs().max()) > 0.2


@pytest.mark.parametrize("spec", ["uniform", "normal:0.1", "uniform:-1", "uniform:x"])
def test_bad_init_spec_is_refused_with_the_expected_form(spec):
    with pytest.raises(ConfigError, match="uniform:A"):
        apply_overrides(ExperimentConfig(), [f"model.init_all={spec}"])


def test_features_can_be_read_by_the_cell_directly():
    """Chung et al.'s networks read the 88 keys directly: no projection, no extra parameters."""
    config = ExperimentConfig()
    apply_overrides(config, ["model.cell=gru", "model.hidden_size=46",
                             "model.input_projection=false"])
    model = SequenceModel(Binary(88), Binary(88), config.model)
    gru = 3 * (46 * 88 + 46 * 46 + 46)
    head = 46 * 88 + 88
    assert count_parameters(model) == gru + head
    logits, _ = model(torch.rand(7, 3, 88).round())
    assert logits.shape == (7, 3, 88)
    assert count_parameters(model.input) == 0
    apply_overrides(config, ["model.input_projection=true"])
    projected = SequenceModel(Binary(88), Binary(88), config.model)
    assert count_parameters(projected.input) == 88 * 46 + 46


def test_test_batch_size_and_final_weights(tmp_path, monkeypatch):
    """The final test pass uses task.test_batch_size; the final weights' valid and test are
    reported beside the selected ones."""
    sizes = []
    original = rnnlab.tasks.synthetic.GeneratedTask.batches

    def spy(self, split, batch_size, **kwargs):
        sizes.append((split, batch_size))
        return original(self, split, batch_size, **kwargs)

    monkeypatch.setattr(rnnlab.tasks.synthetic.GeneratedTask, "batches", spy)
    config = ExperimentConfig()
    apply_overrides(config, [
        "task.name=copy", "task.length=3", "task.symbols=4", "task.valid_size=8",
        "task.test_size=6", "task.batch_size=4", "task.eval_batch_size=8",
        "task.test_batch_size=1", "model.hidden_size=8", "train.max_steps=4",
        "train.eval_every=2", f"run.dir={tmp_path / 'run'}",
        "run.quiet=true", "run.plots=false",
    ])
    _, summary = train(config)
    assert ("test", 1) in sizes and ("valid", 8) in sizes and ("test", 8) not in sizes
    assert set(summary["last"]) == {"valid", "test"}
    assert "accuracy" in summary["last"]["test"]


def test_generated_train_never_contains_a_valid_or_test_example():
    task = rnnlab.tasks.make("parity", bits=8, valid_size=60, test_size=60)
    held = task.heldout_keys()
    assert len(held) > 50
    seen = set()
    for _, batch in zip(range(20), task.batches("train", 64)):
        bits = batch.inputs[0].to(torch.int8).numpy()
        seen.update(row.tobytes() for row in bits)
    assert not (seen & held)
    # unfiltered, the same stream would have contained most of them (8 bits: 256 strings)
    assert heldout_overlap(task, examples=1280) > 0.9


def test_heldout_overlap_of_16_bit_parity_is_what_the_docs_say():
    task = rnnlab.tasks.make("parity", bits=16)
    assert heldout_overlap(task) == pytest.approx(0.631, abs=0.002)


def test_a_space_used_up_by_valid_and_test_is_a_clear_error():
    task = rnnlab.tasks.make("parity", bits=2, valid_size=50, test_size=50)
    with pytest.raises(ValueError, match="too small"):
        next(task.batches("train", 4))
