"""The native loop: its own tanh and sigmoid, falling back without it, its build cache."""

import copy
import json

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


def _far_from_zero_norm_cell(H: int):
    """A layer-normalised ``rnn`` cell whose input part is the input itself (W = I, exact in
    float32), with input rows 100 + N(0, 1): a mean 100 times the spread; a small random R,
    ordinary gains and shift."""
    torch.manual_seed(5)
    c = cells.make("rnn", H, H, layer_norm=True)
    with torch.no_grad():
        c.W.copy_(torch.eye(H))
        c.R.copy_(0.1 * torch.randn(H, H))
        for name in ("g_W", "g_R", "b"):
            getattr(c, name).uniform_(-1, 1)
    x = 100 + torch.randn(3, 5, H)
    state = (torch.rand(5, H) * 2 - 1,)
    return c, x, state


def test_norm_rows_far_from_zero_with_a_tail_match_float64(variant, monkeypatch):
    """The row functions' sums over vectors of 16 columns and a tail (H = 77: two blocks of
    32 columns and 13 more), on rows whose mean is ~100 times their spread, in float32 against
    the reference in float64 on the same values; for each build of the library."""
    c, x, state = _far_from_zero_norm_cell(77)
    loops = fused.compiled(c.program, False, False).native()
    monkeypatch.setattr(loops, "lib", variant)
    with torch.no_grad(), engine.backend("native"):
        out, _ = unroll(c, x, state)
        expected = reference_unroll(c.double(), x.double(), tuple(s.double() for s in state))[0]
    # float32 rounding at the scale of the mean (100): ~6e-6 here; summing x itself rather
    # than x minus the row's first entry gives ~2e-5
    assert (out.double() - expected).abs().max() < 1e-5


def test_norm_gradients_far_from_zero_with_a_tail_match_float64(library):
    """The backward row functions (norm_bwd with the gain's product, the gain's gradient) on
    the same rows: float32 gradients against float64 ones."""
    c, x, state = _far_from_zero_norm_cell(77)

    def gradients(model, dtype, run):
        xs = x.detach().to(dtype).requires_grad_()
        s = tuple(v.detach().to(dtype).requires_grad_() for v in state)
        out = run(model, xs, s)[0]
        (out * torch.linspace(-1, 1, out.numel(), dtype=dtype).reshape(out.shape)).sum().backward()
        return [xs.grad, *(v.grad for v in s), *(p.grad for p in model.parameters())]

    with engine.backend("native"):
        got = gradients(c, torch.float32, unroll)
    expected = gradients(copy.deepcopy(c).double(), torch.float64, reference_unroll)
    for a, b in zip(got, expected, strict=True):
        scale = b.abs().max().item()
        assert (a.double() - b).abs().max().item() < 5e-6 * max(scale, 1.0), (a, b)  # ~2e-6


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


# ---- the GEMM: packed or plain, measured per machine and shape ------------------------------
class _BlasSpy:
    """The library with ``rnnlab_run`` recording which BLAS table each call was handed."""

    def __init__(self, lib):
        self.lib, self.tables = lib, []

    def rnnlab_run(self, *args):
        self.tables.append(args[11])
        self.parallel_work = args[13]
        return self.lib.rnnlab_run(*args)


@pytest.fixture
def spied(library, monkeypatch):
    """An LSTM, its native loops (no GEMM choice made yet) and their library's spy."""
    c = cells.make("lstm", 8, 16)
    loops = fused.compiled(c.program, True, False).native()
    spy = _BlasSpy(loops.lib)
    monkeypatch.setattr(loops, "lib", spy)
    monkeypatch.setattr(loops, "_packed", {})
    return c, loops, spy


def _needs_packing():
    if not native._state["packs"][0]:
        pytest.skip("this BLAS has no packed-GEMM API")


def _lstm_run(c, T=6):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, 4, 8, generator=g, requires_grad=True)
    state = (torch.zeros(4, 16), torch.zeros(4, 16))
    with engine.backend("native"):
        out, _ = unroll(c, x, state)
    out.square().sum().backward()
    return [out.detach(), x.grad, *(p.grad.clone() for p in c.parameters())]


@pytest.mark.parametrize("pack, table", [("1", "blas"), ("0", "plain"), (True, "blas"),
                                         (False, "plain")])
def test_the_packed_switch_picks_the_blas_table(spied, monkeypatch, pack, table):
    _needs_packing()
    c, _, spy = spied
    monkeypatch.setattr(native, "packed_is_faster", lambda *a: pytest.fail("measured"))
    with engine.backend(native_pack=pack):
        _lstm_run(c)
    assert spy.tables and all(t is native._state[table] for t in spy.tables)


