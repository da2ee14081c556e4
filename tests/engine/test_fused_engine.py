"""The fused engine equals the reference loop: every cell, both executors, lengths, layers."""

import random

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnlab
from rnnlab import cells
from rnnlab.engine import fused, route
from rnnlab.engine.fast import native
from rnnlab.engine.fast.lanes import Unsupported
from rnnlab.engine.unroll import reference_unroll, unroll
from rnnlab.lang.mutate import mutate_steps

ALL = cells.names()
EXECUTORS = ["python", "native"]


def executor(name: str):
    """The backend name for a test, skipping native where it cannot be built."""
    if name == "native" and native.load() is None:
        pytest.skip(f"native engine unavailable: {native.why_unavailable()}")
    return rnnlab.engine.backend(name)


def make(name, input_size, hidden_size, dtype=torch.double):
    options = {"raw_input": "project"} if name in ("mut1", "mut2") and \
        input_size != hidden_size else {}
    torch.manual_seed(0)
    return cells.make(name, input_size, hidden_size, **options).to(dtype)


def run(cell, x, state, lengths, backend_name):
    """Outputs, final state and gradients of a fixed random projection of both."""
    params = [x, *state, *cell.parameters()]
    with executor(backend_name):
        out, final = unroll(cell, x, state, lengths)
    fast = type(out.grad_fn).__name__ == "FusedSequenceBackward"
    assert fast == (backend_name != "reference"), f"{backend_name} ran {out.grad_fn}"
    g = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    for k, f in enumerate(final):
        loss = loss + (f * torch.randn(f.shape, generator=g, dtype=f.dtype)).sum() * (k + 1)
    grads = torch.autograd.grad(loss, [p for p in params if p.requires_grad], allow_unused=True)
    return out, final, grads


def assert_same(a, b, **tol):
    out_a, final_a, grads_a = a
    out_b, final_b, grads_b = b
    torch.testing.assert_close(out_a, out_b, **tol)
    for x, y in zip(final_a, final_b):
        torch.testing.assert_close(x, y, **tol)
    for x, y in zip(grads_a, grads_b):
        if x is None or y is None:
            assert (x is None or not x.any()) and (y is None or not y.any())
        else:
            torch.testing.assert_close(x, y, **tol)


def inputs(cell, T, B, dtype=torch.double, lengths=None):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(T, B, cell.input_size, generator=g, dtype=dtype, requires_grad=True)
    state = tuple(torch.randn(B, cell.hidden_size, generator=g, dtype=dtype, requires_grad=True)
                  for _ in cell.graph.states)
    return x, state, (torch.tensor(lengths) if lengths is not None else None)


@pytest.mark.parametrize("engine", EXECUTORS)
@pytest.mark.parametrize("lengths", [None, [7, 5, 5, 2]])
@pytest.mark.parametrize("name", ALL)
def test_every_cell_equals_reference(name, engine, lengths):
    cell = make(name, 5, 4)
    x, state, L = inputs(cell, 7, 4, lengths=lengths)
    expected = run(cell, x, state, L, "reference")
    assert_same(run(cell, x, state, L, engine), expected)


@pytest.mark.parametrize("engine", EXECUTORS)
@pytest.mark.parametrize("name", ALL)
def test_float32_at_working_size(name, engine):
    """Float32 (the native loop's own tanh and sigmoid) at a realistic size."""
    cell = make(name, 24, 32, torch.float32)
    x, state, _ = inputs(cell, 12, 6, torch.float32)
    expected = run(cell, x, state, None, "reference")
    assert_same(run(cell, x, state, None, engine), expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("engine", EXECUTORS)
@pytest.mark.parametrize("name", ALL)
def test_gradcheck(name, engine):
    cell = make(name, 3, 3)
    x, state, L = inputs(cell, 4, 3, lengths=[4, 3, 1])
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]

    def f(x, *flat):
        state, weights = flat[:len(cell.graph.states)], flat[len(cell.graph.states):]
        with executor(engine):
            out, final = _functional_unroll(cell, names, weights, x, state, L)
        assert type(out.grad_fn).__name__ == "FusedSequenceBackward"
        return (out, *final)

    assert torch.autograd.gradcheck(f, (x, *state, *params), fast_mode=True)


