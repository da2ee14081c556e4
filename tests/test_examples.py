"""Every script in examples/ runs: each is executed as ``python examples/NAME.py`` would run
it, at a couple of training steps (its own --steps option), on the data it finds (the shared
data folder where the machine has one, else the fallback each script describes)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))
TINY = {  # a couple of steps of a small network: the script's path end to end, not a result
    "grid_image.py": ["--steps", "2", "--hidden-size", "8"],
    "grid_sequence.py": ["--steps", "2", "--hidden-size", "8", "--num-layers", "2"],
    "grid_spectrogram.py": ["--steps", "2", "--hidden-size", "8"],
    "train_char_lm.py": ["--steps", "2", "--cell", "gru"],
}


def test_every_example_has_a_tiny_setting():
    assert {path.name for path in EXAMPLES} == set(TINY)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_example_runs(path, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", [str(path), *TINY[path.name], "--run-dir", str(run_dir)])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    assert f"run directory: {run_dir}" in out
    assert (run_dir / "summary.json").is_file() and (run_dir / "config.json").is_file()
