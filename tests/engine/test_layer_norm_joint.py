"""Layer normalisation with joint statistics (``layer_norm="joint"``): Ba et al.'s LN-LSTM
(eqs. 20-22) and haste's ``LayerNormLSTM`` normalise the input part of all four gates together
(one mean and variance over the 4H units of W x) and the recurrent part together (over R h).

The LN-LSTM is written here in plain torch from the paper's equations (concatenated gates,
``torch.nn.functional.layer_norm`` over 4H) and compared with the library through every
executor (``test_regularisers.test_reference_torch_and_native_loops_agree`` runs it through
each loop with zoneout); the ops it is built from (``mean``, ``rsqrt``) are checked on their
own; scaling one gate's matrix alone changes a joint-normalised cell (its statistics are
shared) where it leaves a per-gate one unchanged; parts that read another gate (the GRU's
``R (r ⊙ h)``) keep their own statistics; search mutants equal the node interpreter.
"""

import pytest
import torch
from graph_interpreter import assert_same_values_and_gradients, interpret
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnlab
from rnnlab import cells
from rnnlab.cells.module import Cell
from rnnlab.engine import explain, fused
from rnnlab.engine.unroll import unroll
from rnnlab.lang.mutate import mutate_steps
from rnnlab.lang.regularise import layer_norm, layer_norm_gains, regularise

I, H, B, T = 3, 8, 4, 6
GATES = "ifzo"


def ln_lstm_reference(c, x, state=None):
    """Ba et al.'s LN-LSTM: LN over the 4H units of W x and of R h, gains per unit, one bias;
    the cell normalised before tanh. x (T, B, I); c: a layer with rnnlab's parameter names."""
    def cat(stem):
        return torch.cat([getattr(c, f"{stem}_{g}") for g in GATES], 0)

    W, R, b = cat("W"), cat("R"), cat("b")
    g_W, g_R = cat("g_W"), cat("g_R")

    def ln(v, gain):  # over all 4H units at once
        return gain * torch.nn.functional.layer_norm(v, v.shape[-1:], eps=1e-5)

    h, cc = state if state is not None else (x.new_zeros(x.shape[1], H),) * 2
    outputs = []
    for t in range(x.shape[0]):
        pre = ln(x[t] @ W.T, g_W) + ln(h @ R.T, g_R) + b
        i, f, z, o = pre.split(H, 1)
        cc = torch.sigmoid(f) * cc + torch.sigmoid(i) * torch.tanh(z)
        h = torch.sigmoid(o) * torch.tanh(ln(cc, c.g_c) + c.b_c)
        outputs.append(h)
    return torch.stack(outputs), (h, cc)


def _perturbed(module, scale=0.1):
    with torch.no_grad():  # gains and shifts away from 1 and 0
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lstm_equals_ba_et_al_ln_lstm(dtype):
    torch.manual_seed(0)
    rnn = _perturbed(rnnlab.RNN("lstm", I, H, layer_norm="joint").to(dtype))
    c = rnn.cells.layer0
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    h0, c0 = (torch.randn(B, H, dtype=dtype) for _ in range(2))
    out, (h, cc) = rnn(x, (h0[None], c0[None]))
    ref, (h_ref, c_ref) = ln_lstm_reference(c, x, (h0, c0))
    tol = {} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-5}
    torch.testing.assert_close(out, ref, **tol)
    torch.testing.assert_close(cc[0], c_ref, **tol)
    gy = torch.randn_like(out)
    params = [x, *rnn.parameters()]
    for a, b in zip(torch.autograd.grad((out * gy).sum(), params),
                    torch.autograd.grad((ref * gy).sum(), params)):
        torch.testing.assert_close(a, b, **({} if dtype == torch.float64
                                            else {"rtol": 1e-4, "atol": 1e-4}))


def test_gains_start_at_one_and_explain_says_fused():
    c = cells.make("lstm", I, H, layer_norm="joint", forget_bias=2.0)
    for name in ("g_W_i", "g_W_o", "g_R_f", "g_R_z", "g_c"):
        assert torch.equal(getattr(c, name).detach(), torch.ones(H)), name
    assert c.b_f.eq(2.0).all()
    assert explain(c).startswith("fused"), explain(c)
    assert "1 GEMM(s)" in explain(c)


