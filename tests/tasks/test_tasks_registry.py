"""The registry and the task contract, checked for every registered task."""

from __future__ import annotations

import inspect
import math
import zipfile

import pytest
import torch

import rnnlab.tasks as tasks
from rnnlab.tasks import text
from rnnlab.tasks.base import Binary, Classes, Features, Labels, Tokens

ALL = [
    "addition", "arithmetic", "copy", "digits", "digits_ctc", "enwik8", "fsdd", "gts", "jsb",
    "memorize", "mnist", "msd", "musedata", "nottingham", "numbers", "parallel", "parity",
    "pianomidi", "ptb", "ptb_char", "text", "text8", "tinyshakespeare", "xml",
]  # fmt: skip

SMALL = {"valid_size": 24, "test_size": 24}
DATA = {  # the shared-data file each data task needs, and its options
    "tinyshakespeare": "tinyshakespeare/input.txt",
    "ptb": "ptb/ptb.zip",
    "ptb_char": "ptb_char/ptb.char.train.txt.gz",
    "jsb": "polyphonic_music/JSB_Chorales.mat",
    "nottingham": "polyphonic_music/Nottingham.mat",
    "musedata": "polyphonic_music/MuseData.mat",
    "pianomidi": "polyphonic_music/Piano_midi.mat",
    "fsdd": "fsdd/recordings.tar.xz",
    "mnist": "mnist/train-images-idx3-ubyte.gz",
}


@pytest.fixture
def task_named(build, request, tmp_path, monkeypatch):
    """Build a task cheaply: small generated sets, shared data, or a small stand-in corpus."""

    def make(name):
        if name in ("addition", "arithmetic", "copy", "memorize", "xml", "parity", "msd", "gts",
                    "numbers"):
            return build(name, **SMALL)
        if name == "parallel":  # your own aligned files: a small made-up pair
            lines = [f"line {i} of {i % 9}" for i in range(100)]
            (tmp_path / "a.txt").write_text("\n".join(lines), encoding="utf-8")
            (tmp_path / "b.txt").write_text("\n".join(lines).upper(), encoding="utf-8")
            return tasks.make(name, path=str(tmp_path / "a.txt"),
                              target_path=str(tmp_path / "b.txt"))
        if name == "digits_ctc":
            file = request.getfixturevalue("need")(DATA["fsdd"])
            return build(name, path=str(file.parents[1]), **SMALL)
        if name == "text":
            return build("text")
        if name == "digits":
            pytest.importorskip("sklearn", reason="scikit-learn is an optional extra")
            return build("digits")
        if name in ("enwik8", "text8"):  # the real files are 100 MB: a 2,000-byte stand-in
            monkeypatch.setattr(text, "HUNDRED_MILLION", 2000)
            monkeypatch.setattr(text, "MAHONEY_SPLIT", (1800, 1900))
            archive = tmp_path / f"{name}.zip"
            with zipfile.ZipFile(archive, "w") as z:
                z.writestr(name, (b"the quick brown fox jumps over the lazy dog " * 50)[:2000])
            return tasks.make(name, path=archive, verify=False)
        file = request.getfixturevalue("need")(DATA[name])  # skips if the data is missing
        return build(name, path=str(file.parents[1]))

    return make


def test_every_task_is_registered():
    assert tasks.names() == sorted(ALL)


def test_describe_all_needs_no_data_and_gives_examples():
    descriptions = tasks.describe_all()
    assert sorted(descriptions) == sorted(ALL)
    for name, paragraph in descriptions.items():
        assert "Example" in paragraph and "Metric" in paragraph, name
        assert 200 < len(paragraph) < 1200 and "\n" not in paragraph.strip(), name


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown task 'nope'; known tasks: addition, "):
        tasks.make("nope")


def test_unknown_option_lists_the_accepted_ones():
    with pytest.raises(TypeError, match="'bitz'.*accepts: bits, form"):
        tasks.make("parity", bitz=3)


def test_register_is_a_plain_decorator():
    @tasks.register("test_only_task")
    def factory(size: int = 2):
        return tasks.make("parity", bits=size)

    factory.summary = "A test task. Metric: none. Example: none."
    try:
        assert tasks.make("test_only_task", size=3).input.size == 3
        assert tasks.describe("test_only_task") == factory.summary
        with pytest.raises(ValueError, match="already registered"):
            tasks.register("test_only_task")(lambda: None)
    finally:
        del tasks.REGISTRY["test_only_task"]


