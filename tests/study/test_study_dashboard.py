"""`rnnlab study dashboard` serves the study's storage over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from study_helpers import tiny_args

from rnnlab.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read()


def test_dashboard_serves_the_page_and_the_trials(tmp_path):
    pytest.importorskip("optuna_dashboard", reason="pip install 'rnnlab[dashboard]'")
    assert main(["study", "run", *tiny_args(), "--cells", "cifg", "--trials", "2",
                 "--workers", "1", "--dir", str(tmp_path), "--no-report", "--quiet"]) == 0
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "rnnlab", "study", "dashboard", "--dir", str(tmp_path),
         "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, studies = time.time() + 60, None
        while time.time() < deadline and studies is None:
            try:
                status, body = _get(f"{base}/api/studies")
                studies = json.loads(body)["study_summaries"]
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.3)
        assert studies is not None, "the dashboard never answered"
        assert [s["study_name"] for s in studies] == ["greff.memorize.cifg"]
        status, page = _get(f"{base}/dashboard")
        assert status == 200 and b"<html" in page.lower()
        status, body = _get(f"{base}/api/studies/{studies[0]['study_id']}")
        detail = json.loads(body)
        # the dashboard labels the value with the objective's name, not "Objective 0", and
        # shows what the study is
        assert detail["objective_names"] == ["valid accuracy"]
        study_attrs = {a["key"]: a["value"] for a in detail["user_attrs"]}
        assert study_attrs["task"] == "memorize" and study_attrs["cell"] == "cifg"
        assert "coupled input and forget gate" in study_attrs["variant"]
        trials = detail["trials"]
        assert len(trials) == 2 and all(t["state"] == "Complete" for t in trials)
        attrs = {a["key"] for a in trials[0]["user_attrs"]}
        assert {"valid", "test", "parameters", "epochs", "wall_seconds"} <= attrs
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_without_optuna_dashboard_it_says_how_to_install_before_claiming_to_serve(
    tmp_path, capsys, monkeypatch
):
    assert main(["study", "run", *tiny_args(), "--cells", "cifg", "--trials", "0",
                 "--workers", "1", "--dir", str(tmp_path), "--no-report", "--quiet"]) == 0
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # import fails as if missing
    capsys.readouterr()
    assert main(["study", "dashboard", "--dir", str(tmp_path), "--port", str(_free_port())]) == 1
    out, err = capsys.readouterr()
    assert "serving" not in out and "Ctrl-C" not in out, out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "pip install -e '.[dashboard]'" in lines[0], err
