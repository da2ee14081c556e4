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
OPTIONS = ("input_dropout", "recurrent_dropout", "output_dropout", "weight_drop", "zoneout",
           "layer_norm")


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


def _zoneout_rates(graph: Graph, p) -> dict[str, float]:
    """``zoneout=p`` (every carried field) or ``{"h": p_h, "c": p_c}`` -> field -> p (> 0)."""
    if isinstance(p, dict):
        unknown = set(p) - set(graph.carried)
        if unknown:
            raise ValueError(f"zoneout names {sorted(unknown)}, which are not state fields of "
                             f"{graph.name}; its fields are {graph.carried}")
        rates = {s: _probability(f"zoneout[{s!r}]", q) for s, q in p.items()}
    else:
        rates = dict.fromkeys(graph.carried, _probability("zoneout", p))
    return {s: q for s, q in rates.items() if q > 0}


def _rename(graph: Graph, old: str, new: str) -> Graph:
    """The graph with node ``old`` called ``new`` (every read, write and the output follow)."""
    def r(a: str) -> str:
        return new if a == old else a

    nodes = {r(n): Node(node.op, tuple(r(a) for a in node.args), node.ref, node.value)
             for n, node in graph.nodes.items()}
    return graph.replace(nodes=nodes, writes={s: r(v) for s, v in graph.writes.items()},
                         output=r(graph.output))


def zoneout(graph: Graph, p) -> Graph:
    """Zoneout of state fields (Krueger et al. 2016, "Zoneout: Regularizing RNNs by Randomly
    Preserving Hidden Activations"): each unit keeps its previous value with probability p,

        s' = d_s ⊙ s + (1 − d_s) ⊙ s_new  =  s_new + d_s ⊙ (s − s_new),   d_s ~ Bernoulli(p)

    with a new mask ``d_s`` at every step for every sequence (a ``step`` mask: a ``mask`` leaf
    node), and ``s' = p·s + (1 − p)·s_new`` in evaluation (the mask's expectation). The
    candidate ``s_new`` is the cell's own new value, so the other equations still read it (the
    LSTM's ``h = o ⊙ tanh(c_new)``, as in the paper); the output follows the zoned state when it
    was that state's new value.

    Args:
        p: a probability for every carried field, or a dict field -> probability
            (``{"h": 0.05, "c": 0.5}``, Krueger et al.'s LSTM setting); 0 leaves a field out.
    """
    graph = graph.validate()
    for state, q in _zoneout_rates(graph, p).items():
        new = graph.writes[state]
        if new == f"{state}'":  # the traced name of the new value: it becomes the candidate
            candidate = _unused(graph, f"{state}_new")
            graph = _rename(graph, new, candidate)
            zoned, new = f"{state}'", candidate
        else:
            zoned = _unused(graph, f"{state}_z")
        old = next(n for n, node in graph.nodes.items() if node.op == "state"
                   and node.ref == state)
        nodes = dict(graph.nodes)
        d = _unused(graph, f"d_{state}")
        nodes[d] = Node("mask", ref=d)
        diff = _unused(graph.replace(nodes=nodes), "_zd")
        nodes[diff] = Node("sub", (old, new))  # s − s_new
        kept = _unused(graph.replace(nodes=nodes), "_zk")
        nodes[kept] = Node("mul", (d, diff))
        nodes[zoned] = Node("add", (new, kept))  # s_new + d ⊙ (s − s_new)
        graph = graph.replace(
            nodes=nodes,
            writes={**graph.writes, state: zoned},
            output=zoned if graph.output == new else graph.output,
            masks={**graph.masks, d: Mask("step", state, q)},
        )
    return graph.validate()


def _dependence(graph: Graph) -> tuple[set[str], set[str]]:
    """(nodes that depend on the state, nodes that depend on x but not on the state)."""
    step: set[str] = set()
    xdep: set[str] = set()
    for name in graph.order:
        node = graph.nodes[name]
        if node.op == "state" or any(a in step for a in node.args):
            step.add(name)
        elif node.op in ("input", "mask") or any(a in xdep for a in node.args):
            xdep.add(name)
    return step, xdep


