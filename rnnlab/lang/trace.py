"""Write a cell as a Python function of symbols; tracing turns it into a Graph.

    @cell("lstm", state=("h", "c"))
    def lstm(x, state, p):
        h, c = state
        i = sigmoid(p.W_i @ x + p.R_i @ h + p.b_i)
        ...
        return h, (h, c)

``x`` and the fields of ``state`` are symbols; ``p.W_i @ v`` is a learned matrix (hidden_size ×
size of v), ``p.b_i`` used in arithmetic a learned vector (hidden_size). The function returns
``(output, new_state)``. Local variable names become the node names, so the traced graph prints
as the function reads.
"""

from __future__ import annotations

import sys
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field

from .graph import Graph, GraphError, Node

_STATE_TYPES: dict[tuple[str, ...], type] = {}


def state_type(names: tuple[str, ...]) -> type:
    """The NamedTuple class ``State`` with the given fields (one class per field list).

    Each class is reachable as ``rnnlab.lang.trace.State__<field>__<field>…`` so that modules
    holding it, and the states themselves, pickle (and unpickle in a fresh process)."""
    names = tuple(names)
    if names not in _STATE_TYPES:
        cls = namedtuple("State", names)
        cls.__qualname__ = "State__" + "__".join(names)
        cls.__module__ = __name__
        _STATE_TYPES[names] = cls
    return _STATE_TYPES[names]


def __getattr__(name: str):
    """``State__h__c`` -> the State class of fields (h, c) (used by pickle)."""
    if name.startswith("State__"):
        return state_type(tuple(name[len("State__"):].split("__")))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Builder:
    """Collects nodes while a cell function runs on symbols."""

    def __init__(self, name: str, input_size: int, hidden_size: int, options: dict):
        self.name = name
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.options = options
        self.used_options: set[str] = set()
        self.nodes: dict[str, Node] = {}
        self._count = 0

    def add(self, node: Node, name: str | None = None) -> Var:
        if name is None:
            name = f"_{self._count}"
            self._count += 1
        self.nodes[name] = node
        return Var(self, name)


class Var:
    """A symbol standing for one node while a cell function is traced."""

    __slots__ = ("builder", "name")
    __array_priority__ = 1000  # keep `1.0 - v` on our side even for numpy scalars

    def __init__(self, builder: _Builder, name: str):
        self.builder = builder
        self.name = name

    def _binary(self, op: str, other, swap: bool = False) -> Var:
        other = self.builder_operand(other)
        args = (other.name, self.name) if swap else (self.name, other.name)
        return self.builder.add(Node(op, args))

    def builder_operand(self, value) -> Var:
        if isinstance(value, Var):
            if value.builder is not self.builder:
                raise GraphError("cannot mix symbols from two different traces")
            return value
        if isinstance(value, Param):
            return value.vector()
        if isinstance(value, (int, float)):
            return self.builder.add(Node("const", value=float(value)))
        raise TypeError(
            f"a cell can combine symbols, parameters (p.name) and numbers; got "
            f"{type(value).__name__}"
        )

    def __add__(self, other): return self._binary("add", other)
    def __radd__(self, other): return self._binary("add", other, swap=True)
    def __sub__(self, other): return self._binary("sub", other)
    def __rsub__(self, other): return self._binary("sub", other, swap=True)
    def __mul__(self, other): return self._binary("mul", other)
    def __rmul__(self, other): return self._binary("mul", other, swap=True)
    def __neg__(self): return self._binary("sub", 0.0, swap=True)

    def __repr__(self) -> str:
        return f"Var({self.name})"


@dataclass
class Param:
    """``p.name``: a matrix when applied with ``@``, otherwise a vector."""

    builder: _Builder
    name: str

    def __matmul__(self, v: Var) -> Var:
        if not isinstance(v, Var):
            raise TypeError(f"p.{self.name} @ v needs a symbol v, got {type(v).__name__}")
        return self.builder.add(Node("linear", (v.name,), ref=self.name))

    def vector(self) -> Var:
        return self.builder.add(Node("param", ref=self.name))

    def __add__(self, other): return self.vector() + other
    def __radd__(self, other): return other + self.vector()
    def __sub__(self, other): return self.vector() - other
    def __rsub__(self, other): return other - self.vector()
    def __mul__(self, other): return self.vector() * other
    def __rmul__(self, other): return other * self.vector()


class Params:
    """The ``p`` namespace of a cell function: any attribute is a named parameter."""

    def __init__(self, builder: _Builder):
        object.__setattr__(self, "_builder", builder)

    def __getattr__(self, name: str) -> Param:
        if name.startswith("__"):
            raise AttributeError(name)
        return Param(self._builder, name)

    def option(self, name: str, default):
        """A cell-specific option given to ``make(..., name=value)``."""
        builder = self._builder
        builder.used_options.add(name)
        return builder.options.get(name, default)

    @property
    def hidden_size(self) -> int:
        return self._builder.hidden_size


def _unary(op: str, v, value: float | None = None) -> Var:
    if isinstance(v, Param):
        v = v.vector()
    if not isinstance(v, Var):
        raise TypeError(f"{op}() takes a symbol of the cell, got {type(v).__name__}")
    return v.builder.add(Node(op, (v.name,), value=value))


def tanh(v) -> Var:
    return _unary("tanh", v)


def sigmoid(v) -> Var:
    return _unary("sigmoid", v)


def relu(v) -> Var:
    return _unary("relu", v)


def identity(v) -> Var:
    return _unary("identity", v)


def scale(a: float, v) -> Var:
    """Jozefowicz's ``Linear(a, x) = a·x``."""
    return _unary("scale", v, value=float(a))


