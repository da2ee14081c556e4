"""The cuDNN route: whole networks of the cells cuDNN computes run in torch's own RNN function.

On CUDA that function is cuDNN; on the CPU the very same call runs torch's loop, so the route's
weight assembly, gate order, bias split, state layout, packing and dropout are tested here
against the native engine (values and gradients) and against torch.nn.LSTM / GRU / RNN."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence

import rnnlab
from rnnlab import cells, engine
from rnnlab.engine import cudnn
from rnnlab.engine.route import Executor, network_route
from rnnlab.lang import Graph, cell, relu, sigmoid, tanh

CUDNN_CELLS = ("lstm", "gru_torch", "rnn", "rnn_relu")


@cell("my_relu_rnn", state=("h",))
def my_relu_rnn(x, state, p):
    """A ReLU RNN as a user writes it (the zoo has none)."""
    pre = p.b + p.R @ state.h + p.W @ x  # terms in another order than torch's
    return relu(pre), (relu(pre),)


@cell("my_lstm", state=("h", "c"))
def my_lstm(x, state, p):
    """lstm's equations with other local names and the sums in another order."""
    h, c = state
    in_gate = sigmoid(p.b_i + p.W_i @ x + p.R_i @ h)
    forget = sigmoid(p.R_f @ h + p.W_f @ x + p.b_f)
    block = tanh(p.W_z @ x + (p.R_z @ h + p.b_z))
    out_gate = sigmoid(p.W_o @ x + p.R_o @ h + p.b_o)
    c_new = in_gate * block + forget * c
    return out_gate * tanh(c_new), (out_gate * tanh(c_new), c_new)


@cell("lstm", state=("h", "c"))
def lstm_without_output_tanh(x, state, p):
    """Named lstm, but h = o ⊙ c: not what cuDNN computes."""
    h, c = state
    i = sigmoid(p.W_i @ x + p.R_i @ h + p.b_i)
    f = sigmoid(p.W_f @ x + p.R_f @ h + p.b_f)
    z = tanh(p.W_z @ x + p.R_z @ h + p.b_z)
    o = sigmoid(p.W_o @ x + p.R_o @ h + p.b_o)
    c = f * c + i * z
    return o * c, (o * c, c)


def net_of(name, I=3, H=5, **options):
    torch.manual_seed(0)
    if name == "rnn_relu":
        return rnnlab.RNN(my_relu_rnn, I, H, **options)
    return rnnlab.RNN(name, I, H, **options)


@pytest.fixture
def taken(monkeypatch):
    """Counts the calls of the cuDNN route's forward."""
    calls = []
    real = cudnn.forward

    def counted(*args, **kwargs):
        calls.append(args[1].mode)
        return real(*args, **kwargs)

    monkeypatch.setattr(cudnn, "forward", counted)
    return calls


def _run(net, backend, x, state, loss_state=True):
    """Output, final state and every gradient (input, state, parameters) under ``backend``."""
    net.zero_grad()
    leaves = [t.detach().clone().requires_grad_() for t in x]
    start = tuple(s.detach().clone().requires_grad_() for s in state)
    packed = pack_sequence(leaves, enforce_sorted=False)
    with engine.backend(backend):
        out, final = net(packed, start[0] if len(start) == 1 else start)
    final = (final,) if isinstance(final, torch.Tensor) else tuple(final)
    weights = torch.linspace(-1, 1, out.data.numel(), dtype=out.data.dtype)
    loss = (out.data.reshape(-1) * weights).sum()
    if loss_state:
        loss = loss + sum((f * f.detach().sin()).sum() for f in final)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    return out.data, final, [t.grad for t in leaves], [s.grad for s in start], grads


def _assert_same(a, b):
    out_a, final_a, gx_a, gs_a, gp_a = a
    out_b, final_b, gx_b, gs_b, gp_b = b
    torch.testing.assert_close(out_a, out_b)
    for pairs in (zip(final_a, final_b), zip(gx_a, gx_b), zip(gs_a, gs_b)):
        for p, q in pairs:
            torch.testing.assert_close(p, q)
    assert gp_a.keys() == gp_b.keys()
    for name in gp_a:
        torch.testing.assert_close(gp_a[name], gp_b[name], msg=name)


# ---- values and gradients ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", CUDNN_CELLS)
def test_packed_bidirectional_two_layers_with_state_equal_the_native_engine(name, dtype,
                                                                            taken):
    net = net_of(name, num_layers=2, bidirectional=True).to(dtype)
    x = [torch.randn(L, 3, dtype=dtype) for L in (4, 6, 2, 6)]  # unsorted lengths
    state = tuple(torch.randn(4, 4, 5, dtype=dtype) for _ in net.state_fields)
    native = _run(net, "auto", x, state)
    assert taken == []  # auto on the CPU: the native engine
    routed = _run(net, "cudnn", x, state)
    assert taken == [cudnn.kind_of(net.cells["layer0"].graph)[0].mode]
    _assert_same(native, routed)
    assert all(g.abs().sum() > 0 for g in routed[4].values())  # every W_*, R_*, b_* learns


