"""The cell language: tracing, printing, validation, rewriting and compilation."""

import pytest
import torch

import rnnlab
from rnnlab import cells
from rnnlab.lang import Graph, GraphError, Node, cell, sigmoid, tanh
from rnnlab.lang.compile import compile_graph


def tiny_graph(**changes) -> Graph:
    """h' = tanh(W x + R h + b), built by hand."""
    nodes = {
        "x": Node("input"),
        "h": Node("state", ref="h"),
        "wx": Node("linear", ("x",), ref="W"),
        "rh": Node("linear", ("h",), ref="R"),
        "b": Node("param", ref="b"),
        "_s1": Node("add", ("wx", "rh")),
        "_s2": Node("add", ("_s1", "b")),
        "h'": Node("tanh", ("_s2",)),
    }
    fields = dict(nodes=nodes, states=("h",), writes={"h": "h'"}, output="h'", input_size=3,
                  hidden_size=4, name="tiny")
    fields.update(changes)
    return Graph(**fields)


def test_hand_built_graph_equals_traced_rnn():
    g = tiny_graph().validate()
    # named intermediate nodes get an equation each; "_"-prefixed ones are inlined
    assert str(g) == "wx = W x\nrh = R h\nh' = tanh(wx + rh + b)"
    assert g.params == {"W": (4, 3), "R": (4, 4), "b": (4,)}
    torch.manual_seed(0)
    a = cells.make(g, 3, 4)
    b = cells.make("rnn", 3, 4)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3)
    torch.testing.assert_close(a(x)[0], b(x)[0])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda g: g.with_node("_s1", Node("pow", ("wx", "rh"))), "unknown op 'pow'"),
        (lambda g: g.with_node("_s1", Node("add", ("wx",))), "takes 2 argument"),
        (lambda g: g.with_node("_s1", Node("add", ("wx", "nope"))), "reads 'nope'"),
        (lambda g: g.with_node("_s1", Node("add", ("wx", "_s2"))), "cycle"),
        (lambda g: g.with_node("_s1", Node("add", ("x", "rh"))), "combines sizes 3 and 4"),
        (lambda g: g.replace(writes={}), "state 'h' is never written"),
        (lambda g: g.replace(writes={"h": "h'", "c": "h'"}), "writes state 'c'"),
        (lambda g: g.with_node("dead", Node("linear", ("h",), ref="V")),
         "parameter 'V' .* is unused"),
        (lambda g: g.with_node("dead", Node("tanh", ("h",))), "computed but never used"),
        (lambda g: g.with_node("wx2", Node("linear", ("h",), ref="W")).with_node(
            "_s1", Node("add", ("wx", "wx2"))).with_node("_s2", Node("add", ("_s1", "rh"))),
         "parameter 'W' is used with shapes"),
        (lambda g: g.replace(output="x"), "size 3, expected hidden_size 4"),
        (lambda g: g.with_node("_s1", Node("pnorm", ("wx", "rh"))), "index of its own"),
        (lambda g: g.with_node("_s1", Node("pnorm", ("wx", "rh"), value=2.0)),
         "index of its own"),
        (lambda g: g.with_node("_s1", Node("pnorm", (), value=0.0)), "one argument or more"),
        (lambda g: g.with_node("_s1", Node("pnorm", ("x", "rh"), value=0.0)),
         "pools vectors of one size"),
    ],
)
def test_validation_rejects_bad_graphs(change, message):
    with pytest.raises(GraphError, match=message):
        change(tiny_graph()).validate()


def test_pruned_removes_dead_nodes():
    g = tiny_graph().with_node("dead", Node("linear", ("h",), ref="V"))
    assert "V" not in g.pruned().validate().params


def test_a_mutation_is_a_small_function_over_the_graph():
    """Replace an activation (Jozefowicz's first mutation): one entry of the table changes."""
    g = cells.graph("gru", 4, 4)
    mutated = g.with_node("r", Node("relu", g.nodes["r"].args)).validate()
    assert "r = ReLU(W_xr x + W_hr h + b_r)" in str(mutated)
    out, _ = cells.make(mutated, 4, 4)(torch.randn(2, 4))
    assert out.shape == (2, 4)


