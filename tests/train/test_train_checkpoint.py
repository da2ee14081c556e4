"""Checkpoints: atomic writes under a crash, weights_only loading, RNG and state round trips."""

import os
import random

import numpy as np
import pytest
import torch

from rnnlab.engine.state import detach
from rnnlab.train import checkpoint as ckpt


def test_a_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_atomic({"format": ckpt.FORMAT, "step": 1, "w": torch.ones(3)}, path)
    before = path.read_bytes()

    real_save = torch.save

    def dying_save(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.seek(handle.tell() // 2)
        handle.truncate()  # half the bytes are written ...
        raise OSError("disk gone")  # ... and the process dies

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError, match="disk gone"):
        ckpt.save_atomic({"format": ckpt.FORMAT, "step": 2, "w": torch.zeros(3)}, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]  # no partial temporary file
    assert ckpt.load(path)["step"] == 1


def test_a_kill_before_the_rename_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_atomic({"format": ckpt.FORMAT, "step": 1}, path)

    def no_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_atomic({"format": ckpt.FORMAT, "step": 2}, path)
    monkeypatch.undo()
    assert ckpt.load(path)["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]


def test_checkpoints_load_with_weights_only(tmp_path):
    path = tmp_path / "c.pt"
    payload = {"format": ckpt.FORMAT, "rng": ckpt.rng_state(), "x": [1, 2.5, "a", None]}
    ckpt.save_atomic(payload, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["x"] == [1, 2.5, "a", None]


def test_a_foreign_file_is_rejected(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"weights": torch.ones(1)}, path)
    with pytest.raises(ValueError, match="not an rnnlab checkpoint"):
        ckpt.load(path)
    with pytest.raises(FileNotFoundError):
        ckpt.load(tmp_path / "missing.pt")


def test_rng_states_round_trip():
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.standard_normal()  # a cached gaussian in numpy's state
    state = ckpt.rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random(), np.random.standard_normal())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    ckpt.set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random(), np.random.standard_normal())
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert first[2] == again[2] and first[3] == again[3]


def test_recurrent_state_flattens_and_rebuilds():
    import rnnlab.engine

    rnn = rnnlab.engine.RNN("lstm", 3, 4, num_layers=2)
    _, state = rnn(torch.randn(5, 2, 3))
    leaves = ckpt.flatten_state(detach(state))
    template = rnn.initial_state(2)
    rebuilt = ckpt.unflatten_state(template, leaves)
    assert type(rebuilt) is type(state)
    assert all(torch.equal(a, b) for a, b in zip(rebuilt, state, strict=True))
    with pytest.raises(ValueError, match="shape"):
        ckpt.unflatten_state(rnn.initial_state(3), leaves)
    assert ckpt.flatten_state(None) is None
