"""Regularisers as transformations of a cell graph: any cell in, the same cell regularised out.

Each function takes a validated :class:`Graph` and returns a new one whose equations show the
regulariser (``print(graph)``) and whose random masks are listed in ``graph.masks``
(:class:`rnnlab.lang.graph.Mask`). Nothing here knows a particular cell: the zoo, JSON cells,
search mutants and grid transforms are all graphs, so all of them can be regularised, and the
result compiles to the same kind of plan as any cell, so the fused engine runs it.

* ``recurrent_dropout`` — locked ("variational") dropout of the state where it enters a
  recurrent product (Gal & Ghahramani 2016, "A Theoretically Grounded Application of Dropout in
  Recurrent Neural Networks"): ``R_i h`` becomes ``R_i (m_h ⊙ h)``, with one mask ``m_h`` per
  sequence. The mask is a state field written unchanged (``m_h' = m_h``), so it rides through
  the loop with the state, through packing, bidirectional and dilated runs alike.
* ``output_dropout`` — the same locked dropout on the cell's output: ``y = m_y ⊙ h'``.
* ``input_dropout`` — the same locked dropout on the step input: ``x ← m_x ⊙ x``, applied to
  the whole (T, B, I) input before the input projections (one multiply per input value).
* ``weight_drop`` — DropConnect on every recurrent matrix (Wan et al. 2013; Merity et al. 2018,
  "Regularizing and Optimizing LSTM Language Models"): ``R_i ← M_R_i ⊙ R_i``, one mask per
  call, applied when the fused weights are assembled (``Cell.weights``); the loop is unchanged.

Every mask is inverted dropout (entries 0 with probability p, else 1/(1−p)); in evaluation the
masks are their expectation, 1, so the regularised cell computes exactly the plain cell.

``regularise(graph, input_dropout=…, recurrent_dropout=…, output_dropout=…, weight_drop=…)``
applies the chosen ones in a fixed order; the transformations compose (a graph may be
regularised twice; mask names stay distinct).
"""

from __future__ import annotations

from .graph import Graph, GraphError, Mask, Node

# The regulariser options of ``regularise`` (and of ``rnnlab.cells.make`` / ``rnnlab.RNN``).
OPTIONS = ("input_dropout", "recurrent_dropout", "output_dropout", "weight_drop")


def _probability(name: str, p) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1), got {p!r}")
    return float(p)


def _unused(graph: Graph, stem: str) -> str:
    """A node, state and mask name not used yet: ``stem``, else ``stem2``, ``stem3`` …"""
    taken = set(graph.nodes) | set(graph.states) | set(graph.masks)
    taken |= {n.ref for n in graph.nodes.values() if n.ref}
    name, k = stem, 1
    while name in taken:
        k += 1
        name = f"{stem}{k}"
    return name


def _with_state_mask(graph: Graph, stem: str, target: str, p: float) -> tuple[Graph, str]:
    """``graph`` with one more state field, a mask written unchanged; returns it and its name."""
    name = _unused(graph, stem)
    graph = graph.replace(
        nodes={**graph.nodes, name: Node("state", ref=name)},
        states=(*graph.states, name),
        writes={**graph.writes, name: name},
        masks={**graph.masks, name: Mask("state", target, p)},
    )
    return graph, name


def recurrent_inputs(graph: Graph) -> set[str]:
    """Nodes whose every use ends in a recurrent product: a linear map itself, or a node (such
    as the GRU's ``r ⊙ h``) read only by such nodes. A state read by one of these is a state
    fed to a recurrent product; reads elsewhere (``f ⊙ c``, ``(1 − z) ⊙ h``) are not."""
    consumers = graph.consumers
    feeds: set[str] = set()
    for name in reversed(graph.order):
        node = graph.nodes[name]
        if node.op == "linear":
            feeds.add(name)
        elif node.op not in ("input", "state", "param", "const") and consumers[name] and all(
                u in feeds for u in consumers[name]):
            feeds.add(name)
    return feeds


def recurrent_dropout(graph: Graph, p: float) -> Graph:
    """Locked dropout of each state where it feeds a recurrent product (Gal & Ghahramani 2016).

    For every state field s read by a recurrent product, a mask state ``m_s`` (one draw per
    sequence) and a node ``s~ = m_s ⊙ s`` that those reads take instead of s."""
    p = _probability("recurrent_dropout", p)
    graph = graph.validate()
    if p == 0.0:
        return graph
    feeds = recurrent_inputs(graph)
    readers: dict[str, list[str]] = {}
    for name in graph.order:
        node = graph.nodes[name]
        if name in feeds:
            for a in node.args:
                if graph.nodes[a].op == "state" and a not in graph.masks:
                    readers.setdefault(a, []).append(name)
    for state, users in readers.items():
        graph, mask = _with_state_mask(graph, f"m_{graph.nodes[state].ref}", state, p)
        masked = _unused(graph, f"{graph.nodes[state].ref}~")
        nodes = dict(graph.nodes)
        nodes[masked] = Node("mul", (mask, state))
        for u in users:
            node = nodes[u]
            nodes[u] = Node(node.op, tuple(masked if a == state else a for a in node.args),
                            node.ref, node.value)
        graph = graph.replace(nodes=nodes)
    return graph.validate()


