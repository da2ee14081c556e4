"""Fixtures shared by every test folder: a real PostgreSQL server for the storage tests."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile

import pytest
import torch


def _postgres_bindir() -> str | None:
    """The folder of initdb/pg_ctl: pg_config's answer, else Debian's newest version."""
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        bindir = found.stdout.strip()
        if found.returncode == 0 and os.path.exists(os.path.join(bindir, "initdb")):
            return bindir
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(p.split("/")[-3]))
    return os.path.dirname(candidates[-1]) if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url():
    """``postgresql+psycopg://rnnlab@127.0.0.1:PORT/rnnlab`` on a server started for the session.

    The server runs from a temporary data directory on a loopback port with trust
    authentication. initdb and pg_ctl refuse to run as root, so as root they run as the
    ``postgres`` user (Debian's package creates it). Skipped, with the reason, only when no
    server binaries exist (install Debian's ``postgresql``) or the server cannot start.
    """
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'psycopg[binary]'")
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb): apt-get install -y postgresql")
    root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if root else []
    base = tempfile.mkdtemp(prefix="rnnlab-pg-")
    if root:
        shutil.chown(base, "postgres")
    data, log, port = os.path.join(base, "data"), os.path.join(base, "server.log"), _free_port()

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)

    init = run(os.path.join(bindir, "initdb"), "-D", data, "-U", "rnnlab", "--auth=trust",
               "-E", "UTF8", "--no-sync")
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = init.returncode == 0 and run(
        os.path.join(bindir, "pg_ctl"), "-D", data, "-o", options, "-l", log, "-w", "start"
    )
    if not start or start.returncode != 0:
        detail = (init.stderr or "") + (start.stderr if start else "")
        if os.path.exists(log):
            detail += open(log).read()
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip("PostgreSQL server could not start: " + " ".join(detail.split())[-300:])
    try:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=rnnlab dbname=postgres",
                             autocommit=True) as connection:
            connection.execute("CREATE DATABASE rnnlab")
        yield f"postgresql+psycopg://rnnlab@127.0.0.1:{port}/rnnlab"
    finally:
        run(os.path.join(bindir, "pg_ctl"), "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def one_step_at_a_time():
    """``run(module, xs, state=None)``: a time-major sequence fed to a recurrent module one step
    at a time, each call carrying the state of the one before: (the outputs concatenated, the
    final state), as sampling and streaming call a network."""
    def run(module, xs, state=None):
        outs = []
        for t in range(xs.shape[0]):
            out, state = module(xs[t:t + 1], state)
            outs.append(out)
        return torch.cat(outs), state

    return run


@pytest.fixture
def counted(monkeypatch):
    """``counted(owner, name)``: the list that gets one entry per call of ``owner.name`` from
    now on (the function still runs)."""
    def count(owner, name):
        calls = []
        real = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, **k: calls.append(1) or real(*a, **k))
        return calls

    return count
