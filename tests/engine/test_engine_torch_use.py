"""The library as torch users use it: pickling, copying, saving, torch.jit, torch weights,
and one clear error for inputs of the wrong kind."""

import copy
import io
import pickle
import subprocess
import sys

import pytest
import torch

import rnnlab


@pytest.fixture(params=["rnn", "grid"])
def model(request):
    torch.manual_seed(0)
    if request.param == "rnn":
        return rnnlab.RNN("lstm", 3, 4, num_layers=2)
    return rnnlab.GridLSTM(3, 4, num_layers=2)


def test_pickle_deepcopy_and_torch_save(model):
    x = torch.randn(5, 2, 3)
    expected = model(x)[0]
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    for other in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model),
                  torch.load(buffer, weights_only=False)):
        torch.testing.assert_close(other(x)[0], expected)
        assert other.state_dict().keys() == model.state_dict().keys()


def test_unpickles_in_a_fresh_process(tmp_path):
    """The state class and the plan come back without the cells having been built first."""
    net = rnnlab.RNN("peephole", 3, 4)
    x = torch.randn(4, 2, 3)
    torch.save({"net": net, "x": x, "y": net(x)[0]}, tmp_path / "m.pt")
    code = ("import torch; d = torch.load(r'%s', weights_only=False); "
            "torch.testing.assert_close(d['net'](d['x'])[0], d['y']); print('ok')"
            % (tmp_path / "m.pt"))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_jit_trace_is_refused_naming_torch_compile(model):
    with pytest.raises(RuntimeError, match="torch.compile"):
        torch.jit.trace(model, torch.randn(5, 2, 3), check_trace=False)


@pytest.mark.parametrize("make", [lambda: rnnlab.RNN("gru", 3, 4),
                                  lambda: rnnlab.GridLSTM(3, 4)])
def test_zero_steps_and_wrong_dtype_are_clear_errors(make):
    net = make()
    with pytest.raises(ValueError, match="0 time steps"):
        net(torch.randn(0, 2, 3))
    with pytest.raises(TypeError, match=r"float64 .* parameters are torch.float32.*convert"):
        net(torch.randn(5, 2, 3, dtype=torch.float64))


@pytest.mark.parametrize("kind, mode", [(torch.nn.LSTM, "LSTM"), (torch.nn.GRU, "GRU"),
                                        (torch.nn.RNN, "RNN_TANH")])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_torch_state_dict_loads(kind, mode, bidirectional, tmp_path):
    torch.manual_seed(0)
    module = kind(3, 5, num_layers=2, bidirectional=bidirectional)
    torch.save(module.state_dict(), tmp_path / "w.pt")
    state = torch.load(tmp_path / "w.pt")
    x = torch.randn(6, 2, 3)
    expected = module(x)[0]
    net = rnnlab.RNN.from_torch(state, mode=mode)
    torch.testing.assert_close(net(x)[0], expected, atol=1e-5, rtol=1e-4)
    cell = {"LSTM": "lstm", "GRU": "gru_torch", "RNN_TANH": "rnn"}[mode]
    fresh = rnnlab.RNN(cell, 3, 5, num_layers=2, bidirectional=bidirectional)
    assert fresh.load_torch_state_dict(state) is fresh
    torch.testing.assert_close(fresh(x)[0], expected, atol=1e-5, rtol=1e-4)


def test_torch_state_dict_mismatches_are_clear():
    state = torch.nn.LSTM(3, 5).state_dict()
    with pytest.raises(ValueError, match=r"this RNN is \(3, 6, 1, False\)"):
        rnnlab.RNN("lstm", 3, 6).load_torch_state_dict(state)
    with pytest.raises(ValueError, match="another kind of module"):
        rnnlab.RNN.from_torch(state, mode="GRU")
    with pytest.raises(ValueError, match="cells lstm, gru_torch and rnn"):
        rnnlab.RNN("cifg", 3, 5).load_torch_state_dict(state)
    with pytest.raises(ValueError, match="needs mode="):
        rnnlab.RNN.from_torch(state)


class _Head(torch.nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = rnnlab.RNN(cell, 6, 8, num_layers=2)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def _compiled_matches_eager(backend: str, cell: str = "lstm"):
    torch.manual_seed(0)
    model = _Head(cell)
    x = torch.randn(7, 4, 6)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    y = compiled(x)  # fullgraph: a graph break would raise here
    torch.testing.assert_close(y, model(x))
    y.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).square().sum().backward()
    for a, b in zip(grads, [p.grad for p in model.parameters()]):
        torch.testing.assert_close(a, b)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.parametrize("cell", ["lstm", pytest.param("gru", marks=pytest.mark.slow)])
def test_torch_compile_fullgraph(cell):
    """The fused engine is one custom op (rnnlab::sequence): no graph break, same values and
    gradients (aot_eager: the autograd and fake-tensor paths without code generation)."""
    _compiled_matches_eager("aot_eager", cell)


