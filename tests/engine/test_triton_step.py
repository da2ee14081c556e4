"""The generated Triton kernels (``rnnlab.engine.triton_step``) equal the native engine.

Triton's interpreter (``TRITON_INTERPRET=1``, set here before Triton is imported) runs the
kernels on CPU tensors, so the CUDA route's loops are checked without a GPU: every zoo cell,
regularised cells (layer norm's row instructions, zoneout's step masks), variable lengths and
random search mutants, each in float64 against the native C++ engine (values and gradients
with respect to the input, the initial state and every parameter). Sizes are powers of two and
at least 16 (so the kernels are also valid on a GPU); T and B are tiny because the interpreter
runs each program in Python.

The interpreter must be switched on before Triton is first imported (Triton's own library
functions are decorated at import). When an earlier test module of the same run has imported
Triton already (torch.compile does), this module's checks run in a fresh Python process instead
(``test_in_a_fresh_process``).
"""

import os
import subprocess
import sys

FRESH = "triton" not in sys.modules
_BEFORE = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"  # before Triton is imported: kernels run on CPU tensors

import random  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton", reason="Triton is not installed (pip install -e '.[gpu]'): the "
                                     "generated kernels cannot be checked")

from rnnlab import cells, engine  # noqa: E402
from rnnlab.engine import fused, triton_step  # noqa: E402
from rnnlab.engine.reference import batch_sizes_of  # noqa: E402
from rnnlab.engine.route import Executor, Route, execute  # noqa: E402
from rnnlab.lang import ops  # noqa: E402
from rnnlab.lang.mutate import mutate_steps  # noqa: E402

SIZE = 16
T, B = 3, 2
# σ(a) = 1 / (1 + exp(−a)): exp overflows to inf for very negative a and σ is then exactly 0
# (as on a GPU); the interpreter's numpy warns about it
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in exp:RuntimeWarning")


@pytest.fixture(scope="module", autouse=True)
def _interpreter_for_this_module_only():
    yield
    if _BEFORE is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = _BEFORE


@pytest.fixture(autouse=True)
def _in_a_fresh_process_when_triton_came_first(request):
    if not FRESH and request.node.originalname != "test_in_a_fresh_process":
        pytest.skip("Triton was imported before its interpreter was switched on: "
                    "test_in_a_fresh_process runs this module's checks")


def test_in_a_fresh_process():
    if FRESH:
        pytest.skip("this process runs the checks itself")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-m", "not slow", os.path.abspath(__file__)], cwd=root,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TRITON_INTERPRET": "1"})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def run(executor: Executor, c, x, state, lengths=None, training=True, weights=None):
    """One call of ``c`` over x on ``executor`` (the route table's ``execute``)."""
    program = c.program
    comp = fused.compiled(program, training, lengths is not None)
    sizes = None if lengths is None else batch_sizes_of(lengths)
    weights = c.weights() if weights is None else weights
    return execute(Route(executor, "test", comp), program, weights, x, state, lengths, sizes,
                   training)


def compare(c, dtype=torch.float64, lengths=None, seed=0, tol=None, step_masks=False):
    """Outputs, finals and gradients of the Triton loops equal the native engine's."""
    c = c.to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in c.parameters():
            p.uniform_(-0.6, 0.6, generator=g)
    x = torch.randn(T, B, SIZE, generator=g, dtype=dtype)
    if step_masks:
        x = c.with_step_masks(x)
    x.requires_grad_(True)
    state = tuple(torch.randn(B, SIZE, generator=g, dtype=dtype, requires_grad=True)
                  for _ in c.program.graph.states)
    weights = c.weights()
    params = [x, *state, *c.parameters()]
    results = []
    for executor in (Executor.NATIVE, Executor.FUSED_CUDA):
        out, final = run(executor, c, x, state, lengths, weights=weights)
        assert type(out.grad_fn).__name__ == "FusedSequenceBackward"
        # a random projection of the output and the finals
        gp = torch.Generator().manual_seed(seed + 1)
        loss = sum((t * torch.randn(t.shape, generator=gp, dtype=dtype)).sum()
                   for t in (out, *final))
        grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
        # copies: the comparison comes after the next call, which may reuse engine memory
        results.append([None if t is None else t.detach().clone()
                        for t in (out, *final, *grads)])
    kw = {} if tol is None else {"rtol": tol, "atol": tol}
    for native, generated in zip(*results):
        if native is None:
            assert generated is None
            continue
        torch.testing.assert_close(generated, native, **kw,
                                   msg=lambda m: f"{m}\n{c.program.graph}")


