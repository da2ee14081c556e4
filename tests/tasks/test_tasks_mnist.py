"""Sequential MNIST (IDX files) and the optional scikit-learn 8x8 digits."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

import rnnlab.tasks as tasks
from rnnlab.tasks.download import ChecksumError
from rnnlab.tasks.mnist import parse_idx

TRAIN_LABELS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABELS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist_root(need):
    need("mnist/train-images-idx3-ubyte.gz")
    return need("mnist").parent


def test_mnist_splits_and_label_counts(build, mnist_root):
    task = build("mnist", path=str(mnist_root))
    assert task.info["examples"] == {"train": 55_000, "valid": 5_000, "test": 10_000}
    train = torch.cat([task.labels["train"], task.labels["valid"]])
    assert torch.bincount(train).tolist() == TRAIN_LABELS
    assert torch.bincount(task.labels["test"]).tolist() == TEST_LABELS
    mean = (
        float(
            task.images["train"].float().mean() * 55_000
            + task.images["valid"].float().mean() * 5_000
        )
        / 60_000
    )
    assert mean == pytest.approx(33.318, abs=1e-3)


def test_pixels_and_rows_read_the_same_image(build, mnist_root):
    pixels = next(build("mnist", path=str(mnist_root)).batches("test", 4))
    rows = next(build("mnist", path=str(mnist_root), form="rows").batches("test", 4))
    assert pixels.inputs.shape == (784, 4, 1) and rows.inputs.shape == (28, 4, 28)
    assert torch.equal(pixels.inputs.reshape(28, 28, 4).permute(0, 2, 1), rows.inputs)
    assert torch.equal(pixels.targets, rows.targets)
    assert 0 <= float(pixels.inputs.min()) and float(pixels.inputs.max()) == 1.0


def test_permutation_is_fixed_and_seeded(build, mnist_root):
    plain = next(build("mnist", path=str(mnist_root)).batches("test", 2)).inputs[:, :, 0]
    task = build("mnist", path=str(mnist_root), permute=True)
    permuted = next(task.batches("test", 2)).inputs[:, :, 0]
    assert torch.equal(permuted, plain[task.permutation])
    again = tasks.make("mnist", path=mnist_root, permute=True)
    other = tasks.make("mnist", path=mnist_root, permute=True, permute_seed=1)
    assert torch.equal(again.permutation, task.permutation)
    assert not torch.equal(other.permutation, task.permutation)


def test_idx_errors_are_clear(tmp_path, need):
    with pytest.raises(ValueError, match="bad magic"):
        parse_idx(b"\x00\x00\x09\x01" + b"\0" * 8, "x")
    with pytest.raises(ValueError, match="truncated"):
        parse_idx(b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + b"\0" * 3, "x")
    real = gzip.decompress(need("mnist/t10k-labels-idx1-ubyte.gz").read_bytes())
    assert parse_idx(real, "labels").shape == (10_000,)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (tmp_path / f"{name}.gz").symlink_to(need(f"mnist/{name}.gz"))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(real[:-5]))
    with pytest.raises(ChecksumError, match="t10k-labels"):
        tasks.make("mnist", path=tmp_path)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        tasks.make("mnist", path=tmp_path, verify=False)
    with pytest.raises(ValueError, match="pass the folder"):
        tasks.make("mnist", path=tmp_path / "t10k-labels-idx1-ubyte.gz")


def test_digits_split_and_forms():
    task = tasks.make("digits")
    assert task.info["examples"] == {"train": 1257, "valid": 180, "test": 360}
    batch = next(task.batches("train", 5))
    assert batch.inputs.shape == (8, 5, 8) and float(batch.inputs.max()) <= 1.0
    pixels = next(tasks.make("digits", form="pixels").batches("train", 5))
    assert pixels.inputs.shape == (64, 5, 1)
    assert torch.equal(pixels.inputs.reshape(8, 8, 5).permute(0, 2, 1), batch.inputs)
    labels = torch.cat([task.labels[s] for s in ("train", "valid", "test")])
    assert np.bincount(labels.numpy()).sum() == 1797


def test_digits_as_one_vector_for_feed_forward_bodies():
    pytest.importorskip("sklearn")
    rows = tasks.make("digits")
    vector = tasks.make("digits", form="vector")
    a, b = next(rows.batches("valid", 5)), next(vector.batches("valid", 5))
    assert b.inputs.shape == (1, 5, 64) and vector.input.size == 64
    torch.testing.assert_close(b.inputs[0], a.inputs.transpose(0, 1).reshape(5, 64))
    with pytest.raises(ValueError, match="form must be 'pixels', 'rows' or 'vector'"):
        tasks.make("digits", form="columns")
