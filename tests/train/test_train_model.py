"""The model: input layers per space, heads per space, last valid step, packing, noise."""

import pytest
import torch

from rnnlab.tasks.base import Binary, Classes, Features, Tokens
from rnnlab.train.config import ModelConfig
from rnnlab.train.model import SequenceModel, count_parameters, describe


def model(input_space, output_space, **options):
    torch.manual_seed(0)
    return SequenceModel(input_space, output_space, ModelConfig(hidden_size=6, **options))


def test_token_input_is_embedded_and_every_step_gets_a_softmax():
    m = model(Tokens(11), Tokens(11), num_layers=2, cell="gru")
    assert isinstance(m.input, torch.nn.Embedding)
    logits, state = m(torch.randint(0, 11, (5, 3)))
    assert logits.shape == (5, 3, 11)
    assert state.shape == (2, 3, 6)  # a one-field state is its tensor, as torch.nn.GRU


def test_feature_input_is_projected_and_binary_output_is_per_key():
    m = model(Features(4), Binary(9), embedding_size=5)
    assert isinstance(m.input, torch.nn.Linear) and m.input.out_features == 5
    logits, _ = m(torch.randn(7, 2, 4))
    assert logits.shape == (7, 2, 9)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_classes_head_reads_each_sequence_at_its_last_valid_step(bidirectional):
    m = model(Binary(3), Classes(4), bidirectional=bidirectional, num_layers=2).eval()
    lengths = torch.tensor([5, 2, 4])
    x = torch.randn(5, 3, 3)
    for b, n in enumerate(lengths.tolist()):
        x[n:, b] = 99.0  # padding that must never be read
    logits, _ = m(x, lengths=lengths)
    assert logits.shape == (3, 4)
    for b, n in enumerate(lengths.tolist()):
        alone, _ = m(x[:n, b : b + 1])
        torch.testing.assert_close(logits[b], alone[0], rtol=1e-5, atol=1e-6)


def test_parameter_count_is_printed_and_exact():
    m = model(Tokens(10), Tokens(10), num_layers=3)
    expected = sum(p.numel() for p in m.parameters())
    assert count_parameters(m) == expected
    assert f"{expected:,} parameters" in describe(m)
    assert "3-layer lstm" in describe(m)


@pytest.mark.parametrize("space", [Tokens(10), Features(4)])
def test_input_noise_only_in_training(space):
    m = model(space, Tokens(10))
    x = torch.randint(0, 10, (4, 2)) if isinstance(space, Tokens) else torch.randn(4, 2, 4)
    clean, _ = m.eval()(x)
    same, _ = m.eval()(x, input_noise=1.0)
    torch.testing.assert_close(clean, same)
    noisy, _ = m.train()(x, input_noise=1.0)
    assert not torch.allclose(clean, noisy)
    quiet, _ = m.train()(x, input_noise=0.0)
    torch.testing.assert_close(clean, quiet)


def test_dropout_applies_in_training_only():
    m = model(Tokens(10), Tokens(10), num_layers=2, dropout=0.5)
    x = torch.randint(0, 10, (4, 2))
    a, _ = m.eval()(x)
    b, _ = m.eval()(x)
    torch.testing.assert_close(a, b)
    c, _ = m.train()(x)
    assert not torch.allclose(a, c)


def test_cell_options_reach_the_cell():
    m = model(Tokens(5), Tokens(5), forget_bias=3.0)
    biases = {name: p for name, p in m.body.named_parameters() if name.endswith("b_f")}
    assert biases and all(torch.all(p == 3.0) for p in biases.values())


def test_grid_body():
    m = model(Tokens(10), Tokens(10), body="grid", num_layers=3)
    logits, state = m(torch.randint(0, 10, (5, 2)))
    assert logits.shape == (5, 2, 10)
    assert "Grid LSTM" in describe(m)