def output_dropout(graph: Graph, p: float) -> Graph:
    """Locked dropout of the cell's output: ``y = m_y ⊙ output``, one mask per sequence (the
    state keeps the unmasked value)."""
    p = _probability("output_dropout", p)
    graph = graph.validate()
    if p == 0.0:
        return graph
    graph, mask = _with_state_mask(graph, "m_y", "output", p)
    y = _unused(graph, "y")
    return graph.replace(nodes={**graph.nodes, y: Node("mul", (mask, graph.output))},
                         output=y).validate()


def input_dropout(graph: Graph, p: float) -> Graph:
    """Locked dropout of the step input: ``x ← m_x ⊙ x``, one mask per sequence."""
    p = _probability("input_dropout", p)
    graph = graph.validate()
    if p == 0.0:
        return graph
    if not any(node.op == "input" for node in graph.nodes.values()):
        raise GraphError(f"{graph.name}: the cell does not read its input x, so input_dropout "
                         "has nothing to drop")
    name = _unused(graph, "m_x")
    return graph.replace(masks={**graph.masks, name: Mask("input", "x", p)}).validate()


def recurrent_matrices(graph: Graph) -> list[str]:
    """The matrices applied to values that depend on the state (``R_i`` …), in order."""
    step: set[str] = set()
    for name in graph.order:
        node = graph.nodes[name]
        if node.op == "state" or any(a in step for a in node.args):
            step.add(name)
    refs = [graph.nodes[n].ref for n in graph.order
            if graph.nodes[n].op == "linear" and n in step and n in graph.live]
    return list(dict.fromkeys(refs))


def weight_drop(graph: Graph, p: float) -> Graph:
    """DropConnect on every recurrent matrix: ``R ← M_R ⊙ R``, one mask per call (Merity et al.
    2018's weight-dropped LSTM)."""
    p = _probability("weight_drop", p)
    graph = graph.validate()
    if p == 0.0:
        return graph
    matrices = recurrent_matrices(graph)
    if not matrices:
        raise GraphError(f"{graph.name}: the cell has no recurrent matrix, so weight_drop has "
                         "nothing to drop")
    masks = dict(graph.masks)
    for ref in matrices:
        if any(m.kind == "weight" and m.target == ref for m in masks.values()):
            raise GraphError(f"{graph.name}: {ref} already has a weight-drop mask")
        masks[_unused(graph.replace(masks=masks), f"M_{ref}")] = Mask("weight", ref, p)
    return graph.replace(masks=masks).validate()


def regularise(graph: Graph, input_dropout: float = 0.0, recurrent_dropout: float = 0.0,
               output_dropout: float = 0.0, weight_drop: float = 0.0) -> Graph:
    """``graph`` with the given regularisers (each a probability; 0 leaves it out).

    Args:
        graph: any validated cell graph (``rnnlab.cells.graph(name, I, H)``, a JSON cell, a
            mutant).
        input_dropout: locked dropout of the step input x.
        recurrent_dropout: locked dropout of the state where it feeds recurrent products.
        output_dropout: locked dropout of the cell's output.
        weight_drop: DropConnect of every recurrent matrix, one mask per call.
    """
    g = globals()
    for option, p in (("weight_drop", weight_drop), ("recurrent_dropout", recurrent_dropout),
                      ("output_dropout", output_dropout), ("input_dropout", input_dropout)):
        graph = g[option](graph, p)
    return graph


def plain(graph: Graph) -> Graph:
    """The cell without its masks: what a regularised cell computes in evaluation."""
    if not graph.masks:
        return graph
    nodes = dict(graph.nodes)
    state_masks = {n for n, m in graph.masks.items() if m.kind == "state"}
    # a mask product m ⊙ v becomes v (the expectation of m is 1)
    alias = {n: node.args[1] for n, node in nodes.items()
             if node.op == "mul" and node.args[0] in state_masks}
    for n in alias:
        del nodes[n]
    for n in state_masks:
        del nodes[n]

    def real(a: str) -> str:
        while a in alias:
            a = alias[a]
        return a

    nodes = {n: Node(node.op, tuple(real(a) for a in node.args), node.ref, node.value)
             for n, node in nodes.items()}
    return graph.replace(
        nodes=nodes,
        states=graph.carried,
        writes={s: real(graph.writes[s]) for s in graph.carried},
        output=real(graph.output),
        masks={},
    ).validate()
