"""Sequential MNIST and sequential 8×8 digits: images read as sequences, one label each.

``form="pixels"``: the image's pixels one per step in raster order (MNIST: ``(784, B, 1)``);
``form="rows"``: one row per step (MNIST: ``(28, B, 28)``); ``form="vector"``: the whole image
as one step (MNIST: ``(1, B, 784)``), for feed-forward bodies. ``permute=True`` applies one fixed
random permutation (from ``permute_seed``) to the pixel order before the sequence is formed,
the "permuted MNIST" benchmark. Pixels are scaled to [0, 1]. Targets ``(B,)`` int64, predicted
from the last step. Metric: accuracy.

MNIST: the IDX files (``train-images-idx3-ubyte`` etc., gzipped or not). Train is the first
``60000 - valid_size`` training images, valid the last ``valid_size`` (default 5,000), test
the official 10,000. A ``.gz`` file is verified by the sha256 of its decompressed content, so
any mirror's gzip wrapper verifies.

Digits: scikit-learn's bundled 8×8 digits (1,797 images, 16 grey levels; needs the optional
``scikit-learn`` package, no download), split by a fixed permutation into 1,257 train /
180 valid / 360 test.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from rnnlab.tasks import register
from rnnlab.tasks.base import SPLITS, Batch, Classes, ClassMetric, Features, check_positive
from rnnlab.tasks.dataset import DatasetTask
from rnnlab.tasks.download import Checksum, ChecksumError, DataFile, find

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
IDX_SHA256 = {  # of the decompressed IDX files
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def idx_files(stem: str) -> list[DataFile]:
    return [
        DataFile(
            f"{stem}.gz", "mnist", Checksum(IDX_SHA256[stem], gunzip=True), url=f"{MIRROR}{stem}.gz"
        ),
        DataFile(stem, "mnist", Checksum(IDX_SHA256[stem])),
    ]


def parse_idx(data: bytes, where: str) -> np.ndarray:
    """An IDX file of unsigned bytes -> uint8 array of its declared shape."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{where} is not an IDX file of unsigned bytes (bad magic number)")
    dims = data[3]
    header = 4 + 4 * dims
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if len(data) != header + int(np.prod(shape)):
        raise ValueError(
            f"{where} declares shape {shape} ({header + int(np.prod(shape))} bytes) but has "
            f"{len(data)} bytes: it is truncated or corrupt"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(stem: str, path, download: bool, verify: bool) -> tuple[np.ndarray, str]:
    """Find, verify (decompressed sha256) and parse one MNIST IDX file."""
    _, file = find(idx_files(stem), path, download=download, verify=False)
    return _read_idx_file(file, file.stat().st_mtime, stem if verify else None), str(file)


@lru_cache(maxsize=8)
def _read_idx_file(file: Path, mtime: float, stem: str | None) -> np.ndarray:
    """Decompress, check and parse (cached per file and modification time)."""
    opener = gzip.open if file.suffix == ".gz" else open
    try:
        with opener(file, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"{file} could not be read in full ({error}); fetch it again") from error
    if stem is not None and hashlib.sha256(data).hexdigest() != IDX_SHA256[stem]:
        raise ChecksumError(
            f"the content of {file} does not match the sha256 of MNIST's {stem}; it is corrupt "
            "or a different file (pass verify=False to use it anyway)"
        )
    return parse_idx(data, str(file))


class ImageSequenceTask(DatasetTask):
    """Images ``(N, H, W)`` uint8 with labels, read as pixel or row sequences."""

    summary = "Images read as sequences."
    output = Classes(10)
    causal = False  # one label per image, read after the whole image

    def setup(
        self,
        images: dict[str, np.ndarray],
        labels: dict[str, np.ndarray],
        scale: float,
        form: str,
        permute: bool,
        permute_seed: int,
    ) -> None:
        if form not in ("pixels", "rows", "vector"):
            raise ValueError(f"form must be 'pixels', 'rows' or 'vector', got {form!r}")
        height, width = images["train"].shape[1:]
        self.form, self.shape, self.scale = form, (height, width), scale
        flat = {s: torch.from_numpy(np.array(images[s])).flatten(1) for s in SPLITS}  # copies
        if permute:
            rng = np.random.default_rng([zlib.crc32(b"permute"), permute_seed])
            self.permutation = torch.from_numpy(rng.permutation(height * width))
            flat = {s: x[:, self.permutation] for s, x in flat.items()}
        self.images = flat  # (N, H*W) uint8, in reading order
        self.labels = {s: torch.from_numpy(labels[s].astype(np.int64)) for s in SPLITS}
        self.input = Features({"pixels": 1, "rows": width, "vector": height * width}[form])
        self.info = {
            "form": form,
            "permute": permute,
            "permute_seed": permute_seed if permute else None,
            "examples": {s: len(self.labels[s]) for s in SPLITS},
        }

    def size(self, split: str) -> int:
        return len(self.labels[split])

    def collate(self, split: str, indices: np.ndarray) -> Batch:
        index = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        x = self.images[split][index].to(torch.float32) / self.scale  # (B, H*W)
        steps = {"pixels": x.shape[1], "rows": self.shape[0], "vector": 1}[self.form]
        inputs = x.view(len(index), steps, -1).transpose(0, 1).contiguous()  # (T, B, F)
        return Batch(inputs=inputs, targets=self.labels[split][index])

    def metric(self) -> ClassMetric:
        return ClassMetric()


@register("mnist")
class SequentialMnist(ImageSequenceTask):
    """Sequential (optionally permuted) MNIST; see the module docstring.

    Args:
        path: a folder with the four IDX files (gzipped or not; directly or in ``mnist/``).
        form: ``"pixels"`` (784 steps of 1), ``"rows"`` (28 steps of 28) or ``"vector"`` (one
            step of 784). Default "pixels".
        permute: apply a fixed pixel permutation. Default False.
        permute_seed: which permutation. Default 0.
        valid_size: training images held out (the last ones) for validation. Default 5000.
        download: fetch missing files (content sha256-checked) into the cache. Default True.
        verify: check the decompressed content's sha256. Default True.
    """

    name = "mnist"
    summary = (
        "Sequential MNIST: each 28x28 handwritten digit is read one pixel per step (784 steps; "
        "form='rows' gives 28 steps of 28 pixels), optionally in one fixed random pixel order "
        "(permute=True: permuted MNIST), and the digit is predicted from the last step. Train "
        "55,000 / valid 5,000 (the last training images) / test 10,000 from the IDX files, "
        "read from path= or downloaded with a content sha256 check. Metric: accuracy. Example: "
        "784 grey levels in [0, 1] -> 7."
    )

    def __init__(
        self,
        path=None,
        *,
        form: str = "pixels",
        permute: bool = False,
        permute_seed: int = 0,
        valid_size: int = 5000,
        download: bool = True,
        verify: bool = True,
    ):
        check_positive("valid_size", valid_size)
        if path is not None and Path(path).expanduser().is_file():
            raise ValueError(
                f"MNIST has four IDX files; pass the folder holding them, not the file {path}"
            )
        arrays, sources = {}, {}
        for stem in IDX_SHA256:
            arrays[stem], sources[stem] = read_idx(stem, path, download, verify)
        train_x, train_y = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
        test_x, test_y = arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]
        if len(train_x) != len(train_y) or len(test_x) != len(test_y):
            raise ValueError("MNIST images and labels differ in count; the files do not match")
        if not 0 < valid_size < len(train_x):
            raise ValueError(f"valid_size must be in (0, {len(train_x)}), got {valid_size}")
        cut = len(train_x) - valid_size
        images = {"train": train_x[:cut], "valid": train_x[cut:], "test": test_x}
        labels = {"train": train_y[:cut], "valid": train_y[cut:], "test": test_y}
        self.setup(images, labels, 255.0, form, permute, permute_seed)
        self.info["source"] = sources


