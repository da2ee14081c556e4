"""Print a cell graph as the equations of its paper.

Named intermediate nodes (``i``, ``f``, ``z`` …) become one equation each; unnamed nodes used
once are inlined into their reader; new state values carry a prime (``c' = f ⊙ c + i ⊙ z``).
"""

from __future__ import annotations

from .graph import Graph
from .ops import OPS


def is_auto(name: str) -> bool:
    """Names invented by the tracer (``_3``) rather than written by a person."""
    return name.startswith("_")


def equations(graph: Graph) -> str:
    """The graph as one equation per line, in computation order."""
    consumers = graph.consumers
    leaves = ("input", "state", "param", "const", "mask")
    shown = {
        name
        for name in graph.order
        if graph.nodes[name].op not in leaves
        and (not is_auto(name) or len(consumers[name]) > 1)
    }
    aliases: dict[str, str] = {}
    for name in graph.order:
        if name in shown and is_auto(name):
            aliases[name] = f"a{len(aliases) + 1}"

    def ref(name: str, parent_prec: int = 0) -> str:
        node = graph.nodes[name]
        if node.op == "input":
            return "x"
        if node.op in ("state", "param", "mask"):
            return node.ref
        if node.op == "const":
            return f"{node.value:g}"
        if name in shown:
            return aliases.get(name, name)
        return expr(name, parent_prec)

    def expr(name: str, parent_prec: int = 0) -> str:
        node = graph.nodes[name]
        if node.op == "linear":
            return f"{node.ref} {ref(node.args[0], 3)}"
        spec = OPS[node.op]
        if spec.kind == "binary":
            symbol, prec = spec.symbol, spec.precedence
            right_prec = prec + 1 if node.op == "sub" else prec  # a − (b − c) keeps its brackets
            text = f"{ref(node.args[0], prec)} {symbol} {ref(node.args[1], right_prec)}"
            return f"({text})" if prec < parent_prec else text
        if node.op == "pnorm":  # block k (1-based) of norm over all the arguments together
            parts = ", ".join(ref(a) for a in node.args)
            return f"norm({parts})[{int(node.value) + 1}]"
        inner = ref(node.args[0])
        if node.op == "identity":
            return inner
        if node.op == "scale":
            return f"{spec.symbol}({node.value:g}, {inner})"
        return f"{spec.symbol}({inner})"

    lines = [f"{ref(name)} = {expr(name)}" for name in graph.order if name in shown]
    for state in graph.states:
        if ref(graph.writes[state]) != f"{state}'":
            lines.append(f"{state}' = {ref(graph.writes[state])}")
    if graph.output != graph.writes.get(graph.states[0]):
        lines.append(f"output = {ref(graph.output)}")
    return "\n".join(mask_lines(graph, "input") + lines + mask_lines(graph, "weight")
                     + mask_lines(graph, "state") + mask_lines(graph, "step"))


def mask_lines(graph: Graph, kind: str) -> list[str]:
    """The masks of one kind as lines: where each multiplies and how it is drawn."""
    lines = []
    for name, mask in graph.masks.items():
        if mask.kind != kind:
            continue
        if kind == "input":
            lines.append(f"x ← {name} ⊙ x    (locked dropout p={mask.p:g}: one mask per "
                         "sequence)")
        elif kind == "weight":
            lines.append(f"{mask.target} ← {name} ⊙ {mask.target}    (weight drop "
                         f"p={mask.p:g}: one mask per call)")
        elif kind == "state":
            lines.append(f"{name}: locked dropout of {mask.target}, p={mask.p:g}: one mask "
                         "per sequence")
        else:
            lines.append(f"{name} ~ Bernoulli({mask.p:g}): zoneout of {mask.target}, a new "
                         f"mask at every step ({mask.p:g} in evaluation)")
    return lines
