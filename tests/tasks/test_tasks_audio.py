"""FSDD spoken digits: split, features, verification and download (recordings read once)."""

from __future__ import annotations

import io
import math
import tarfile
import wave

import numpy as np
import pytest
import torch

import rnnlab.tasks as tasks
from rnnlab.tasks import audio
from rnnlab.tasks.download import ChecksumError


@pytest.fixture(scope="module")
def archive(need):
    return need("fsdd/recordings.tar.xz")


@pytest.fixture(scope="module")
def wavs(archive):
    return audio.read_archive(archive)


@pytest.fixture(scope="module")
def fsdd(archive):
    return tasks.make("fsdd", path=archive)


def subset(wavs, speakers=("george",), indices=(0, 1, 5, 10, 11)):
    """A few recordings: every digit for the given speakers and repetition indices."""
    return {
        f"{d}_{s}_{i}.wav": wavs[f"{d}_{s}_{i}.wav"]
        for d in range(10)
        for s in speakers
        for i in indices
    }


def test_official_split_and_our_validation_split(fsdd):
    assert fsdd.info["recordings"] == {"train": 2400, "valid": 300, "test": 300}
    for split, per_digit in (("train", 240), ("valid", 30), ("test", 30)):
        assert np.bincount(fsdd.data[split]["digits"]).tolist() == [per_digit] * 10
    indices = {int(n.split("_")[2][:-4]) for n in fsdd.data["test"]["names"]}
    assert indices == set(range(5))
    assert {int(n.split("_")[2][:-4]) for n in fsdd.data["valid"]["names"]} == set(range(5, 10))


def test_batches_are_padded_feature_sequences(fsdd):
    batch = next(fsdd.batches("test", 16))
    assert fsdd.input.size == 40 and fsdd.output.size == 10
    assert batch.inputs.shape == (int(batch.lengths.max()), 16, 40)
    assert batch.targets.tolist() == fsdd.data["test"]["digits"][:16]
    for b in range(16):
        length = int(batch.lengths[b])
        assert torch.equal(batch.inputs[:length, b], fsdd.data["test"]["frames"][b])
        assert batch.inputs[length:, b].abs().sum() == 0
    train = torch.cat(fsdd.data["train"]["frames"])
    assert train.mean(0).abs().max() < 1e-3 and (train.std(0) - 1).abs().max() < 1e-3


def test_recordings_are_verified_by_manifest(wavs, tmp_path):
    audio.check_manifest(wavs, "archive")  # the real set passes
    changed = dict(wavs)
    changed["0_george_0.wav"] = changed["0_george_0.wav"][:-2] + b"\0\0"
    with pytest.raises(ChecksumError, match="manifest digest"):
        audio.check_manifest(changed, "tampered")
    for name, data in subset(wavs).items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ChecksumError, match="holds 50 FSDD recordings, expected 3000"):
        tasks.make("fsdd", path=tmp_path)
    few = tasks.make("fsdd", path=tmp_path, verify=False, features="spectrogram")
    assert few.info["recordings"] == {"train": 20, "valid": 10, "test": 20}
    assert few.input.size == 129


def test_download_from_a_local_archive_server(wavs, tmp_path, monkeypatch):
    import http.server
    import threading

    chosen = subset(wavs)
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        for name, data in {**chosen, "README.md": b"x"}.items():
            folder = "" if name.endswith(".md") else "recordings/"
            info = tarfile.TarInfo(f"free-spoken-digit-dataset-{audio.COMMIT}/{folder}{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    body = packed.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/archive.tar.gz"
        import dataclasses

        monkeypatch.setattr(
            audio, "FILES", [audio.FILES[0], dataclasses.replace(audio.FILES[1], url=url)]
        )
        monkeypatch.setattr(audio, "RECORDINGS", len(chosen))
        monkeypatch.setattr(audio, "MANIFEST_SHA256", audio.manifest_digest(chosen))
        monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path))
        task = tasks.make("fsdd")
        assert task.info["recordings"] == {"train": 20, "valid": 10, "test": 20}
        assert (tmp_path / "fsdd" / audio.FILES[1].name).is_file()
        monkeypatch.setattr(audio, "MANIFEST_SHA256", "0" * 64)
        (tmp_path / "fsdd" / audio.FILES[1].name).unlink()
        with pytest.raises(ChecksumError):
            tasks.make("fsdd")
        assert list((tmp_path / "fsdd").iterdir()) == []
    finally:
        server.shutdown()
        server.server_close()


def wav_bytes(x: np.ndarray, rate: int = 8000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return out.getvalue()


def test_tone_peaks_in_the_right_bin():
    t = np.arange(8000) / 8000
    x = audio.samples(wav_bytes(0.5 * np.sin(2 * math.pi * 1000 * t)), "tone")
    assert abs(float(x.abs().max()) - 0.5) < 1e-3
    spectrum = audio.frames(x, "spectrogram")  # (T, 129)
    assert spectrum.shape == (1 + (8000 - 256) // 80, 129)
    assert int(spectrum.mean(0).argmax()) == 32  # 1000 Hz / (8000 / 256) Hz per bin


def test_mel_filterbank_shape_and_order():
    bank = audio.mel_filterbank()
    assert bank.shape == (40, 129) and bank.min() >= 0 and bank.max() <= 1
    centres = bank.argmax(1)
    assert torch.all(centres[1:] >= centres[:-1]) and centres[-1] > 100


def test_wrong_sample_rate_is_clear():
    with pytest.raises(ValueError, match="16000 Hz, expected 8000"):
        audio.samples(wav_bytes(np.zeros(100), rate=16000), "x.wav")
    with pytest.raises(ValueError, match="not a readable PCM WAV"):
        audio.samples(b"RIFF....", "y.wav")


@pytest.mark.parametrize("features", ["logmel", "spectrogram"])
def test_batched_features_equal_one_signal_at_a_time(features):
    generator = torch.Generator().manual_seed(0)
    signals = [torch.randn(n, generator=generator) for n in (100, 256, 257, 1000, 4321, 800)]
    together = audio.frames_of(signals, features, chunk=4)
    for x, y in zip(signals, together, strict=True):
        alone = (
            torch.stft(
                x if x.numel() >= 256 else torch.nn.functional.pad(x, (0, 256 - x.numel())),
                n_fft=256,
                hop_length=80,
                win_length=200,
                window=torch.hann_window(200),
                center=False,
                return_complex=True,
            )
            .abs()
            .square()
        )
        if features == "logmel":
            alone = audio.mel_filterbank() @ alone
        assert torch.allclose(y, torch.log(alone + 1e-6).t(), atol=1e-4)