def _sums(graph: Graph) -> dict[str, list[str]]:
    """Every sum of the graph: its top add node -> its terms (nested adds read only by the sum
    flattened), in order; a linear map read outside any sum is a sum of itself alone."""
    users = graph.consumers

    def inner(name: str) -> bool:
        u = users[name]
        return (graph.nodes[name].op == "add" and len(u) == 1 and u[0] in graph.nodes
                and graph.nodes[u[0]].op == "add")

    def terms(name: str) -> list[str]:
        out = []
        for a in graph.nodes[name].args:
            out.extend(terms(a) if inner(a) else [a])
        return out

    sums: dict[str, list[str]] = {}
    for name in graph.order:
        if name in graph.live and graph.nodes[name].op == "add" and not inner(name):
            sums[name] = terms(name)
    in_sums = {t for ts in sums.values() for t in ts}
    for name in graph.order:
        if name in graph.live and graph.nodes[name].op == "linear" and name not in in_sums:
            sums[name] = [name]
    return sums


LAYER_NORM_STATS = ("gate", "joint")  # whose statistics normalise a part (``layer_norm``)


def layer_norm_stats(value) -> str | None:
    """The statistics a ``layer_norm`` option asks for: None (off), ``"gate"`` or ``"joint"``.
    ``True`` means ``"gate"``; anything else is refused with the values that are allowed."""
    if value is False or value is None:
        return None
    if value is True:
        return "gate"
    if isinstance(value, str) and value in LAYER_NORM_STATS:
        return value
    raise ValueError(f"layer_norm must be True, False, 'gate' or 'joint', got {value!r}")


