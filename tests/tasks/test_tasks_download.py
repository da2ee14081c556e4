"""Finding and downloading data: checksums, truncation, atomic rename, search order.

Downloads are served by a local HTTP server on 127.0.0.1; the conftest refuses any other host.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading

import pytest

import rnnlab.tasks as tasks
from rnnlab.tasks import download, text
from rnnlab.tasks.download import Checksum, ChecksumError, DataFile, fetch, find


class Server:
    """Serves ``routes[path] = (body, announced_length)`` and counts requests."""

    def __init__(self):
        self.routes: dict[str, tuple[bytes, int]] = {}
        self.hits = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                server.hits += 1
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                body, announced = server.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(announced))
                self.end_headers()
                self.wfile.write(body)  # fewer bytes than announced = a truncated download
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def serve(self, path: str, body: bytes, announced: int | None = None) -> str:
        self.routes[path] = (body, len(body) if announced is None else announced)
        return self.url(path)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def running_server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def server(running_server):
    """The module's server with no routes and a zero hit count."""
    running_server.routes.clear()
    running_server.hits = 0
    return running_server


BODY = b"0123456789" * 1000
DIGEST = hashlib.sha256(BODY).hexdigest()


def spec_for(url: str, digest: str = DIGEST) -> DataFile:
    return DataFile("data.bin", "demo", Checksum(digest), url=url)


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_download_verifies_and_renames_into_the_cache(server, tmp_path):
    spec = spec_for(server.serve("/data.bin", BODY))
    path = fetch(spec, into=tmp_path)
    assert path == tmp_path / "demo" / "data.bin" and path.read_bytes() == BODY
    assert leftovers(tmp_path / "demo") == ["data.bin"]  # no temporary file left
    assert fetch(spec, into=tmp_path) == path and server.hits == 1  # reused, not re-fetched


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    spec = spec_for(server.serve("/data.bin", BODY), digest="0" * 64)
    with pytest.raises(ChecksumError, match="expected 0000"):
        fetch(spec, into=tmp_path)
    assert leftovers(tmp_path / "demo") == []


def test_truncated_download_leaves_nothing(server, tmp_path):
    spec = spec_for(server.serve("/data.bin", BODY[:500], announced=len(BODY)))
    with pytest.raises((ChecksumError, ConnectionError), match="truncated|failed"):
        fetch(spec, into=tmp_path)
    assert leftovers(tmp_path / "demo") == []


def test_unreachable_server_is_a_clear_error(server, tmp_path):
    spec = spec_for(server.url("/missing.bin"))
    with pytest.raises(ConnectionError, match="pass path="):
        fetch(spec, into=tmp_path)
    assert leftovers(tmp_path / "demo") == []


def test_corrupt_cached_file_is_reported(server, tmp_path):
    spec = spec_for(server.serve("/data.bin", BODY))
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "data.bin").write_bytes(b"not it")
    with pytest.raises(ChecksumError, match="Delete it"):
        fetch(spec, into=tmp_path)


def test_no_checksum_no_download(tmp_path):
    with pytest.raises(ValueError, match="no published checksum"):
        fetch(DataFile("x", "demo", url="http://127.0.0.1:9/x"), into=tmp_path)


def test_gunzip_checksum_verifies_decompressed_content(tmp_path):
    import gzip

    file = tmp_path / "a.gz"
    file.write_bytes(gzip.compress(BODY, mtime=123))
    Checksum(DIGEST, gunzip=True).check(file)
    file.write_bytes(gzip.compress(BODY, mtime=456)[:-20])  # truncated gzip
    with pytest.raises(ChecksumError, match="could not be read"):
        Checksum(DIGEST, gunzip=True).check(file)


def test_search_order_path_then_env_then_cache(tmp_path, monkeypatch):
    spec = DataFile("data.bin", "demo")
    for root in ("given", "env", "cache"):
        (tmp_path / root / "demo").mkdir(parents=True)
        (tmp_path / root / "demo" / "data.bin").write_text(root)
    monkeypatch.setenv("RNNLAB_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    assert find([spec], tmp_path / "given")[1].read_text() == "given"
    assert find([spec])[1].read_text() == "env"
    monkeypatch.delenv("RNNLAB_DATA")
    assert find([spec])[1].read_text() == "cache"


def test_missing_file_says_where_it_looked(tmp_path):
    spec = DataFile("data.bin", "demo", Checksum(DIGEST), url="http://127.0.0.1:9/data.bin")
    with pytest.raises(FileNotFoundError) as error:
        find([spec], tmp_path)
    message = str(error.value)
    assert str(tmp_path / "demo" / "data.bin") in message and "path=" in message


def test_found_file_is_verified(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"wrong")
    spec = DataFile("data.bin", "demo", Checksum(DIGEST))
    with pytest.raises(ChecksumError):
        find([spec], tmp_path)
    assert find([spec], tmp_path, verify=False)[1] == tmp_path / "data.bin"


def test_task_downloads_into_the_cache_once(server, need, tmp_path, monkeypatch):
    source = need("tinyshakespeare/input.txt")
    url = server.serve("/input.txt", source.read_bytes())
    monkeypatch.setattr(text, "SHAKESPEARE", dataclasses.replace(text.SHAKESPEARE, url=url))
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    task = tasks.make("tinyshakespeare")
    assert (tmp_path / "cache" / "tinyshakespeare" / "input.txt").is_file()
    assert task.info["chars"] == 1_115_394 and server.hits == 1
    tasks.make("tinyshakespeare")
    assert server.hits == 1  # the second make reads the verified cache


def test_task_download_with_bad_checksum_leaves_no_file(server, tmp_path, monkeypatch):
    url = server.serve("/input.txt", b"To be, or not to be" * 100)
    monkeypatch.setattr(text, "SHAKESPEARE", dataclasses.replace(text.SHAKESPEARE, url=url))
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ChecksumError):
        tasks.make("tinyshakespeare")
    assert leftovers(tmp_path / "cache") == ["tinyshakespeare"]  # just the empty folder


def test_download_false_does_not_download(server, tmp_path, monkeypatch):
    url = server.serve("/input.txt", b"x")
    monkeypatch.setattr(text, "SHAKESPEARE", dataclasses.replace(text.SHAKESPEARE, url=url))
    with pytest.raises(FileNotFoundError, match="download=True"):
        tasks.make("tinyshakespeare", download=False)
    assert server.hits == 0


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path / "c"))
    assert download.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("RNNLAB_CACHE")
    assert download.cache_dir().parts[-2:] == (".cache", "rnnlab")
