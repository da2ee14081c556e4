"""Text corpora and contiguous LM streams."""

from __future__ import annotations

import shutil
import zipfile

import pytest
import torch

import rnnlab.tasks as tasks
from rnnlab.tasks import text
from rnnlab.tasks.text import ptb_char_from_words, sha256_text, stdlib_corpus


def test_default_text_task_needs_no_data_and_is_reproducible(build):
    task = build("text")
    info = task.info
    assert info["source"] == "stdlib" and info["files"] == sorted(info["files"])
    assert 1_500_000 <= info["chars"] < 2_500_000
    corpus, files = stdlib_corpus()
    assert files == info["files"] and sha256_text(corpus) == info["sha256"]
    whole = torch.cat([task.splits[s] for s in ("train", "valid", "test")])
    assert task.decode(whole) == corpus  # the three splits are the corpus, in order
    assert tasks.names()[0] != "text" and "text" in tasks.names()


def test_text_task_reads_a_users_file(tmp_path):
    corpus = tmp_path / "mine.txt"
    corpus.write_text("hello world, " * 200, encoding="utf-8")
    task = tasks.make("text", path=corpus, seq_len=7)
    assert task.info["source"] == str(corpus) and len(task.vocab) == len(set("hello world, "))
    batch = next(task.batches("train", 3))
    assert batch.inputs.shape == (7, 3)


@pytest.mark.parametrize("content, message", [(" \n", "empty"), ("ab", "at least 2 tokens")])
def test_empty_or_tiny_corpus_is_a_clear_error(tmp_path, content, message):
    corpus = tmp_path / "c.txt"
    corpus.write_text(content)
    with pytest.raises(ValueError, match=message):
        tasks.make("text", path=corpus)


def test_non_utf8_corpus_is_a_clear_error(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"\xff\xfe\xfa" * 100)
    with pytest.raises(ValueError, match="not UTF-8"):
        tasks.make("text", path=corpus)


def test_stream_layout_continues_across_batches(build):
    task = build("text")
    length, size = 50, 4
    batches = list(zip(range(6), task.batches("valid", size, seq_len=length), strict=False))
    data = task.splits["valid"]
    per_stream = (data.numel() - 1) // size
    for j, batch in batches:
        assert batch.continues == (j > 0)
        for b in range(size):
            first = b * per_stream + j * length
            assert torch.equal(batch.inputs[:, b], data[first : first + length].long())
            assert torch.equal(batch.targets[:, b], data[first + 1 : first + length + 1].long())
    for (_, before), (_, after) in zip(batches, batches[1:], strict=False):
        assert torch.equal(before.targets[-1], after.inputs[0])  # the streams carry on


def test_stream_epoch_count_last_batch_and_endless_train(build):
    task = build("text")
    per_epoch = task.batches_per_epoch("valid", 8, seq_len=64)
    valid = list(task.batches("valid", 8, seq_len=64))
    assert len(valid) == per_epoch
    assert sum(b.steps for b in valid) == (task.splits["valid"].numel() - 1) // 8
    assert list(task.batches("valid", 8, seq_len=64))[-1].inputs.equal(valid[-1].inputs)
    train = task.batches("train", 64, seq_len=1000)
    epoch = task.batches_per_epoch("train", 64, seq_len=1000)
    seen = [next(train) for _ in range(epoch + 2)]
    assert not seen[epoch].continues and seen[epoch + 1].continues
    assert torch.equal(seen[epoch].inputs, seen[0].inputs)
    resumed = next(task.batches("train", 64, seq_len=1000, start=epoch + 1))
    assert torch.equal(resumed.inputs, seen[epoch + 1].inputs)


def test_batch_too_large_for_split_is_clear(build):
    with pytest.raises(ValueError, match="too few for batch_size"):
        next(build("text").batches("valid", 10**7))


def test_tiny_shakespeare_has_its_characters(build, need):
    source = need("tinyshakespeare/input.txt")
    task = build("tinyshakespeare", path=str(source.parent.parent))
    assert task.info["chars"] == 1_115_394 and len(task.vocab) == 65
    assert sum(task.info["tokens"].values()) == 1_115_394
    assert task.decode(task.splits["train"][:14]) == "First Citizen:"


def test_tiny_shakespeare_train_chars_keeps_a_prefix_of_train_only(build, need):
    source = need("tinyshakespeare/input.txt")
    whole = build("tinyshakespeare", path=str(source.parent.parent))
    small = build("tinyshakespeare", path=str(source.parent.parent), train_chars=5_000)
    assert small.info["tokens"]["train"] == 5_000 and small.info["train_chars"] == 5_000
    assert torch.equal(small.splits["train"], whole.splits["train"][:5_000])
    for split in ("valid", "test"):
        assert torch.equal(small.splits[split], whole.splits[split])
    assert small.vocab == whole.vocab
    for bad in (0, 10**7):
        with pytest.raises(ValueError, match="train_chars"):
            build("tinyshakespeare", path=str(source.parent.parent), train_chars=bad)