@pytest.mark.parametrize("name", CUDNN_CELLS)
def test_batch_first_without_state_and_without_biases_equal_the_native_engine(name, taken):
    for options in ({"batch_first": True}, {"bias": False, "num_layers": 2}):
        net = net_of(name, **options).double()
        x = torch.randn(2, 7, 3, dtype=torch.double)
        with engine.backend("auto"):
            want, want_state = net(x)
        with engine.backend("cudnn"):
            got, got_state = net(x)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(torch.stack(tuple(got_state) if isinstance(
            got_state, tuple) else (got_state,)), torch.stack(tuple(want_state) if isinstance(
                want_state, tuple) else (want_state,)))
    assert len(taken) == 2


@pytest.mark.parametrize("forget_bias", [0.0, 1.0, 2.5])
def test_lstm_with_any_forget_bias_equals_torch_nn_lstm(forget_bias, taken):
    """Independent of rnnlab's engines: torch.nn.LSTM holding the same weights."""
    net = net_of("lstm", num_layers=2, bidirectional=True, forget_bias=forget_bias).double()
    ref = nn.LSTM(3, 5, num_layers=2, bidirectional=True).double()
    ref.load_state_dict(net.torch_state_dict())
    x = torch.randn(6, 2, 3, dtype=torch.double)
    with engine.backend("cudnn"):
        out, (h, c) = net(x)
    want, (h_want, c_want) = ref(x)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(h, h_want)
    torch.testing.assert_close(c, c_want)
    assert taken == ["LSTM"]


def test_gru_and_relu_rnn_equal_torch_nn_gru_and_rnn(taken):
    torch.manual_seed(1)
    gru = nn.GRU(3, 5, num_layers=2).double()
    net = rnnlab.RNN.from_torch(gru)
    relu_ref = nn.RNN(3, 5, nonlinearity="relu", bidirectional=True).double()
    relu_net = net_of("rnn_relu", bidirectional=True).double()
    with torch.no_grad():  # the ReLU RNN's weights into torch's (one block, b_hh zero)
        for key, cell_ in relu_net.cells.items():
            tag = key.replace("layer", "_l")
            getattr(relu_ref, "weight_ih" + tag).copy_(cell_.W)
            getattr(relu_ref, "weight_hh" + tag).copy_(cell_.R)
            getattr(relu_ref, "bias_ih" + tag).copy_(cell_.b)
            getattr(relu_ref, "bias_hh" + tag).zero_()
    x = torch.randn(5, 2, 3, dtype=torch.double)
    with engine.backend("cudnn"):
        torch.testing.assert_close(net(x)[0], gru(x)[0])
        torch.testing.assert_close(relu_net(x)[0], relu_ref(x)[0])
    assert taken == ["GRU", "RNN_RELU"]


def test_dropout_between_layers_is_torch_s_and_off_in_evaluation(taken):
    net = net_of("lstm", num_layers=3, dropout=0.5).double()
    ref = nn.LSTM(3, 5, num_layers=3, dropout=0.5).double()
    ref.load_state_dict(net.torch_state_dict())
    x = torch.randn(6, 4, 3, dtype=torch.double)
    with engine.backend("cudnn"):
        torch.manual_seed(7)
        trained = net(x)[0]
        torch.manual_seed(7)
        torch.testing.assert_close(trained, ref(x)[0])  # the same masks from the same draws
        net.eval()
        evaluated = net(x)[0]
    assert (trained - evaluated).abs().max() > 1e-3  # dropout acted in training
    with engine.backend("auto"):
        torch.testing.assert_close(evaluated, net(x)[0])
    assert len(taken) == 2


# ---- which networks take it ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["peephole", "gru", "mut1", "mut3", "cifg", "nfg", "nog",
                                  "niaf", "fgr", "lstm_f", "grid_lstm"])
def test_cells_cudnn_does_not_compute_never_take_it(name, taken):
    net = net_of(name, I=5, num_layers=2)
    with engine.backend("cudnn"):
        assert network_route(net, torch.device("cuda")) is None
        net(torch.randn(3, 2, 5))
        # each layer of it takes the generated Triton kernels, or the reference loop
        assert engine.explain(net.cells["layer0"], device="cuda").startswith(
            ("fused (triton): ", "reference: "))
    assert taken == []
    assert "not one cuDNN computes" in cudnn.network_kind(net)[1]


@pytest.mark.parametrize("options, why", [
    ({"recurrent_dropout": 0.25}, "regularised"),
    ({"weight_drop": 0.25}, "regularised"),
    ({"skip": True}, "skip connections"),
    ({"dilations": (1, 2)}, "dilations"),
])
def test_networks_cudnn_cannot_run_never_take_it(options, why, taken):
    net = net_of("lstm", num_layers=2, **options)
    with engine.backend("cudnn"):
        assert network_route(net, torch.device("cuda")) is None
        net(torch.randn(4, 2, 3))
    assert taken == []
    assert why in cudnn.network_kind(net)[1]


