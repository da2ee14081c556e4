"""Plans of registered cells, compiled once per size, and their weights from stacked matrices.

Callers that hold a cell's weights in a layout of their own (a Grid LSTM block keeps each
dimension's gates side by side in one matrix) get the plan of the zoo cell that computes the
same step here, and hand their matrices over with ``stacked_weights``, without knowing how the
compiler names or assembles its fused weights. A caller that computes a cell's gate GEMM itself
(a block's stage GEMM, fused over dimensions and weight copies) runs the rest of the cell's step
with ``gates_program``.
"""

from __future__ import annotations

import dataclasses
import functools

import torch

from ..lang import Graph, cell, sigmoid, tanh
from ..lang.compile import Instr, Program, compile_graph
from ..lang.mutate import replace_with_ancestor
from ..lang.trace import trace


@functools.lru_cache(maxsize=256)
def cell_program(name: str, input_size: int, hidden_size: int) -> Program:
    """The plan of registered cell ``name`` at these sizes (compiled once per process)."""
    from .. import cells  # the zoo sits beside the engine; read when a plan is first asked for

    return compile_graph(cells.graph(name, input_size, hidden_size))


def stacked_weights(program: Program, W: torch.Tensor, R: torch.Tensor, b: torch.Tensor,
                    gates: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The prepared weights of a cell ``W_g @ x + R_g @ h + b_g`` from its gates stacked.

    Args:
        program: the cell's plan; its parameters are ``W_g``, ``R_g``, ``b_g`` for g in gates.
        W: (input_size, n · H), input-major: columns ``[W_g1ᵀ W_g2ᵀ …]``.
        R: (H, n · H), the recurrent matrices the same way.
        b: (n · H,), the biases side by side.
        gates: the gate names in the order of the columns.

    When the plan assembles its fused weights exactly as stacked here (one input GEMM over the
    gates in this order, their biases, one recurrent GEMM), the matrices are used as they are:
    no copy, and gradients reach them directly. Otherwise they are split into the paper-named
    parameters and assembled as ``Program.prepare`` does.
    """
    H = program.hidden_size
    named = {"W": tuple((f"W_{g}",) for g in gates), "b": tuple((f"b_{g}",) for g in gates),
             "R": tuple(((f"R_{g}",),) for g in gates)}
    given = {"input": ("W", W), "bias": ("b", b), "recurrent": ("R", R)}
    direct, used = {}, set()
    for key, spec in program.weight_specs.items():
        kind = given.get(spec.kind)
        if kind is None or spec.refs != named[kind[0]] or spec.kind in used:
            break
        used.add(spec.kind)
        direct[key] = kind[1]
    else:
        if len(used) == 3 and not program.statics:
            return direct
    params = {}
    for prefix, matrix in (("W", W), ("R", R)):
        for gate, part in zip(gates, matrix.T.split(H), strict=True):
            params[f"{prefix}_{gate}"] = part
    for gate, part in zip(gates, b.split(H), strict=True):
        params[f"b_{gate}"] = part
    return program.prepare(params)


@functools.lru_cache(maxsize=256)
def gates_program(name: str, hidden_size: int, gates: tuple[str, ...]) -> Program:
    """The plan of registered cell ``name`` after its gate GEMM, which the caller computes.

    Every gate of the cell reads ``z_g = W_g x + R_g h + b_g`` (an LSTM's form; a Grid LSTM
    dimension's ``W_k H + b_k`` is this with x the other dimensions' hidden vectors). The
    recurrent maps are folded into the input maps, ``W_g x + R_g h = [W_g R_g] [x; h]``, so the
    compiler hoists all the work before the memory update; then the hoist's one GEMM is taken
    out. The plan's input is that GEMM's result, ``z = [z_g1 z_g2 …]`` (B, n · hidden_size) in the
    order of ``gates``; it reads no weights; its state is the cell's state less ``h``::

        output, (m,) = rnnlab.engine.run(program, {}, z.unsqueeze(0), (m,))   # output[0] = h'

    Raises ValueError for a cell that reads ``h`` other than through those maps (GRU's
    ``(1 − z) ⊙ h``), carries no memory besides ``h``, or whose gates are not in this order.
    """
    from .. import cells  # the zoo sits beside the engine; read when a plan is first asked for

    graph = _folded(cells.graph(name, hidden_size, hidden_size))
    program = compile_graph(graph)
    layout = {"input": tuple((f"W_{g}",) for g in gates), "bias": tuple((f"b_{g}",) for g in gates)}
    specs = {spec.kind: spec.refs for spec in program.weight_specs.values()}
    gemms = [i for i in program.hoist_code if i.op == "gemm"]
    reads = {i.out for i in program.hoist_code if i.op in ("x", "w")}  # the GEMM's operands
    if (specs != layout or len(program.weight_specs) != 2 or program.statics or len(gemms) != 1
            or {*gemms[0].args, gemms[0].bias} != reads
            or any(reads & {*i.args} for i in program.hoist_code if i is not gemms[0])
            or any(i.op == "w" for i in program.step_code)):
        raise ValueError(
            f"cell {name!r} does not compute its gates {gates} as one GEMM of its input and "
            f"hidden vector stacked in this order, then elementwise work; its plan:\n"
            f"{program.source}")
    gemm = gemms[0]
    hoist = tuple(Instr(gemm.out, "x", width=gemm.width) if i is gemm else i
                  for i in program.hoist_code if i.out not in reads)
    return dataclasses.replace(program, graph=graph.resized(gemm.width, hidden_size),
                               weight_specs={}, hoist_code=hoist, _key=None)


def _folded(graph: Graph) -> Graph:
    """The cell with each ``W_g x + R_g h`` read as one map of ``[x; h]``, and without ``h``."""
    h = graph.states[0]
    for name, node in graph.nodes.items():
        if node.op != "linear" or node.args != (h,):
            continue
        users = graph.consumers[name]
        total = graph.nodes.get(users[0]) if len(users) == 1 else None
        other = next((a for a in total.args if a != name), None) \
            if total is not None and total.op == "add" else None
        partner = graph.nodes.get(other)
        if partner is None or partner.op != "linear" or partner.args != ("x",):
            raise ValueError(
                f"cell {graph.name!r}: {node.ref} @ {h} is not added to a map of the input x "
                "alone, so it cannot be folded into the gate GEMM")
        graph = replace_with_ancestor(graph, users[0], other)
    if graph.consumers[h] or graph.writes[h] != graph.output or len(graph.states) < 2:
        raise ValueError(
            f"cell {graph.name!r} (state {graph.states}) reads {h!r} other than through its "
            f"gates' maps R @ {h}, does not output it, or carries nothing else; only a cell with "
            f"a memory whose gates read {h} through those maps runs from given pre-activations")
    writes = {s: n for s, n in graph.writes.items() if s != h}
    nodes = {n: node for n, node in graph.nodes.items() if n != h}
    return graph.replace(nodes=nodes, states=graph.states[1:], writes=writes,
                         input_size=graph.input_size + graph.hidden_size).validate()


# ---- a 2-D Grid LSTM's whole stack as one cell (rnnlab.grid.stack_step) ----------------------
GRID_GATES = ("u", "f", "o", "c")  # the order of each grid dimension's blocks of d columns
_GRID_DIMS = ("t", "d")  # time, depth: the order of a 2-D block's two blocks of 4d columns


def _grid_name(copy: int | None, kind: str, dim: str, gate: str) -> str:
    return f"{kind}{'' if copy is None else copy}_{dim}{gate}"


@functools.lru_cache(maxsize=32)
def grid_stack_program(layers: int, input_size: int, hidden_size: int, tied: bool,
                       standard: bool) -> Program:
    """The plan of a 2-D Grid LSTM's whole stack as one cell (``rnnlab.grid.stack_step``):
    input the grid's input x (``input_size``), state ``(h^time_l, m^time_l)`` per layer,
    output the top layer's ``h^depth``; per layer and dimension k ∈ {time ``t``, depth ``d``},
    gate g ∈ ``GRID_GATES``: ``z = A_{l,k,g} h^time_l + B_{l,k,g} h^depth_{l-1} + b_{l,k,g}``
    (one set of A, B, b for all layers when ``tied``), then the LSTM transform; the depth edge
    entering layer 0 is the input's projection ``P x`` with memory 0, so layer 0 reads x through
    ``X_{k,g} = B_{0,k,g} P`` (its own maps, tied or not). ``standard``: the usual output
    ``h' = o ⊙ tanh(m')`` instead of the paper's ``tanh(o ⊙ m')``."""
    states = tuple(name for layer in range(layers) for name in (f"h{layer}", f"m{layer}"))

    def stack(x, state, p):
        depth_h, depth_m, new = x, None, []
        for layer in range(layers):
            copy = None if tied else layer
            time_h, time_m = state[2 * layer], state[2 * layer + 1]
            out = {}
            for dim, memory in (("t", time_m), ("d", depth_m)):
                def pre(gate, dim=dim, copy=copy, time_h=time_h, depth_h=depth_h,
                        layer=layer):
                    depth = (getattr(p, _grid_name(None, "X", dim, gate)) if layer == 0
                             else getattr(p, _grid_name(copy, "B", dim, gate)))
                    return (getattr(p, _grid_name(copy, "A", dim, gate)) @ time_h
                            + depth @ depth_h + getattr(p, _grid_name(copy, "b", dim, gate)))

                u, o = sigmoid(pre("u")), sigmoid(pre("o"))
                c = tanh(pre("c"))
                m = u * c if memory is None else sigmoid(pre("f")) * memory + u * c
                out[dim] = (o * tanh(m) if standard else tanh(o * m)), m
            new += list(out["t"])
            depth_h, depth_m = out["d"]
        return depth_h, tuple(new)

    kind = "standard" if standard else "paper"
    definition = cell(f"grid_stack_{layers}x{'tied' if tied else 'untied'}_{kind}", states)(stack)
    return compile_graph(trace(definition, input_size, hidden_size))


def grid_stack_parameters(weights: torch.Tensor, biases: torch.Tensor, tied: bool,
                          projection: torch.Tensor) -> dict:
    """``grid_stack_program``'s parameters from a 2-D grid block's weights (copies, 2d, 8d)
    and biases (copies, 8d) — rows ``[h^time; h^depth]``, columns the time then the depth
    dimension's gates in ``GRID_GATES`` order, d each — and the input projection P (d,
    input_size): A (d, d) reads h^time, B (d, d) reads h^depth, b (d,) (views), and layer 0's
    X = B_0 P (d, input_size)."""
    d = weights.shape[1] // 2
    params = {}
    for k, dim in enumerate(_GRID_DIMS):
        for g, gate in enumerate(GRID_GATES):
            columns = slice((k * len(GRID_GATES) + g) * d, (k * len(GRID_GATES) + g + 1) * d)
            params[_grid_name(None, "X", dim, gate)] = weights[0, d:, columns].T @ projection
    for copy in range(weights.shape[0]):
        name_copy = None if tied else copy
        for k, dim in enumerate(_GRID_DIMS):
            for g, gate in enumerate(GRID_GATES):
                columns = slice((k * len(GRID_GATES) + g) * d, (k * len(GRID_GATES) + g + 1) * d)
                params[_grid_name(name_copy, "A", dim, gate)] = weights[copy, :d, columns].T
                params[_grid_name(name_copy, "B", dim, gate)] = weights[copy, d:, columns].T
                params[_grid_name(name_copy, "b", dim, gate)] = biases[copy, columns]
    return params


# ---- layers of one cell as one cell (rnnlab.engine.stack) -------------------------------------
def stacked_graph(graph: Graph, layers: int) -> Graph:
    """``layers`` layers of a cell as one cell: layer l reads layer l−1's output where the
    cell reads its input x (layer 0 reads x itself), each layer with state and parameters of
    its own — named ``<name>@<l>`` — and the top layer's output as the output. One step of
    this graph is one step of a unidirectional stack of the cell (``rnnlab.RNN`` without skip
    connections or dilations), so its plan runs every layer in one engine call. Refuses a cell
    with random masks (regularised cells draw them per layer and call)."""
    if graph.masks:
        raise ValueError(f"cell {graph.name!r} has random masks {sorted(graph.masks)}: its "
                         "layers draw them apart, so it is not stacked as one cell")
    nodes: dict = {}
    writes: dict = {}
    below = None  # the layer below's output node
    for layer in range(layers):
        def named(name: str, layer=layer, below=below) -> str:
            return below if below is not None and graph.nodes[name].op == "input" else \
                f"{name}@{layer}"

        for name, node in graph.nodes.items():
            if node.op == "input" and below is not None:
                continue
            ref = None if node.ref is None else f"{node.ref}@{layer}"
            nodes[named(name)] = dataclasses.replace(
                node, args=tuple(named(a) for a in node.args), ref=ref)
        writes.update({f"{s}@{layer}": named(v) for s, v in graph.writes.items()})
        below = named(graph.output)
    states = tuple(f"{s}@{layer}" for layer in range(layers) for s in graph.states)
    return Graph(nodes, states, writes, below, graph.input_size, graph.hidden_size,
                 f"{graph.name}x{layers}").validate()
