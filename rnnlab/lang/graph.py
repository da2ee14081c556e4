"""Cell graphs: a recurrent cell as a small table of named, immutable nodes.

A graph computes one step of a cell. Its leaves are the step input ``x``, the previous state
vectors (``h``, ``c``, …), learned vectors (``b_i``, ``p_f``) and constants; its inner nodes are
linear maps ``W @ v`` and elementwise ops. ``writes`` names the node that becomes each new
state vector and ``output`` the node the cell emits (usually the new ``h``).

Nodes refer to their arguments by name, so a graph is a plain mapping that a mutation can
rewrite one entry at a time (``replace``), and a bad rewrite (a cycle, a size mismatch, a dead
parameter) is caught by ``validate``. Parameters are not declared separately: a ``linear`` node
over an argument of size n uses a matrix of shape (hidden_size, n) and a ``param`` node a vector
of shape (hidden_size,); a name used twice is one shared parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from functools import cached_property

from .ops import OPS, POOL, spec


class GraphError(ValueError):
    """A cell graph that cannot be computed, with the reason."""


@dataclass(frozen=True)
class Node:
    """One node: ``op`` over the nodes named in ``args``.

    ``ref`` names the parameter (``linear``, ``param``) or the state vector (``state``) the node
    reads; ``value`` is the number of a ``const``, the factor ``a`` of ``scale`` (a·x), or
    which of its arguments a ``pnorm`` is (0 for the first).
    """

    op: str
    args: tuple[str, ...] = ()
    ref: str | None = None
    value: float | None = None


# How a mask multiplies what it masks (see ``Mask``).
MASK_KINDS = ("state", "input", "weight", "step")


@dataclass(frozen=True)
class Mask:
    """A random mask of a regularised cell (``rnnlab.lang.regularise``), drawn by the caller.

    ``kind``:

    * ``"state"``: the mask is a state field of the graph written unchanged (``m' = m``), so one
      draw per sequence rides through the loop with the state; the graph multiplies what it
      masks by it as by any vector. ``target`` names the state it masks (``h``) or ``output``.
    * ``"input"``: multiplies the step input ``x`` before the input projections (the hoist),
      one draw per sequence; ``target`` is ``"x"``.
    * ``"weight"``: multiplies the matrix parameter ``target`` entry by entry (DropConnect), one
      draw per call.
    * ``"step"``: a ``mask`` leaf node of the same name, drawn anew at every step for every
      sequence (zoneout's ``d_h``, ``target`` the state it zones out). Its entries are 1 with
      probability ``p``, else 0 (not inverted); evaluation uses its expectation ``p``. The
      caller hands the step masks to the engine after x in each step's input row
      (``Program.row_size``).

    The other masks are inverted dropout: entries are 0 with probability ``p`` and 1/(1−p)
    otherwise, so their expectation is 1, which is what evaluation uses.
    """

    kind: str
    target: str
    p: float


@dataclass(frozen=True)
class Graph:
    """One step of a recurrent cell.

    Args:
        nodes: name -> Node; leaves ``x`` (op ``input``) and one ``state`` node per state name.
        states: the names of the state vectors, in order (``("h", "c")`` for an LSTM).
        writes: state name -> name of the node that gives its new value.
        output: name of the node the cell emits each step.
        input_size, hidden_size: sizes of ``x`` and of every state vector.
        name: the cell's name, for messages and printing.
        masks: mask name -> ``Mask``: the random masks of a regularised cell (empty for a
            plain cell); a ``state`` mask is also one of ``states``.
    """

    nodes: dict[str, Node]
    states: tuple[str, ...]
    writes: dict[str, str]
    output: str
    input_size: int
    hidden_size: int
    name: str = "cell"
    masks: dict[str, Mask] = field(default_factory=dict)

    # ---- derived structure -------------------------------------------------------------
    @cached_property
    def order(self) -> tuple[str, ...]:
        """Node names in dependency order (arguments first). Raises GraphError on a cycle."""
        done: dict[str, bool] = {}  # name -> finished (False while on the DFS stack)
        order: list[str] = []
        for root in self.nodes:
            if root in done:
                continue
            stack = [(root, iter(self._node(root).args))]
            done[root] = False
            while stack:
                name, it = stack[-1]
                arg = next(it, None)
                if arg is None:
                    stack.pop()
                    done[name] = True
                    order.append(name)
                    continue
                if arg not in self.nodes:
                    raise GraphError(
                        f"{self.name}: node {name!r} reads {arg!r}, which is not a node of the "
                        f"graph; nodes: {', '.join(self.nodes)}"
                    )
                if arg not in done:
                    done[arg] = False
                    stack.append((arg, iter(self._node(arg).args)))
                elif not done[arg]:
                    cycle = [n for n, _ in stack]
                    cycle = cycle[cycle.index(arg):] + [arg]
                    raise GraphError(
                        f"{self.name}: cycle {' -> '.join(cycle)}; a step graph must be acyclic "
                        "(recurrence goes through state writes, not through node references)"
                    )
        return tuple(order)

    @cached_property
    def consumers(self) -> dict[str, tuple[str, ...]]:
        """name -> names of the nodes that read it (a state write or the output counts too)."""
        users: dict[str, list[str]] = {name: [] for name in self.nodes}
        for name in self.order:
            for arg in self.nodes[name].args:
                users[arg].append(name)
        for state, node in self.writes.items():
            users[node].append(f"<write {state}>")
        users[self.output].append("<output>")
        return {name: tuple(u) for name, u in users.items()}

    @cached_property
    def sizes(self) -> dict[str, int | None]:
        """name -> vector size of the node (None for a scalar constant)."""
        sizes: dict[str, int | None] = {}
        for name in self.order:
            node = self.nodes[name]
            op = node.op
            if op == "input":
                sizes[name] = self.input_size
            elif op in ("state", "param", "linear", "mask"):
                sizes[name] = self.hidden_size
            elif op == "const":
                sizes[name] = None
            elif OPS[op].kind == "activation":
                sizes[name] = sizes[node.args[0]]
            elif OPS[op].kind == "pool":
                found = {sizes[arg] for arg in node.args}
                if len(found) != 1 or None in found:
                    raise GraphError(
                        f"{self.name}: node {name!r} ({op}) pools vectors of one size, got "
                        f"sizes {[sizes[arg] for arg in node.args]}")
                sizes[name] = found.pop()
            else:  # binary
                a, b = (sizes[arg] for arg in node.args)
                if a is not None and b is not None and a != b:
                    raise GraphError(
                        f"{self.name}: node {name!r} = {op}({node.args[0]}, {node.args[1]}) "
                        f"combines sizes {a} and {b}; elementwise ops need equal sizes "
                        "(no broadcasting except scalar constants)"
                    )
                sizes[name] = a if a is not None else b
        return sizes

    @cached_property
    def params(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape, in order of first use."""
        shapes: dict[str, tuple[int, ...]] = {}
        for name in self.order:
            node = self.nodes[name]
            if node.op == "linear":
                shape = (self.hidden_size, self.sizes[node.args[0]])
            elif node.op == "param":
                shape = (self.hidden_size,)
            else:
                continue
            if node.ref in shapes and shapes[node.ref] != shape:
                raise GraphError(
                    f"{self.name}: parameter {node.ref!r} is used with shapes {shapes[node.ref]} "
                    f"and {shape}; a shared parameter must have one shape"
                )
            shapes[node.ref] = shape
        return shapes

    def _node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise GraphError(f"{self.name}: no node named {name!r}") from None

    # ---- checks ---------------------------------------------------------------------------
    def validate(self) -> Graph:
        """Check the graph and return it; raise GraphError saying what is wrong."""
        if self.input_size <= 0 or self.hidden_size <= 0:
            raise GraphError(
                f"{self.name}: sizes must be positive, got input_size={self.input_size}, "
                f"hidden_size={self.hidden_size}"
            )
        for name, node in self.nodes.items():
            op = spec(node.op) if node.op in OPS else None
            if op is None:
                raise GraphError(
                    f"{self.name}: node {name!r} has unknown op {node.op!r}; "
                    f"known ops: {', '.join(OPS)}"
                )
            if op.arity == POOL:
                if not node.args or node.value is None or not (
                        float(node.value).is_integer() and 0 <= node.value < len(node.args)):
                    raise GraphError(
                        f"{self.name}: node {name!r} ({node.op}) takes one argument or more and "
                        f"the index of its own among them as its value, got {len(node.args)} "
                        f"argument(s) and value {node.value!r}")
            elif len(node.args) != op.arity:
                raise GraphError(
                    f"{self.name}: node {name!r} ({node.op}) takes {op.arity} argument(s), "
                    f"got {len(node.args)}"
                )
            if node.op in ("linear", "param", "state", "mask") and not node.ref:
                raise GraphError(f"{self.name}: node {name!r} ({node.op}) needs a ref name")
            if node.op == "state" and node.ref not in self.states:
                raise GraphError(
                    f"{self.name}: node {name!r} reads state {node.ref!r}, not one of "
                    f"{self.states}"
                )
            if node.op in ("const", "scale") and node.value is None:
                raise GraphError(f"{self.name}: node {name!r} ({node.op}) needs a value")
        inputs = [n for n, node in self.nodes.items() if node.op == "input"]
        if len(inputs) > 1:
            raise GraphError(f"{self.name}: more than one input node: {inputs}")
        for state in self.states:
            if state not in self.writes:
                raise GraphError(
                    f"{self.name}: state {state!r} is never written; every state vector needs "
                    "a new value each step (writes[state] = node)"
                )
        for state, node in self.writes.items():
            if state not in self.states:
                raise GraphError(
                    f"{self.name}: writes state {state!r}, which is not one of {self.states}"
                )
            self._node(node)
        self._node(self.output)
        self._validate_masks()
        _ = self.order, self.sizes, self.params  # cycle, dangling-argument and size checks
        for state, node in [*self.writes.items(), ("output", self.output)]:
            if self.sizes[node] != self.hidden_size:
                raise GraphError(
                    f"{self.name}: {state} is node {node!r} of size {self.sizes[node]}, "
                    f"expected hidden_size {self.hidden_size}"
                )
        live = self.live
        for name in self.order:
            if name in live:
                continue
            node = self.nodes[name]
            if node.op in ("linear", "param"):
                raise GraphError(
                    f"{self.name}: parameter {node.ref!r} (node {name!r}) is unused: nothing it "
                    "feeds reaches a state write or the output; remove it (graph.pruned())"
                )
            if node.op not in ("input", "state", "mask"):
                raise GraphError(
                    f"{self.name}: node {name!r} is computed but never used; remove it "
                    "(graph.pruned())"
                )
        return self

    def _validate_masks(self) -> None:
        carried = [s for s in self.states if s not in self.masks]
        if tuple(carried) != self.states[:len(carried)]:
            raise GraphError(
                f"{self.name}: mask state fields must come after the carried ones, got states "
                f"{self.states}"
            )
        for name, node in self.nodes.items():
            if node.op == "mask" and (node.ref != name or getattr(self.masks.get(name), "kind",
                                                                  None) != "step"):
                raise GraphError(
                    f"{self.name}: node {name!r} is a per-step mask but graph.masks has no step "
                    f"mask {name!r} for it (mask nodes are made by rnnlab.lang.regularise)"
                )
        for name, mask in self.masks.items():
            if not isinstance(mask, Mask) or mask.kind not in MASK_KINDS:
                raise GraphError(
                    f"{self.name}: mask {name!r} must be a Mask of kind {MASK_KINDS}, got "
                    f"{mask!r}"
                )
            if not (isinstance(mask.p, float) and 0.0 <= mask.p < 1.0):
                raise GraphError(
                    f"{self.name}: mask {name!r} has probability {mask.p!r}; expected a float "
                    "in [0, 1)"
                )
            if mask.kind == "state":
                leaf = self.nodes.get(name)
                if name not in self.states or self.writes.get(name) != name or leaf is None \
                        or leaf.op != "state" or leaf.ref != name:
                    raise GraphError(
                        f"{self.name}: state mask {name!r} must be a state field whose node "
                        f"{name!r} reads it and which is written unchanged (writes[{name!r}] = "
                        f"{name!r})"
                    )
            elif mask.kind == "step":
                leaf = self.nodes.get(name)
                if leaf is None or leaf.op != "mask" or leaf.ref != name:
                    raise GraphError(
                        f"{self.name}: step mask {name!r} must be a node {name!r} of op 'mask' "
                        f"whose ref is {name!r}"
                    )
            elif mask.kind == "input" and mask.target != "x":
                raise GraphError(f"{self.name}: input mask {name!r} must target 'x', got "
                                 f"{mask.target!r}")
            elif mask.kind == "weight" and not any(
                    n.op == "linear" and n.ref == mask.target for n in self.nodes.values()):
                raise GraphError(
                    f"{self.name}: weight mask {name!r} targets {mask.target!r}, which is not a "
                    "matrix of the cell (a parameter applied with @)"
                )

    @property
    def step_masks(self) -> tuple[str, ...]:
        """The per-step masks (``Mask`` kind ``step``), in the order the step's input row holds
        them after x."""
        return tuple(n for n, m in self.masks.items() if m.kind == "step")

    @property
    def carried(self) -> tuple[str, ...]:
        """The state fields a caller sees: ``states`` less the state masks."""
        return tuple(s for s in self.states if s not in self.masks)

    @cached_property
    def live(self) -> frozenset[str]:
        """Names of the nodes that some state write or the output depends on."""
        seen: set[str] = set()
        todo = [*self.writes.values(), self.output]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo.extend(self.nodes[name].args)
        return frozenset(seen)

    # ---- rewriting (the search builds on these) -------------------------------------------
    def pruned(self) -> Graph:
        """The same graph without dead nodes (leaves ``x`` and the states are always kept)."""
        live = self.live
        keep = {
            n: node
            for n, node in self.nodes.items()
            if n in live or node.op in ("input", "state", "mask")
        }
        return dc_replace(self, nodes=keep)

    def replace(self, **changes) -> Graph:
        """A copy with fields changed (``nodes=``, ``writes=``, ``input_size=``…)."""
        return dc_replace(self, **changes)

    def with_node(self, name: str, node: Node) -> Graph:
        """A copy where ``name`` is (re)defined as ``node``."""
        return dc_replace(self, nodes={**self.nodes, name: node})

    def resized(self, input_size: int, hidden_size: int) -> Graph:
        """The same cell at other sizes (parameter shapes follow)."""
        return dc_replace(self, input_size=input_size, hidden_size=hidden_size)

    def fresh_name(self, stem: str = "_t") -> str:
        """A node name not yet used in the graph ("_" names print inlined)."""
        k = len(self.nodes)
        while f"{stem}{k}" in self.nodes:
            k += 1
        return f"{stem}{k}"

    def __str__(self) -> str:
        from .printing import equations

        return equations(self)

    # ---- files (logic in serialize.py) ------------------------------------------------------
    def to_json(self, indent: int | None = 1) -> str:
        """The graph as versioned JSON text; ``Graph.from_json`` reads it back exactly."""
        from .serialize import to_json

        return to_json(self, indent)

    @staticmethod
    def from_json(text: str) -> Graph:
        """A validated Graph from ``to_json`` text; a bad text raises one CellFileError line."""
        from .serialize import from_json

        return from_json(text)
