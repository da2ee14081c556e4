"""The native loop: its own tanh and sigmoid, falling back without it, its build cache."""

import pytest
import torch

from rnnlab import cells, engine
from rnnlab.engine import fused
from rnnlab.engine.fast import native
from rnnlab.engine.unroll import reference_unroll, unroll
from rnnlab.lang import cell, sigmoid, tanh


@pytest.fixture(scope="module")
def library():
    if native.load() is None:
        pytest.skip(f"native engine unavailable: {native.why_unavailable()}")
    return native.load()


@cell("tanh_only", state=("h",))
def tanh_only(x, state, p):
    h = tanh(p.W @ x + p.R @ state.h)
    return h, (h,)


@cell("sigmoid_only", state=("h",))
def sigmoid_only(x, state, p):
    h = sigmoid(p.W @ x + p.R @ state.h)
    return h, (h,)


def _cpu_has(*flags: str) -> bool:
    """Whether this CPU's flags (the line the native build is keyed by) include ``flags``."""
    return set(flags) <= set(native._cpu_signature().split())


# the library as built here (for this CPU), for AVX2 machines, and for a generic x86-64
VARIANTS = {
    "default": None,
    "avx2": ["-march=haswell"],
    "generic": [],
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, library, tmp_path_factory):
    """The native library built for one target (its vectorised tanh and sigmoid differ)."""
    extra = VARIANTS[request.param]
    if extra is None:
        return library
    if request.param == "avx2" and not _cpu_has("avx2", "fma"):
        pytest.skip("this CPU has no AVX2/FMA: an AVX2 build cannot run here")
    import ctypes

    flags = [f for f in native.FLAGS if f not in native._NATIVE_ONLY] + extra
    cxx = native.compiler()
    path = tmp_path_factory.mktemp(request.param) / "rnnlab_native_variant.so"
    native.build(cxx, path, flags)
    lib = ctypes.CDLL(str(path))
    native.bind(lib, path)
    return lib


@pytest.mark.parametrize("defn, exact", [(tanh_only, torch.tanh), (sigmoid_only, torch.sigmoid)])
def test_activations_match_torch(variant, defn, exact, monkeypatch):
    """W = I, R = 0, one step: the activation of x itself (a row holding ±inf or NaN is NaN but
    there after the GEMM, in both engines), compared with torch's on the same inputs; for each
    build of the library (this CPU's, AVX2, generic x86-64)."""
    H = 67  # 4 full 512-bit vectors and a tail of 3: the vector loop and its remainder
    c = cells.make(defn, H, H)
    loops = fused.compiled(c.program, False, False).native()
    monkeypatch.setattr(loops, "lib", variant)
    with torch.no_grad():
        c.W.copy_(torch.eye(H))
        c.R.zero_()
    g = torch.Generator().manual_seed(0)
    values = torch.cat([
        torch.linspace(-20, 20, 4096 * 4), torch.randn(4096, generator=g) * 3,
        torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e-8, 3e-4, 0.2999, 0.3001, 9.5, -9.5,
                      88.0, -88.0, 100.0, -100.0, float("inf"), float("-inf"), float("nan")]),
    ])
    values = torch.cat([values, values.new_zeros((-values.numel()) % H)])
    x = values.reshape(1, -1, H)
    state = (torch.zeros(x.shape[1], H),)
    with torch.no_grad(), engine.backend("native"):
        out, _ = unroll(c, x, state)
    with torch.no_grad():
        expected = reference_unroll(c, x, state)[0]
    assert torch.equal(expected[x.isfinite() & expected.isfinite()],
                       exact(x)[x.isfinite() & expected.isfinite()])
    finite = expected.isfinite() & expected.ne(0)
    rel = ((out - expected).abs() / expected.abs())[finite]
    assert rel.max() < 4e-7, rel.max()
    assert (out - expected).abs()[expected.isfinite()].max() < 2e-7
    assert torch.equal(out.isnan(), expected.isnan())


