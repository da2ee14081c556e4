"""Sampling from character and word language models."""

import pytest
import torch

from rnnlab.tasks import make
from rnnlab.tasks.base import Tokens
from rnnlab.tasks.stream import StreamTask
from rnnlab.tasks.vocab import Vocabulary
from rnnlab.train.config import ModelConfig
from rnnlab.train.model import SequenceModel
from rnnlab.train.sampling import sample


class Words(StreamTask):
    name = "words"
    unit = "word"

    def __init__(self):
        vocab = Vocabulary(["<eos>", "a", "b", "c"], words=True)
        ids = torch.tensor([1, 2, 3, 0] * 10)
        self.setup(vocab, {"train": ids, "valid": ids, "test": ids}, 4, {})


def lm(task):
    torch.manual_seed(0)
    return SequenceModel(task.input, task.output, ModelConfig(hidden_size=8))


def test_word_samples_are_words_joined_by_spaces():
    task = Words()
    text = sample(lm(task), task, prime="a b", length=5, temperature=1.0, seed=1)
    words = text.split(" ")
    assert words[:2] == ["a", "b"] and len(words) == 7
    assert set(words) <= {"<eos>", "a", "b", "c"}


def test_temperature_zero_is_greedy_and_seeds_repeat():
    task = make("text", chars=20000)
    model = lm(task)
    greedy = sample(model, task, prime="import ", length=15, temperature=0)
    assert greedy == sample(model, task, prime="import ", length=15, temperature=0, seed=9)
    a = sample(model, task, prime="import ", length=30, temperature=1.5, seed=4)
    assert a == sample(model, task, prime="import ", length=30, temperature=1.5, seed=4)
    assert a != sample(model, task, prime="import ", length=30, temperature=1.5, seed=5)
    assert a.startswith("import ") and len(a) == len("import ") + 30


def test_greedy_follows_the_model():
    task = Words()
    model = lm(task)
    with torch.no_grad():
        model.head.bias.fill_(0)
        model.head.weight.fill_(0)
        model.head.bias[3] = 10.0  # the model always predicts "c"
    assert sample(model, task, prime="a", length=3, temperature=0) == "a c c c"


def test_only_language_models_sample():
    task = make("parity", bits=4)
    model = SequenceModel(task.input, task.output, ModelConfig(hidden_size=4))
    with pytest.raises(ValueError, match="language model"):
        sample(model, task)
    assert isinstance(Words().output, Tokens)
    with pytest.raises(ValueError, match="temperature"):
        sample(lm(Words()), Words(), temperature=-1)


class FixedLogits(torch.nn.Module):
    """A language model whose next-symbol logits are always ``logits``."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.as_tensor(logits, dtype=torch.float64)

    def forward(self, ids, state=None):
        return self.logits.expand(ids.shape[0], ids.shape[1], -1), state


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_samples_follow_the_softmax_at_the_temperature(temperature):
    task = Words()
    logits = torch.tensor([0.0, 1.0, 2.0, -1.0])
    text = sample(FixedLogits(logits), task, prime="a", length=4000, temperature=temperature,
                  seed=3)
    drawn = text.split(" ")[1:]
    counts = torch.tensor([drawn.count(s) for s in ["<eos>", "a", "b", "c"]], dtype=torch.float64)
    expected = torch.softmax(logits.double() / temperature, -1)
    # 4,000 draws: each frequency within 4 standard deviations of its probability.
    spread = 4 * torch.sqrt(expected * (1 - expected) / len(drawn))
    assert torch.all((counts / len(drawn) - expected).abs() <= spread), (counts, expected)
    again = sample(FixedLogits(logits), task, prime="a", length=50, temperature=temperature,
                   seed=3)
    assert again.split(" ")[:51] == text.split(" ")[:51]