@pytest.mark.slow
def test_torch_compile_inductor():
    _compiled_matches_eager("inductor")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_custom_op_outputs_are_laid_out_as_their_fake_kernels_say(cell):
    """A compiled graph reads the ops' outputs with the fake kernels' shapes and strides
    (contiguous): the real ops must agree, gradients of weights assembled as ``cat(…).t()``
    included (inductor checks this at run time; aot_eager above does not)."""
    from rnnlab.engine import custom_op

    torch.manual_seed(0)
    c = rnnlab.cells.make(cell, 6, 5)
    program, keys = c.program, custom_op._keys(c.program)
    prepared = c.weights()
    weights = [prepared[k] for k in keys]
    x, states = torch.randn(4, 3, 6), [torch.randn(3, 5) for _ in c.graph.states]
    out = custom_op.sequence(custom_op.handle_of(program), x, states, weights, True)
    for real in out[:-1]:
        assert real.is_contiguous()
    grads = [torch.randn_like(t) for t in out[:-1]]
    found = custom_op.sequence_backward(out[-1], [x, *states, *weights], grads)
    assert any(not w.is_contiguous() for w in weights)  # transposed views: the case that broke
    for g, t in zip(found, [x, *states, *weights], strict=True):
        assert g.shape == t.shape and g.is_contiguous(), (tuple(g.shape), g.stride())


def test_cached_inference_weights_follow_parameter_updates():
    """No-grad calls reuse the assembled weights only while no parameter changed: after an
    optimizer step, load_state_dict or .double() the next call uses the new values."""
    torch.manual_seed(0)
    net = rnnlab.RNN("peephole", 3, 4)
    x = torch.randn(5, 2, 3)
    with torch.no_grad():
        before = net(x)[0]
        assert torch.equal(net(x)[0], before)  # served from the cache
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    net(x)[0].square().sum().backward()
    optimizer.step()
    fresh = copy.deepcopy(net)
    with torch.inference_mode():
        after = net(x)[0]
        assert not torch.allclose(after, before)
        torch.testing.assert_close(after, fresh(x)[0])
    net.load_state_dict(rnnlab.RNN("peephole", 3, 4).state_dict())
    with torch.no_grad():
        torch.testing.assert_close(net(x)[0], copy.deepcopy(net)(x)[0])
        torch.testing.assert_close(net.double()(x.double())[0].float(),
                                   copy.deepcopy(net)(x.double())[0].float())


@pytest.mark.parametrize("make", [lambda: rnnlab.RNN("lstm", 3, 4, num_layers=2),
                                  lambda: rnnlab.GridLSTM(3, 4, num_layers=2)])
def test_one_packed_path_with_a_given_state(make):
    """Both modules take unsorted packed batches and a state in the caller's batch order and
    give each sequence what it gets alone (rnnlab.engine.packing)."""
    from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

    torch.manual_seed(1)
    net = make().double()
    seqs = [torch.randn(n, 3, dtype=torch.float64) for n in (2, 5, 3)]
    state = tuple(torch.randn(2, 3, 4, dtype=torch.float64) for _ in range(2))
    output, final = net(pack_sequence(seqs, enforce_sorted=False), state)
    padded, _ = pad_packed_sequence(output)
    for b, seq in enumerate(seqs):
        alone, alone_final = net(seq[:, None], tuple(s[:, b:b + 1] for s in state))
        torch.testing.assert_close(padded[:len(seq), b], alone[:, 0])
        for f, g in zip(final, alone_final):
            torch.testing.assert_close(f[:, b], g[:, 0])


def test_torch_compile_backward_twice_through_a_retained_graph():
    """The engine's kept buffers are used once; a second backward redoes its forward. (torch's
    donated buffers forbid retain_graph in compiled backward graphs: turned off here.)"""
    torch.manual_seed(0)
    model = _Head("lstm")
    x = torch.randn(5, 3, 6)
    torch._dynamo.reset()
    grads = []
    with torch._functorch.config.patch(donated_buffer=False):
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        for run in (compiled, model):
            model.zero_grad()
            loss = run(x).square().sum()
            loss.backward(retain_graph=True)
            loss.backward()
            grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_a_small_step_under_torch_compile_is_traced_and_trains():
    """A single small step takes the small-step route (torch ops) also while torch.compile
    traces, so the compiled graph differentiates it: gradients equal eager mode (an opaque
    custom op running the step with torch ops inside could not be differentiated)."""
    torch.manual_seed(0)
    rnn = rnnlab.RNN("lstm", 8, 16)
    x = torch.randn(1, 3, 8)
    eager = torch.autograd.grad(rnn(x)[0].sum(), list(rnn.parameters()))
    compiled = torch.compile(rnn)
    traced = torch.autograd.grad(compiled(x)[0].sum(), list(rnn.parameters()))
    for a, b in zip(eager, traced):
        torch.testing.assert_close(a, b)


def test_torch_compile_fullgraph_one_small_step_of_a_new_plan():
    """A single small step (sampling) is traced into the graph, the first call of a plan too:
    the reference executor makes its instructions' functions as the trace goes."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = rnnlab.RNN("gru", 5, 7)  # sizes no other test uses: a plan not yet run
    x = torch.randn(1, 2, 5)
    compiled = torch.compile(lambda x: model(x)[0], fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), model(x)[0])


def test_import_leaves_heavy_modules_alone():
    """``import rnnlab`` and the command line's modules do not import torch._dynamo (about 2 s,
    more than rnnlab itself), scipy.io or jiwer (0.3 and 0.16 s): every command and worker
    process starts without them; the code that needs one imports it."""
    heavy = ("torch._dynamo", "scipy.io", "jiwer")
    code = ("import sys, rnnlab, rnnlab.cli.main, rnnlab.train.trainer; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_program_handle_is_marked_as_torch_compile_marks_a_constant():
    """The custom op's program handle carries exactly the mark
    ``torch.compiler.assume_constant_result`` gives (set without importing dynamo)."""
    from rnnlab.engine import custom_op

    def reference():
        return 0

    torch.compiler.assume_constant_result(reference)
    marks = set(vars(reference))
    assert marks
    assert all(getattr(custom_op.handle_of, k, None) == getattr(reference, k) for k in marks)
