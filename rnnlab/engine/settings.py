"""The engine's switches: one settings object, read at call time, and every ``RNNLAB_*`` variable.

``current()`` is what the engine reads on every call: the environment as it is now, under any
``backend(...)`` block that is open. Nothing is read at import, so setting a variable (in a test,
in a notebook) takes effect on the next call. A module's ``forward`` (``rnnlab.RNN``, the Grid
LSTM scans) reads the environment once for all its layers (``held``).

Every environment variable rnnlab reads:

========================== ============ =========================================================
variable                   default      meaning
========================== ============ =========================================================
RNNLAB_FAST                ``auto``     the executor: ``auto`` (native C++ on CPU where it builds,
                                        else the generated torch loop; a small single step runs
                                        the plan's step), ``native``, ``python`` (the generated
                                        torch loop), ``reference``/``0`` (the plan stepped with
                                        torch ops under autograd), ``cudnn`` (as ``auto``, and
                                        every ``rnnlab.RNN`` of a cell cuDNN computes runs whole
                                        in torch's RNN function, on the CPU too: ``auto`` does
                                        that off the CPU only); see ``rnnlab.engine.route``
RNNLAB_OWN_HOIST           ``1``        ``0`` leaves the input projection (the hoist) to autograd
                                        instead of the fused engine
RNNLAB_WORKSPACE_MB        ``512``      bytes of internal buffers the fused engine keeps for reuse
RNNLAB_CUDA_GRAPHS         ``0``        ``1``: on CUDA the generated Triton route's step loops are
                                        captured in a CUDA graph per buffer layout and replayed
                                        (off by default until measured on a device; see
                                        ``rnnlab.engine.triton_step``)
RNNLAB_NATIVE_PACK         ``auto``     the native loop's GEMMs: ``auto`` measures, once per
                                        machine and shape, whether MKL's packed weights or plain
                                        ``sgemm`` is faster (cached beside the native build);
                                        ``1`` always packed, ``0`` never
RNNLAB_NATIVE_SPLIT_BYTES  ``2097152``  native loop: recurrent weights up to this size split the
                                        batch over threads (each runs the whole loop on its rows)
RNNLAB_NATIVE_PARALLEL_WORK ``65536``   native loop: elements from which a stage's rows are split
                                        over threads when every step is shared
RNNLAB_CACHE               see below    the cache folder: ``$RNNLAB_CACHE``, else
                                        ``$XDG_CACHE_HOME/rnnlab``, else ``~/.cache/rnnlab``;
                                        downloads go to ``<cache>/<dataset>/``, the native build to
                                        ``<cache>/native/`` (``cache_root()``)
RNNLAB_DATA                unset        a data root searched before the cache
                                        (``<root>/<dataset>/``)
RNNLAB_DEBUG               unset        any value: the command line shows tracebacks of errors
========================== ============ =========================================================

In code, ``rnnlab.engine.backend("python")`` switches the executor for a block (the same names as
``RNNLAB_FAST``); ``backend(own_hoist=False)`` the hoist, ``backend(cuda_graphs=True)`` the CUDA
graphs, ``backend(native_pack=False)`` the native loop's GEMMs.
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

BACKENDS = ("auto", "native", "python", "reference", "cudnn")
_ALIASES = {"0": "reference", "off": "reference", "false": "reference", "1": "auto",
            "on": "auto", "true": "auto", "": "auto"}


@dataclass(frozen=True)
class Settings:
    """What the engine runs with (see the module docstring for each switch)."""

    backend: str = "auto"  # one of BACKENDS
    own_hoist: bool = True  # the fused engine computes x W + b itself
    workspace_bytes: int = 512 << 20  # internal buffers kept for reuse
    cuda_graphs: bool = False  # the Triton route's step loops replayed from CUDA graphs
    native_pack: str = "auto"  # the native loop's GEMMs: "auto" (measured), "1" packed, "0" not
    native_split_bytes: int = 2 << 20  # recurrent weights up to this size: threads split the batch
    native_parallel_work: int = 1 << 16  # shared steps: elements from which rows are split


def backend_name(value: str, source: str = "backend") -> str:
    """A backend name or alias (``0``, ``off``, ``1``…) -> one of ``BACKENDS``."""
    name = str(value).strip().lower()
    name = _ALIASES.get(name, name)
    if name not in BACKENDS:
        raise ValueError(f"{source} must be one of {BACKENDS} (or 0/1), got {value!r}")
    return name


_parsed: dict[tuple, Settings] = {}  # raw environment values -> their Settings


def from_environment() -> Settings:
    """The settings the environment gives now (parsed once per distinct set of values)."""
    raw = (os.environ.get("RNNLAB_FAST", "auto"), os.environ.get("RNNLAB_OWN_HOIST", "1"),
           os.environ.get("RNNLAB_WORKSPACE_MB", "512"), os.environ.get("RNNLAB_CUDA_GRAPHS", "0"),
           os.environ.get("RNNLAB_NATIVE_PACK", "auto"),
           os.environ.get("RNNLAB_NATIVE_SPLIT_BYTES", str(2 << 20)),
           os.environ.get("RNNLAB_NATIVE_PARALLEL_WORK", str(1 << 16)))
    found = _parsed.get(raw)
    if found is None:
        try:
            workspace = int(raw[2]) << 20
        except ValueError:
            raise ValueError(f"RNNLAB_WORKSPACE_MB must be a whole number of megabytes, got "
                             f"{raw[2]!r}") from None
        graphs = raw[3].strip().lower()
        if graphs not in ("0", "1", "", "off", "on", "false", "true"):
            raise ValueError(f"RNNLAB_CUDA_GRAPHS must be 0 or 1, got {raw[3]!r}")
        pack = raw[4].strip().lower()
        pack = {"on": "1", "true": "1", "off": "0", "false": "0", "": "auto"}.get(pack, pack)
        if pack not in ("auto", "0", "1"):
            raise ValueError(f"RNNLAB_NATIVE_PACK must be auto, 0 or 1, got {raw[4]!r}")
        sizes = []
        for name, value in zip(("RNNLAB_NATIVE_SPLIT_BYTES", "RNNLAB_NATIVE_PARALLEL_WORK"),
                               raw[5:]):
            try:
                sizes.append(int(value))
            except ValueError:
                raise ValueError(f"{name} must be a whole number, got {value!r}") from None
        found = Settings(backend_name(raw[0], "RNNLAB_FAST"), raw[1] != "0", workspace,
                         graphs in ("1", "on", "true"), pack, *sizes)
        _parsed[raw] = found
    return found


_chosen: dict = {}  # fields chosen in code (set_backend, open backend(...) blocks)
# the environment's settings held for one top-level call (``hold``), else None: a plain module
# variable, not a ContextVar, which torch.compile cannot trace (every thread would read the
# same environment anyway)
_held: Settings | None = None


def current() -> Settings:
    """The settings in force for this call: the environment, then what code chose
    (``set_backend``, open ``backend(...)`` blocks)."""
    settings = _held or from_environment()
    return replace(settings, **_chosen) if _chosen else settings


def hold() -> bool:
    """Read the environment once for a whole top-level call (a module's ``forward``), whose
    layers and routes then reuse it: seven variables read at every layer cost about 7% of a
    3-layer single step. What code chooses (``backend(...)``) still applies at once. Returns
    whether this call took the hold (pass it to ``release``); nested calls find it taken."""
    global _held
    if _held is not None:
        return False
    _held = from_environment()
    return True


def release(taken: bool) -> None:
    """End what ``hold`` began (when it took the hold)."""
    global _held
    if taken:
        _held = None


def held(method):
    """A module's ``forward`` with the environment read once for the whole call (``hold``);
    under torch.compile the trace reads it as it goes."""
    import torch  # once, where a module decorates its forward (torch is loaded by then)

    is_compiling = torch.compiler.is_compiling

    @functools.wraps(method)
    def call(*args, **kwargs):
        if is_compiling():
            return method(*args, **kwargs)
        taken = hold()
        try:
            return method(*args, **kwargs)
        finally:
            release(taken)
    return call


def get_backend() -> str:
    """The executor choice in force: "auto", "native", "python", "reference" or "cudnn"."""
    return current().backend


def set_backend(name: str) -> None:
    """Choose the executor for every later call, over ``RNNLAB_FAST`` (until the end of an
    enclosing ``backend(...)`` block, which restores what it found)."""
    _chosen["backend"] = backend_name(name)


@contextmanager
def backend(name: str | None = None, *, own_hoist: bool | None = None,
            cuda_graphs: bool | None = None, native_pack: str | bool | None = None):
    """Run a block with another executor (and/or hoist, CUDA graphs), then restore what was in
    force.

    Args:
        name: ``"auto"``, ``"native"``, ``"python"``, ``"reference"``, ``"cudnn"`` (or
            ``0``/``1``), as ``RNNLAB_FAST``; None keeps the executor.
        own_hoist: False leaves the input projection to autograd (as ``RNNLAB_OWN_HOIST=0``).
        cuda_graphs: True replays the Triton route's step loops from CUDA graphs (as
            ``RNNLAB_CUDA_GRAPHS=1``).
        native_pack: the native loop's GEMMs, as ``RNNLAB_NATIVE_PACK``: ``"auto"`` (the
            faster of packed and plain, measured per machine and shape), True/``"1"`` packed,
            False/``"0"`` plain.

    The choice holds for the whole process while the block is open (as ``set_backend``).

    Example::

        >>> with rnnlab.engine.backend("reference"):
        ...     output, state = rnn(x)          # the plan stepped with torch ops
    """
    before = dict(_chosen)
    if name is not None:
        _chosen["backend"] = backend_name(name)
    if own_hoist is not None:
        _chosen["own_hoist"] = bool(own_hoist)
    if cuda_graphs is not None:
        _chosen["cuda_graphs"] = bool(cuda_graphs)
    if native_pack is not None:
        pack = {True: "1", False: "0"}.get(native_pack, str(native_pack))
        if pack not in ("auto", "0", "1"):
            raise ValueError(f"native_pack must be 'auto', True or False, got {native_pack!r}")
        _chosen["native_pack"] = pack
    try:
        yield
    finally:
        _chosen.clear()
        _chosen.update(before)


def cache_root() -> Path:
    """The cache folder: ``$RNNLAB_CACHE``, else ``$XDG_CACHE_HOME/rnnlab``, else
    ``~/.cache/rnnlab`` (the one place ``RNNLAB_CACHE`` is read)."""
    root = os.environ.get("RNNLAB_CACHE")
    if root:
        return Path(root).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "rnnlab"
