"""Jozefowicz et al. (2015)'s mutation operators, each a small function over a cell graph.

The search draws p ~ U[0, 1] and transforms each node with probability p by one operator:
1. replace an activation by one of {tanh, σ, ReLU, Linear(0,x), Linear(1,x), Linear(0.9,x),
   Linear(1.1,x)} (``replace_activation``);
2. replace an elementwise op by one of {+, ×, −} (``replace_binary``);
3. insert a random activation between a node and one of its parents (``insert_activation``);
4. replace a node by one of its ancestors, removing it (``replace_with_ancestor``);
5. replace a node by the sum, product or difference of a random ancestor of it and a random
   ancestor of another random node (``replace_with_combination``).

Every operator returns a new graph; ``mutate`` retries a draw whose result fails validation
(a size mismatch or a cycle), so it only ever returns a valid graph.
"""

from __future__ import annotations

import random

from .graph import Graph, GraphError, Node
from .ops import ACTIVATIONS, BINARY_OPS, OPS


def ancestors(graph: Graph, name: str) -> set[str]:
    """Every node ``name`` depends on (not itself)."""
    seen: set[str] = set()
    todo = list(graph.nodes[name].args)
    while todo:
        a = todo.pop()
        if a not in seen:
            seen.add(a)
            todo.extend(graph.nodes[a].args)
    return seen


def _redirect(graph: Graph, old: str, new: str) -> Graph:
    """Every reader of ``old`` (nodes, state writes, output) reads ``new`` instead."""
    nodes = {
        n: Node(node.op, tuple(new if a == old else a for a in node.args), node.ref, node.value)
        for n, node in graph.nodes.items()
    }
    writes = {s: new if n == old else n for s, n in graph.writes.items()}
    output = new if graph.output == old else graph.output
    return graph.replace(nodes=nodes, writes=writes, output=output).pruned()


def replace_activation(graph: Graph, name: str, op: str, value: float | None = None) -> Graph:
    node = graph.nodes[name]
    if OPS[node.op].kind != "activation":
        raise GraphError(f"node {name!r} is {node.op}, not an activation")
    return graph.with_node(name, Node(op, node.args, value=value))


def replace_binary(graph: Graph, name: str, op: str) -> Graph:
    node = graph.nodes[name]
    if OPS[node.op].kind != "binary" or op not in BINARY_OPS:
        raise GraphError(f"node {name!r} ({node.op}) -> {op}: both must be elementwise ops")
    return graph.with_node(name, Node(op, node.args))


def insert_activation(graph: Graph, name: str, parent: int, op: str,
                      value: float | None = None) -> Graph:
    """``name`` reads ``op(parent)`` instead of its ``parent``-th argument."""
    node = graph.nodes[name]
    new = graph.fresh_name()
    args = list(node.args)
    inserted = Node(op, (args[parent],), value=value)
    args[parent] = new
    return graph.with_node(new, inserted).with_node(
        name, Node(node.op, tuple(args), node.ref, node.value))


def replace_with_ancestor(graph: Graph, name: str, ancestor: str) -> Graph:
    if ancestor not in ancestors(graph, name):
        raise GraphError(f"{ancestor!r} is not an ancestor of {name!r}")
    return _redirect(graph, name, ancestor)


def replace_with_combination(graph: Graph, name: str, a: str, b: str, op: str) -> Graph:
    """``name`` becomes ``op(a, b)``."""
    return graph.with_node(name, Node(op, (a, b))).pruned()


def mutate(graph: Graph, rng: random.Random, attempts: int = 100) -> Graph:
    """One mutation step of the search: a valid graph different from ``graph``."""
    inner = [n for n, node in graph.nodes.items() if OPS[node.op].kind != "leaf"]
    for _ in range(attempts):
        p = rng.random()
        g = graph
        for name in inner:
            if name not in g.nodes or rng.random() >= p:
                continue
            g = _random_operator(g, name, rng)
        if g is graph:
            continue
        try:
            g = g.pruned().validate()
        except GraphError:
            continue
        if str(g) != str(graph):
            return g
    raise GraphError(f"no valid mutation of {graph.name} found in {attempts} attempts")


def _random_operator(g: Graph, name: str, rng: random.Random) -> Graph:
    node = g.nodes[name]
    kind = OPS[node.op].kind
    choice = rng.randrange(5)
    if choice == 0 and kind == "activation":
        return replace_activation(g, name, *rng.choice(ACTIVATIONS))
    if choice == 1 and kind == "binary":
        return replace_binary(g, name, rng.choice(BINARY_OPS))
    if choice == 2:
        return insert_activation(g, name, rng.randrange(len(node.args)), *rng.choice(ACTIVATIONS))
    up = sorted(ancestors(g, name))
    if choice == 3 and up:
        return replace_with_ancestor(g, name, rng.choice(up))
    others = [n for n in g.nodes if n != name and g.nodes[n].args]
    if choice == 4 and up and others:
        other_up = sorted(ancestors(g, rng.choice(others)))
        if other_up:
            return replace_with_combination(g, name, rng.choice(up), rng.choice(other_up),
                                            rng.choice(BINARY_OPS))
    return g