def _functional_unroll(cell, names, weights, x, state, lengths):
    """unroll with the cell's parameters replaced by ``weights`` (so gradcheck can vary them)."""
    original = {n: getattr(cell, n) for n in names}
    try:
        for n, w in zip(names, weights):
            cell._parameters[n] = w
        return unroll(cell, x, state, lengths)
    finally:
        for n, p in original.items():
            cell._parameters[n] = p


@pytest.mark.parametrize("engine", EXECUTORS)
@pytest.mark.parametrize("name", ALL)
def test_layers_directions_and_packed_through_rnn(name, engine):
    torch.manual_seed(0)
    options = {"raw_input": "project"} if name in ("mut1", "mut2") else {}
    net = rnnlab.RNN(name, 3, 4, num_layers=2, bidirectional=True, **options).double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 4, 3, generator=g, dtype=torch.double, requires_grad=True)
    lengths = torch.tensor([3, 6, 1, 5])
    results = []
    for backend_name in ("reference", engine):
        with executor(backend_name):
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            out, state = net(packed)
            loss = (out.data * torch.linspace(-1, 1, out.data.numel(), dtype=out.data.dtype)
                    .reshape(out.data.shape)).sum()
            loss = loss + sum((s * (k + 2)).sum() for k, s in enumerate(state))
            grads = torch.autograd.grad(loss, [x, *net.parameters()])
        results.append((out.data, state, grads))
    (o1, s1, g1), (o2, s2, g2) = results
    torch.testing.assert_close(o1, o2)
    for a, b in zip(s1, s2):
        torch.testing.assert_close(a, b)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("engine", EXECUTORS)