def layer_norm(graph: Graph, stats: str = "gate") -> Graph:
    """Layer normalisation (Ba, Kiros and Hinton 2016, "Layer Normalization") of every
    pre-activation and of the memory cell.

    In every sum of the cell, the input part (its linear maps of x) and the recurrent part (its
    linear maps of state-dependent values) are normalised separately, each with its own gain:

        W_i x + R_i h + b_i   →   g_W_i ⊙ N(W_i x) + g_R_i ⊙ N(R_i h) + b_i

    ``stats`` says over which units N takes its mean and variance:

    * ``"gate"``: each part over its own H units, ``N = norm`` (the op ``norm(v) = (v −
      mean(v)) / sqrt(var(v) + ε)``), as TensorFlow's ``LayerNormBasicLSTMCell`` (which
      normalises the sum of both parts) and what a cell graph of any shape defines.
    * ``"joint"``: the input parts of all the cell's sums together (for the LSTM over the 4H
      units of W x, one mean μ_x and one 1/sqrt(σ²_x + ε)), and the recurrent parts together
      (over R h): Ba et al.'s LN-LSTM (their eqs. 20-22) and haste's ``LayerNormLSTM``;
      ``N(v_k) = pnorm(v_1, …, v_n; k)``, block k of ``norm([v_1; …; v_n])`` (printed
      ``norm(v_1, …, v_n)[k]``), which the engine runs as one row instruction over the n·H
      columns. A part that reads another sum's result (the GRU's ``R (r ⊙ h)`` reads the
      reset gate) cannot share that sum's statistics (they would depend on themselves): parts
      are pooled by how many normalised sums lie before them, and a part alone in its pool
      gets ``norm``.

    Ba et al.'s shifts β_x, β_h would only add to the sum's own bias b_i, so a sum with a bias
    keeps just that one, as haste does; a sum without a bias parameter gets a shift ``b_ln…``.
    A linear map outside any sum is normalised alone. A **memory cell** — a carried state whose
    new value is read inside the step and is not the output, such as the LSTM's c — is
    normalised where the step reads it, ``h' = o ⊙ tanh(c_ln)`` with ``c_ln = g_c ⊙ norm(c') +
    b_c``; the state keeps c'.

    Gains start at 1 (``layer_norm_gains``; ``rnnlab.cells.Cell``), shifts as biases do.
    """
    graph = graph.validate()
    if stats not in LAYER_NORM_STATS:
        raise ValueError(f"stats must be one of {LAYER_NORM_STATS}, got {stats!r}")
    if any(node.op in ("norm", "pnorm") for node in graph.nodes.values()) or \
            layer_norm_gains(graph):
        raise GraphError(f"{graph.name}: the cell is layer-normalised already")
    step, xdep = _dependence(graph)
    original = set(graph.nodes)
    nodes = dict(graph.nodes)

    def fresh(stem: str) -> str:
        return _unused(graph.replace(nodes=nodes), stem)

    def add_node(stem: str, node: Node) -> str:
        name = fresh(stem)
        nodes[name] = node
        return name

    def param(stem: str) -> str:
        return add_node(stem, Node("param", ref=fresh(stem)))

    def total(terms: list[str]) -> str:
        out = terms[0]
        for t in terms[1:]:
            out = add_node("_ln", Node("add", (out, t)))
        return out

    # every sum's two parts (x-only linear terms, state-dependent ones), with their levels:
    # 1 + the deepest level of the normalised sums they read (0: they read none)
    sums = _sums(graph)
    parts: dict[str, list[list[str]]] = {}
    level: dict[str, int] = {}  # node -> the deepest level of a normalised sum it reads
    part_level: dict[tuple[str, int], int] = {}
    for name in graph.order:
        base = max((level[a] for a in graph.nodes[name].args), default=-1)
        level[name] = base
        if name not in sums:
            continue
        linear = [t for t in sums[name] if graph.nodes[t].op == "linear"]
        split = [[t for t in linear if t in xdep], [t for t in linear if t in step]]
        if not any(split):
            continue
        parts[name] = split
        for k, part in enumerate(split):
            if part:
                part_level[name, k] = 1 + max(base if t == name else level[t] for t in part)
                level[name] = max(level[name], part_level[name, k])

    # each part normalised: its own statistics, or its pool's
    totals = {key: total(parts[key[0]][key[1]]) for key in part_level}
    normed: dict[tuple[str, int], str] = {}
    pools: dict[tuple, list[tuple[str, int]]] = {}  # (side, level) or (side, its sum)
    for key, lv in part_level.items():
        pools.setdefault((key[1], lv if stats == "joint" else key[0]), []).append(key)
    for members in pools.values():
        if len(members) == 1:
            normed[members[0]] = add_node("_ln", Node("norm", (totals[members[0]],)))
            continue
        pooled = tuple(totals[m] for m in members)
        for k, m in enumerate(members):
            normed[m] = add_node("_ln", Node("pnorm", pooled, value=float(k)))

    for root, split in parts.items():
        terms = sums[root]
        linear = [t for t in terms if graph.nodes[t].op == "linear"]
        new_terms: list[str] = []
        for k, part in enumerate(split):
            if part:
                refs = "_".join(graph.nodes[t].ref for t in part)
                new_terms.append(add_node("_ln", Node("mul", (param(f"g_{refs}"),
                                                              normed[root, k]))))
        rest = [t for t in terms if t not in linear]
        if not any(graph.nodes[t].op == "param" for t in rest):
            rest.append(param("b_ln"))
        if graph.nodes[root].op == "linear":  # a map outside any sum: its readers read LN
            ln = total([*new_terms, *rest])
            for name, node in list(nodes.items()):
                if name in original and root in node.args:
                    nodes[name] = Node(node.op, tuple(ln if a == root else a for a in node.args),
                                       node.ref, node.value)
            writes = {s: ln if v == root else v for s, v in graph.writes.items()}
            graph = graph.replace(nodes=nodes, writes=writes,
                                  output=ln if graph.output == root else graph.output)
            nodes = dict(graph.nodes)
            continue
        # x-only terms first: the compiler hoists their sum out of the loop in one piece
        new_terms = new_terms[:1] + rest + new_terms[1:] if split[0] else rest + new_terms
        top = total(new_terms[:-1]) if len(new_terms) > 1 else None
        nodes[root] = (Node("add", (top, new_terms[-1])) if top is not None
                       else nodes[new_terms[-1]])
    graph = graph.replace(nodes=nodes).pruned()
    # the memory cells: normalised where the step reads them
    for state in graph.carried:
        new = graph.writes[state]
        readers = [n for n in graph.order if new in graph.nodes[n].args]
        if new == graph.output or not readers or graph.nodes[new].op in ("state", "param"):
            continue
        nodes = dict(graph.nodes)
        normed_c = add_node("_ln", Node("norm", (new,)))
        scaled = add_node("_ln", Node("mul", (param(f"g_{state}"), normed_c)))
        ln = fresh(f"{state}_ln")
        nodes[ln] = Node("add", (scaled, param(f"b_{state}")))
        for r in readers:
            node = nodes[r]
            nodes[r] = Node(node.op, tuple(ln if a == new else a for a in node.args), node.ref,
                            node.value)
        graph = graph.replace(nodes=nodes)
    return graph.validate()