def as_hidden(x: Var, p: Params) -> Var:
    """``x`` where a cell adds the raw input to a hidden-size vector (MUT1's tanh(x), MUT2's x +).

    Jozefowicz et al. embed inputs to the hidden size, so the raw term is well defined only when
    input_size == hidden_size. rnnlab keeps it raw in that case. Otherwise it refuses unless the
    user asks for a learned projection with ``raw_input="project"``, which becomes ``P_x @ x``;
    it never substitutes one silently.
    """
    builder = x.builder
    mode = p.option("raw_input", "strict")
    if mode not in ("strict", "project"):
        raise ValueError(f"raw_input must be 'strict' or 'project', got {mode!r}")
    if builder.input_size == builder.hidden_size:
        return x
    if mode == "project":
        return p.P_x @ x
    raise ValueError(
        f"{builder.name} adds the raw input x to a hidden-size vector, so it needs "
        f"input_size == hidden_size (got input_size={builder.input_size}, "
        f"hidden_size={builder.hidden_size}); embed the input to {builder.hidden_size} first, "
        "or pass raw_input='project' to learn a projection P_x @ x"
    )


@dataclass(frozen=True)
class CellDef:
    """A cell written as a function: its name, state names and the function itself (its
    docstring is the cell's description, ``rnnlab.cells.doc(name)``)."""

    name: str
    fn: Callable
    state: tuple[str, ...]
    options: dict = field(default_factory=dict)

    def graph(self, input_size: int, hidden_size: int, **options) -> Graph:
        """Trace the function at these sizes into a validated Graph."""
        return trace(self, input_size, hidden_size, **options)


def cell(name: str, state: tuple[str, ...] = ("h",)) -> Callable[[Callable], CellDef]:
    """Decorator: turn ``fn(x, state, p) -> (output, new_state)`` into a CellDef."""

    def wrap(fn: Callable) -> CellDef:
        return CellDef(name=name, fn=fn, state=tuple(state))

    return wrap


def _call_capturing_locals(fn: Callable, *args) -> tuple[object, dict]:
    """Run fn(*args) and return its result with its local variables at return."""
    captured: dict = {}
    code = fn.__code__

    def profiler(frame, event, arg):
        if event == "return" and frame.f_code is code:
            captured.update(frame.f_locals)

    previous = sys.getprofile()
    sys.setprofile(profiler)
    try:
        result = fn(*args)
    finally:
        sys.setprofile(previous)
    return result, captured


def trace(defn: CellDef, input_size: int, hidden_size: int, **options) -> Graph:
    """Run a cell function on symbols and return its validated Graph."""
    for size_name, size in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ValueError(f"{size_name} must be a positive integer, got {size!r}")
    builder = _Builder(defn.name, input_size, hidden_size, options)
    x = builder.add(Node("input"), name="x")
    State = state_type(defn.state)
    leaves = [builder.add(Node("state", ref=s), name=s) for s in defn.state]
    p = Params(builder)
    result, local_vars = _call_capturing_locals(defn.fn, x, State(*leaves), p)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise GraphError(
            f"{defn.name}: a cell function returns (output, new_state), got {result!r}"
        )
    output, new_state = result
    new_state = tuple(new_state) if isinstance(new_state, (tuple, list)) else (new_state,)
    if len(new_state) != len(defn.state):
        raise GraphError(
            f"{defn.name}: returns {len(new_state)} state vector(s), but the cell declares "
            f"state={defn.state}"
        )
    for value, what in [(output, "output"), *zip(new_state, defn.state)]:
        if not isinstance(value, Var):
            raise GraphError(f"{defn.name}: {what} must be a symbol of the cell, got {value!r}")
    writes = {s: v.name for s, v in zip(defn.state, new_state)}
    names = _readable_names(builder, local_vars, writes, defn.state)
    nodes = {
        names.get(n, n): Node(node.op, tuple(names.get(a, a) for a in node.args), node.ref,
                              node.value)
        for n, node in builder.nodes.items()
    }
    graph = Graph(
        nodes=nodes,
        states=defn.state,
        writes={s: names.get(n, n) for s, n in writes.items()},
        output=names.get(output.name, output.name),
        input_size=input_size,
        hidden_size=hidden_size,
        name=defn.name,
    ).pruned()
    unknown = set(options) - builder.used_options - KNOWN_MODULE_OPTIONS
    if unknown:
        raise ValueError(
            f"{defn.name}: unknown option(s) {sorted(unknown)}; valid options: "
            f"{sorted(builder.used_options | KNOWN_MODULE_OPTIONS)}"
        )
    return graph.validate()


# Options the Cell module itself understands (initialisation); the tracer lets them through.
KNOWN_MODULE_OPTIONS = {"init", "forget_bias"}


def _readable_names(builder: _Builder, local_vars: dict, writes: dict, states) -> dict[str, str]:
    """Map auto node names to the cell function's local variable names, primed for new state."""
    taken = set(builder.nodes)
    names: dict[str, str] = {}
    written = {node: s for s, node in writes.items()}
    for node, s in written.items():  # a new state value is always shown as s'
        if node.startswith("_") and node not in names:
            names[node] = f"{s}'"
            taken.add(f"{s}'")
    for var_name, value in local_vars.items():
        if not isinstance(value, Var) or not value.name.startswith("_") or value.name in names:
            continue
        node = builder.nodes[value.name]
        if node.op in ("param", "const"):
            continue
        name = var_name
        if name in taken or name in states or name == "x":
            name = f"{var_name}'"
        if name in taken:
            continue
        names[value.name] = name
        taken.add(name)
    return names