def test_without_native_the_python_executor_runs(monkeypatch):
    c = cells.make("lstm", 5, 4).double()
    x = torch.randn(6, 3, 5, dtype=torch.double, requires_grad=True)
    state = tuple(torch.randn(3, 4, dtype=torch.double) for _ in range(2))
    monkeypatch.setattr(native, "_state", {"lib": None, "error": "no compiler (test)"})
    monkeypatch.setattr(fused, "_CACHE", type(fused._CACHE)())
    with engine.backend("auto"):
        out, _ = unroll(c, x, state)
        assert engine.explain(c, dtype=torch.double).startswith("fused (torch)")
    assert type(out.grad_fn).__name__ == "FusedSequenceBackward"
    torch.testing.assert_close(out, reference_unroll(c, x, state)[0])
    with engine.backend("native"), pytest.raises(RuntimeError, match="no compiler"):
        unroll(c, x, state)


def test_build_is_cached_and_rebuildable(library, tmp_path, monkeypatch):
    cxx = native.compiler()
    flags = native.FLAGS + (native.OPENMP if native._state.get("openmp") else [])
    assert native.library_path(cxx, flags).exists()  # load() built or found it
    monkeypatch.setenv("RNNLAB_CACHE", str(tmp_path))
    path = native.library_path(cxx, native.FLAGS)
    assert str(path).startswith(str(tmp_path))
    native.build(cxx, path, native.FLAGS)
    assert path.exists() and not list(path.parent.glob("tmp*"))


def test_gemm_timing_entry_point(library):
    seconds = native.time_gemm(8, 32, 16, 3)
    assert seconds is not None and 0 < seconds < 1


def test_concurrent_calls_from_python_threads(library, monkeypatch):
    """The loop runs without the GIL: calls from several threads must not share state, and
    first calls (planning, the native executor) made at the same moment must be safe: the
    caches start empty and a barrier releases every thread's first call together."""
    import threading

    monkeypatch.setattr(fused, "_CACHE", type(fused._CACHE)())
    c = cells.make("gru", 6, 8)
    xs = [torch.randn(5, 3, 6, generator=torch.Generator().manual_seed(k)) for k in range(6)]
    state = (torch.zeros(3, 8),)
    with torch.no_grad():
        expected = [reference_unroll(c, x, state)[0] for x in xs]
    results: dict = {}
    barrier = threading.Barrier(len(xs))

    def work(k):
        barrier.wait()
        with torch.no_grad():
            for _ in range(20):
                results[k] = unroll(c, xs[k], state)[0]

    with engine.backend("native"):
        threads = [threading.Thread(target=work, args=(k,)) for k in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for k, e in enumerate(expected):
        torch.testing.assert_close(results[k], e)


def test_subnormals_are_flushed_inside_the_loop_and_the_callers_mode_is_restored(library):
    """Inside the native loop subnormal floats count as zero (a saturated gate's derivative
    would otherwise cost a microcode assist per operation); torch's own arithmetic afterwards
    still keeps them (the thread's floating-point mode is put back)."""
    H = 16
    c = cells.make(tanh_only, H, H)
    with torch.no_grad():
        c.W.copy_(torch.eye(H))
        c.R.zero_()
    tiny = torch.full((1, 2, H), 1e-39)  # subnormal in float32
    assert tiny[0, 0, 0].item() != 0
    with torch.no_grad(), engine.backend("native"):
        out, _ = unroll(c, tiny, (torch.zeros(2, H),))
    with torch.no_grad():
        expected = reference_unroll(c, tiny, (torch.zeros(2, H),))[0]
    assert torch.all(expected != 0)  # tanh(1e-39) = 1e-39 with torch
    assert torch.all(out == 0)
    assert (torch.tensor([1e-39]) * 2).item() != 0  # the caller's mode is restored