def layer_norm_gains(graph: Graph) -> set[str]:
    """The gains of the layer normalisations in ``graph``: the vectors multiplying a normalised
    part — a ``norm`` or ``pnorm`` node, or a deviation times an ``rsqrt`` (statistics written
    out with ``mean`` and ``rsqrt``, as a hand-written cell may). They
    start at 1 (``rnnlab.cells.Cell``); shifts are biases and start as biases do."""

    def normalised(node: Node) -> bool:
        return node.op in ("norm", "pnorm") or (node.op == "mul" and any(
            graph.nodes[a].op == "rsqrt" for a in node.args))

    gains: set[str] = set()
    for node in graph.nodes.values():
        if node.op == "mul":
            a, b = (graph.nodes[x] for x in node.args)
            if normalised(b) and a.op == "param":
                gains.add(a.ref)
    return gains


def regularise(graph: Graph, input_dropout: float = 0.0, recurrent_dropout: float = 0.0,
               output_dropout: float = 0.0, weight_drop: float = 0.0,
               zoneout: float | dict = 0.0, layer_norm: bool | str = False) -> Graph:
    """``graph`` with the given regularisers (each a probability; 0 leaves it out).

    Args:
        graph: any validated cell graph (``rnnlab.cells.graph(name, I, H)``, a JSON cell, a
            mutant).
        input_dropout: locked dropout of the step input x.
        recurrent_dropout: locked dropout of the state where it feeds recurrent products.
        output_dropout: locked dropout of the cell's output.
        weight_drop: DropConnect of every recurrent matrix, one mask per call.
        zoneout: zoneout of the state fields (a probability, or field -> probability), a new
            mask at every step.
        layer_norm: layer-normalise every pre-activation (input and recurrent parts apart) and
            the memory cell: True or ``"gate"`` (each gate's own statistics) or ``"joint"``
            (all gates' together, Ba et al.'s LN-LSTM); see ``layer_norm``.

    Applied in the order layer norm, zoneout, weight drop, recurrent, output and input dropout
    (so zoneout acts on the normalised cell's state and output dropout on the zoned output).
    """
    stats = layer_norm_stats(layer_norm)
    g = globals()
    if stats:
        graph = g["layer_norm"](graph, stats)
    for option, p in (("zoneout", zoneout), ("weight_drop", weight_drop),
                      ("recurrent_dropout", recurrent_dropout),
                      ("output_dropout", output_dropout), ("input_dropout", input_dropout)):
        graph = g[option](graph, p)
    return graph


def plain(graph: Graph) -> Graph:
    """The cell without its random masks: what a regularised cell computes in evaluation.

    Dropout masks (expectation 1) disappear: the plain cell, unless the graph has step masks
    (zoneout), which become their expectation, the constant p (``s' = s_new + p ⊙ (s −
    s_new)``)."""
    if not graph.masks:
        return graph
    nodes = dict(graph.nodes)
    for name in graph.step_masks:
        nodes[name] = Node("const", value=graph.masks[name].p)
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