def test_ptb_word_counts_and_vocabulary(build, need):
    need("ptb/ptb.zip")
    task = build("ptb", path=str(need("ptb").parent))
    assert task.info["tokens"] == {"train": 929_589, "valid": 73_760, "test": 82_430}
    assert len(task.vocab) == 10_000 and task.output.size == 10_000
    assert "<eos>" in task.vocab and "<unk>" in task.vocab
    assert task.metric().primary == "perplexity"
    assert task.decode(task.encode("the company said")) == "the company said"


def test_ptb_train_words_keeps_a_prefix_of_train_only(build, need):
    need("ptb/ptb.zip")
    root = str(need("ptb").parent)
    whole = build("ptb", path=root)
    small = build("ptb", path=root, train_words=100_000)
    assert small.info["tokens"]["train"] == 100_000 and small.info["train_words"] == 100_000
    assert torch.equal(small.splits["train"], whole.splits["train"][:100_000])
    for split in ("valid", "test"):
        assert torch.equal(small.splits[split], whole.splits[split])
    assert small.vocab == whole.vocab and small.output.size == 10_000
    for bad in (0, -5, 929_590):
        with pytest.raises(ValueError, match="train_words"):
            build("ptb", path=root, train_words=bad)


def test_ptb_reads_the_plain_files_too(need, tmp_path):
    with zipfile.ZipFile(need("ptb/ptb.zip")) as archive:
        for split in ("train", "valid", "test"):
            (tmp_path / f"ptb.{split}.txt").write_bytes(archive.read(f"ptb.{split}.txt"))
    task = tasks.make("ptb", path=tmp_path)
    assert task.info["tokens"]["valid"] == 73_760
    with pytest.raises(ValueError, match="pass the folder"):
        tasks.make("ptb", path=tmp_path / "ptb.train.txt")


def test_ptb_char_counts(build, need):
    need("ptb_char/ptb.char.train.txt.gz")
    task = build("ptb_char", path=str(need("ptb_char").parent))
    assert task.info["tokens"] == {"train": 5_017_482, "valid": 393_042, "test": 442_423}
    assert len(task.vocab) == 50 and "\n" in task.vocab and "_" in task.vocab


@pytest.mark.parametrize("split", ["valid", "test"])
def test_ptb_char_derivation_reproduces_the_files(need, split):
    words = need(f"ptb/ptb.{split}.txt").read_text()
    chars = need(f"ptb_char/ptb.char.{split}.txt").read_text()
    assert ptb_char_from_words(words) == chars


def test_ptb_char_from_word_files_alone_equals_the_char_files(build, need, tmp_path):
    from_chars = build("ptb_char", path=str(need("ptb_char").parent))
    (tmp_path / "ptb").mkdir()
    shutil.copy(need("ptb/ptb.zip"), tmp_path / "ptb" / "ptb.zip")
    derived = tasks.make("ptb_char", path=tmp_path)
    assert derived.vocab == from_chars.vocab
    for split in ("train", "valid", "test"):
        assert torch.equal(derived.splits[split], from_chars.splits[split])
    assert derived.info["source"]["valid"] == "derived from ptb.valid.txt"


@pytest.fixture
def small_mahoney(monkeypatch):
    """Shrink the enwik8/text8 size and split so that a 1,000-byte file stands in."""
    monkeypatch.setattr(text, "HUNDRED_MILLION", 1000)
    monkeypatch.setattr(text, "MAHONEY_SPLIT", (900, 950))


@pytest.mark.parametrize("name", ["enwik8", "text8"])
def test_mahoney_corpora_split_90_5_5_from_a_zip(small_mahoney, tmp_path, name):
    content = (b"<page>Anarchism &amp; more</page>\n" * 40)[:1000]
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(name, content)
    task = tasks.make(name, path=archive, verify=False)
    assert task.info["tokens"] == {"train": 900, "valid": 50, "test": 50}
    assert task.splits["train"].dtype == torch.uint8  # compact ids, int64 per batch
    assert next(task.batches("train", 2, seq_len=5)).inputs.dtype == torch.int64
    restored = task.decode(torch.cat([task.splits[s] for s in ("train", "valid", "test")]))
    assert restored.encode("latin-1") == content


def test_mahoney_wrong_length_or_checksum_is_clear(small_mahoney, tmp_path):
    archive = tmp_path / "enwik8.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("enwik8", b"short")
    with pytest.raises(ValueError, match="expected 1,000"):
        tasks.make("enwik8", path=archive, verify=False)
    with pytest.raises(ValueError, match="sha256"):
        tasks.make("enwik8", path=archive)  # a file named like the real one is checked
    (tmp_path / "broken.zip").write_bytes(b"PK not a zip")
    with pytest.raises(ValueError, match="not a zip"):
        tasks.make("enwik8", path=tmp_path / "broken.zip")


def test_published_checksums_are_pinned():
    assert text.ENWIK8[1].checksum.digest.startswith("547994d9")
    assert text.TEXT8[1].checksum.digest.startswith("a6640522")
    assert text.ENWIK8[1].url == "http://mattmahoney.net/dc/enwik8.zip"
