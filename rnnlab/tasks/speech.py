"""Connected spoken digits: utterances of 1–7 digits built from FSDD recordings, for CTC.

Seed 000's future work is speech recognition with a Grid LSTM over spectrograms. TIMIT, the
corpus of that literature, is licensed; this task builds a small connected-speech problem
from real recordings anyone can obtain, the Free Spoken Digit Dataset (see
:mod:`rnnlab.tasks.audio`): an utterance concatenates recordings of *one speaker* saying 1–7
random digits, with random silences between and around them and, optionally, white noise at a
given SNR. The model hears the whole utterance and writes the digit sequence, trained with CTC
(:class:`~rnnlab.tasks.base.Labels`, decoded by :mod:`rnnlab.tasks.ctc`)::

    "4 0 7"  <-  [silence][4_theo_23.wav][silence][0_theo_41.wav][silence][7_theo_12.wav][silence]

Splits never share a recording: by default by repetition index as the ``fsdd`` task (0–4 test,
5–9 valid, 10–49 train: every speaker in every split, test recordings never heard in training);
with ``split="speaker"`` by speaker (``theo`` valid, ``yweweler`` test, the other four train:
voices never heard in training). Train utterances are generated without end from
``(seed, batch index)``; valid and test are ``valid_size`` / ``test_size`` fixed utterances,
generated once and their features cached for the process.

Features as the ``fsdd`` task: 40 log-mel bands every 10 ms (``torch.stft``, no audio library),
standardised with the mean and standard deviation of the train recordings' frames.

    inputs   (T, B, 40) float32, zero-padded after each utterance's last frame
    lengths  (B,) int64   frames per utterance
    targets  (S, B) int64 digit d as label d + 1, padded with 0 (the CTC blank)
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from rnnlab.tasks import register
from rnnlab.tasks.audio import (
    MELS,
    N_FFT,
    NAME,
    SAMPLE_RATE,
    frames_of,
    locate,
    read_recordings,
    samples,
)
from rnnlab.tasks.base import Batch, Features, Labels, check_positive
from rnnlab.tasks.ctc import LabelErrorMetric
from rnnlab.tasks.synthetic import GeneratedTask

SPEAKER_SPLIT = {"theo": "valid", "yweweler": "test"}  # the other four speakers: train


def index_split(index: int) -> str:
    return "test" if index < 5 else "valid" if index < 10 else "train"


@lru_cache(maxsize=2)
def load_recordings(source: str, verify: bool, split_by: str) -> dict:
    """``{"pools": {split: {(speaker, digit): [(name, waveform), ...]}}, "mean", "std"}``: the
    recordings of each split and the mean and std of the train recordings' log-mel frames."""
    path = Path(source)
    wavs = read_recordings(path, verify)
    pools: dict[str, dict[tuple[str, int], list[tuple[str, torch.Tensor]]]] = {
        "train": {}, "valid": {}, "test": {}
    }
    for name in sorted(wavs):
        digit, speaker, index = NAME.search(name).groups()
        split = index_split(int(index)) if split_by == "recording" else \
            SPEAKER_SPLIT.get(speaker, "train")
        pools[split].setdefault((speaker, int(digit)), []).append((name, samples(wavs[name], name)))
    for split, pool in pools.items():
        if not pool:
            raise ValueError(f"{path}: no recordings fall in the {split} split ({split_by})")
    train = [w for recordings in pools["train"].values() for _, w in recordings]
    train = torch.cat(frames_of(train, "logmel"))
    return {"pools": pools, "mean": train.mean(0), "std": train.std(0).clamp_min(1e-5)}


