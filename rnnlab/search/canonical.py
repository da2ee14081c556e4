"""Architecture identity: a canonical form of a cell graph and its hash.

Two graphs are the same architecture when they compute the same family of functions for
structural reasons the search can produce by accident:

* node names differ (``_t7`` vs ``i``), or parameter names differ (``W_xr`` vs ``W_1``);
* the arguments of a commutative op are swapped (``a + b`` vs ``b + a``, same for ⊙), or a
  chain of ``+`` (or of ⊙) is bracketed differently (``(a + b) + c`` vs ``a + (b + c)``);
* an ``identity`` (Jozefowicz's Linear(1, x)) or ``scale`` by 1 sits on an edge;
* a node is duplicated: two parameter-free nodes computing the same expression are one node
  (``tanh(h)`` written twice is read once).

What still distinguishes architectures: ops, constants, which state each leaf reads (by its
position in ``graph.states``, not its name), and which parameters are shared (``W @ x`` read
twice is one matrix; ``W_1 @ x`` and ``W_2 @ x`` are two).

The form is built in two passes over the (pruned) graph. Pass 1 gives every node a key — a
hash of its op and its arguments' keys, with a commutative chain's operands sorted — treating
parameters as anonymous. A walk from the output and the state writes, visiting operands in
key order, then numbers the parameters by first use; pass 2 recomputes the keys with those
numbers, and the canonical text lists one line per distinct key in walk order. The only
residual ambiguity is two operands of one commutative chain that are identical up to which
parameters they share with other nodes; the search never creates shared parameters, so it
does not arise for its cells.
"""

from __future__ import annotations

import hashlib

from ..lang import Graph

COMMUTATIVE = ("add", "mul")
HASH_LENGTH = 12  # hex digits: 48 bits, collision-free for any search we can run


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Keys:
    """Node keys (pass 1 with anonymous parameters, pass 2 with numbered ones)."""

    def __init__(self, graph: Graph, labels: dict[str, int] | None):
        self.graph = graph
        self.labels = labels
        self.memo: dict[str, str] = {}
        self.text: dict[str, str] = {}  # key -> "op(args)" with argument keys

    def skip(self, name: str) -> str:
        """Follow identity edges (identity, scale by 1) to the node that carries the value."""
        node = self.graph.nodes[name]
        while node.op == "identity" or (node.op == "scale" and node.value == 1.0):
            name = node.args[0]
            node = self.graph.nodes[name]
        return name

    def operands(self, name: str) -> list[str]:
        """The (identity-skipped) operands of a commutative chain rooted at ``name``."""
        op = self.graph.nodes[name].op
        out: list[str] = []
        todo = list(self.graph.nodes[name].args)
        while todo:
            arg = self.skip(todo.pop())
            if self.graph.nodes[arg].op == op:
                todo.extend(self.graph.nodes[arg].args)
            else:
                out.append(arg)
        return out

    def param(self, ref: str) -> str:
        return "p" if self.labels is None else f"p{self.labels[ref]}"

    def key(self, name: str) -> str:
        name = self.skip(name)
        if name in self.memo:
            return self.memo[name]
        g = self.graph
        node = g.nodes[name]
        op = node.op
        if op == "input":
            text = "x"
        elif op == "state":
            text = f"state{g.states.index(node.ref)}"
        elif op == "param":
            text = self.param(node.ref)
        elif op == "const":
            text = f"const({node.value!r})"
        elif op == "linear":
            text = f"linear[{self.param(node.ref)}]({self.key(node.args[0])})"
        elif op in COMMUTATIVE:
            text = f"{op}({','.join(sorted(self.key(a) for a in self.operands(name)))})"
        elif op == "scale":
            text = f"scale[{node.value!r}]({self.key(node.args[0])})"
        else:  # sub and the activations: argument order matters
            text = f"{op}({','.join(self.key(a) for a in node.args)})"
        key = _digest(text)
        self.memo[name] = key
        self.text[key] = text
        return key


def _roots(graph: Graph) -> list[tuple[str, str]]:
    return [("output", graph.output)] + [(f"{s}'", graph.writes[s]) for s in graph.states]


def _walk(keys: _Keys, graph: Graph):
    """Post-order over nodes from the roots, operands in key order; yields node names."""
    seen: set[str] = set()

    def visit(name: str):
        name = keys.skip(name)
        if name in seen:
            return
        seen.add(name)
        node = graph.nodes[name]
        if node.op in COMMUTATIVE:
            args = sorted(keys.operands(name), key=keys.key)
        else:
            args = list(node.args)
        for arg in args:
            yield from visit(arg)
        yield name

    for _, root in _roots(graph):
        yield from visit(root)


def canonical_form(graph: Graph) -> str:
    """The canonical text of ``graph``'s architecture (equal for the same architecture)."""
    graph = graph.validate().pruned()
    first = _Keys(graph, None)
    labels: dict[str, int] = {}
    for name in _walk(first, graph):
        node = graph.nodes[name]
        if node.op in ("param", "linear") and node.ref not in labels:
            labels[node.ref] = len(labels)
    second = _Keys(graph, labels)
    ids: dict[str, str] = {}
    lines = []
    for name in _walk(second, graph):
        key = second.key(name)
        if key in ids:
            continue
        text = second.text[key]
        for k, short in ids.items():  # argument keys -> line ids (ids are shorter than keys)
            text = text.replace(k, short)
        ids[key] = f"n{len(ids)}"
        lines.append(f"{ids[key]} = {text}")
    lines += [f"{what} = {ids[second.key(node)]}" for what, node in _roots(graph)]
    lines.append(f"states = {len(graph.states)}")
    return "\n".join(lines)


def architecture_hash(graph: Graph) -> str:
    """A short stable identifier of ``graph``'s architecture (hex, HASH_LENGTH digits)."""
    return hashlib.sha256(canonical_form(graph).encode()).hexdigest()[:HASH_LENGTH]


def subexpressions(graph: Graph) -> set[str]:
    """Keys of every subexpression of ``graph`` with parameters anonymous (pass 1)."""
    graph = graph.validate().pruned()
    keys = _Keys(graph, None)
    return {keys.key(name) for name in graph.order if name in graph.live}


def similarity(a: Graph, b: Graph) -> float:
    """Jaccard similarity of two cells' subexpression sets (1: the same architecture up to
    parameter sharing; 0: nothing in common but the leaves they both read).

    A rough "how MUT1-like is this cell" measure: two cells score high when they compute many
    of the same sub-terms, e.g. the GRU's interpolation ``(1 − z) ⊙ h + z ⊙ h~``.
    """
    sa, sb = subexpressions(a), subexpressions(b)
    return len(sa & sb) / len(sa | sb)
