"""The native executor: build the C++ loop once per machine, load it, run plans with it.

The library (``vm_source.SOURCE``) does not depend on torch's C++ headers: it is one plain C++
file compiled in about two seconds with the system compiler (``$CXX``, else ``c++``/``g++``/
``clang++``) and called through ctypes, which releases the GIL for the whole loop. GEMMs go to
the BLAS that torch itself uses (MKL's ``sgemm_``/``dgemm_`` and its packed-GEMM API, found in
torch's own shared libraries).

The build is cached in ``<cache>/native/`` (``rnnlab.engine.settings.cache_root``) under a hash
of the source, the compiler and the CPU, written atomically so that concurrent processes can
share it. When anything is missing (no compiler, no BLAS symbol, a failed build)
``NativeLoops.create`` returns None, ``why_unavailable`` says why, and the engine runs the same
plan with torch ops.

Which GEMM is faster, MKL's packed weights (packed once per sequence) or plain ``sgemm``,
depends on the CPU and the shape (``benchmarks/gemm_choice.py`` prints both per shape). With
``RNNLAB_NATIVE_PACK=auto`` (the default) each loop's GEMM shapes are timed both ways the first
time they occur on this machine (``gemm_times``; a few milliseconds), and the answer is kept in
a file beside the build; ``1`` always packs, ``0`` never.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from ...atomic import write_text_atomic
from ..settings import cache_root, current
from .plan import FILL, GemmI, Op, Plan, Refill
from .vm_source import ABI_VERSION, GEMM, REFILL, SOURCE

FIELDS = 16
FLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-fno-math-errno",
         "-fno-trapping-math", "-std=c++17", "-shared", "-fPIC"]
# flags for this CPU only (512-bit vectors where it has them: 2-7% faster LSTM inference than
# the compiler's default of 256 measured on AVX-512): a second build attempt goes without them
_NATIVE_ONLY = ("-march=native", "-mprefer-vector-width=512")
OPENMP = ["-fopenmp"]  # used when torch runs on libgomp, so that both share one thread pool
_BLAS_SYMBOLS = ("sgemm_", "dgemm_", "cblas_sgemm_pack_get_size", "cblas_sgemm_pack",
                 "cblas_sgemm_compute", "cblas_dgemm_pack_get_size", "cblas_dgemm_pack",
                 "cblas_dgemm_compute")

_state: dict = {}  # "lib", "blas", "error", "openmp" once tried


def cache_dir() -> Path:
    return cache_root() / "native"


def compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() + platform.machine()


def torch_uses_libgomp() -> bool:
    """Whether torch's OpenMP runtime in this process is GNU libgomp."""
    try:
        with open("/proc/self/maps") as f:
            return "libgomp" in f.read()
    except OSError:
        return False


def library_path(cxx: str, flags: list[str]) -> Path:
    """Where the library for this source, compiler, flags and CPU lives."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
    key = hashlib.sha256("\n".join(
        [SOURCE, " ".join(flags), version.stdout, _cpu_signature(), platform.platform()]
    ).encode()).hexdigest()[:20]
    return cache_dir() / f"rnnlab_native_{key}.so"


def build(cxx: str, path: Path, flags: list[str]) -> None:
    """Compile the library to ``path`` (atomically; raises RuntimeError with the log)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        source = Path(tmp) / "rnnlab_native.cpp"
        source.write_text(SOURCE)
        out = Path(tmp) / path.name
        for attempt in (flags, [f for f in flags if f not in _NATIVE_ONLY]):
            result = subprocess.run([cxx, *attempt, str(source), "-o", str(out)],
                                    capture_output=True, text=True, timeout=600)
            if result.returncode == 0:
                os.replace(out, path)
                return
        raise RuntimeError(f"{cxx} failed to build the native engine:\n{result.stderr[-2000:]}")


