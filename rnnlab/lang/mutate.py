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

``random_graph`` draws whole cells of another shape than the mutations make: sums that mix
recurrent depths (``W x + R h + R2 tanh(R3 h) + b``), peephole-like products and binary
combinations, for testing the compiler on forms no zoo cell has.
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


def mutate_steps(graph: Graph, rng: random.Random, steps: int) -> Graph:
    """``steps`` mutation steps in a row (a chain of the search's mutations); a chain that
    reaches a graph with no valid mutation keeps what it reached."""
    for _ in range(steps):
        try:
            graph = mutate(graph, rng)
        except GraphError:
            break
    return graph


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


def random_graph(rng: random.Random, input_size: int, hidden_size: int,
                 name: str = "random") -> Graph:
    """A random valid cell built from gated sums whose terms reach the state at different
    depths (see the module docstring); one or two state vectors."""
    states = rng.choice([("h",), ("h", "c")])
    for _ in range(100):
        g = _RandomCell(rng, states).draw(input_size, hidden_size, name)
        try:
            return g.pruned().validate()
        except GraphError:
            continue
    raise GraphError("random_graph found no valid cell in 100 draws")  # pragma: no cover


class _RandomCell:
    """The nodes of one ``random_graph`` draw."""

    ACTS = ("tanh", "sigmoid", "relu")

    def __init__(self, rng: random.Random, states: tuple[str, ...]):
        self.rng = rng
        self.states = states
        self.nodes: dict[str, Node] = {"x": Node("input")}
        self.nodes.update({s: Node("state", ref=s) for s in states})

    def new(self, node: Node) -> str:
        name = f"_n{len(self.nodes)}"
        self.nodes[name] = node
        return name

    def linear(self, arg: str) -> str:
        return self.new(Node("linear", (arg,), ref=f"M{len(self.nodes)}"))

    def draw(self, input_size: int, hidden_size: int, name: str) -> Graph:
        rng, vectors = self.rng, list(self.states)
        for _ in range(rng.randint(1, 4)):
            terms = [self.linear("x")] if rng.random() < 0.8 else []
            terms.append(self.linear(rng.choice(vectors)))
            if rng.random() < 0.7:  # a deeper recurrent term in the same sum
                inner = self.new(Node(rng.choice(self.ACTS), (self.linear(rng.choice(vectors)),)))
                terms.append(self.linear(inner))
            if rng.random() < 0.5:
                terms.append(self.new(Node("param", ref=f"b{len(self.nodes)}")))
            if rng.random() < 0.3:
                peep = self.new(Node("param", ref=f"p{len(self.nodes)}"))
                terms.append(self.new(Node("mul", (peep, rng.choice(vectors)))))
            rng.shuffle(terms)
            total = terms[0]
            for t in terms[1:]:
                total = self.new(Node("add", (total, t)))
            vectors.append(self.new(Node(rng.choice(self.ACTS), (total,))))
        for _ in range(rng.randint(0, 3)):
            a, b = rng.choice(vectors), rng.choice(vectors)
            vectors.append(self.new(Node(rng.choice(BINARY_OPS), (a, b))))
        made = vectors[len(self.states):]
        writes = {s: rng.choice(made) for s in self.states}
        return Graph(self.nodes, self.states, writes, writes["h"], input_size, hidden_size, name)
