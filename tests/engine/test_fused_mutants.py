"""Every cell the search can make runs fused and equals a node-by-node interpreter.

Mutants: 1–10 steps of Jozefowicz et al.'s mutations from each zoo cell; random cells: sums
that mix recurrent depths (``W x + R h + R2 tanh(R3 h)``). Each is checked in float64 against
``graph_interpreter.interpret`` (which shares nothing with the compiler or the engine): outputs,
final states and the gradients of a random projection of both with respect to the input, the
initial state and every parameter.
"""

import random

import pytest
import torch
from graph_interpreter import interpret

from rnnlab import cells, engine
from rnnlab.engine import explain
from rnnlab.engine.unroll import unroll
from rnnlab.lang.mutate import mutate_steps, random_graph

SIZE = 4


def mutants(count: int, seed: int = 0) -> list:
    """``count`` mutants, taking the zoo cells in turn, each 1–10 mutation steps deep."""
    rng = random.Random(seed)
    zoo = [cells.graph(name, SIZE, SIZE) for name in cells.names()]
    return [mutate_steps(zoo[k % len(zoo)], rng, rng.randint(1, 10)) for k in range(count)]


def check(graph, seed: int, lengths: bool) -> None:
    c = cells.make(graph, SIZE, SIZE).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in c.parameters():
            p.uniform_(-0.6, 0.6, generator=g)
    T, B = 3, 3
    x = torch.randn(T, B, SIZE, generator=g, dtype=torch.double, requires_grad=True)
    state = tuple(torch.randn(B, SIZE, generator=g, dtype=torch.double, requires_grad=True)
                  for _ in graph.states)
    L = torch.tensor([3, 3, 2]) if lengths else None
    how = explain(c, dtype=torch.double)
    assert how.startswith("fused"), f"{how}\n{graph}"
    with engine.backend("auto"):
        out, final = unroll(c, x, state, L)
    assert type(out.grad_fn).__name__ == "FusedSequenceBackward", str(graph)
    params = dict(c.named_parameters())
    if lengths:  # the interpreter runs each length separately
        outs, finals = [], []
        for b, n in enumerate(L.tolist()):
            o, f = interpret(graph, params, x[:n, b:b + 1], tuple(s[b:b + 1] for s in state))
            outs.append(torch.cat([o, o.new_zeros(T - n, 1, SIZE)]))
            finals.append(f)
        expected = torch.cat(outs, 1), tuple(torch.cat(f) for f in zip(*finals))
    else:
        expected = interpret(graph, params, x, state)
    torch.testing.assert_close(out, expected[0], msg=lambda m: f"{m}\n{graph}")
    for a, b in zip(final, expected[1]):
        torch.testing.assert_close(a, b, msg=lambda m: f"{m}\n{graph}")
    wrt = [x, *state, *params.values()]
    grads = []
    for o, f in ((out, final), expected):
        h = torch.Generator().manual_seed(seed + 1)
        loss = (o * torch.randn(o.shape, generator=h, dtype=o.dtype)).sum()
        for s in f:
            loss = loss + (s * torch.randn(s.shape, generator=h, dtype=s.dtype)).sum()
        grads.append(torch.autograd.grad(loss, wrt, allow_unused=True))
    for name, a, b in zip(["x", *graph.states, *params], *grads):
        a = torch.zeros_like(wrt[0]) if a is None and b is None else a
        if a is None or b is None:
            assert (a if a is not None else b).abs().max() == 0, (name, str(graph))
            continue
        torch.testing.assert_close(a, b, msg=lambda m, name=name: f"d{name}: {m}\n{graph}")


def test_mutants_run_fused_and_equal_the_interpreter():
    """300 mutants in the default suite (the 2,000 of the slow test take about a minute)."""
    for k, graph in enumerate(mutants(300, seed=1)):
        check(graph, k, lengths=k % 3 == 0)


@pytest.mark.slow
def test_two_thousand_mutants():
    for k, graph in enumerate(mutants(2000, seed=2)):
        check(graph, k, lengths=k % 3 == 0)


def test_mixed_depth_sums_equal_the_interpreter():
    """Random cells whose sums mix recurrent depths, on both executors and the reference."""
    rng = random.Random(3)
    for k in range(40):
        graph = random_graph(rng, SIZE, SIZE)
        check(graph, k, lengths=k % 2 == 0)


def test_mixed_depth_sum_keeps_its_shallow_term():
    """``W x + R h + R2 tanh(R3 h)``: dropping the shallower ``R h`` must be caught."""
    from rnnlab.lang import cell, tanh

    @cell("mixed_depth", state=("h",))
    def mixed_depth(x, state, p):
        h = tanh(p.W @ x + p.R @ state.h + p.R2 @ tanh(p.R3 @ state.h) + p.b)
        return h, (h,)

    graph = mixed_depth.graph(SIZE, SIZE)
    check(graph, 0, lengths=False)
    with engine.backend("reference"):
        c = cells.make(graph, SIZE, SIZE).double()
        x = torch.randn(3, 2, SIZE, dtype=torch.double)
        state = (torch.randn(2, SIZE, dtype=torch.double),)
        out, _ = unroll(c, x, state)
    torch.testing.assert_close(out, interpret(graph, dict(c.named_parameters()), x, state)[0])