@register("digits_ctc")
class ConnectedDigits(GeneratedTask):
    """Connected spoken digits for CTC (see the module docstring).

    Args:
        path: FSDD as the ``fsdd`` task reads it (``recordings.tar.xz``, GitHub's archive, a
            folder of WAVs, or a folder holding the archive); default: ``$RNNLAB_DATA``,
            ``../shared/data`` or the download cache.
        min_digits, max_digits: digits per utterance, uniform. Defaults 1 and 7.
        silence: the longest silence, in seconds, before, between and after the digits
            (each uniform in [0.05, silence]). Default 0.3.
        snr: add white noise at this signal-to-noise ratio in dB; None: clean. Default None.
        split: ``"recording"`` (by repetition index) or ``"speaker"`` (held-out voices).
        valid_size, test_size: fixed evaluation utterances. Default 300 each.
        download, verify: as the ``fsdd`` task.
    """

    name = "digits_ctc"
    # digits-grid (rnnlab/reproduce/entries.py): 16 utterances a batch, valid every 100
    training_defaults = {"task.batch_size": 16, "train.eval_every": 100}
    causal = False  # the labels are written after the whole utterance is heard
    vocab = ["_", *"0123456789"]  # id 0: the CTC blank; digit d has id d + 1
    summary = (
        "Connected spoken digits (seed 000's speech future work, on real speech): utterances "
        "of 1-7 digits (min_digits=, max_digits=) built by concatenating one speaker's FSDD "
        "recordings with random silences (silence=) and optional white noise (snr= dB); 40 "
        "log-mel features per 10 ms frame; the digit sequence is written with CTC. Split by "
        "recording index (test recordings never heard in training) or by speaker "
        "(split=speaker). Metric: digit error rate (jiwer edit operations) and utterance "
        "error rate. Example: '4_theo_23.wav' + '0_theo_41.wav' + '7_theo_12.wav' -> '4 0 7'."
    )

    def __init__(
        self,
        path=None,
        *,
        min_digits: int = 1,
        max_digits: int = 7,
        silence: float = 0.3,
        snr: float | None = None,
        split: str = "recording",
        valid_size: int = 300,
        test_size: int = 300,
        download: bool = True,
        verify: bool = True,
    ):
        super().__init__(valid_size, test_size)
        check_positive("min_digits", min_digits)
        if max_digits < min_digits:
            raise ValueError(f"max_digits must be >= min_digits ({min_digits}), got {max_digits}")
        if not silence >= 0.05:
            raise ValueError(f"silence must be at least 0.05 seconds, got {silence}")
        if split not in ("recording", "speaker"):
            raise ValueError(f"split must be 'recording' or 'speaker', got {split!r}")
        source = locate(path, download)
        self.data = load_recordings(str(source), verify, split)
        self.min_digits, self.max_digits = min_digits, max_digits
        self.silence, self.snr, self.split = silence, snr, split
        self.input = Features(MELS)
        self.output = Labels(11)
        self.info.update(
            source=str(source), min_digits=min_digits, max_digits=max_digits, silence=silence,
            snr=snr, split=split,
            # what transcription needs of the data, kept in the run's task.json (Transcriber)
            features={"mean": self.data["mean"].tolist(), "std": self.data["std"].tolist()},
        )

    @property
    def tag(self) -> int:
        options = f"{self.name}:{self.min_digits}:{self.max_digits}:{self.silence}:{self.snr}"
        return zlib.crc32(f"{options}:{self.split}".encode())

    def utterance(
        self, rng: np.random.Generator, split: str
    ) -> tuple[torch.Tensor, list[int], list[str]]:
        """One utterance of ``split``: (waveform (N,), digits, names of the recordings used)."""
        pool = self.data["pools"][split]
        speakers = sorted({speaker for speaker, _ in pool})
        speaker = speakers[int(rng.integers(len(speakers)))]
        count = int(rng.integers(self.min_digits, self.max_digits + 1))
        digits = [int(d) for d in rng.integers(0, 10, count)]
        pieces, names = [], []
        for digit in digits:
            pieces.append(self._silence(rng))
            choices = pool[(speaker, digit)]
            name, waveform = choices[int(rng.integers(len(choices)))]
            names.append(name)
            pieces.append(waveform)
        pieces.append(self._silence(rng))
        signal = torch.cat(pieces)
        if self.snr is not None:
            power = signal.square().mean()
            noise = torch.from_numpy(rng.standard_normal(signal.numel()).astype(np.float32))
            signal = signal + noise * torch.sqrt(power / 10 ** (self.snr / 10))
        return signal, digits, names

    def _silence(self, rng: np.random.Generator) -> torch.Tensor:
        return torch.zeros(int(SAMPLE_RATE * rng.uniform(0.05, self.silence)))

    def generate(self, rng, count):
        """``count`` train examples."""
        return self.generate_split(rng, count, "train")

    def generate_split(self, rng: np.random.Generator, count: int, split: str):
        """``count`` utterances of ``split``'s recordings: (features (T, 40), digits)."""
        drawn = [self.utterance(rng, split) for _ in range(count)]
        features = frames_of([signal for signal, _, _ in drawn], "logmel")
        mean, std = self.data["mean"], self.data["std"]
        return [((f - mean) / std, digits) for f, (_, digits, _) in zip(features, drawn)]

    def collate(self, examples) -> Batch:
        chosen = [features for features, _ in examples]
        lengths = torch.tensor([len(f) for f in chosen], dtype=torch.int64)
        inputs = torch.nn.utils.rnn.pad_sequence(chosen)  # (T, B, 40)
        longest = max(len(digits) for _, digits in examples)
        targets = torch.zeros(longest, len(examples), dtype=torch.int64)
        for b, (_, digits) in enumerate(examples):
            targets[: len(digits), b] = torch.tensor(digits) + 1
        return Batch(inputs=inputs, targets=targets, lengths=lengths)

    def metric(self) -> LabelErrorMetric:
        return LabelErrorMetric()

    def transcribe_signal(self, signal: torch.Tensor) -> torch.Tensor:
        """A waveform at 8 kHz ``(N,)`` -> standardised model input ``(T, 1, 40)``."""
        return standardised(signal, self.data["mean"], self.data["std"])


