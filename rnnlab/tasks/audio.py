"""Spoken-digit classification on the Free Spoken Digit Dataset (FSDD).

3,000 recordings, 8 kHz mono 16-bit: 6 speakers × 10 digits × 50 repetitions, named
``{digit}_{speaker}_{index}.wav``. Split by ``index``: 0–4 test (the official test set,
300 files), 5–9 validation (300, our choice: the official split has no validation set, and
taking the same repetition indices from every speaker and digit keeps it balanced),
10–49 train (2,400).

Each recording becomes a sequence of frames computed with ``torch.stft`` (no audio library):
a 25 ms Hann window (200 samples, centred in each 256-sample FFT frame) every 10 ms
(80 samples; ``1 + (N - 256) // 80`` frames for N samples), a 256-point FFT, the power
spectrum, then either 40 log-mel bands (HTK mel scale, 0–4 kHz; ``features="logmel"``) or the
129 log power bins (``features="spectrogram"``); ``log(x + 1e-6)``. Each feature is then
standardised with the train split's mean and standard deviation over frames.

    inputs   (T, B, F) float32, zero-padded after each recording's last frame
    lengths  (B,) int64   frames per recording (predict from step lengths[b] - 1)
    targets  (B,) int64   the digit

The recordings are verified by a manifest digest: the sha256 of the ``sha256sum``-style lines
``"<sha256 of the wav>  recordings/<name>\\n"`` sorted by name, so any container (our
``recordings.tar.xz``, GitHub's archive of the pinned commit, or a folder of WAVs) checks the
same way.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import wave
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from rnnlab.tasks import register
from rnnlab.tasks.base import SPLITS, Batch, Classes, ClassMetric, Features
from rnnlab.tasks.dataset import DatasetTask
from rnnlab.tasks.download import ChecksumError, DataFile, find

SAMPLE_RATE = 8000
WINDOW = 200  # 25 ms
HOP = 80  # 10 ms
N_FFT = 256
MELS = 40
RECORDINGS = 3000
MANIFEST_SHA256 = "04e1baae96c6a26e39c623f2b01d0182ddae627ba0ac02a3cdc17ba2af99fd9b"
COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"
NAME = re.compile(r"(?:^|/)(\d)_([a-z]+)_(\d+)\.wav$")


def manifest_digest(wavs: dict[str, bytes]) -> str:
    """sha256 over ``"<sha256>  recordings/<name>\\n"`` lines sorted by name."""
    lines = "".join(
        f"{hashlib.sha256(wavs[name]).hexdigest()}  recordings/{name}\n" for name in sorted(wavs)
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def check_manifest(wavs: dict[str, bytes], source) -> None:
    if len(wavs) != RECORDINGS:
        raise ChecksumError(
            f"{source} holds {len(wavs)} FSDD recordings, expected {RECORDINGS}; it is "
            "incomplete or a different version (pass verify=False to use it anyway)"
        )
    got = manifest_digest(wavs)
    if got != MANIFEST_SHA256:
        raise ChecksumError(
            f"the recordings in {source} have manifest digest {got}, expected "
            f"{MANIFEST_SHA256}: some files differ from FSDD commit {COMMIT[:10]} (pass "
            "verify=False to use them anyway)"
        )


def read_archive(file: Path) -> dict[str, bytes]:
    """``{name: wav bytes}`` of every ``recordings/<digit>_<speaker>_<index>.wav`` in a tar
    archive (any compression)."""
    wavs = {}
    try:
        with tarfile.open(file) as archive:
            for member in archive:
                in_recordings = ("/" + member.name).rsplit("/", 2)[-2] == "recordings"
                if member.isfile() and in_recordings and NAME.search(member.name):
                    wavs[member.name.rsplit("/", 1)[-1]] = archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ValueError(f"{file} is not a readable tar archive: {error}") from error
    return wavs


def read_folder_names(folder: Path) -> list[Path]:
    """The FSDD-named WAV files in ``folder`` (none if it is not a folder)."""
    return [p for p in folder.glob("*.wav") if NAME.search(p.name)] if folder.is_dir() else []


def read_folder(folder: Path) -> dict[str, bytes]:
    """``{name: wav bytes}`` of the FSDD-named WAV files in ``folder``."""
    return {p.name: p.read_bytes() for p in read_folder_names(folder)}


def read_recordings(path: Path, verify: bool) -> dict[str, bytes]:
    """``{name: wav bytes}`` of every FSDD recording in a folder or archive (checked against
    the manifest with ``verify``); a clear error when there are none."""
    wavs = read_folder(path) if path.is_dir() else read_archive(path)
    if not wavs:
        raise ValueError(f"no FSDD recordings ('<digit>_<speaker>_<index>.wav') in {path}")
    if verify:
        check_manifest(wavs, path)
    return wavs


FILES = [
    DataFile("recordings.tar.xz", "fsdd"),
    DataFile(
        f"free-spoken-digit-dataset-{COMMIT}.tar.gz",
        "fsdd",
        url=f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{COMMIT}.tar.gz",
        check=lambda path: check_manifest(read_archive(path), path),
    ),
]


def samples(data: bytes, where: str) -> torch.Tensor:
    """A WAV file's samples as float32 in [-1, 1], mixed to mono; checks the rate is 8 kHz."""
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as error:
        raise ValueError(f"{where} is not a readable PCM WAV file: {error}") from error
    if rate != SAMPLE_RATE:
        raise ValueError(f"{where} is sampled at {rate} Hz, expected {SAMPLE_RATE}")
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif width in (2, 4):
        dtype = np.int16 if width == 2 else np.int32
        x = np.frombuffer(raw, dtype).astype(np.float32) / float(np.iinfo(dtype).max + 1)
    else:
        raise ValueError(f"{where} has {8 * width}-bit samples, expected 8, 16 or 32")
    return torch.from_numpy(x.reshape(-1, channels).mean(1))


