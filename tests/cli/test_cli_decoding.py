"""``rnnlab translate`` and ``rnnlab transcribe`` on real runs (tiny budgets)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from rnnlab.cli.main import main

REPO = Path(__file__).resolve().parents[2]
FSDD = Path(os.environ.get("RNNLAB_DATA") or REPO.parent / "shared" / "data") / "fsdd"
TINY = ["--model.hidden_size=8", "--train.max_steps=2", "--train.eval_every=2", "--run.quiet",
        "--run.plots=false"]


@pytest.fixture(scope="module")
def numbers_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "numbers"
    assert main(["train", "--task=numbers", "--model.body=seq2seq", "--task.valid_size=8",
                 "--task.test_size=8", f"--run.dir={run}", *TINY]) == 0
    return run


def test_translate_prints_one_line_per_source(numbers_run, capsys):
    assert main(["translate", str(numbers_run), "three hundred and twelve", "forty-two"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert main(["translate", str(numbers_run), "seven", "--beam", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_translate_evaluate_reports_exact_match_and_bleu(numbers_run, capsys):
    assert main(["translate", str(numbers_run), "--evaluate", "test"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("test: exact match ") and "BLEU" in out and "over 8 examples" in out


@pytest.mark.parametrize("argv, message", [
    ([], "give either SOURCE text to translate or --evaluate SPLIT"),
    (["x", "--evaluate", "test"], "give either SOURCE text to translate or --evaluate SPLIT"),
    (["x", "--beam", "0"], "--beam must be >= 1"),
])
def test_translate_usage_errors_are_one_line(numbers_run, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:  # argparse's way, as for every subcommand
        main(["translate", str(numbers_run), *argv])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_translate_refuses_unknown_characters(numbers_run, capsys):
    assert main(["translate", str(numbers_run), "dreißig"]) == 1
    err = capsys.readouterr().err.strip()
    assert "characters the model never saw" in err and "\n" not in err


@pytest.mark.skipif(not (FSDD / "recordings.tar.xz").exists(), reason="FSDD data not present")
def test_transcribe_a_synthesised_recording(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RNNLAB_DATA", str(FSDD.parent))
    run = tmp_path / "ctc"
    assert main(["train", "--task=digits_ctc", "--model.bidirectional=true",
                 "--task.valid_size=4", "--task.test_size=4", "--task.batch_size=4",
                 f"--run.dir={run}", *TINY]) == 0
    capsys.readouterr()
    wav = tmp_path / "digits.wav"
    if shutil.which("espeak-ng"):  # never heard in training: a synthetic voice
        subprocess.run(["espeak-ng", "-w", str(wav), "four zero seven"], check=True)
    else:  # no speech synthesiser here (.ci/run installs espeak-ng): a 22.05 kHz tone
        import wave

        import numpy as np

        tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(22050) / 22050)
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(22050)
            w.writeframes((tone * 32767).astype(np.int16).tobytes())
    assert main(["transcribe", str(run), str(wav)]) == 0
    heard = capsys.readouterr().out.strip()
    assert all(part in "0123456789" for part in heard.split())  # digits, or nothing, heard
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    assert main(["transcribe", str(run), str(tmp_path / "bad.wav")]) == 1
    err = capsys.readouterr().err.strip()
    assert "not a readable PCM WAV file" in err and "\n" not in err
