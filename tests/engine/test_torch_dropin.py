"""rnnlab.RNN as a drop-in for torch.nn.LSTM / GRU / RNN: code written for torch runs unchanged
(states, torch's parameter names, bias=False, proj_size, batch_first, flatten_parameters,
dtypes), and whatever cannot mean the same raises one line saying what to use."""

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

import rnnlab
from rnnlab.lang import cell, tanh

TORCH = {"lstm": nn.LSTM, "gru_torch": nn.GRU, "rnn": nn.RNN}


def _pair(name, **options):
    """A torch module and the rnnlab.RNN computing the same function (float64)."""
    torch.manual_seed(0)
    ref = TORCH[name](4, 5, **options).double()
    return ref, rnnlab.RNN.from_torch(ref)


# ---------------------------------------------------------------------------- the state
@pytest.mark.parametrize("name", rnnlab.cells.names())
def test_one_field_state_is_a_tensor_and_more_fields_a_state(name):
    torch.manual_seed(0)
    rnn = rnnlab.RNN(name, 4, 4, num_layers=2)
    out, state = rnn(torch.randn(3, 2, 4))
    if len(rnn.state_fields) == 1:
        assert type(state) is torch.Tensor and state.shape == (2, 2, 4)
        assert type(rnn.initial_state(2)) is torch.Tensor
    else:
        assert isinstance(state, rnn.State) and state.h.shape == (2, 2, 4)
        assert isinstance(rnn.initial_state(2), rnn.State)
    x = torch.randn(3, 2, 4)
    torch.testing.assert_close(rnn(x, rnn.initial_state(2))[0], rnn(x)[0])  # zeros, either way
    assert out.shape == (3, 2, 4)


def test_gru_h_n_as_torch_users_read_it():
    """``out, h_n = gru(x); head(h_n[-1])``: the last layer's (B, H), values as nn.GRU's."""
    ref, gru = _pair("gru_torch", num_layers=2, bidirectional=True)
    x = torch.randn(6, 3, 4, dtype=torch.double)
    (out_ref, h_ref), (out, h_n) = ref(x), gru(x)
    head = nn.Linear(5, 2).double()
    assert h_n.shape == (4, 3, 5) and head(h_n[-1]).shape == (3, 2)
    torch.testing.assert_close(out, out_ref)
    torch.testing.assert_close(h_n, h_ref)
    torch.testing.assert_close(head(h_n[-1]), head(h_ref[-1]))


@pytest.mark.parametrize("name", ["gru_torch", "lstm", "rnn"])
def test_truncated_bptt_loop_of_a_torch_user(name):
    """The loop of a torch training script — state carried as returned (or as a plain tuple),
    detached every batch — gives torch's values and gradients chunk after chunk."""
    ref, net = _pair(name, num_layers=2)
    x = torch.randn(12, 3, 4, dtype=torch.double)

    def repackage(h):
        return h.detach() if isinstance(h, torch.Tensor) else tuple(repackage(v) for v in h)

    recurrent = rnnlab.engine.interop.LAYOUTS[name].weight_hh  # weight_hh's rnnlab names
    states = {"torch": None, "rnnlab": None}
    for chunk in x.split(4):
        outputs = {}
        for label, module in (("torch", ref), ("rnnlab", net)):
            module.zero_grad()
            output, state = module(chunk, states[label])
            output.square().sum().backward()
            outputs[label] = output
            states[label] = repackage(state)
        torch.testing.assert_close(outputs["rnnlab"], outputs["torch"])
        torch.testing.assert_close(
            torch.cat([getattr(net.cells["layer1"], n).grad for n in recurrent]),
            ref.weight_hh_l1.grad)
        assert type(states["rnnlab"]) is type(states["torch"])  # a tensor, or a plain tuple