def test_user_cell_in_a_few_lines_runs_everywhere():
    @cell("mgu_test", state=("h",))
    def mgu(x, state, p):
        f = sigmoid(p.W_f @ x + p.R_f @ state.h + p.b_f)
        h_tilde = tanh(p.W_h @ x + p.R_h @ (f * state.h) + p.b_h)
        h = (1 - f) * state.h + f * h_tilde
        return h, (h,)

    cells.register(mgu)
    try:
        assert "mgu_test" in cells.names()
        assert "f = σ(W_f x + R_f h + b_f)" in str(cells.make("mgu_test", 3, 5))
        rnn = rnnlab.RNN("mgu_test", 3, 5, num_layers=2, bidirectional=True)
        out, state = rnn(torch.randn(7, 2, 3))
        assert out.shape == (7, 2, 10) and state.shape == (4, 2, 5)  # one field: a tensor
        assert cells.make("mgu_test", 3, 5, forget_bias=2.0).b_f.eq(2.0).all()
        with pytest.raises(ValueError, match="already registered"):
            cells.register(mgu)
    finally:
        cells.REGISTRY.pop("mgu_test")


def test_tracing_errors_are_clear():
    @cell("bad_return", state=("h", "c"))
    def bad(x, state, p):
        h = tanh(p.W @ x)
        return h, (h,)

    with pytest.raises(GraphError, match="returns 1 state vector"):
        bad.graph(3, 3)

    @cell("bad_operand", state=("h",))
    def bad2(x, state, p):
        h = tanh(p.W @ x) * "two"
        return h, (h,)

    with pytest.raises(TypeError, match="can combine symbols"):
        bad2.graph(3, 3)


def test_input_gemm_hoisted_and_one_recurrent_gemm_per_step():
    """The generated LSTM step does exactly one matrix product: the fused recurrent addmm."""
    for name in ["lstm", "peephole", "cifg", "nig", "lstm_o", "gru_torch", "rnn"]:
        program = cells.make(name, 3, 4).program
        hoist, step = program.source.split("def step")
        assert hoist.count("torch.addmm") + hoist.count("torch.mm") == 1, name
        assert step.count("torch.addmm") + step.count("torch.mm") == 1, name
    # GRU (seed form) and the MUTs need r before W_hh (r ⊙ h): two dependent GEMMs per step
    step = cells.make("gru", 3, 4).program.source.split("def step")[1]
    assert step.count("torch.addmm") == 2


def test_ops_table_lists_the_search_alphabet():
    from rnnlab.lang import ACTIVATIONS, BINARY_OPS, OPS

    assert set(BINARY_OPS) == {"add", "sub", "mul"}
    assert len(ACTIVATIONS) == 7 and ("scale", 1.1) in ACTIVATIONS
    for op, _ in ACTIVATIONS:
        assert OPS[op].kind == "activation"


def test_a_pooled_norm_is_a_block_of_one_norm_over_its_arguments():
    """``pnorm(a, b; k)``: block k of norm([a; b]) (one mean and variance over 2H units),
    printed ``norm(a, b)[k+1]``, kept by JSON, and compiled to one ``norm`` over 2H columns
    shared by both blocks; the cell's values equal the formula written here."""
    g = tiny_graph(nodes={
        **tiny_graph().nodes,
        "n0": Node("pnorm", ("wx", "rh"), value=0.0),
        "n1": Node("pnorm", ("wx", "rh"), value=1.0),
        "_s1": Node("add", ("n0", "n1")),
    }).validate()
    assert "n0 = norm(wx, rh)[1]" in str(g) and "n1 = norm(wx, rh)[2]" in str(g), str(g)
    assert Graph.from_json(g.to_json()) == g
    assert [i.op for i in compile_graph(g).step_code].count("norm") == 1
    torch.manual_seed(0)
    c = cells.make(g, 3, 4)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    both = torch.nn.functional.layer_norm(torch.cat([x @ c.W.T, h @ c.R.T], 1), (8,), eps=1e-5)
    expected = torch.tanh(both[:, :4] + both[:, 4:] + c.b)
    torch.testing.assert_close(c(x, (h,))[0], expected)