@register("digits")
class SequentialDigits(ImageSequenceTask):
    """scikit-learn's 8×8 digits read as sequences: MNIST's download-free stand-in.

    Args:
        form: ``"rows"`` (8 steps of 8), ``"pixels"`` (64 steps of 1) or ``"vector"`` (one step
            of 64). Default "rows".
        permute: apply a fixed pixel permutation. Default False.
        permute_seed: which permutation. Default 0.
    The images ship inside scikit-learn (a dependency of rnnlab): no download.
    """

    name = "digits"
    training_defaults = {  # highway-vs-grid (rnnlab/reproduce/entries.py)
        "task.batch_size": 128,
        "task.eval_batch_size": 500,
        "train.lr": 3e-3,
        "train.eval_every": 200,
    }
    summary = (
        "Sequential 8x8 digits: scikit-learn's bundled handwritten digits (1,797 images, 16 "
        "grey levels, bundled with scikit-learn; no download) read one row per "
        "step (8 steps of 8; form='pixels': 64 steps of 1, permute=True for a fixed pixel "
        "order); the digit is predicted from the last step. Fixed split 1,257 train / 180 "
        "valid / 360 test. Metric: accuracy. Example: 8 rows of 8 grey levels in [0, 1] -> 3."
    )

    def __init__(self, *, form: str = "rows", permute: bool = False, permute_seed: int = 0):
        from sklearn.datasets import load_digits

        digits = load_digits()
        order = np.random.default_rng([zlib.crc32(b"digits")]).permutation(len(digits.target))
        parts = {"test": order[:360], "valid": order[360:540], "train": order[540:]}
        images = {s: digits.images[i].astype(np.uint8) for s, i in parts.items()}
        labels = {s: digits.target[i] for s, i in parts.items()}
        self.setup(images, labels, 16.0, form, permute, permute_seed)
        self.info["source"] = "sklearn.datasets.load_digits"