def test_factories_document_their_options():
    for name in ALL:
        factory = tasks.REGISTRY[name]
        doc = inspect.getdoc(factory) or ""
        for option in tasks.factory_options(name):
            assert option in doc, f"{name}: option {option!r} is not documented"


def logits_for(task, batch: tasks.Batch) -> torch.Tensor:
    """Random logits of the shape the task's output space asks for."""
    if isinstance(task.output, Classes):
        shape = (batch.batch_size, task.output.size)
    else:
        shape = (batch.steps, batch.batch_size, task.output.size)
    return torch.randn(shape, generator=torch.Generator().manual_seed(0), requires_grad=True)


def check_batch(task, batch: tasks.Batch):
    steps, size = batch.inputs.shape[:2]
    if isinstance(task.input, Tokens):
        assert batch.inputs.dtype == torch.int64 and batch.inputs.dim() == 2
        assert 0 <= int(batch.inputs.min()) and int(batch.inputs.max()) < task.input.size
    else:
        assert isinstance(task.input, (Features, Binary))
        assert batch.inputs.dtype == torch.float32
        assert batch.inputs.shape == (steps, size, task.input.size)
    if isinstance(task.output, Classes):
        assert batch.targets.shape == (size,) and batch.targets.dtype == torch.int64
        assert int(batch.targets.max()) < task.output.size
    elif isinstance(task.output, Tokens):
        assert batch.targets.shape == (steps, size) and batch.targets.dtype == torch.int64
    elif isinstance(task.output, Labels):  # a label sequence per input sequence, 0-padded
        assert batch.targets.shape[1] == size and batch.targets.dtype == torch.int64
        assert 0 <= int(batch.targets.min()) and int(batch.targets.max()) < task.output.size
        assert torch.all((batch.targets > 0).sum(0) > 0)
    else:
        assert batch.targets.shape == (steps, size, task.output.size)
    if batch.mask is not None:
        assert batch.mask.shape == (steps, size) and batch.mask.dtype == torch.bool
    if batch.lengths is not None:
        assert batch.lengths.shape == (size,) and int(batch.lengths.max()) == steps


@pytest.mark.parametrize("name", ALL)
def test_task_contract(task_named, name):
    task = task_named(name)
    assert task.name == name and isinstance(task.stateful, bool)
    assert "Example" in task.describe()

    batch = next(task.batches("train", 6, seq_len=20))
    check_batch(task, batch)
    logits = logits_for(task, batch)
    loss = task.loss(logits, batch)
    assert loss.dim() == 0 and math.isfinite(loss.item())
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()

    metric = task.metric()
    valid = list(task.batches("valid", 16, seq_len=50))
    assert len(valid) == task.batches_per_epoch("valid", 16, seq_len=50)
    for b in valid[:2]:  # (all would be slow for 10,000-word logits)
        check_batch(task, b)
        metric.update(logits_for(task, b).detach(), b)
    result = metric.compute()
    assert metric.primary in result and "loss" in result
    assert all(math.isfinite(v) for v in result.values())
    again = next(task.batches("valid", 16, seq_len=50))
    assert torch.equal(again.inputs, valid[0].inputs) and torch.equal(
        again.targets, valid[0].targets
    )

    stream = task.batches("train", 6, seq_len=20, seed=5)
    third = [next(stream) for _ in range(3)][-1]
    resumed = next(task.batches("train", 6, seq_len=20, seed=5, start=2))
    assert torch.equal(third.inputs, resumed.inputs)
    assert torch.equal(third.targets, resumed.targets)
    assert third.continues == resumed.continues

    if isinstance(task.input, Tokens):
        sample = batch.inputs[:, 0]
        assert torch.equal(task.encode(task.decode(sample)), sample)


@pytest.mark.parametrize("name", ["text", "arithmetic", "xml"])
def test_vocab_is_a_list_of_symbols(build, name):
    task = build(name) if name == "text" else build(name, **SMALL)
    assert isinstance(task.vocab, list) and all(isinstance(s, str) for s in task.vocab)
    assert len(task.vocab) == task.input.size == task.output.size
    ids = task.encode("".join(task.vocab))
    assert ids.tolist() == list(range(len(task.vocab)))


def test_docstring_examples_run():
    import doctest

    import rnnlab.tasks.vocab

    for module in (tasks, rnnlab.tasks.vocab):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