def _build_and_load(cxx: str):
    """Build (if not cached) and load; with OpenMP first where torch uses libgomp."""
    variants = ([FLAGS + OPENMP] if torch_uses_libgomp() else []) + [FLAGS]
    error = None
    for flags in variants:
        path = library_path(cxx, flags)
        try:
            if not path.exists():
                build(cxx, path, flags)
            return ctypes.CDLL(str(path)), path
        except (OSError, RuntimeError) as e:  # e.g. a libgomp newer than torch's
            error = e
    raise RuntimeError(str(error))


def _find_blas() -> list[int]:
    """Addresses of the BLAS entry points in torch's libraries (0 where absent)."""
    libdir = os.path.join(os.path.dirname(torch.__file__), "lib")
    candidates = sorted(glob.glob(os.path.join(libdir, "libtorch_cpu.*")))
    handles = []
    for path in candidates:
        try:
            handles.append(ctypes.CDLL(path))
        except OSError:
            continue
    handles.append(ctypes.CDLL(None))
    found = []
    for name in _BLAS_SYMBOLS:
        address = 0
        for h in handles:
            try:
                address = ctypes.cast(getattr(h, name), ctypes.c_void_p).value or 0
            except AttributeError:
                continue
            if address:
                break
        found.append(address)
    return found


def bind(lib, path) -> None:
    """Check a loaded library's ABI version and declare its entry points' C types."""
    lib.rnnlab_abi_version.restype = ctypes.c_int
    if lib.rnnlab_abi_version() != ABI_VERSION:
        raise RuntimeError(f"the native library {path} has ABI version "
                           f"{lib.rnnlab_abi_version()}, this rnnlab needs {ABI_VERSION}; "
                           f"delete it (it is rebuilt) or clear {cache_dir()}")
    lib.rnnlab_run.restype = ctypes.c_int
    lib.rnnlab_run.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                               ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                               ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
                               ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                               ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
    lib.rnnlab_time_gemm.restype = ctypes.c_double
    lib.rnnlab_time_gemm.argtypes = [ctypes.c_int64] * 5 + [ctypes.c_void_p]


def load():
    """The loaded library (building it if needed), or None; see ``why_unavailable``."""
    if "lib" in _state:
        return _state["lib"]
    _state["lib"] = None
    try:
        blas = _find_blas()
        if not blas[0] or not blas[1]:
            raise RuntimeError("no BLAS sgemm_/dgemm_ found in torch's libraries")
        cxx = compiler()
        if cxx is None:
            raise RuntimeError("no C++ compiler found (set $CXX)")
        lib, path = _build_and_load(cxx)
        bind(lib, path)
        _state["openmp"] = bool(lib.rnnlab_openmp())
        _state["blas"] = (ctypes.c_int64 * len(blas))(*blas)
        # the same table without the packed API: the loop then calls plain sgemm_/dgemm_
        _state["plain"] = (ctypes.c_int64 * len(blas))(*blas[:2], *[0] * (len(blas) - 2))
        _state["packs"] = (all(blas[2:5]), all(blas[5:8]))  # float32, float64
        _state["lib"] = lib
        _state["path"] = path
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        _state["error"] = str(error)
    return _state["lib"]


def time_gemm(m: int, n: int, k: int, reps: int, packed: bool = True) -> float | None:
    """Seconds per float32 GEMM (m×k)·(k×n) through the loop's BLAS calls, or None."""
    lib = load()
    if lib is None:
        return None
    return lib.rnnlab_time_gemm(m, n, k, reps, int(packed), _state["blas"])


_times: dict = {}  # "m,n,k" -> [packed seconds, plain seconds] on this machine
_times_lock = threading.Lock()


# Bumped when the way GEMMs are timed changes, so that times measured the old way are not read.
# 2: at least ``MIN_REPS`` calls per round (one call per round of a large GEMM chose plain
# GEMMs where packed ones run 18-35% faster: (32 × 1024)·(1024 × 4096) on an Intel Xeon).
_TIMES_VERSION = 2
MIN_REPS = 5  # GEMM calls per timed round, at the least


