"""Fixtures for the reproduction tests: the shared data folder, or a clean skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    for candidate in (os.environ.get("RNNLAB_DATA"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture
def data_env(monkeypatch):
    """Point RNNLAB_DATA at the shared data (skip without it); no downloads are attempted."""
    found = shared_data_dir()
    if found is None:
        pytest.skip("shared data folder not found (set RNNLAB_DATA)")
    monkeypatch.setenv("RNNLAB_DATA", str(found))
    return found