def test_auto_measures_once_per_loop_and_rows_and_both_tables_agree(spied, monkeypatch):
    _needs_packing()
    c, loops, spy = spied
    asked = []

    def plain_wins(rows, shapes):
        asked.append((rows, tuple(shapes)))
        return False

    monkeypatch.setattr(native, "packed_is_faster", plain_wins)
    with engine.backend(native_pack="auto"):
        measured = _lstm_run(c)
        _lstm_run(c)
    assert spy.tables and all(t is native._state["plain"] for t in spy.tables)
    # forward and backward loops once each (the same rows on both calls): (n, k) of each GEMM
    assert len(asked) == len(set(asked)) == len(loops._packed) >= 2
    assert all(shapes for _, shapes in asked)
    for p in c.parameters():
        p.grad = None
    with engine.backend(native_pack=True):
        packed = _lstm_run(c)
    for a, b in zip(measured, packed, strict=True):
        torch.testing.assert_close(a, b)


def test_packed_kept_unless_plain_is_clearly_faster(monkeypatch):
    for times, packed in [((1.0, 2.0), True), ((2.0, 1.0), False), ((1.02, 1.0), True),
                          ((1.05, 1.0), False)]:
        monkeypatch.setattr(native, "gemm_times", lambda m, n, k, t=times: t)
        assert native.packed_is_faster(32, [(64, 16), (64, 32)]) is packed


def test_gemm_times_measured_once_and_kept_beside_the_build(library, monkeypatch, tmp_path):
    monkeypatch.setitem(native._state, "path", tmp_path / "rnnlab_native_x.so")
    monkeypatch.setattr(native, "_times", {})
    kept = tmp_path / f"rnnlab_native_x.gemm{native._TIMES_VERSION}.json"
    (tmp_path / "rnnlab_native_x.gemm.json").write_text('{"4,32,16": [2.0, 1.0]}')  # timed
    #                                                   the old way: not read
    kept.write_text('{"1,2,3": [1.0, 2.0]}')  # another process's measurement: kept too
    first = native.gemm_times(4, 32, 16)
    assert len(first) == 2 and all(0 < t < 1 for t in first)
    assert set(json.loads(kept.read_text())) == {"1,2,3", "4,32,16"}
    assert native.gemm_times(1, 2, 3) == (1.0, 2.0)
    monkeypatch.setattr(native, "_times", {})  # a new process: read back, not measured again
    monkeypatch.setattr(native, "time_gemm", lambda *a: pytest.fail("measured again"))
    assert native.gemm_times(4, 32, 16) == first


def test_every_timed_round_runs_several_gemms(monkeypatch, tmp_path):
    """A large GEMM is timed over several calls per round, not one (whose packed weight is
    then used for the first time: plain looked faster where packed is 18-35% faster)."""
    monkeypatch.setitem(native._state, "path", tmp_path / "rnnlab_native_y.so")
    monkeypatch.setattr(native, "_times", {})
    monkeypatch.setattr(native, "load", lambda: object())
    reps = []
    monkeypatch.setattr(native, "time_gemm",
                        lambda m, n, k, r, packed=True: reps.append(r) or 1e-3)
    native.gemm_times(32, 4096, 1024)
    native.gemm_times(2, 8, 4)
    assert len(reps) == 28 and min(reps[:14]) == native.MIN_REPS > 1
    assert min(reps[14:]) > native.MIN_REPS  # small ones: about half a millisecond of calls


def test_the_packed_setting_is_checked(monkeypatch):
    from rnnlab.engine import settings

    for raw, value in [("auto", "auto"), ("0", "0"), ("off", "0"), ("1", "1"), ("", "auto")]:
        monkeypatch.setenv("RNNLAB_NATIVE_PACK", raw)
        assert settings.current().native_pack == value
    monkeypatch.setenv("RNNLAB_NATIVE_PACK", "sometimes")
    with pytest.raises(ValueError, match="RNNLAB_NATIVE_PACK must be auto, 0 or 1"):
        settings.current()
    monkeypatch.delenv("RNNLAB_NATIVE_PACK")
    with pytest.raises(ValueError, match="native_pack"):
        with engine.backend(native_pack="fast"):
            pass


def test_the_native_thread_settings_are_read_at_call_time(spied, monkeypatch):
    c, _, spy = spied
    for work in (123, 4567):
        monkeypatch.setenv("RNNLAB_NATIVE_PARALLEL_WORK", str(work))
        _lstm_run(c)
        assert spy.parallel_work == work
    monkeypatch.setenv("RNNLAB_NATIVE_SPLIT_BYTES", "2MB")
    with pytest.raises(ValueError, match="RNNLAB_NATIVE_SPLIT_BYTES must be a whole number"):
        _lstm_run(c)
