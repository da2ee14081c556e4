"""Generated tasks: each generator's specification, determinism and batching."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import rnnlab.tasks as tasks
from rnnlab.tasks.synthetic import Arithmetic, Xml

TOKEN_TASKS = ["arithmetic", "addition", "copy", "memorize", "xml"]


def answers(task, batch):
    """Per sequence: (full text of inputs + last target, counted target text)."""
    out = []
    for b in range(batch.batch_size):
        length = batch.steps if batch.lengths is None else int(batch.lengths[b])
        inputs = batch.inputs[:length, b]
        targets = batch.targets[:length, b]
        text = task.decode(inputs) + task.decode(targets[-1:])
        mask = (
            torch.ones(length, dtype=torch.bool) if batch.mask is None else batch.mask[:length, b]
        )
        out.append((text, task.decode(targets[mask])))
    return out


def examples(task, batch) -> list:
    """The batch's examples in a comparable form: texts, or parity bit lists."""
    if hasattr(task, "decode"):
        return answers(task, batch)
    return batch.inputs.transpose(0, 1).flatten(1).tolist()


def test_arithmetic_answers_are_right():
    task = tasks.make("arithmetic")
    batch = next(task.batches("train", 200))
    signs = set()
    for text, answer in answers(task, batch):
        question, written = text.split("=")
        assert written == answer
        plain = re.sub("[a-z]", "", question)
        match = re.fullmatch(r"(\d{1,8})([+-])(\d{1,8})", plain)
        assert match, plain
        a, op, b = int(match[1]), match[2], int(match[3])
        assert int(answer) == (a + b if op == "+" else a - b)
        signs.add(op)
    assert signs == {"+", "-"}


def test_arithmetic_example_from_the_paper_decodes():
    task = Arithmetic()
    ids = task.encode("3e36d9-h1h39f94eeh43keg3c=-13991064")
    assert task.decode(ids) == "3e36d9-h1h39f94eeh43keg3c=-13991064"
    assert 3369 - 13994433 == -13991064


def test_arithmetic_distractors_appear_and_can_be_switched_off():
    noisy = next(tasks.make("arithmetic").batches("train", 50))
    clean_task = tasks.make("arithmetic", distractors=0.0)
    clean = next(clean_task.batches("train", 50))
    letters = set("abcdefghijklmnopqrstuvwxyz")
    assert any(set(t) & letters for t, _ in answers(tasks.make("arithmetic"), noisy))
    assert not any(set(t) & letters for t, _ in answers(clean_task, clean))


def test_addition_sums_are_right_and_operands_have_the_digits():
    task = tasks.make("addition", digits=15)
    for text, answer in answers(task, next(task.batches("train", 100))):
        question, written = text.split("=")
        a, b = question.split("+")
        assert len(a) == len(b) == 15 and a[0] != "0" and b[0] != "0"
        assert written == answer == str(int(a) + int(b))


def test_addition_reversed_writes_least_significant_first():
    task = tasks.make("addition", digits=4, reverse=True)
    for text, answer in answers(task, next(task.batches("train", 50))):
        a, b = text.split("=")[0].split("+")
        assert answer[::-1] == str(int(a[::-1]) + int(b[::-1]))


@pytest.mark.parametrize("name, length, alphabet", [("copy", 20, 64), ("memorize", 5, 26)])
def test_copy_and_memorize_reproduce_the_sequence(name, length, alphabet):
    task = tasks.make(name)
    batch = next(task.batches("train", 64))
    assert batch.steps == 2 * length and batch.mask.sum(0).eq(length).all()
    seen = set()
    for text, answer in answers(task, batch):
        first, second = text.split("=")
        assert first == second == answer and len(answer) == length
        seen.update(first)
    assert len(seen) <= alphabet and len(seen) > alphabet // 2
    assert task.output.size == alphabet + 2  # + padding and '='


XML_LINE = re.compile(r"( *)<(/?)([a-z]{2,10})>\n")


def check_xml(text: str, indent: bool = True) -> int:
    """Parse an XML stream (possibly cut mid-line at the end); return the documents closed."""
    stack: list[str] = []
    documents = 0
    position = 0
    while position < len(text):
        match = XML_LINE.match(text, position)
        if match is None:  # only the cut-off last line may fail to match
            rest = text[position:]
            assert "\n" not in rest, f"malformed line at {position}: {rest[:30]!r}"
            break
        spaces, closing, tag = match.groups()
        if closing:
            assert stack and stack[-1] == tag, f"closing {tag} but open is {stack}"
            stack.pop()
            documents += not stack
        else:
            stack.append(tag)
        depth = len(stack) - (0 if closing else 1)
        assert len(spaces) == (depth if indent else 0)
        position = match.end()
    return documents


def test_xml_streams_are_well_formed():
    task = tasks.make("xml", seq_len=400)
    closed = 0
    for text, counted in answers(task, next(task.batches("train", 20))):
        assert len(text) == 401 and counted == text[1:]
        closed += check_xml(text)
    assert closed > 20  # many complete documents


