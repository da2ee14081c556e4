"""Fixtures for the task tests: the shared data folder (or a clean skip) and built tasks."""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import rnnlab.tasks as tasks

REPO = Path(__file__).resolve().parents[2]
ENV_DATA = os.environ.get("RNNLAB_DATA")  # read before the autouse fixture hides it


def shared_data_dir() -> Path | None:
    """``$RNNLAB_DATA``, else ``../shared/data`` beside the repository, else None."""
    for candidate in (ENV_DATA, REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip(
            "shared data folder not found (set RNNLAB_DATA or place shared/data beside "
            "the repository)"
        )
    return found


@pytest.fixture(scope="session")
def need(data_dir):
    """``need("ptb/ptb.zip")``: that shared data file's path, or skip the test cleanly."""

    def path_of(relative: str) -> Path:
        path = data_dir / relative
        if not path.exists():
            pytest.skip(f"{relative} is missing from the shared data folder {data_dir}")
        return path

    return path_of


_BUILT: dict[tuple, tasks.Task] = {}


@pytest.fixture(scope="session")
def build():
    """``build(name, **options)``: make a task once per session (loading data is slow)."""

    def make(name, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in _BUILT:
            _BUILT[key] = tasks.make(name, **options)
        return _BUILT[key]

    return make


@pytest.fixture(autouse=True)
def no_network(tmp_path_factory, monkeypatch):
    """Tests never touch the network or the user's cache: the cache is an empty folder,
    $RNNLAB_DATA is hidden (tests pass path= explicitly) and urlopen refuses any host but
    127.0.0.1."""
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("RNNLAB_DATA", raising=False)
    real_urlopen = urllib.request.urlopen

    def local_only(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        host = urllib.parse.urlsplit(url).hostname
        if host != "127.0.0.1":
            raise AssertionError(f"a test tried to reach the network: {url}")
        return real_urlopen(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)
