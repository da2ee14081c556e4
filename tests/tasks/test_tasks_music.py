"""Polyphonic music: split sizes, file formats, the restricted unpickler, batches and NLL."""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch

import rnnlab.tasks as tasks
from rnnlab.tasks.music import load_plain_pickle, notes_to_roll

COUNTS = {
    "jsb": ((229, 76, 77), (13_807, 4_602, 4_725)),
    "nottingham": ((694, 173, 170), (176_561, 45_513, 44_463)),
    "musedata": ((524, 135, 124), (245_202, 82_755, 64_339)),
    "pianomidi": ((87, 12, 25), (75_911, 8_540, 19_036)),
}
MAT = {
    "jsb": "JSB_Chorales",
    "nottingham": "Nottingham",
    "musedata": "MuseData",
    "pianomidi": "Piano_midi",
}


@pytest.mark.parametrize("name", list(COUNTS))
def test_split_sizes_match_boulanger_lewandowski(build, need, name):
    need(f"polyphonic_music/{MAT[name]}.mat")
    task = build(name, path=str(need("polyphonic_music").parent))
    pieces, frames = COUNTS[name]
    assert tuple(task.info["pieces"].values()) == pieces
    assert tuple(task.info["frames"].values()) == frames


@pytest.fixture(scope="module")
def jsb_json(need):
    return json.loads(need("polyphonic_music/jsb-chorales-quarter.json").read_text())


def test_json_equals_mat(build, need, jsb_json):
    from_mat = build("jsb", path=str(need("polyphonic_music/JSB_Chorales.mat")))
    from_json = build("jsb", path=str(need("polyphonic_music/jsb-chorales-quarter.json")))
    for split in ("train", "valid", "test"):
        assert len(from_mat.rolls[split]) == len(from_json.rolls[split])
        for a, b in zip(from_mat.rolls[split], from_json.rolls[split], strict=True):
            assert np.array_equal(a, b)


def test_plain_pickle_loads_like_the_json(build, need, jsb_json, tmp_path):
    file = tmp_path / "JSB Chorales.pickle"
    # protocol 2 as the original Python 2 files; tuples for steps as some copies have
    data = {s: [[tuple(step) for step in piece] for piece in jsb_json[s]] for s in jsb_json}
    file.write_bytes(pickle.dumps(data, protocol=2))
    from_pickle = tasks.make("jsb", path=file)
    from_json = build("jsb", path=str(need("polyphonic_music/jsb-chorales-quarter.json")))
    assert all(
        np.array_equal(a, b)
        for a, b in zip(from_pickle.rolls["test"], from_json.rolls["test"], strict=True)
    )


class Evil:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_restricted_unpickler_refuses_objects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = pickle.dumps({"train": [Evil()], "valid": [], "test": []}, protocol=2)
    with pytest.raises(
        pickle.UnpicklingError, match=r"refusing to load (__builtin__|builtins)\.exec"
    ):
        load_plain_pickle(payload)
    assert not (tmp_path / "PWNED").exists()
    (tmp_path / "evil.pickle").write_bytes(payload)
    with pytest.raises(pickle.UnpicklingError):
        tasks.make("nottingham", path=tmp_path / "evil.pickle")
    assert not (tmp_path / "PWNED").exists()
    arrays = pickle.dumps({"train": [np.zeros((2, 88))]})
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        load_plain_pickle(arrays)
    assert load_plain_pickle(pickle.dumps({"a": [(1, 2.5)], "b": {3}})) == {
        "a": [(1, 2.5)],
        "b": {3},
    }


def test_malformed_music_files_are_clear(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"train": []}))
    with pytest.raises(ValueError, match="keys 'train', 'valid', 'test'"):
        tasks.make("jsb", path=tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"train": [[[200]]], "valid": [], "test": []}))
    with pytest.raises(ValueError, match="outside the piano range"):
        tasks.make("jsb", path=tmp_path / "y.json")
    (tmp_path / "z.json").write_text(json.dumps({"train": [[[60]]], "valid": [], "test": [[[]]]}))
    with pytest.raises(ValueError, match="valid split is empty"):
        tasks.make("jsb", path=tmp_path / "z.json")


def test_notes_to_roll_maps_midi_21_to_key_0():
    roll = notes_to_roll([[21, 108], [60.0]], "test")
    assert roll.shape == (2, 88) and roll[0, 0] == roll[0, 87] == 1 and roll[1, 39] == 1
    assert roll.sum() == 3


def test_batches_predict_every_frame_from_a_silent_start(build, need):
    task = build("jsb", path=str(need("polyphonic_music/JSB_Chorales.mat")))
    batch = next(task.batches("valid", 3))
    pieces = task.rolls["valid"][:3]
    assert batch.lengths.tolist() == [len(p) for p in pieces]
    assert batch.inputs.shape == (max(len(p) for p in pieces), 3, 88)
    assert batch.inputs[0].abs().sum() == 0  # silent start frame
    for b, piece in enumerate(pieces):
        target = torch.from_numpy(piece).float()
        assert torch.equal(batch.targets[: len(piece), b], target)
        assert torch.equal(batch.inputs[1 : len(piece), b], target[:-1])
        assert batch.targets[len(piece) :, b].abs().sum() == 0  # padding


def test_frame_nll_of_a_constant_predictor_by_hand(build, need):
    """Predict every key on with probability p: NLL per frame = -(n ln p + (88-n) ln(1-p))."""
    task = build("jsb", path=str(need("polyphonic_music/JSB_Chorales.mat")))
    p = 0.1
    metric = task.metric()
    for batch in task.batches("test", 20):
        metric.update(torch.full_like(batch.targets, math.log(p / (1 - p))), batch)
    on = sum(int(r.sum()) for r in task.rolls["test"])
    frames = sum(len(r) for r in task.rolls["test"])
    expected = -(on * math.log(p) + (frames * 88 - on) * math.log(1 - p)) / frames
    assert metric.compute()["nll"] == pytest.approx(expected, rel=1e-5)


def test_train_is_reshuffled_per_epoch_and_resumable(build, need):
    task = build("jsb", path=str(need("polyphonic_music/JSB_Chorales.mat")))
    per_epoch = task.batches_per_epoch("train", 50)
    assert per_epoch == 5
    stream = task.batches("train", 50, seed=2)
    seen = [next(stream) for _ in range(per_epoch + 2)]
    assert sum(b.batch_size for b in seen[:per_epoch]) == 229
    assert not torch.equal(seen[0].lengths, seen[per_epoch].lengths)  # a new order
    resumed = next(task.batches("train", 50, seed=2, start=per_epoch + 1))
    assert torch.equal(resumed.inputs, seen[per_epoch + 1].inputs)