def test_a_cell_is_recognised_by_its_equations_not_its_name(taken):
    assert cudnn.kind_of(cells.graph(my_lstm, 3, 5))[0] is cudnn.LSTM
    assert cudnn.kind_of(cells.graph("np", 3, 5))[0] is cudnn.LSTM  # Greff's NP: no peepholes
    assert cudnn.kind_of(cells.graph(lstm_without_output_tanh, 3, 5))[0] is None
    again = Graph.from_json(cells.graph("gru_torch", 3, 5).to_json())  # a JSON cell
    assert cudnn.kind_of(again)[0] is cudnn.GRU
    lookalike = rnnlab.RNN(lstm_without_output_tanh, 3, 5)
    with engine.backend("cudnn"):
        lookalike(torch.randn(2, 1, 3))
    assert taken == []
    net = rnnlab.RNN(my_lstm, 3, 5)
    with engine.backend("cudnn"):
        net(torch.randn(2, 1, 3))
    assert taken == ["LSTM"]


def test_the_default_is_native_on_the_cpu_and_cudnn_off_it():
    net = net_of("lstm", num_layers=2)
    with engine.backend("auto"):
        assert network_route(net, torch.device("cpu")) is None
        chosen = network_route(net, torch.device("cuda"))
    assert chosen.executor is Executor.CUDNN and chosen.plan is cudnn.LSTM
    assert "2 layer(s)" in chosen.reason
    for backend in ("native", "python", "reference"):
        with engine.backend(backend):
            assert network_route(net, torch.device("cuda")) is None
    with engine.backend("cudnn"):
        assert network_route(net, torch.device("cpu")).executor is Executor.CUDNN


# ---- explain -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lstm", "gru_torch", "rnn"])
def test_explain_names_the_cudnn_route_on_cuda_without_a_gpu(name):
    c = cells.make(name, 3, 5)
    with engine.backend("auto"):
        on_cuda = engine.explain(c, device="cuda")
        on_cpu = engine.explain(c)
        forced = None
    with engine.backend("cudnn"):
        forced = engine.explain(c)
    assert on_cuda.startswith("cudnn: ") and name in on_cuda
    assert not on_cpu.startswith("cudnn")  # the native engine on the CPU, as before
    assert forced.startswith("cudnn: ")
    peephole = engine.explain(cells.make("peephole", 3, 5), device="cuda")
    assert peephole.startswith(("fused (triton): ", "reference: "))


def test_the_backend_is_a_setting_like_the_others(monkeypatch):
    monkeypatch.setenv("RNNLAB_FAST", "cudnn")
    assert engine.get_backend() == "cudnn"
    with engine.backend("auto"):
        assert engine.get_backend() == "auto"


# ---- the device benchmark's smoke test -----------------------------------------------------
def test_the_gpu_benchmark_runs_on_the_cpu_at_small_sizes(capsys, tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "gpu.py"
    spec = importlib.util.spec_from_file_location("gpu_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--device", "cpu", "--sizes", "2,6,8", "--cells", "lstm", "peephole",
                        "--repeats", "2", "--json", str(tmp_path / "gpu.json")])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("CPU ") and printed[1].startswith("no GPU")
    assert {(r["model"], r["mode"]) for r in rows} == {
        (m, mode) for m in ("nn.LSTM", "lstm", "peephole") for mode in ("fwd", "fwd+bwd")}
    assert all(r["tokens_per_s"] > 0 and r["rounds"] == 2 for r in rows)
    assert all(r["ratio"] == 1.0 for r in rows if r["model"] == "nn.LSTM")
    assert {r["route"] for r in rows if r["model"] != "nn.LSTM"} <= {"fused (native)",
                                                                     "fused (torch)"}
    assert (tmp_path / "gpu.json").exists()


def test_weights_are_assembled_once_without_gradients_and_again_after_a_change(taken):
    net = net_of("gru_torch", num_layers=2)
    x = torch.randn(4, 2, 3)
    with engine.backend("cudnn"):
        with torch.no_grad():
            first = net(x)[0]
            held = cudnn.network_weights(net, cudnn.GRU)
            assert cudnn.network_weights(net, cudnn.GRU)[0] is held[0]  # reused
            net.cells["layer1"].b_hn.add_(0.5)  # in place: a new version
            changed = net(x)[0]
            assert cudnn.network_weights(net, cudnn.GRU)[0] is not held[0]
        trained = net(x)[0]  # with gradients: assembled from the parameters, differentiable
    assert (changed - first).abs().max() > 1e-3
    torch.testing.assert_close(trained, changed)
    trained.sum().backward()
    assert net.cells["layer1"].b_hn.grad.abs().sum() > 0
    with engine.backend("auto"):
        torch.testing.assert_close(net(x)[0], changed)


def test_auto_off_the_cpu_runs_the_route_end_to_end_on_the_meta_device(taken):
    """No GPU here, but any device other than the CPU takes the route under ``auto``: the meta
    device (shapes only) runs the same forward, layer assembly and torch call."""
    net = net_of("lstm", num_layers=2, bidirectional=True, device="meta")
    with engine.backend("auto"):
        out, (h, c) = net(torch.randn(5, 2, 3, device="meta"))
    assert taken == ["LSTM"]
    assert out.shape == (5, 2, 10) and h.shape == c.shape == (4, 2, 5)