def test_inference_builds_no_graph_and_matches(engine):
    cell = make("peephole", 5, 4)
    x, state, _ = inputs(cell, 6, 3)
    with torch.no_grad():
        expected = reference_unroll(cell, x, state)
        with executor(engine):
            out, final = unroll(cell, x, state)
    assert out.grad_fn is None
    torch.testing.assert_close(out, expected[0])
    for a, b in zip(final, expected[1]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("engine", EXECUTORS)
def test_only_parameters_require_grad_and_output_modified_in_place(engine):
    cell = make("lstm", 5, 4)
    x, state, _ = inputs(cell, 6, 3)
    x, state = x.detach(), tuple(s.detach() for s in state)
    grads = []
    for backend_name in ("reference", engine):
        with executor(backend_name):
            out, final = unroll(cell, x, state)
        out.mul_(3.0)  # the engine keeps no reference to its output
        grads.append(torch.autograd.grad((out ** 2).sum() + final[1].sum(),
                                         list(cell.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("engine", EXECUTORS)
def test_zero_and_full_lengths(engine):
    cell = make("gru", 3, 4)
    x, state, L = inputs(cell, 5, 4, lengths=[5, 5, 2, 0])
    assert_same(run(cell, x, state, L, engine), run(cell, x, state, L, "reference"))


@pytest.mark.parametrize("engine", EXECUTORS)
def test_double_backward_equals_reference(engine):
    values = []
    for backend_name in ("reference", engine):
        net = rnnlab.RNN("mut3", 3, 4).double()
        torch.manual_seed(0)
        for p in net.parameters():
            torch.nn.init.uniform_(p, -0.5, 0.5)
        x = torch.randn(5, 2, 3, dtype=torch.double, requires_grad=True,
                        generator=torch.Generator().manual_seed(4))
        with executor(backend_name):
            out, _ = net(x)
            g, = torch.autograd.grad(out.pow(2).sum(), x, create_graph=True)
            penalty = g.pow(2).sum()
            second = torch.autograd.grad(penalty, list(net.parameters()))
        values.append((penalty.detach(), second))
    torch.testing.assert_close(values[0][0], values[1][0])
    for a, b in zip(values[0][1], values[1][1]):
        torch.testing.assert_close(a, b)


def test_bfloat16_runs_on_the_python_executor():
    cell = make("lstm", 8, 8, torch.bfloat16)
    x, state, _ = inputs(cell, 5, 3, torch.bfloat16)
    expected = run(cell, x, state, None, "reference")
    with rnnlab.engine.backend("auto"):
        assert rnnlab.engine.explain(cell, dtype=torch.bfloat16).startswith("fused (torch)")
    assert_same(run(cell, x, state, None, "auto"), expected, rtol=0.05, atol=0.05)


def test_backend_switches():
    assert rnnlab.engine.get_backend() in rnnlab.engine.settings.BACKENDS
    before = rnnlab.engine.get_backend()
    with rnnlab.engine.backend("0"):
        assert rnnlab.engine.get_backend() == "reference"
        with rnnlab.engine.backend("python"):
            assert rnnlab.engine.get_backend() == "python"
        assert rnnlab.engine.get_backend() == "reference"
    assert rnnlab.engine.get_backend() == before
    with pytest.raises(ValueError, match="backend must be one of"):
        rnnlab.engine.set_backend("fastest")


def test_reference_backend_never_calls_the_engine(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the fused engine ran")

    monkeypatch.setattr(fused, "compiled", boom)
    cell = make("lstm", 3, 3)
    x, state, _ = inputs(cell, 4, 2)
    with rnnlab.engine.backend("reference"):
        unroll(cell, x, state)


@pytest.mark.parametrize("seed_cell", ["lstm", "gru", "mut2"])
def test_mutated_cells_equal_reference(seed_cell):
    """Cells as the evolutionary search makes them: relu, scaling, odd wiring."""
    rng = random.Random(seed_cell)
    seed = cells.graph(seed_cell, 4, 4)
    checked = 0
    for _ in range(12):
        graph = mutate_steps(seed, rng, rng.randint(1, 3))
        c = cells.make(graph, 4, 4).double()
        for p in c.parameters():
            torch.nn.init.uniform_(p, -0.6, 0.6, generator=torch.Generator().manual_seed(5))
        g = torch.Generator().manual_seed(6)
        x = torch.randn(5, 3, 4, generator=g, dtype=torch.double, requires_grad=True)
        state = tuple(torch.randn(3, 4, generator=g, dtype=torch.double, requires_grad=True)
                      for _ in c.graph.states)
        lengths = torch.tensor([5, 4, 2])
        assert rnnlab.engine.explain(c, dtype=torch.double).startswith("fused"), str(c.graph)
        expected = run(c, x, state, lengths, "reference")
        for engine in EXECUTORS:
            assert_same(run(c, x, state, lengths, engine), expected)
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("engine", EXECUTORS)
def test_parameter_only_work_is_supported(engine):
    """Terms of parameters alone (the search makes them) are computed once per sequence."""
    from rnnlab.lang import cell, sigmoid, tanh

    @cell("static_terms", state=("h",))
    def static_terms(x, state, p):
        g = sigmoid(p.W @ x + p.R @ state.h + p.U @ tanh(p.c))
        h = g * (p.a * p.b) + (1 - g) * state.h
        return h, (h,)

    c = cells.make(static_terms, 3, 4).double()
    x, state, L = inputs(c, 5, 3, lengths=[5, 3, 2])
    comp = fused.compiled(c.program, True, True)
    assert not isinstance(comp, Unsupported) and comp.statics
    assert_same(run(c, x, state, L, engine), run(c, x, state, L, "reference"))


@pytest.mark.parametrize("engine", EXECUTORS)
def test_retained_graph_backward_twice_and_reused_workspace(engine):
    """Buffers go back to the workspace after backward; a second backward redoes the forward."""
    cell = make("cifg", 5, 4)
    grads = []
    for backend_name in ("reference", engine):
        x, state, L = inputs(cell, 6, 3, lengths=[6, 4, 1])
        with executor(backend_name):
            out, final = unroll(cell, x, state, L)
            loss = (out ** 2).sum() + final[1].sum()
            loss.backward(retain_graph=True)
            for _ in range(2):  # other calls now hold the workspace buffers
                unroll(cell, x * 2, state, L)[0].sum().backward()
            first = [p.grad.clone() for p in cell.parameters()]
            cell.zero_grad()
            loss.backward()
        grads.append((first, [p.grad.clone() for p in cell.parameters()]))
        cell.zero_grad()
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mode", ["batch split", "shared steps"])
@pytest.mark.parametrize("name", ["lstm", "peephole", "gru", "fgr", "mut1"])
def test_native_threads(name, mode, monkeypatch):
    """Threads that each own batch rows, or share every step (per-thread scratch and sums)."""
    if native.load() is None or not native._state.get("openmp"):
        pytest.skip("the native engine without OpenMP runs on one thread")
    monkeypatch.setenv("RNNLAB_NATIVE_PARALLEL_WORK", "0")
    monkeypatch.setenv("RNNLAB_NATIVE_SPLIT_BYTES", str(1 << 40 if mode == "batch split" else 0))
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        cell = make(name, 5, 4)
        x, state, L = inputs(cell, 6, 7, lengths=[6, 6, 5, 4, 4, 2, 1])
        assert_same(run(cell, x, state, L, "native"), run(cell, x, state, L, "reference"))
    finally:
        torch.set_num_threads(threads)


def test_one_step_skips_the_engine_setup(monkeypatch):
    """T = 1 (sampling, streaming) without gradients runs on the native loop's prepared tables
    (the native step), with gradients up to a bound the plan's step with torch ops; longer
    sequences and wide training steps take the fused engine with its setup."""
    c = cells.make("lstm", 8, 16)
    state = tuple(torch.randn(2, 16) for _ in range(2))
    calls = []
    real = fused.prepare_call  # the engine's own setup: reached only when the engine runs
    monkeypatch.setattr(fused, "prepare_call", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = torch.randn(1, 2, 8)
    with torch.no_grad(), rnnlab.engine.backend("auto"):
        out, finals = unroll(c, x, state)
        assert calls == []
        ref_out, ref_finals = reference_unroll(c, x, state)
        unroll(c, torch.randn(3, 2, 8), state)  # a sequence: the engine
        assert len(calls) == 1
        wide = route.SMALL_STEP_VALUES // 16 + 1  # wide: the native step too, or the engine
        unroll(c, torch.randn(1, wide, 8), tuple(torch.zeros(wide, 16) for _ in range(2)))
        assert len(calls) == (1 if fused.prepares_steps(fused.compiled(c.program, False, False))
                              else 2)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(finals, ref_finals)
    calls.clear()
    with rnnlab.engine.backend("auto"):  # with gradients: small steps, up to a larger bound
        out, _ = unroll(c, x, state)
        assert calls == [] and out.requires_grad
        wide = route.SMALL_TRAINING_STEP_VALUES // 16 + 1
        out, _ = unroll(c, torch.randn(1, wide, 8), tuple(torch.zeros(wide, 16)
                                                         for _ in range(2)))
        assert len(calls) == 1
        assert type(out.grad_fn).__name__ == "FusedSequenceBackward"


@pytest.mark.parametrize("name", ["lstm", "mut1", "gru"])
def test_native_loop_computes_the_input_projection_step_by_step(name, monkeypatch):
    """Without variable lengths the native loop runs X_t = x_t W + b (and the hoist's
    elementwise work) inside its time loop, never as one torch GEMM over all T·B rows; with
    lengths it runs the hoist beforehand. Both equal the reference loop."""
    if native.load() is None:
        pytest.skip(f"native engine unavailable: {native.why_unavailable()}")
    loops, gemms = [], []
    real_run, real_addmm, real_mm = native.NativeLoops.run, torch.addmm, torch.mm
    monkeypatch.setattr(native.NativeLoops, "run",
                        lambda self, name, *a, **k: loops.append(name) or real_run(self, name,
                                                                                   *a, **k))
    monkeypatch.setattr(torch, "addmm", lambda *a, **k: gemms.append(1) or real_addmm(*a, **k))
    monkeypatch.setattr(torch, "mm", lambda *a, **k: gemms.append(1) or real_mm(*a, **k))
    cell = make(name, 4, 4)
    for lengths, first in ((None, "hoisted_forward"), ([7, 5, 5, 2], "forward")):
        loops.clear()
        gemms.clear()
        x, state, L = inputs(cell, 7, 4, lengths=lengths)
        with executor("native"), torch.no_grad():
            unroll(cell, x, state, L)
        assert first in loops and {"forward", "hoisted_forward"} - {first} - set(loops)
        assert (gemms == []) == (first == "hoisted_forward")
        assert_same(run(cell, x, state, L, "native"), run(cell, x, state, L, "reference"))


def test_one_wide_step_returns_finals_that_later_calls_do_not_overwrite():
    """A single step over many rows without gradients (the grid's depth step) returns its final
    state as views of a buffer of its own: equal to the reference, and untouched by the next
    calls, which reuse the engine's other buffers."""
    c = cells.make("lstm", 8, 16)
    rows = route.SMALL_STEP_VALUES // 16 + 5  # too wide for the small-step shortcut
    x = torch.randn(1, rows, 8)
    state = tuple(torch.randn(rows, 16) for _ in range(2))
    with torch.no_grad():
        out, finals = unroll(c, x, state)
        kept = [f.clone() for f in finals]
        for _ in range(3):
            unroll(c, torch.randn(1, rows, 8), tuple(torch.randn(rows, 16) for _ in range(2)))
        ref_out, ref_finals = reference_unroll(c, x, state)
    for f, k, r in zip(finals, kept, ref_finals):
        torch.testing.assert_close(f, k, rtol=0, atol=0)
        torch.testing.assert_close(f, r)
    torch.testing.assert_close(out, ref_out)


@pytest.mark.parametrize("engine", EXECUTORS)
def test_one_wide_step_returns_state_gradients_that_later_calls_do_not_overwrite(engine):
    """In training too: one step over many rows (the grid's depth step) returns its states'
    gradients as views of a dS of its own; they equal the reference's and later calls of the
    same shape, which reuse the engine's other buffers, leave them as they were."""
    c = cells.make("lstm", 8, 16)
    rows = route.SMALL_STEP_VALUES // 16 + 5

    def call(seed: int, backend: str):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(1, rows, 8, generator=g, requires_grad=True)
        state = tuple(torch.randn(rows, 16, generator=g, requires_grad=True) for _ in range(2))
        with executor(backend) if backend != "reference" else rnnlab.engine.backend(backend):
            out, finals = unroll(c, x, state)
        # autograd.grad hands back the engine's tensors as they are (.grad may copy them)
        return torch.autograd.grad((out * 2 + finals[1] * 3).sum(), state)

    first = call(0, engine)
    kept = [g.clone() for g in first]
    for seed in (1, 2):
        call(seed, engine)
    for g, k, r in zip(first, kept, call(0, "reference"), strict=True):
        torch.testing.assert_close(g, k, rtol=0, atol=0)
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("engine", EXECUTORS)
def test_gradient_broadcast_from_a_sum_equals_reference(engine):
    """``output.sum()`` hands the engine an adjoint of stride 0 everywhere (one value
    broadcast): read as a broadcast row, not copied, and the gradients still equal the
    reference loop's."""
    cell = make("lstm", 5, 4)
    grads = {}
    for name in (engine, "reference"):
        x, state, _ = inputs(cell, 6, 3)
        with executor(name) if name != "reference" else rnnlab.engine.backend("reference"):
            out, final = unroll(cell, x, state)
        (out.sum() + final[1].sum()).backward()
        grads[name] = [x.grad, *(s.grad for s in state), *(p.grad.clone() for p in
                                                           cell.parameters())]
        cell.zero_grad()
    for a, b in zip(grads[engine], grads["reference"], strict=True):
        torch.testing.assert_close(a, b)



def test_an_input_gradient_returned_by_one_call_is_not_overwritten_by_the_next():
    """A cell that reads x only elementwise (no input GEMM): the engine returns its dx buffer
    as x's gradient, so a later call of the same shape must not reuse that memory (it did:
    the first gradient changed by up to 4.5)."""
    from rnnlab.lang import cell, tanh

    @cell("x_elementwise", state=("h",))
    def x_elementwise(x, state, p):
        h = tanh(x * state.h + x + p.b)
        return h, (h,)

    torch.manual_seed(3)
    rnn = rnnlab.RNN(x_elementwise, 8, 8)
    x1 = torch.randn(5, 4, 8, requires_grad=True)
    rnn(x1)[0].sum().backward()
    first = x1.grad.clone()
    x2 = torch.randn(5, 4, 8, requires_grad=True)
    (rnn(x2)[0] * 3).sum().backward()
    torch.testing.assert_close(x1.grad, first, rtol=0, atol=0)