def standardised(signal: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """A waveform at 8 kHz ``(N,)`` -> its log-mel frames standardised with the train frames'
    ``mean`` and ``std`` ``(40,)``, as model input ``(T, 1, 40)``."""
    if signal.numel() < N_FFT:
        raise ValueError(f"the recording is too short: {signal.numel()} samples, at least "
                         f"{N_FFT} (32 ms at 8 kHz) are needed")
    features = frames_of([signal], "logmel")[0]
    return ((features - mean) / std)[:, None]


class Transcriber:
    """What transcribing needs of ``digits_ctc``, without its recordings: the spaces and labels
    of the task and the train frames' statistics that standardise a recording's features.

    A run directory keeps the statistics in task.json (``features``: ``mean`` and ``std``, 40
    numbers each), so ``rnnlab transcribe`` needs no FSDD data (:meth:`from_info`).
    """

    name = ConnectedDigits.name
    vocab = ConnectedDigits.vocab
    causal = ConnectedDigits.causal
    input = Features(MELS)
    output = Labels(len(ConnectedDigits.vocab))

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        self.mean, self.std = mean, std

    @classmethod
    def from_info(cls, info: dict, where: str) -> Transcriber:
        """From the ``info`` a run's task.json holds (``where`` names that file in errors);
        raises ValueError when its ``features`` are damaged."""
        try:
            mean, std = (torch.tensor(info["features"][key], dtype=torch.float32)
                         for key in ("mean", "std"))
        except (KeyError, TypeError, ValueError, RuntimeError):
            mean = std = None
        if mean is None or mean.shape != (MELS,) or std.shape != (MELS,) or not \
                bool(torch.isfinite(torch.cat([mean, std])).all() and (std > 0).all()):
            raise ValueError(f"{where} is damaged: 'features' must hold a 'mean' and a positive "
                             f"'std' of {MELS} numbers each")
        return cls(mean, std)

    def transcribe_signal(self, signal: torch.Tensor) -> torch.Tensor:
        """A waveform at 8 kHz ``(N,)`` -> standardised model input ``(T, 1, 40)``."""
        return standardised(signal, self.mean, self.std)


def read_wav(path: str | Path) -> torch.Tensor:
    """A PCM WAV file as float32 samples at 8 kHz, mono (resampled with scipy if needed)."""
    import io
    import wave

    from scipy.signal import resample_poly

    data = Path(path).read_bytes()
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate = w.getframerate()
    except (wave.Error, EOFError) as error:
        raise ValueError(f"{path} is not a readable PCM WAV file: {error}") from None
    if rate == SAMPLE_RATE:
        return samples(data, str(path))
    # samples() insists on 8 kHz; read at the file's own rate, then resample exactly
    with wave.open(io.BytesIO(data)) as w:
        width, channels, raw = w.getsampwidth(), w.getnchannels(), w.readframes(w.getnframes())
    if width != 2:
        raise ValueError(f"{path}: resampling supports 16-bit PCM, got {8 * width}-bit")
    x = np.frombuffer(raw, np.int16).astype(np.float32).reshape(-1, channels).mean(1) / 32768
    common = math.gcd(rate, SAMPLE_RATE)
    y = resample_poly(x, SAMPLE_RATE // common, rate // common).astype(np.float32)
    return torch.from_numpy(y)