def test_xml_documents_close_by_max_steps():
    task = Xml(max_steps=6, close=0.01)
    rng = np.random.default_rng(0)
    for _ in range(20):
        document = task.document(rng)
        assert check_xml(document) == 1
        assert document.count("</") <= 7  # at most 6 opens before closing starts, + final


def test_xml_without_indent():
    task = tasks.make("xml", indent=False, seq_len=200)
    for text, _ in answers(task, next(task.batches("valid", 5))):
        check_xml(text, indent=False)


def test_xml_seq_len_is_fixed_at_construction():
    task = tasks.make("xml", seq_len=60)
    assert next(task.batches("train", 2, seq_len=500)).inputs.shape == (60, 2)


@pytest.mark.parametrize("form", ["vector", "sequence"])
def test_parity_labels_are_right(form):
    task = tasks.make("parity", bits=31, form=form)
    batch = next(task.batches("train", 500))
    bits = batch.inputs[0] if form == "vector" else batch.inputs[..., 0].t()  # (B, k)
    assert bits.shape == (500, 31)
    assert set(bits.unique().tolist()) == {0.0, 1.0}
    expected = torch.tensor([int(sum(row)) % 2 for row in bits.tolist()])
    assert torch.equal(batch.targets, expected)
    assert 0.4 < batch.targets.float().mean() < 0.6


def test_parity_default_is_the_papers_250_bits():
    task = tasks.make("parity")
    assert task.input.size == 250 and task.output.size == 2


@pytest.mark.parametrize("name", TOKEN_TASKS + ["parity"])
def test_same_seed_same_data_other_seed_other_data(name):
    task = tasks.make(name)
    a = next(task.batches("train", 8, seed=3))
    b = next(tasks.make(name).batches("train", 8, seed=3))
    c = next(task.batches("train", 8, seed=4))
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, c.inputs) or not torch.equal(a.targets, c.targets)


@pytest.mark.parametrize("name", TOKEN_TASKS + ["parity"])
def test_start_resumes_at_the_same_batch(name):
    task = tasks.make(name)
    stream = task.batches("train", 4, seed=1)
    fifth = [next(stream) for _ in range(5)][-1]
    resumed = next(task.batches("train", 4, seed=1, start=4))
    assert torch.equal(fifth.inputs, resumed.inputs)
    assert torch.equal(fifth.targets, resumed.targets)


@pytest.mark.parametrize("name", TOKEN_TASKS + ["parity"])
def test_valid_and_test_are_fixed_finite_and_distinct(name):
    task = tasks.make(name, valid_size=50, test_size=40)
    valid = list(task.batches("valid", 16))
    assert len(valid) == task.batches_per_epoch("valid", 16) == 4
    assert sum(b.batch_size for b in valid) == 50
    assert sum(b.batch_size for b in task.batches("test", 16)) == 40
    again = list(tasks.make(name, valid_size=50, test_size=40).batches("valid", 16))
    assert all(torch.equal(x.inputs, y.inputs) for x, y in zip(valid, again, strict=True))
    # the same examples whatever the batch size
    whole = examples(task, next(task.batches("valid", 50)))
    assert whole[:10] == examples(task, next(task.batches("valid", 10)))
    assert whole[10:20] == examples(task, next(task.batches("valid", 10, start=1)))
    test = next(task.batches("test", 16))
    assert not torch.equal(valid[0].targets, test.targets)
    assert task.batches_per_epoch("train", 16) is None


def test_mask_counts_only_answer_positions():
    task = tasks.make("arithmetic")
    batch = next(task.batches("valid", 32))
    equals = task.vocab.index("=")
    for b in range(32):
        length = int(batch.lengths[b]) if batch.lengths is not None else batch.steps
        where = (batch.inputs[:length, b] == equals).nonzero()
        assert len(where) == 1
        first_answer = int(where[0])  # target at the '=' input is the first answer char
        counted = batch.mask[:, b].nonzero().flatten()
        assert counted.tolist() == list(range(first_answer, length))


def test_bad_options_are_clear():
    with pytest.raises(ValueError, match="digits must be a positive integer, got 0"):
        tasks.make("addition", digits=0)
    with pytest.raises(ValueError, match="symbols must be in"):
        tasks.make("copy", symbols=100)
    with pytest.raises(ValueError, match="form must be"):
        tasks.make("parity", form="grid")
    with pytest.raises(ValueError, match="distractors"):
        tasks.make("arithmetic", distractors=1.5)


def test_parity_signed_bits_are_plus_minus_one_with_the_same_labels():
    import rnnlab.tasks as registry

    plain = registry.make("parity", bits=12, valid_size=16, test_size=16)
    signed = registry.make("parity", bits=12, signed=True, valid_size=16, test_size=16)
    a, b = next(plain.batches("valid", 16)), next(signed.batches("valid", 16))
    torch.testing.assert_close(b.inputs, 2 * a.inputs - 1)
    assert torch.equal(a.targets, b.targets) and set(b.inputs.unique().tolist()) == {-1.0, 1.0}
