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