def test_state_as_tuple_list_or_state_gives_the_same():
    torch.manual_seed(0)
    rnn = rnnlab.RNN("lstm", 3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    h, c = torch.randn(2, 2, 4), torch.randn(2, 2, 4)
    expected = rnn(x, rnn.State(h, c))[0]
    torch.testing.assert_close(rnn(x, (h, c))[0], expected)
    torch.testing.assert_close(rnn(x, [h, c])[0], expected)
    with pytest.raises(ValueError, match=r"state must be a State\('h', 'c'\) \(or a tuple"):
        rnn(x, h)
    gru = rnnlab.RNN("gru", 3, 4)
    with pytest.raises(ValueError, match="state must be a tensor .* one field"):
        gru(x, (h[:1], c[:1]))


@pytest.mark.parametrize("name", ["lstm", "gru_torch"])
def test_batch_first_keeps_the_state_layer_major_as_torch(name):
    ref, net = _pair(name, num_layers=2, batch_first=True, bidirectional=True)
    x = torch.randn(3, 6, 4, dtype=torch.double)  # (B, T, I)
    (out_ref, state_ref), (out, state) = ref(x), net(x)
    torch.testing.assert_close(out, out_ref)
    for got, want in zip(*(((s,) if torch.is_tensor(s) else s) for s in (state, state_ref)),
                         strict=True):
        assert got.shape == (4, 3, 5)  # (num_layers · D, B, H), not batch-first
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(net(x, state_ref)[0], ref(x, state_ref)[0])
    wrong = torch.zeros(3, 4, 5, dtype=torch.double)
    with pytest.raises(ValueError, match=r"\(4, 3, 5\).*with batch_first too"):
        net(x, wrong if name == "gru_torch" else (wrong, wrong))


# ---------------------------------------------------------------------------- torch's names
@pytest.mark.parametrize("name", ["lstm", "gru_torch", "rnn"])
def test_torch_names_read_torch_layout(name):
    ref, net = _pair(name, num_layers=2, bidirectional=True)
    expected = {n: p.detach() for n, p in ref.named_parameters()}
    named = list(net.torch_named_parameters())
    assert [n for n, _ in named] == list(expected)
    for n, tensor in named:
        assert isinstance(tensor, rnnlab.engine.interop.TorchLayoutCopy)
        assert tensor.shape == expected[n].shape
        if n.startswith("weight"):
            torch.testing.assert_close(tensor, expected[n], rtol=0, atol=0)
            torch.testing.assert_close(getattr(net, n), expected[n], rtol=0, atol=0)
    # the biases: rnnlab holds b_ih + b_hh where torch adds them
    b_ih, b_hh = net.bias_ih_l1_reverse, net.bias_hh_l1_reverse
    if name == "gru_torch":
        torch.testing.assert_close(b_hh[10:], expected["bias_hh_l1_reverse"][10:])  # b_hn
        assert not b_hh[:10].any()
    else:
        assert not b_hh.any()
        torch.testing.assert_close(b_ih, expected["bias_ih_l1_reverse"]
                                   + expected["bias_hh_l1_reverse"])
    assert [[t.shape for t in w] for w in net.all_weights] == \
        [[t.shape for t in w] for w in ref.all_weights]
    # the torch-named state dict loads into torch and computes the same function
    other = TORCH[name](4, 5, num_layers=2, bidirectional=True).double()
    other.load_state_dict(net.torch_state_dict())
    x = torch.randn(5, 2, 4, dtype=torch.double)
    torch.testing.assert_close(other(x)[0], ref(x)[0])


WRITES = {
    "nn.init.orthogonal_": lambda w: nn.init.orthogonal_(w),
    "nn.init.uniform_": lambda w: nn.init.uniform_(w, -0.1, 0.1),
    "nn.init.xavier_uniform_": lambda w: nn.init.xavier_uniform_(w),
    "nn.init.zeros_": lambda w: nn.init.zeros_(w),
    "nn.init.constant_": lambda w: nn.init.constant_(w, 1.0),
    "data.fill_": lambda w: w.data.fill_(0.0),
    "data assignment": lambda w: setattr(w, "data", torch.zeros_like(w)),
    "slice assignment": lambda w: w.__setitem__(slice(0, 5), 1.0),
    "in-place on a view": lambda w: w[:5].mul_(2),
    "in-place on detach()": lambda w: w.detach().add_(1),
    "+=": lambda w: w.__iadd__(1),
    "out=": lambda w: torch.add(w, 1, out=w),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_torch_named_copies_refuse_writes_naming_the_way(write):
    rnn = rnnlab.RNN("lstm", 3, 5)
    before = {n: p.clone() for n, p in rnn.named_parameters()}
    with pytest.raises(RuntimeError, match=r"rnn\.weight_hh_l0 .*read-only copy.*"
                                           r"rnn\.load_torch_state_dict"):
        WRITES[write](rnn.weight_hh_l0)
    for n, p in rnn.named_parameters():
        assert torch.equal(p, before[n]), n
    with pytest.raises(ValueError, match="read-only"):
        rnn.weight_hh_l0.detach().numpy()[0, 0] = 1.0
    with pytest.raises(RuntimeError, match=r"no \.grad of its own"):
        _ = rnn.weight_hh_l0.grad


def test_torch_state_dict_edits_load_back():
    """The way to initialise in torch's terms: edit torch_state_dict(), load it back."""
    torch.manual_seed(0)
    rnn = rnnlab.RNN("lstm", 3, 5, num_layers=2)
    state = rnn.torch_state_dict()
    nn.init.orthogonal_(state["weight_hh_l1"])
    state["bias_ih_l0"][5:10] = 1.0  # the forget gate's rows, as in torch
    assert rnn.load_torch_state_dict(state) is rnn
    torch.testing.assert_close(rnn.weight_hh_l1, state["weight_hh_l1"])
    weight = rnn.weight_hh_l1.detach()
    torch.testing.assert_close(weight.T @ weight, torch.eye(5), atol=1e-5, rtol=0)
    assert torch.equal(rnn.cells["layer0"].b_f, torch.ones(5))


def test_torch_named_copies_are_differentiable():
    torch.manual_seed(0)
    rnn = rnnlab.RNN("gru_torch", 3, 4)
    penalty = sum(w.square().sum() for n, w in rnn.torch_named_parameters() if "weight_hh" in n)
    penalty.backward()
    torch.testing.assert_close(rnn.cells["layer0"].W_hz.grad, 2 * rnn.cells["layer0"].W_hz)
    assert rnn.cells["layer0"].W_iz.grad is None


def test_torch_names_elsewhere_say_what_to_use():
    rnn = rnnlab.RNN("peephole", 3, 4, num_layers=2)
    assert not hasattr(rnn, "weight_ih_l0")
    with pytest.raises(AttributeError, match=r"cell is 'peephole': use rnn.named_parameters"):
        _ = rnn.weight_ih_l0
    for read in (lambda: rnn.all_weights, lambda: rnn.torch_state_dict(),
                 lambda: list(rnn.torch_named_parameters())):
        with pytest.raises(ValueError, match="lstm, gru_torch, rnn"):
            read()
    lstm = rnnlab.RNN("lstm", 3, 4, num_layers=2)
    with pytest.raises(AttributeError, match="2 layer"):
        _ = lstm.weight_ih_l2
    with pytest.raises(AttributeError, match="no _reverse"):
        _ = lstm.weight_ih_l0_reverse
    with pytest.raises(AttributeError, match="has no attribute 'weight_xx_l0'"):
        _ = lstm.weight_xx_l0


# ---------------------------------------------------------------------------- constructor
def test_proj_size_is_zero_and_refused_otherwise():
    assert rnnlab.RNN("lstm", 3, 4).proj_size == 0
    with pytest.raises(ValueError, match=r"proj_size=2: .*torch.nn.Linear"):
        rnnlab.RNN("lstm", 3, 4, proj_size=2)


@pytest.mark.parametrize("name", ["lstm", "gru_torch", "rnn"])
def test_bias_false_is_torch_bias_false(name):
    torch.manual_seed(0)
    ref = TORCH[name](4, 5, num_layers=2, bias=False).double()
    net = rnnlab.RNN(name, 4, 5, num_layers=2, bias=False).double()
    assert net.load_torch_state_dict(ref.state_dict()) is net
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in ref.parameters())
    assert list(net.torch_state_dict()) == list(ref.state_dict())
    assert not any(n.split(".")[-1].startswith("b") for n in net.state_dict())
    x = torch.randn(5, 2, 4, dtype=torch.double, requires_grad=True)
    out_ref, out = ref(x)[0], net(x)[0]
    torch.testing.assert_close(out, out_ref)
    g_ref, = torch.autograd.grad(out_ref.sum(), x)
    g, = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(g, g_ref)
    net.reset_parameters()
    assert not any(b.any() for b in net.buffers())  # the biases stay zero
    with pytest.raises(AttributeError, match="bias=False"):
        _ = net.bias_ih_l0
    with pytest.raises(ValueError, match="with bias=False, this RNN has bias=True; build it"):
        rnnlab.RNN(name, 4, 5, num_layers=2).load_torch_state_dict(ref.state_dict())


def test_bias_false_refusals():
    with pytest.raises(ValueError, match="bias=False makes every bias zero"):
        rnnlab.RNN("lstm", 3, 4, bias=False, forget_bias=1.0)

    @cell("no_bias_rnn", state=("h",))
    def no_bias_rnn(x, state, p):
        h = tanh(p.W @ x + p.R @ state.h)
        return h, (h,)

    with pytest.raises(ValueError, match="has no biases .* leave it out"):
        rnnlab.RNN(no_bias_rnn, 3, 4, bias=False)


def test_flatten_parameters_is_a_no_op():
    torch.manual_seed(0)
    rnn = rnnlab.RNN("lstm", 3, 4, num_layers=2)
    x = torch.randn(5, 2, 3)
    before, params = rnn(x)[0], list(rnn.parameters())
    assert rnn.flatten_parameters() is None
    assert all(p is q for p, q in zip(rnn.parameters(), params, strict=True))
    torch.testing.assert_close(rnn(x)[0], before)


def test_dtypes_and_devices():
    ref, net = _pair("lstm", num_layers=2)
    x = torch.randn(5, 2, 4, dtype=torch.double)
    _, (h, c) = net(x)
    assert h.dtype == torch.float64
    torch.testing.assert_close(net.float()(x.float())[0], ref.float()(x.float())[0])
    half = rnnlab.RNN("gru_torch", 4, 5).half()
    out, h_n = half(torch.randn(3, 2, 4, dtype=torch.half))
    assert out.dtype == h_n.dtype == torch.half
    made = rnnlab.RNN("lstm", 4, 5, device="cpu", dtype=torch.float64)
    assert {p.dtype for p in made.parameters()} == {torch.float64}
    assert made.to("cpu") is made


def test_client_wordlm_benchmark_runs(capsys):
    path = Path(__file__).parents[2] / "benchmarks" / "client_wordlm.py"
    spec = importlib.util.spec_from_file_location("client_wordlm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        result = module.main(["--steps", "2", "--rounds", "2", "--vocab", "50", "--size", "8",
                              "--batch", "2", "--bptt", "3"])
    finally:
        torch.set_num_threads(threads)
    assert result["ratio"] > 0
    printed = capsys.readouterr().out
    assert printed.startswith("CPU ") and "thread(s)" in printed and "x" in printed.split()[-1]