def _times_file() -> Path | None:
    path = _state.get("path")
    return None if path is None else path.with_suffix(f".gemm{_TIMES_VERSION}.json")


def gemm_times(m: int, n: int, k: int, fresh: bool = False) -> tuple[float, float] | None:
    """Seconds per float32 GEMM (m×k)·(k×n) through the loop's BLAS calls, packed and plain:
    the best of 7 interleaved rounds of about half a millisecond each and at least
    ``MIN_REPS`` calls (the best: another process on the machine only ever slows a round down;
    a round of one call times a packed weight's first use, which the loop pays once per
    sequence), measured once per machine and shape (again with ``fresh``) and kept beside the
    native build. None without the library."""
    if load() is None:
        return None
    key = f"{m},{n},{k}"
    path = _times_file()
    with _times_lock:
        found = None if fresh else _times.get(key)
        if found is None and not fresh:  # another process may have measured it meanwhile
            _times.update(_read_times(path))
            found = _times.get(key)
    if found is not None:
        return tuple(found)
    per_call = 2.0 * m * n * k / 2e10  # at 20 GFLOP/s
    reps = max(MIN_REPS, min(1000, int(5e-4 / max(per_call, 1e-9))))
    rounds = [(time_gemm(m, n, k, reps, True), time_gemm(m, n, k, reps, False))
              for _ in range(7)]
    found = [min(r[0] for r in rounds), min(r[1] for r in rounds)]
    with _times_lock:
        # what other processes kept meanwhile, and this shape: written atomically
        _times.update({**_read_times(path), key: found})
        if path is not None:
            try:
                write_text_atomic(json.dumps(_times), path)
            except OSError:
                pass
    return tuple(found)


def _read_times(path: Path | None) -> dict:
    try:
        found = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def packed_is_faster(rows: int, shapes) -> bool:
    """Whether a loop whose GEMMs have ``shapes`` ((n, k) each) runs faster on ``rows`` rows
    with packed weights (kept unless plain GEMMs are more than 3% faster: measurement noise)."""
    packed = plain = 0.0
    for n, k in shapes:
        times = gemm_times(rows, n, k)
        if times is None:
            return True
        packed += times[0]
        plain += times[1]
    return packed <= 1.03 * plain


def why_unavailable() -> str:
    load()
    return _state.get("error", "available")


def _array(values: list[int]):
    return (ctypes.c_int64 * max(len(values), 1))(*values)