def test_gradcheck_float64():
    torch.manual_seed(2)
    rnn = _perturbed(rnnlab.RNN("lstm", I, 4, layer_norm="joint").double(), 0.3)
    x = torch.randn(3, 2, I, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(1, 2, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h0: rnn(x, (h0, torch.zeros_like(h0)))[0],
                                    (x, h0))


def test_packed_bidirectional_equals_each_sequence_alone():
    torch.manual_seed(3)
    rnn = _perturbed(rnnlab.RNN("lstm", I, H, bidirectional=True, layer_norm="joint"))
    lengths = torch.tensor([6, 4, 3, 1])
    x = torch.randn(T, B, I)
    out, _ = pad_packed_sequence(rnn(pack_padded_sequence(x, lengths))[0])
    for b, n in enumerate(lengths.tolist()):
        alone, _ = rnn(x[:n, b:b + 1])
        torch.testing.assert_close(out[:n, b:b + 1], alone, rtol=1e-5, atol=1e-5)


def test_statistics_are_shared_by_the_gates():
    """Scaling one gate's input matrix: a per-gate LN does not see it (that gate's part is
    normalised by its own spread); a joint LN does (the shared variance moves). Scaling all
    four gates' matrices together leaves both unchanged (Ba et al.'s invariance)."""
    torch.manual_seed(4)
    x = torch.randn(T, B, I, dtype=torch.double)
    outputs = {}
    for mode in ("gate", "joint"):
        torch.manual_seed(5)
        rnn = _perturbed(rnnlab.RNN("lstm", I, H, layer_norm=mode).double())
        c = rnn.cells.layer0
        with torch.no_grad():  # pre-activation variances far above ε
            for g in GATES:
                getattr(c, f"W_{g}").mul_(30.0)
        before, _ = rnn(x)
        with torch.no_grad():
            c.W_f.mul_(3.0)
        one, _ = rnn(x)
        with torch.no_grad():
            for g in "izo":
                getattr(c, f"W_{g}").mul_(3.0)
        every, _ = rnn(x)
        outputs[mode] = (before, one, every)
    before, one, every = outputs["gate"]
    torch.testing.assert_close(one, before, rtol=1e-4, atol=1e-4)  # up to ε = 1e-5
    before, one, every = outputs["joint"]
    assert (one - before).abs().max() > 1e-2
    torch.testing.assert_close(every, before, rtol=1e-4, atol=1e-4)


def test_a_part_that_reads_another_gate_keeps_its_own_statistics():
    """The GRU's candidate reads the reset gate through R (r ⊙ h): pooling it with the gates'
    recurrent parts would make r depend on itself, so it is normalised alone (``norm``), while
    r and z share theirs; all input parts share one pool."""
    g = layer_norm(cells.graph("gru", I, H), "joint")
    pools = {node.args for node in g.nodes.values() if node.op == "pnorm"}
    refs = [sorted(g.nodes[a].ref for a in args) for args in sorted(pools, key=len)]
    assert refs == [["W_hr", "W_hz"], ["W_xh", "W_xr", "W_xz"]], refs
    assert "norm(W_hh (r ⊙ h))" in str(g), str(g)


def test_printed_lstm_shows_the_pooled_statistics():
    text = str(layer_norm(cells.graph("lstm", I, H), "joint"))
    # a1 … a8: W_i x, R_i h, W_f x, W_z x, W_o x, R_f h, R_z h, R_o h (each read four times)
    assert "a1 = W_i x\na2 = R_i h\n" in text, text
    assert "i = σ(g_W_i ⊙ norm(a1, a3, a4, a5)[1] + b_i + g_R_i ⊙ norm(a2, a6, a7, a8)[1])" \
        in text, text
    assert "o = σ(g_W_o ⊙ norm(a1, a3, a4, a5)[4] + b_o + g_R_o ⊙ norm(a2, a6, a7, a8)[4])" \
        in text, text
    assert "c_ln = g_c ⊙ norm(c') + b_c" in text, text
    assert layer_norm_gains(layer_norm(cells.graph("lstm", I, H), "joint")) == {
        *(f"g_{m}_{g}" for m in "WR" for g in GATES), "g_c"}


@pytest.mark.parametrize("engine", ["native", "python"])
def test_pooled_parts_out_of_order_are_copied_side_by_side(engine):
    """A pool whose parts are not one GEMM's result in order (the LSTM's pools with their
    arguments reversed, in the step and in the hoist; a part that is a sum of two maps):
    the engine copies them side by side first and keeps the copy for the backward step; values
    and gradients equal the node interpreter's."""
    from rnnlab.lang.graph import Node

    g = layer_norm(cells.graph("lstm", I, H), "joint")
    nodes = dict(g.nodes)
    for name, node in g.nodes.items():
        if node.op == "pnorm":
            n = len(node.args)
            nodes[name] = Node("pnorm", node.args[::-1], value=float(n - 1 - int(node.value)))
    # one part of the recurrent pool becomes a sum of two maps (a lane computed in the step)
    first = next(node.args[0] for node in nodes.values() if node.op == "pnorm"
                 and g.nodes[node.args[0]].ref.startswith("R"))
    nodes["_extra"] = Node("linear", (g.nodes[first].args[0],), ref="U")
    nodes["_sum"] = Node("add", (first, "_extra"))
    for name, node in list(nodes.items()):
        if node.op == "pnorm" and first in node.args:
            nodes[name] = Node("pnorm", tuple("_sum" if a == first else a for a in node.args),
                               value=node.value)
    graph = g.replace(nodes=nodes).validate()
    c = _perturbed(Cell(graph).double())
    comp = fused.compiled(c.program, True, False)
    names = {b.name for b in comp.plan.buffers}
    assert {"Q0", "Qh0"} <= names, names  # both pools copied side by side
    x = torch.randn(T, B, I, dtype=torch.double, requires_grad=True)
    state = tuple(torch.randn(B, H, dtype=torch.double) for _ in graph.carried)
    with rnnlab.engine.backend(engine):
        out, _ = unroll(c, x, state)
    assert type(out.grad_fn).__name__ == "FusedSequenceBackward"
    expected, _ = interpret(graph, dict(c.named_parameters()), x, state)
    assert_same_values_and_gradients(out, expected, [x, *c.parameters()])


def test_mean_and_rsqrt_ops_in_a_hand_written_cell():
    """The two ops the joint statistics are written with are ops of the language: a JSON cell
    may use them, and the fused engine equals the node interpreter on one."""
    from rnnlab.lang import Graph
    from rnnlab.lang.graph import Node

    g = cells.graph("rnn", H, H)
    nodes = dict(g.nodes)
    new = g.writes["h"]
    nodes["_m"] = Node("mean", (new,))
    nodes["_d"] = Node("sub", (new, "_m"))
    nodes["_one"] = Node("const", value=1.0)
    nodes["_q"] = Node("add", ("_one", "_m2"))
    nodes["_sq"] = Node("mul", ("_d", "_d"))
    nodes["_m2"] = Node("mean", ("_sq",))
    nodes["hn"] = Node("mul", ("_d", "_r"))
    nodes["_r"] = Node("rsqrt", ("_q",))
    graph = g.replace(nodes=nodes, writes={"h": "hn"}, output="hn").validate()
    assert Graph.from_json(graph.to_json()) == graph
    # its own means are not a layer norm: the cell may still be normalised (one gate: `norm`)
    assert "g_R ⊙ norm(R h)" in str(layer_norm(graph, "joint"))
    c = _perturbed(Cell(graph).double())
    assert explain(c, dtype=torch.double).startswith("fused"), explain(c)
    x = torch.randn(T, B, H, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.double)
    from rnnlab.engine.unroll import unroll

    out, _ = unroll(c, x, (h0,))
    params = dict(c.named_parameters())
    expected, _ = interpret(graph, params, x, (h0,))
    torch.testing.assert_close(out, expected)
    for a, b in zip(torch.autograd.grad(out.sum(), [x, *params.values()]),
                    torch.autograd.grad(expected.sum(), [x, *params.values()])):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("k", range(6))
def test_mutants_equal_the_interpreter(k):
    import random

    rng = random.Random(40 + k)
    zoo = ("lstm", "gru", "mut1", "mut3", "peephole", "cifg")
    while True:  # a mutant with pooled statistics (two gates or more read x or the state)
        graph = mutate_steps(cells.graph(zoo[k], H, H), rng, rng.randint(1, 6))
        reg = regularise(graph, layer_norm="joint")
        if any(node.op == "pnorm" for node in reg.nodes.values()):
            break
    c = _perturbed(Cell(reg).double())
    assert explain(c, dtype=torch.double).startswith("fused"), f"{explain(c)}\n{reg}"
    x = torch.randn(T, B, H, dtype=torch.double, requires_grad=True)
    state = tuple(torch.randn(B, H, dtype=torch.double) for _ in reg.carried)
    from rnnlab.engine.unroll import unroll

    out, _ = unroll(c, x, state)
    params = dict(c.named_parameters())
    expected, _ = interpret(reg, params, x, state)
    assert_same_values_and_gradients(out, expected, [x, *params.values()])


def test_a_normalised_cell_is_not_normalised_twice():
    from rnnlab.lang.graph import GraphError

    for mode in ("gate", "joint"):
        once = layer_norm(cells.graph("lstm", I, H), mode)
        for again in ("gate", "joint"):
            with pytest.raises(GraphError, match="layer-normalised already"):
                layer_norm(once, again)


def test_option_values_are_checked():
    for bad in (0.5, "both", 1):
        with pytest.raises(ValueError, match="layer_norm must be True, False, 'gate' or 'joint'"):
            cells.make("lstm", I, H, layer_norm=bad)
    with pytest.raises(ValueError, match="stats must be one of"):
        layer_norm(cells.graph("lstm", I, H), "all")
    assert str(cells.make("lstm", I, H, layer_norm="gate").graph) == str(
        cells.make("lstm", I, H, layer_norm=True).graph)


def test_grid_and_command_line_take_joint():
    from rnnlab.grid.deep import DeepGridLSTM
    from rnnlab.train.config import convert

    grid = DeepGridLSTM(I, H, 2, layer_norm="joint")
    cell = grid.block.dimension_cells["0"][0]
    pools = {node.args for node in cell.graph.nodes.values() if node.op == "pnorm"}
    assert pools and all(len(args) == 4 for args in pools), cell.graph  # the four gates
    out = grid(torch.randn(T, B, I))
    (out[0] if isinstance(out, tuple) else out).sum().backward()
    assert cell.g_R_u.grad is not None and cell.g_R_u.grad.abs().sum() > 0
    annotation = bool | str
    assert convert("joint", annotation, "model.layer_norm") == "joint"
    assert convert("true", annotation, "model.layer_norm") is True
    assert convert("off", annotation, "model.layer_norm") is False
