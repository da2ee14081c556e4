"""``rnnlab translate`` and ``rnnlab transcribe`` on real runs (tiny budgets), and the decoding
commands' refusal of a run of another kind."""

from __future__ import annotations

import json
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


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "text"
    assert main(["train", "--task=text", "--task.chars=20000", "--task.seq_len=8",
                 "--task.batch_size=4", "--task.eval_batch_size=64", "--task.eval_max_batches=1",
                 f"--run.dir={run}", *TINY]) == 0
    return run


@pytest.fixture(scope="module")
def ctc_run(tmp_path_factory):
    if not (FSDD / "recordings.tar.xz").exists():
        pytest.skip("FSDD data not present")
    run = tmp_path_factory.mktemp("runs") / "ctc"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNNLAB_DATA", str(FSDD.parent))
        assert main(["train", "--task=digits_ctc", "--model.bidirectional=true",
                     "--task.valid_size=4", "--task.test_size=4", "--task.batch_size=4",
                     f"--run.dir={run}", *TINY]) == 0
    return run


def tone_wav(path: Path, rate: int = 22050) -> Path:
    """One second of a 300 Hz tone as a 16-bit PCM WAV file."""
    import wave

    import numpy as np

    tone = 0.3 * np.sin(2 * np.pi * 300 * np.arange(rate) / rate)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((tone * 32767).astype(np.int16).tobytes())
    return path


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


def test_translate_normalises_case_and_refuses_only_the_sources_it_cannot_read(
    numbers_run, capsys
):
    assert main(["translate", str(numbers_run), "forty-two", "seven"]) == 0
    expected = capsys.readouterr().out.splitlines()
    assert main(["translate", str(numbers_run), "Forty-Two", "dreißig", "  SEVEN "]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [expected[0], "", expected[1]]
    err = captured.err.strip()
    assert "\n" not in err and "'dreißig' uses characters the model never saw: ['ß']" in err
    assert "not translated" in err


def test_translate_says_when_a_number_lies_outside_the_training_range(numbers_run, capsys):
    assert main(["translate", str(numbers_run), "one million", "forty-two"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2
    err = captured.err.strip()
    assert "\n" not in err and err.startswith("rnnlab translate: note: 'one million' is none of "
                                              "the numbers the model was trained on (en "
                                              "cardinals 0–9,999")


@pytest.mark.parametrize("command, run, message", [
    ("translate", "text_run", "holds a language model (task 'text'); translate needs a "
     "translation model (task numbers, parallel); `rnnlab sample` reads this run"),
    ("sample", "numbers_run", "holds a translation model (task 'numbers'); sample needs a "
     "language model (task "),
    ("transcribe", "numbers_run", "holds a translation model (task 'numbers'); transcribe "
     "needs a speech model (task digits_ctc); `rnnlab translate` reads this run"),
])
def test_decoding_commands_refuse_a_run_of_another_kind(command, run, message, request,
                                                        tmp_path, capsys):
    run_dir = str(request.getfixturevalue(run))
    capsys.readouterr()  # what training the run printed
    wav = str(tone_wav(tmp_path / "x.wav"))
    inputs = {"translate": ["forty-two"], "sample": [], "transcribe": [wav]}
    assert main([command, run_dir, *inputs[command]]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and "\n" not in err and message in err


def test_transcribe_a_synthesised_recording(ctc_run, tmp_path, capsys):
    wav = tmp_path / "digits.wav"
    if shutil.which("espeak-ng"):  # never heard in training: a synthetic voice
        subprocess.run(["espeak-ng", "-w", str(wav), "four zero seven"], check=True)
    else:  # no speech synthesiser here (.ci/run installs espeak-ng): a 22.05 kHz tone
        tone_wav(wav)
    assert main(["transcribe", str(ctc_run), str(wav)]) == 0
    heard = capsys.readouterr().out.strip()
    assert all(part in "0123456789" for part in heard.split())  # digits, or nothing, heard
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    assert main(["transcribe", str(ctc_run), str(tmp_path / "bad.wav")]) == 1
    err = capsys.readouterr().err.strip()
    assert "not a readable PCM WAV file" in err and "\n" not in err


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """No FSDD anywhere: $RNNLAB_DATA and the cache are empty folders, and any download
    fails the test."""
    import urllib.request

    def refuse(request, *args, **kwargs):
        raise AssertionError(f"tried to download {getattr(request, 'full_url', request)}")

    monkeypatch.setenv("RNNLAB_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "no-cache"))
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_transcribe_needs_only_the_run_directory(ctc_run, tmp_path, no_data, capsys):
    wav = tone_wav(tmp_path / "tone.wav", rate=8000)
    assert main(["transcribe", str(ctc_run), str(wav)]) == 0
    assert all(part in "0123456789" for part in capsys.readouterr().out.split())


def test_transcribe_with_a_run_made_before_runs_kept_the_feature_statistics(
    ctc_run, tmp_path, no_data, monkeypatch, capsys
):
    old = tmp_path / "old"
    shutil.copytree(ctc_run, old)
    info = json.loads((old / "task.json").read_text())
    del info["features"]
    (old / "task.json").write_text(json.dumps(info))
    wav = tone_wav(tmp_path / "tone.wav", rate=8000)
    assert main(["transcribe", str(old), str(wav)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{old / 'task.json'} holds no feature statistics" in err
    assert "set RNNLAB_DATA to the folder holding fsdd/, or train the run again" in err
    monkeypatch.setenv("RNNLAB_DATA", str(FSDD.parent))  # with the data: as before
    assert main(["transcribe", str(old), str(wav)]) == 0
    assert main(["transcribe", str(ctc_run), str(wav)]) == 0
    fresh, again = capsys.readouterr().out.splitlines()
    assert fresh == again  # the kept statistics are the data's