# ---- the zoo ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", cells.names())
def test_every_zoo_cell_equals_the_native_engine(name):
    compare(cells.make(name, SIZE, SIZE))


def test_one_thread_the_native_loop_then_the_triton_loops():
    """With one thread the native loop keeps one row of gradient sums per thread, the Triton
    loops one per batch row: the buffer shapes of one are not reused for the other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        compare(cells.make("gru", SIZE, SIZE), seed=5)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["lstm", "peephole", "gru"])
def test_variable_lengths(name):
    compare(cells.make(name, SIZE, SIZE), lengths=torch.tensor([3, 2]))


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_float32(name):
    compare(cells.make(name, SIZE, SIZE), dtype=torch.float32, tol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_layer_norm_rows_in_the_step_the_prologue_and_the_epilogue(name):
    c = cells.make(name, SIZE, SIZE, layer_norm=True)
    loops = triton_step.loops_of(fused.compiled(c.program, True, False))
    # every norm of a layer-normalised LSTM/GRU is read by its gain alone, and the gain's
    # product by one sum: fused (mul_norm_add); the adjoints take dy ⊙ g as they read it
    source = loops.source
    assert "_row_mul_norm_add(" in source and "_row_norm_bwd_mul(" in source
    assert "_row_mul_norm(" in source  # the gains' gradients dy ⊙ norm(x)
    compare(c)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_joint_layer_norm_pools_the_lanes_statistics(name):
    """layer_norm="joint" (statistics pooled over the gates, one ``norm`` over all the gates'
    lanes): the kernels sum each statistic over the lanes of the row they hold."""
    c = cells.make(name, SIZE, SIZE, layer_norm="joint")
    loops = triton_step.loops_of(fused.compiled(c.program, True, False))
    assert "tl.sqrt(" in loops.source and ", 0) + tl.sum(" in loops.source
    compare(c)


def test_zoneout_masks_read_from_the_step_input():
    compare(cells.make("lstm", SIZE, SIZE, zoneout=0.3).train(), step_masks=True)


def test_the_hoist_left_to_torch():
    with engine.backend(own_hoist=False):
        compare(cells.make("peephole", SIZE, SIZE))


def test_inference_without_gradients():
    c = cells.make("mut2", SIZE, SIZE).double()
    x = torch.randn(T, B, SIZE, dtype=torch.float64)
    state = (torch.randn(B, SIZE, dtype=torch.float64),)
    with torch.no_grad():
        expected = run(Executor.NATIVE, c, x, state, training=False)
        got = run(Executor.FUSED_CUDA, c, x, state, training=False)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])


# ---- search mutants ---------------------------------------------------------------------------
def mutants(count: int, seed: int) -> list:
    """``count`` mutants, taking the zoo cells in turn, each 1–10 mutation steps deep."""
    rng = random.Random(seed)
    zoo = [cells.graph(name, SIZE, SIZE) for name in cells.names()]
    return [mutate_steps(zoo[k % len(zoo)], rng, rng.randint(1, 10)) for k in range(count)]


@pytest.mark.parametrize("k, graph", list(enumerate(mutants(200, seed=24))))
def test_search_mutants_equal_the_native_engine(k, graph):
    compare(cells.make(graph, SIZE, SIZE), seed=k)


@pytest.mark.slow
@pytest.mark.parametrize("k, graph", list(enumerate(mutants(800, seed=2024))))
def test_800_more_search_mutants_some_with_lengths(k, graph):
    compare(cells.make(graph, SIZE, SIZE), seed=k, lengths=torch.tensor([3, 2]) if k % 4 else None)


# ---- the generator and the route --------------------------------------------------------------
def test_every_instruction_has_a_triton_form():
    assert all(ins.triton for ins in ops.INSTRUCTIONS if ins.name != "fill")


@pytest.mark.parametrize("name, forward, backward", [("lstm", 1, 1), ("gru_torch", 1, 1),
                                                      ("gru", 2, 2)])
def test_one_kernel_per_stage_between_gemms(name, forward, backward):
    loops = triton_step.loops_of(fused.compiled(cells.make(name, SIZE, SIZE).program, True,
                                                False))
    assert len(loops.loops["forward"].kernels) == forward
    assert len(loops.loops["backward"].kernels) == backward


def test_an_instruction_without_a_triton_form_is_reported(monkeypatch):
    plan = fused.compiled(cells.make("lstm", SIZE, SIZE).program, True, False).plan
    assert triton_step.unsupported(plan) is None
    table = tuple(ins if ins.name != "tanh" else ops.Instruction(ins.name, ins.cpp,
                                                                 ins.torch_out, ins.torch_value)
                  for ins in ops.INSTRUCTIONS)
    monkeypatch.setattr(triton_step, "INSTRUCTIONS", table)
    assert "'tanh' has no Triton expression" in triton_step.unsupported(plan)
    with engine.backend("auto"):
        why = engine.explain(cells.make("peephole", SIZE, SIZE), device="cuda")
    assert why.startswith("reference: ") and "'tanh'" in why


def test_explain_names_the_triton_route_on_cuda():
    with engine.backend("auto"):
        peephole = cells.make("peephole", SIZE, SIZE)
        assert engine.explain(peephole, device="cuda").startswith("fused (triton): ")
        assert engine.explain(peephole).startswith("fused (native): ")  # CPU unchanged
        assert engine.explain(cells.make("lstm", SIZE, SIZE), device="cuda").startswith("cudnn")
        half = engine.explain(peephole, device="cuda", dtype=torch.float16)
        assert half.startswith("reference: ") and "float16" in half


def test_explain_without_triton(monkeypatch):
    monkeypatch.setattr(triton_step, "triton_missing", lambda: "Triton is not installed")
    with engine.backend("auto"):
        why = engine.explain(cells.make("mut1", SIZE, SIZE), device="cuda")
    assert why.startswith("reference: ") and "Triton is not installed" in why


# ---- CUDA graphs: a recorder with a graph's semantics stands in for the capture on CPU --------
class Recorder:
    """What a CUDA graph does, on CPU: a capture records the launches without running them; a
    replay runs them again with the recorded arguments (the same buffers)."""

    def __init__(self):
        self.captures = self.replays = 0

    def __call__(self, device):  # triton_step._capturer(device)
        return self.capture

    def capture(self, body):
        calls = []
        body(lambda fn, *args, **kwargs: calls.append((fn, args, kwargs)))
        self.captures += 1

        def replay():
            self.replays += 1
            for fn, args, kwargs in calls:
                fn(*args, **kwargs)

        return replay


@pytest.fixture
def graphs(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(triton_step, "_capturer", recorder)
    with engine.backend(cuda_graphs=True):
        yield recorder


def _inference(c, executor, x, state, lengths=None):
    with torch.no_grad():
        out, final = run(executor, c, x, state, lengths, training=False)
        return [t.clone() for t in (out, *final)]


@pytest.mark.parametrize("lengths", [None, [3, 1]])
def test_cuda_graphs_capture_on_the_second_call_then_replay_on_the_buffers(graphs, monkeypatch,
                                                                          lengths):
    """One loop called again on the same buffers: the first call ran eagerly, the second
    captures and replays, the third replays — each reading the buffers as they are now (new
    pre-activations give the eager loop's new output); the same loop on buffers elsewhere is
    not replayed from that graph (the old output stays as it was)."""
    calls = []
    original = triton_step.TritonLoops.run

    def spy(self, name, tensors, *args):  # the buffers, and their values as the loop starts
        calls.append((self, name, tensors, args,
                      [None if t is None else t.clone() for t in tensors]))
        return original(self, name, tensors, *args)

    monkeypatch.setattr(triton_step.TritonLoops, "run", spy)
    c = cells.make("peephole", SIZE, SIZE).double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(T, B, SIZE, generator=g, dtype=torch.float64)
    state = tuple(torch.randn(B, SIZE, generator=g, dtype=torch.float64)
                  for _ in c.program.graph.states)
    lengths = None if lengths is None else torch.tensor(lengths)
    _inference(c, Executor.FUSED_CUDA, x, state, lengths)  # first sighting: eager
    owner, _, tensors, args, start = next(call for call in calls if call[1] == "forward")
    plan = owner.plan
    Y, X = tensors[plan.Y], tensors[plan.X]
    first = Y.clone()
    assert graphs.captures == 0

    @torch.no_grad()  # the list holds the parameters too (unchanged, copied onto themselves)
    def restart():  # the buffers as the loop found them (its state slices are overwritten)
        for t, t0 in zip(tensors, start, strict=True):
            if t is not None:
                t.copy_(t0)

    def eager_on_copies():
        copies = [None if t is None else t.clone() for t in tensors]
        with engine.backend(cuda_graphs=False):
            original(owner, "forward", copies, *args)
        return copies[plan.Y]

    restart()
    Y.zero_()
    original(owner, "forward", tensors, *args)  # second: capture (runs nothing), replay
    assert (graphs.captures, graphs.replays) == (1, 1)
    torch.testing.assert_close(Y, first)
    restart()
    X.mul_(-0.5)  # new pre-activations in the same buffer
    expected = eager_on_copies()
    original(owner, "forward", tensors, *args)  # third: replay
    assert (graphs.captures, graphs.replays) == (1, 2)
    torch.testing.assert_close(Y, expected)
    assert not torch.equal(Y, first)
    restart()
    X.mul_(-0.5)
    moved = [None if t is None else t.clone() for t in tensors]  # the same values elsewhere
    Y.fill_(0.25)  # (restart left the memory as the engine handed it over: maybe NaN)
    kept = Y.clone()
    X.mul_(3.0)  # only the old buffers change: a replay of the old graph would show here
    original(owner, "forward", moved, *args)  # a new layout: eager, no replay
    assert (graphs.captures, graphs.replays) == (1, 2)
    torch.testing.assert_close(moved[plan.Y], expected)
    assert torch.equal(Y, kept)


def test_cuda_graphs_a_new_layout_is_not_replayed_from_an_old_graph(graphs, monkeypatch):
    """Calls alternating between two batch sizes, with room for one graph per loop: each call
    is right, however often the one kept graph is dropped and captured again."""
    monkeypatch.setattr(triton_step, "GRAPHS_PER_LOOP", 1)
    c = cells.make("gru", SIZE, SIZE).double()
    g = torch.Generator().manual_seed(4)
    for rows in (2, 3, 2, 3, 2, 2, 3):
        x = torch.randn(T, rows, SIZE, generator=g, dtype=torch.float64)
        state = tuple(torch.randn(rows, SIZE, generator=g, dtype=torch.float64)
                      for _ in c.program.graph.states)
        for a, b in zip(_inference(c, Executor.FUSED_CUDA, x, state),
                        _inference(c, Executor.NATIVE, x, state)):
            torch.testing.assert_close(a, b)
    loops = triton_step.loops_of(fused.compiled(c.program, False, False)).loops.values()
    assert all(len(loop.graphs) <= 1 for loop in loops)


@pytest.mark.parametrize("name", ["peephole", "mut2", "gru"])
def test_cuda_graphs_in_training_equal_the_native_engine(graphs, name):
    """Forward, backward and epilogue loops under graphs, call after call."""
    c = cells.make(name, SIZE, SIZE)
    for _ in range(3):
        compare(c)


def test_cuda_graphs_off_by_default_and_named_by_explain(monkeypatch):
    monkeypatch.delenv("RNNLAB_CUDA_GRAPHS", raising=False)
    recorder = Recorder()
    monkeypatch.setattr(triton_step, "_capturer", recorder)
    compare(cells.make("peephole", SIZE, SIZE))
    assert recorder.captures == 0
    peephole = cells.make("peephole", SIZE, SIZE)
    with engine.backend("auto"):
        assert "CUDA graph" not in engine.explain(peephole, device="cuda")
        with engine.backend(cuda_graphs=True):
            assert "replayed from a CUDA graph" in engine.explain(peephole, device="cuda")