def mel_filterbank(bands: int = MELS, n_fft: int = N_FFT, rate: int = SAMPLE_RATE) -> torch.Tensor:
    """``(bands, n_fft // 2 + 1)`` triangular filters evenly spaced on the HTK mel scale
    ``mel(f) = 2595 log10(1 + f / 700)`` from 0 Hz to ``rate / 2``."""
    mel_top = 2595 * np.log10(1 + (rate / 2) / 700)
    edges_hz = 700 * (10 ** (np.linspace(0, mel_top, bands + 2) / 2595) - 1)
    bins_hz = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins_hz - lower) / (centre - lower)
    falling = (upper - bins_hz) / (upper - centre)
    return torch.from_numpy(np.maximum(0, np.minimum(rising, falling))).to(torch.float32)


def frames(x: torch.Tensor, features: str) -> torch.Tensor:
    """Samples ``(N,)`` -> log features ``(T, F)``; see the module docstring."""
    return frames_of([x], features)[0]


def frames_of(signals: list[torch.Tensor], features: str, chunk: int = 256) -> list[torch.Tensor]:
    """Log features ``(T_i, F)`` of many signals ``(N_i,)``, with few ``torch.stft`` calls.

    Signals are sorted by length and transformed ``chunk`` at a time, each chunk zero-padded
    to its longest signal. With ``center=False`` a frame only reads samples inside its own
    window, so each signal keeps its first ``1 + (N_i - 256) // 80`` frames, exactly the frames
    it would get alone; the rest (which read padding) are dropped.
    """
    window = torch.hann_window(WINDOW)
    bank = mel_filterbank() if features == "logmel" else None
    out: list[torch.Tensor | None] = [None] * len(signals)
    order = sorted(range(len(signals)), key=lambda i: signals[i].numel())
    for first in range(0, len(order), chunk):
        group = order[first : first + chunk]
        sizes = [max(signals[i].numel(), N_FFT) for i in group]  # short ones give one frame
        padded = torch.zeros(len(group), max(sizes))
        for row, i in enumerate(group):
            padded[row, : signals[i].numel()] = signals[i]
        spectrum = torch.stft(
            padded,
            n_fft=N_FFT,
            hop_length=HOP,
            win_length=WINDOW,
            window=window,
            center=False,
            return_complex=True,
        )  # (G, N_FFT // 2 + 1, T_max)
        power = spectrum.abs().square()
        if bank is not None:
            power = bank @ power  # (G, MELS, T_max)
        logs = torch.log(power + 1e-6).transpose(1, 2)  # (G, T_max, F)
        for row, i in enumerate(group):
            out[i] = logs[row, : 1 + (sizes[row] - N_FFT) // HOP].contiguous()
    return out


def locate(path, download: bool) -> Path:
    """Where FSDD is: a folder of the WAVs (``path``, ``path/recordings``), an archive in or at
    ``path``, else ``$RNNLAB_DATA`` / the cache, downloaded there if allowed."""
    source = Path(path).expanduser() if path is not None else None
    if source is not None and source.is_dir():
        for folder in (source / "recordings", source):
            if read_folder_names(folder):
                return folder
        return find(FILES, source, download=False, verify=False)[1]
    return find(FILES, source, download=download, verify=False)[1]


@lru_cache(maxsize=4)
def load_fsdd(source: str, features: str, verify: bool) -> dict:
    """Features, digits and split of every recording (cached per process)."""
    path = Path(source)
    wavs = read_recordings(path, verify)
    data = {s: {"frames": [], "digits": [], "names": []} for s in SPLITS}
    names = sorted(wavs)
    computed = frames_of([samples(wavs[name], name) for name in names], features)
    for name, features_of_name in zip(names, computed, strict=True):
        digit, _, index = NAME.search(name).groups()
        index = int(index)
        split = "test" if index < 5 else "valid" if index < 10 else "train"
        data[split]["frames"].append(features_of_name)
        data[split]["digits"].append(int(digit))
        data[split]["names"].append(name)
    for split in SPLITS:
        if not data[split]["frames"]:
            raise ValueError(
                f"{path}: no recordings fall in the {split} split (index 0-4 test, "
                "5-9 valid, 10-49 train)"
            )
    train = torch.cat(data["train"]["frames"])  # (all train frames, F)
    mean, std = train.mean(0), train.std(0).clamp_min(1e-5)
    for split in SPLITS:
        data[split]["frames"] = [(f - mean) / std for f in data[split]["frames"]]
    return data


@register("fsdd")
class SpokenDigits(DatasetTask):
    """Spoken digit classification on FSDD (see the module docstring).

    Args:
        path: ``recordings.tar.xz``, GitHub's archive of the dataset, a folder of the WAVs, or a
            folder holding the archive (directly or in ``fsdd/``).
        features: ``"logmel"`` (40 bands) or ``"spectrogram"`` (129 bins). Default "logmel".
        download: fetch GitHub's archive of commit 26eb9aa (checked by manifest digest) into
            the cache if nothing is found. Default True.
        verify: check the recordings' manifest digest. Default True.
    """

    name = "fsdd"
    output = Classes(10)
    causal = False  # one label per recording, read after the whole recording
    summary = (
        "Spoken digit classification on the Free Spoken Digit Dataset (3,000 8-kHz recordings "
        "of 6 speakers saying 0-9; WAVs read with the stdlib wave module): each recording "
        "becomes 40 log-mel (or 129 log-spectrogram) features per 10 ms frame computed with "
        "torch.stft, standardised with train statistics; the digit is predicted from the last "
        "frame. Split by repetition index: 0-4 test (official), 5-9 valid, 10-49 train "
        "(300/300/2,400). Metric: accuracy. Example: '7_jackson_32.wav', about 40 frames x 40 "
        "features -> 7."
    )

    def __init__(
        self, path=None, *, features: str = "logmel", download: bool = True, verify: bool = True
    ):
        if features not in ("logmel", "spectrogram"):
            raise ValueError(f"features must be 'logmel' or 'spectrogram', got {features!r}")
        source = locate(path, download)
        self.data = load_fsdd(str(source), features, verify)
        self.input = Features(MELS if features == "logmel" else N_FFT // 2 + 1)
        self.info = {
            "source": str(source),
            "features": features,
            "recordings": {s: len(self.data[s]["digits"]) for s in SPLITS},
        }

    def size(self, split: str) -> int:
        return len(self.data[split]["digits"])

    def collate(self, split: str, indices: np.ndarray) -> Batch:
        chosen = [self.data[split]["frames"][i] for i in indices]
        lengths = torch.tensor([len(f) for f in chosen], dtype=torch.int64)
        inputs = torch.nn.utils.rnn.pad_sequence(chosen)  # (T, B, F)
        targets = torch.tensor([self.data[split]["digits"][i] for i in indices])
        return Batch(inputs=inputs, targets=targets, lengths=lengths)

    def metric(self) -> ClassMetric:
        return ClassMetric()
