"""Jozefowicz's mutation operators over cell graphs: each valid, each runs as a cell."""

import random

import pytest
import torch

from rnnlab import cells
from rnnlab.lang import GraphError
from rnnlab.lang import mutate as m


def test_replace_activation_and_binary():
    g = cells.graph("gru", 4, 4)
    g2 = m.replace_activation(g, "r", "scale", 1.1)
    assert "r = Linear(1.1, W_xr x + W_hr h + b_r)" in str(g2.validate())
    prod = next(n for n, node in g.nodes.items() if node.op == "mul")
    assert g.nodes[prod].op == "mul"
    assert m.replace_binary(g, prod, "sub").validate().nodes[prod].op == "sub"
    with pytest.raises(GraphError, match="not an activation"):
        m.replace_activation(g, prod, "tanh")


def test_insert_activation_between_node_and_parent():
    g = cells.graph("lstm", 4, 4)
    g2 = m.insert_activation(g, "c'", 0, "relu").validate()
    assert "c' = ReLU(f ⊙ c) + i ⊙ z" in str(g2)


def test_replace_with_ancestor_removes_the_node():
    g = cells.graph("lstm", 4, 4)
    g2 = m.replace_with_ancestor(g, "o", "h").validate()  # o := h
    assert "o" not in g2.nodes and "W_o" not in g2.params
    assert "h' = h ⊙ tanh(c')" in str(g2)
    with pytest.raises(GraphError, match="not an ancestor"):
        m.replace_with_ancestor(g, "i", "o")


def test_replace_with_combination():
    g = cells.graph("gru", 4, 4)
    g2 = m.replace_with_combination(g, "r", "h", "x", "mul").validate()
    assert "r = h ⊙ x" in str(g2) and "W_xr" not in g2.params


def test_combination_that_makes_a_cycle_is_rejected():
    g = cells.graph("lstm", 4, 4)
    with pytest.raises(GraphError, match="cycle"):
        m.replace_with_combination(g, "i", "c'", "h", "add").validate()


def test_random_mutations_are_valid_runnable_cells():
    rng = random.Random(0)
    g = cells.graph("lstm", 6, 6)
    seen = set()
    for _ in range(25):
        g2 = m.mutate(g, rng)
        seen.add(str(g2))
        cell = cells.make(g2, 6, 6)
        h, state = cell(torch.randn(3, 6))
        assert h.shape == (3, 6) and torch.isfinite(h).all()
    assert len(seen) > 15


def interpret(graph, params, x, state):
    """Evaluate a graph node by node (no compiler) for one step."""
    fns = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
           "identity": lambda v: v}
    values = {}
    for name in graph.order:
        node = graph.nodes[name]
        args = [values[a] for a in node.args]
        if node.op == "input":
            values[name] = x
        elif node.op == "state":
            values[name] = state[graph.states.index(node.ref)]
        elif node.op == "param":
            values[name] = params[node.ref]
        elif node.op == "const":
            values[name] = torch.tensor(node.value, dtype=x.dtype)
        elif node.op == "linear":
            values[name] = args[0] @ params[node.ref].T
        elif node.op == "add":
            values[name] = args[0] + args[1]
        elif node.op == "sub":
            values[name] = args[0] - args[1]
        elif node.op == "mul":
            values[name] = args[0] * args[1]
        elif node.op == "scale":
            values[name] = node.value * args[0]
        else:
            values[name] = fns[node.op](args[0])
    return values[graph.output], tuple(values[graph.writes[s]] for s in graph.states)


@pytest.mark.parametrize("seed_cell", ["lstm", "gru", "mut1", "peephole", "fgr"])
def test_compiler_equals_interpreter_on_random_mutants(seed_cell):
    """The compiler's fusions (hoisting, grouped GEMMs, merged activations) never change values."""
    import rnnlab

    rng = random.Random(seed_cell)
    base = cells.graph(seed_cell, 5, 5)
    for k in range(30):
        g = m.mutate(base if k % 3 == 0 else g, rng)  # noqa: F821 - g from the last round
        torch.manual_seed(k)
        rnn = rnnlab.RNN(g, 5, 5).double()
        cell = rnn.cells["layer0"]
        x = torch.randn(4, 2, 5, dtype=torch.double)
        state = tuple(torch.randn(2, 5, dtype=torch.double) for _ in g.states)
        out, final = rnn(x, rnn.State(*(s[None] for s in state)))
        params = dict(cell.named_parameters())
        s = state
        for t in range(4):
            h, s = interpret(g, params, x[t], s)
            torch.testing.assert_close(out[t], h.expand(2, 5), msg=f"{g}")
        final = (final,) if isinstance(final, torch.Tensor) else final  # one field: a tensor
        for a, b in zip(final, s, strict=True):
            torch.testing.assert_close(a[0], b.expand(2, 5))


def test_mutate_steps_is_mutate_repeated_and_keeps_a_dead_end(monkeypatch):
    """``mutate_steps(g, rng, n)`` = n calls of ``mutate`` on the same generator; when a step
    finds no valid mutation the chain stops with the graph it reached."""
    seed = cells.graph("lstm", 4, 4)
    by_hand, rng = seed, random.Random(3)
    for _ in range(4):
        by_hand = m.mutate(by_hand, rng)
    assert str(m.mutate_steps(seed, random.Random(3), 4)) == str(by_hand)
    assert m.mutate_steps(seed, random.Random(3), 0) is seed
    calls = []

    def dead_end(graph, rng):
        calls.append(graph)
        if len(calls) == 2:
            raise GraphError("no valid mutation (test)")
        return cells.graph("lstm", 4, 4)

    monkeypatch.setattr(m, "mutate", dead_end)
    reached = m.mutate_steps(seed, random.Random(0), 5)
    assert len(calls) == 2 and str(reached) == str(cells.graph("lstm", 4, 4))