class NativeLoops:
    """A plan encoded for the C++ loop."""

    hoists_in_loop = True  # runs ``Plan.hoisted_forward`` (X_t = x_t W + b inside the loop)
    #                        and ``Plan.hoisted_backward`` (the epilogue inside the loop)

    @classmethod
    def create(cls, plan: Plan):
        lib = load()
        return None if lib is None else cls(plan, lib)

    def __init__(self, plan: Plan, lib):
        self.plan = plan
        self.lib = lib
        self.keys = list(dict.fromkeys(g.weight for g in plan.ir.gemms))
        if plan.hoisted_forward:  # the hoist's GEMM runs in the loop too
            self.keys.append(plan.hoist.weight)
        consts: dict[float, int] = {}
        width = 1
        for ins in plan.prologue + plan.forward + plan.backward + plan.epilogue:
            if isinstance(ins, Op):
                for x in (ins.a, ins.b, ins.c):
                    if isinstance(x, float):
                        consts.setdefault(x, len(consts))
                        width = max(width, ins.width)
        self.consts, self.const_width = consts, width
        self.const_buf = len(plan.buffers)  # an extra shared buffer: each constant, repeated
        self._const_tensors: dict[torch.dtype, torch.Tensor] = {}
        loops = ("prologue", "forward", "hoisted_forward", "backward", "hoisted_backward",
                 "epilogue")
        self.code = {name: self._encode(getattr(plan, name)) for name in loops}
        self.gemm_shapes = {name: sorted({(ins.n, ins.k) for ins in getattr(plan, name)
                                          if isinstance(ins, GemmI)}) for name in loops}
        self._packed: dict = {}  # (loop, rows) -> whether packed GEMMs are faster here
        # the buffer table handed to the loop: 5 fields per buffer, then the constants
        self._kinds = [(i, 1 if self.per_thread(i) else 2 if buf.shared else 0)
                       for i, buf in enumerate(plan.buffers)]
        self._table_type = ctypes.c_int64 * (5 * len(plan.buffers) + 5)

    @staticmethod
    def threads() -> int:
        """Threads the loop may use: torch's, when the library shares its OpenMP runtime."""
        return torch.get_num_threads() if _state.get("openmp") else 1

    def per_thread(self, index: int) -> bool:
        """Scratch rows and gradient sums: one slice per thread."""
        buf = self.plan.buffers[index]
        return buf.temp or (buf.shared and not buf.given)

    def buffer_shape(self, index: int, T: int, B: int, threads: int) -> tuple[int, ...]:
        buf = self.plan.buffers[index]
        if self.per_thread(index):  # one row per thread, reused by every batch row
            return (threads, 1, buf.width)
        return (buf.width,) if buf.shared else (buf.slices.size(T), B, buf.width)

    def _operand(self, x) -> list[int]:
        if x is None:
            return [-1, 0, 0]
        if isinstance(x, float):
            return [self.const_buf, self.consts[x] * self.const_width, 0]
        return [x.buf, x.col, x.toff]

    def _encode(self, code: list):
        rows = []
        for ins in code:
            if isinstance(ins, Op):
                a = 0.0 if ins.code == FILL else ins.a
                op = 0 if ins.code == FILL else ins.code  # fill = copy from a constant
                row = [op, ins.width, int(ins.acc), *self._operand(ins.dst), *self._operand(a),
                       *self._operand(ins.b), *self._operand(ins.c), 0]
            elif isinstance(ins, GemmI):
                row = [GEMM, ins.n, int(ins.acc), *self._operand(ins.dst),
                       *self._operand(ins.a), *self._operand(ins.bias), ins.k,
                       self.keys.index(ins.weight), int(ins.transpose), int(ins.bias is not None)]
            else:
                assert isinstance(ins, Refill)
                row = [REFILL, ins.width, 0, *self._operand(ins.dst), *self._operand(ins.src),
                       -1, 0, 0, -1, 0, 0, 0]
            assert len(row) == FIELDS
            rows += row
        return _array(rows), len(code)

    def _constants(self, like: torch.Tensor) -> torch.Tensor:
        t = self._const_tensors.get(like.dtype)
        if t is None:
            values = sorted(self.consts, key=self.consts.get)
            t = torch.tensor(values or [0.0], dtype=like.dtype).repeat_interleave(
                self.const_width)
            self._const_tensors[like.dtype] = t
        return t

    def run(self, name: str, tensors: list, weights: dict, sizes: list[int] | None,
            B: int, steps: int, threads: int):
        """Run one loop ("prologue", "forward", "hoisted_forward", "backward",
        "hoisted_backward", "epilogue") over ``steps`` steps of ``B`` rows on the buffers."""
        self.launch(name, self.table(tensors), weights, sizes, B, steps, threads,
                    tensors[self.plan.S].dtype)

    def table(self, tensors: list):
        """The buffer table the loop reads (5 fields per buffer, then the constants'): built
        per call, or once and kept with ``set_buffer`` changing the buffers that change."""
        table = self._table_type()  # per call: the loop runs without the GIL
        for i, _ in self._kinds:
            self.set_buffer(table, i, tensors[i])
        table[-5] = self._constants(tensors[self.plan.S]).data_ptr()
        table[-4] = 1
        return table

    def set_buffer(self, table, i: int, t: torch.Tensor | None) -> None:
        """Buffer ``i``'s pointer and strides in ``table``."""
        kind = self._kinds[i][1]
        if t is None:
            table[5 * i:5 * i + 5] = (0, 1, 0, 0, 0)
        elif kind == 0:  # per batch row
            if t.stride(2) != 1 and t.shape[2] > 1:
                raise ValueError(f"native buffer {self.plan.buffers[i].name} needs unit "
                                 "column stride")
            table[5 * i:5 * i + 5] = (t.data_ptr(), t.shape[0], t.stride(0), t.stride(1), 0)
        elif kind == 1:  # one row per thread
            table[5 * i:5 * i + 5] = (t.data_ptr(), 1, t.stride(0), 0, 1)
        else:  # one row shared by all
            table[5 * i:5 * i + 5] = (t.data_ptr(), 1, 0, 0, 0)

    def launch(self, name: str, table, weights: dict, sizes: list[int] | None, B: int,
               steps: int, threads: int, dtype: torch.dtype):
        """Run loop ``name`` on a buffer table (``table``) and the GEMM weights of ``weights``;
        ``dtype``: the buffers'."""
        wtable, keep, weight_bytes = self.weight_table(weights)
        self.call(self.arguments(name, table, wtable, weight_bytes, sizes, B, steps, threads,
                                 dtype))
        del keep  # (alive until the loop is done)

    def weight_table(self, weights: dict):
        """The GEMM weights as the loop reads them: (the table, copies it points into, bytes)."""
        keep, wtable = [], []
        weight_bytes = 0
        for key in self.keys:
            w = weights.get(key)
            if w is None:  # a weight this loop does not read (the hoist's, going backward)
                wtable += [0, 0, 0]
                continue
            weight_bytes += w.numel() * w.element_size()
            if w.stride(1) == 1 and w.stride(0) >= w.shape[1]:
                wtable += [w.data_ptr(), w.stride(0), 0]
            elif w.stride(0) == 1 and w.stride(1) >= w.shape[0]:
                wtable += [w.data_ptr(), w.stride(1), 1]
            else:
                w = w.contiguous()
                keep.append(w)
                wtable += [w.data_ptr(), w.shape[1], 0]
        return _array(wtable), keep, weight_bytes

    def arguments(self, name: str, table, wtable, weight_bytes: int, sizes: list[int] | None,
                  B: int, steps: int, threads: int, dtype: torch.dtype) -> tuple:
        """The arguments of the library's ``rnnlab_run`` for loop ``name`` (``call``); they
        hold the tables, whose contents may change between calls."""
        code, n = self.code[name]
        dtype = 0 if dtype == torch.float32 else 1
        size_array = _array(sizes) if sizes is not None else None
        # threads split the batch (each runs the whole loop on its rows, no synchronisation
        # per step) while the recurrent weights are small; above, every step is shared (BLAS
        # splits each GEMM, and a stage's rows are split from native_parallel_work elements on)
        settings = current()
        split = (threads > 1 and B >= 2 * threads
                 and weight_bytes <= settings.native_split_bytes)
        reverse = name in ("backward", "hoisted_backward")
        blas = _state["blas"]
        if steps >= 3 and _state["packs"][dtype] and self.gemm_shapes[name]:  # (it packs then)
            pack = settings.native_pack
            rows = B // min(threads, B) if split else B  # a thread's rows, or all
            if pack == "auto":
                key = (name, rows)
                if key not in self._packed:
                    self._packed[key] = packed_is_faster(rows, self.gemm_shapes[name])
                pack = "1" if self._packed[key] else "0"
            if pack == "0":
                blas = _state["plain"]
        return (dtype, code, n, table, len(self.plan.buffers) + 1, wtable, len(self.keys),
                size_array, B, steps, int(reverse), blas, threads,
                settings.native_parallel_work, int(split))

    def call(self, arguments: tuple) -> None:
        """Run the library's loop on ``arguments``."""
        rc = self.lib.rnnlab_run(*arguments)
        if rc:
            raise RuntimeError(f"the native engine failed (code {rc})")
