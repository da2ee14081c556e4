"""Finding data files on disk, or downloading them into a cache with a checksum check.

Where a dataset's files are looked for, in order:

1. ``path=`` given to the task: a file, or a folder holding the file directly or in the
   dataset's sub-folder (``<path>/<subdir>/<file>``, the layout of the shared data folder).
   When ``path`` is given nothing else is tried.
2. The folder named by the environment variable ``RNNLAB_DATA`` (same layout).
3. The cache, ``$RNNLAB_CACHE`` or ``~/.cache/rnnlab`` (``<cache>/<subdir>/<file>``).
4. A download into the cache, if the task allows it (``download=True``) and the file has a
   published URL and a checksum.

A download goes to a temporary file in the cache folder; it is checked (length against the
server's ``Content-Length``, then the checksum) and only then renamed into place, so a failed,
truncated or tampered download never leaves a file that looks complete. A file that is found
is checked against its known checksum too, when it has one (``verify=False`` skips this, e.g. for
a copy you changed on purpose).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A file's content does not match its published checksum."""


@dataclass(frozen=True)
class Checksum:
    """An expected digest: ``algorithm`` is a hashlib name (``"sha256"``, ``"md5"``).

    ``gunzip=True`` means the digest is of the gzip file's decompressed content, so that a
    re-compressed copy (different gzip header) still verifies.
    """

    digest: str
    algorithm: str = "sha256"
    gunzip: bool = False

    def compute(self, path: Path) -> str:
        h = hashlib.new(self.algorithm)
        opener = gzip.open if self.gunzip else open
        try:
            with opener(path, "rb") as f:
                while block := f.read(CHUNK):
                    h.update(block)
        except (OSError, EOFError) as error:  # truncated or corrupt gzip
            raise ChecksumError(f"{path} could not be read in full: {error}") from error
        return h.hexdigest()

    def check(self, path: Path) -> None:
        got = self.compute(path)
        if got != self.digest:
            what = "decompressed content" if self.gunzip else "file"
            raise ChecksumError(
                f"{self.algorithm} of the {what} {path} is {got}, expected {self.digest}: the "
                "file is corrupt, truncated or a different version. Delete it and fetch it "
                "again, or pass verify=False to use it anyway."
            )


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset.

    Attributes:
        name: the file name on disk (``"input.txt"``).
        subdir: the dataset's folder in a data root or the cache (``"tinyshakespeare"``).
        checksum: the expected digest of the file, or ``None`` when no published one is known.
        url: where to download it from (``None``: no download; the user must supply the file).
        check: an extra content check ``check(path)`` that raises on a mismatch (used for
            archives whose own digest is not published but whose members' digests are).
    """

    name: str
    subdir: str
    checksum: Checksum | None = None
    url: str | None = None
    check: Callable[[Path], None] | None = None

    def verify(self, path: Path) -> None:
        if self.checksum is not None:
            self.checksum.check(path)
        if self.check is not None:
            self.check(path)


def cache_dir() -> Path:
    """The download cache: ``$RNNLAB_CACHE`` if set, else ``$XDG_CACHE_HOME/rnnlab`` or
    ``~/.cache/rnnlab`` (``rnnlab.engine.settings.cache_root``, where it is read)."""
    from ..engine.settings import cache_root

    return cache_root()


def data_dir() -> Path | None:
    """The data root named by ``$RNNLAB_DATA``, or ``None``."""
    value = os.environ.get("RNNLAB_DATA")
    return Path(value).expanduser() if value else None


def _candidates(root: Path, subdir: str, name: str) -> list[Path]:
    return [root / subdir / name, root / name]


def find(
    files: Sequence[DataFile],
    path: str | os.PathLike | None = None,
    *,
    download: bool = True,
    verify: bool = True,
) -> tuple[DataFile, Path]:
    """Find the first available of ``files`` (alternatives, best first); download if needed.

    Returns the matching :class:`DataFile` and its path. ``path`` may be a folder or a file; a
    file with none of the expected names is returned as an unchecked ``DataFile`` of its own
    name, and the caller reads it by its suffix.
    Raises FileNotFoundError saying where it looked and what to do.
    """
    if not files:
        raise ValueError("find() needs at least one DataFile")
    looked: list[Path] = []
    if path is not None:
        given = Path(path).expanduser()
        if given.is_file():
            spec = next((f for f in files if f.name == given.name), None)
            if spec is None:  # a renamed or other copy: no known checksum; read by its suffix
                spec = DataFile(given.name, files[0].subdir)
            if verify:
                spec.verify(given)
            return spec, given
        roots = [given]
    else:
        roots = [r for r in (data_dir(), cache_dir()) if r is not None]
    for spec in files:
        for root in roots:
            for candidate in _candidates(root, spec.subdir, spec.name):
                looked.append(candidate)
                if candidate.is_file():
                    if verify:
                        spec.verify(candidate)
                    return spec, candidate
    if path is None and download:
        for spec in files:
            if spec.url is not None and (spec.checksum is not None or spec.check is not None):
                return spec, fetch(spec)
    where = "\n  ".join(str(p) for p in looked)
    urls = [f.url for f in files if f.url]
    hint = (
        f"download it from {urls[0]} and put it in one of those places, or "
        if urls
        else "obtain it and "
    )
    raise FileNotFoundError(
        f"no data file found for {files[0].subdir!r}; looked for:\n  {where}\n"
        f"To fix: {hint}pass path=<file or folder> (or set RNNLAB_DATA=<data root>)"
        + ("" if path is not None or download else "; or allow download=True")
        + "."
    )


def fetch(spec: DataFile, *, into: Path | None = None, timeout: float = 60.0) -> Path:
    """Download ``spec.url`` to ``<cache>/<subdir>/<name>`` unless a verified copy is there.

    The download is written to a temporary file next to the target, its length is compared
    with the server's ``Content-Length``, its checksum is verified, and only then it is renamed
    into place. On any failure the temporary file is removed and the error says why.
    """
    if spec.url is None:
        raise ValueError(f"{spec.name} has no download URL; supply the file with path=")
    if spec.checksum is None and spec.check is None:
        raise ValueError(
            f"{spec.name} has no published checksum, so rnnlab will not download it unchecked; "
            "download it yourself and pass path=<file>"
        )
    folder = (into or cache_dir()) / spec.subdir
    target = folder / spec.name
    if target.is_file():
        spec.verify(target)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{spec.name}.", suffix=".part", dir=folder)
    temporary = Path(temporary)
    try:
        with os.fdopen(handle, "wb") as out:
            _download(spec.url, out, timeout)
        spec.verify(temporary)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def _download(url: str, out, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "rnnlab"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            expected = response.headers.get("Content-Length")
            received = 0
            while block := response.read(CHUNK):
                out.write(block)
                received += len(block)
    except (urllib.error.URLError, OSError) as error:
        raise ConnectionError(
            f"downloading {url} failed: {error}. Check the network, or download the file "
            "yourself and pass path=<file or folder>."
        ) from error
    if expected is not None and received != int(expected):
        raise ChecksumError(
            f"download of {url} is truncated: got {received} bytes, the server announced "
            f"{expected}. Try again."
        )
