"""Read a compiled step back as lanes: the fused engine's view of one step of a cell.

The compiler (``rnnlab.lang.compile``) writes each cell's step as Python source over (B, n·H)
tensors: one ``addmm`` per GEMM level, ``split`` into gates, elementwise ops. That source is the
contract of what one step computes, so the fused engine reads exactly it (Python's ``ast``)
instead of planning the cell a second time.

The result is a small SSA form over **lanes**. A lane is one (B, H) column block: a gate, a
state vector, one H-wide slice of a hoisted input. Every elementwise op of a step works on
whole lanes, so a step becomes

* ``Gemm``: ``out lanes = [hoisted input xs_k +] cat(arg lanes) @ w[weight]``;
* ``Ew``: ``out lane = op(operands)`` with op in add, sub, mul, tanh, sigmoid, relu and
  operands that are lanes, H-wide slices of a parameter vector (``Param``) or numbers.

Work on parameters alone (``tanh(p.b)``, ``p.a * p.b``, ``W @ p.b``: forms the search makes)
does not depend on the step; it becomes a *static* vector ``StepIR.statics[key]`` (Python source
over ``w``) that the engine computes once per sequence under autograd and then reads like a
parameter.

Anything the reader does not recognise raises ``Unsupported``; the engine then runs the cell on
its reference path, so a new form in the compiler can make a cell slower, never wrong.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

_ACTIVATIONS = {"tanh", "sigmoid", "relu"}
_BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul"}
_SYMBOL = {"add": "+", "sub": "-", "mul": "*"}


class Unsupported(Exception):
    """The fused engine cannot run this step (the message says why); use the reference path."""


@dataclass(frozen=True)
class Param:
    """Lane ``index`` (columns index·H …) of the parameter vector ``w[key]``."""

    key: str
    index: int


@dataclass(frozen=True)
class _Static:
    """A value made of parameters and numbers only: its source over ``w`` and its lanes."""

    src: str
    lanes: int


@dataclass(frozen=True)
class Ew:
    """``out = op(*args)``; args are lanes (int), ``Param`` or numbers (float).
    ops: add, sub, mul, tanh, sigmoid, relu, and copy (a parameter broadcast to the rows)."""

    op: str
    out: int
    args: tuple


@dataclass(frozen=True)
class Gemm:
    """``out = xs[bias] + cat(args) @ w[weight]`` (no bias when ``bias`` is None)."""

    index: int  # position among the step's GEMMs
    weight: str
    args: tuple[int, ...]
    bias: int | None
    out: tuple[int, ...]


@dataclass
class StepIR:
    """One step in lanes. ``sources[lane]`` says where a lane comes from:
    ``("xs", k, i)`` lane i of hoisted input k, ``("state", j)`` state field j,
    ``("gemm", g, i)`` lane i of GEMM g, ``("ew", n)`` the n-th op of ``ops``."""

    hidden_size: int
    sources: list[tuple]
    ops: list  # Ew | Gemm, in the order the step computes them
    output: int
    writes: tuple[int, ...]  # the new value of each state field
    xs_widths: tuple[int, ...]  # columns of each hoisted input
    num_states: int
    statics: dict[str, str]  # key -> source over w of a vector computed from parameters only

    @property
    def gemms(self) -> list[Gemm]:
        return [op for op in self.ops if isinstance(op, Gemm)]


def lift(source: str, hidden_size: int, xs_widths: tuple[int, ...],
         weight_shapes: dict[str, tuple[int, ...]], num_states: int) -> StepIR:
    """The lanes of the ``step`` function in ``source`` (a ``Program.source``).

    Args:
        source: the generated source holding ``def step(xs, state, w)``.
        hidden_size: H, the width of one lane.
        xs_widths: columns of each hoisted input (``Program.hoist`` output), in order.
        weight_shapes: shape of every prepared weight ``w[key]``.
        num_states: number of state fields.
    """
    tree = ast.parse(source)
    step = next((f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "step"),
                None)
    if step is None:
        raise Unsupported("no step function in the program source")
    return _Reader(hidden_size, xs_widths, weight_shapes, num_states).read(step)


class _Reader:
    def __init__(self, H, xs_widths, weight_shapes, num_states):
        self.H = H
        self.xs_widths = tuple(xs_widths)
        self.shapes = weight_shapes
        self.num_states = num_states
        self.sources: list[tuple] = []
        self.ops: list = []
        self.env: dict[str, object] = {}
        self.xs_lanes: dict[int, tuple[int, ...]] = {}
        self.num_gemms = 0
        self.statics: dict[str, str] = {}

    def new_lane(self, source: tuple) -> int:
        self.sources.append(source)
        return len(self.sources) - 1

    # ---- statements -------------------------------------------------------------------------
    def read(self, fn: ast.FunctionDef) -> StepIR:
        result = None
        for stmt in fn.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                self.assign(stmt.targets[0], stmt.value)
            elif isinstance(stmt, ast.Return) and result is None:
                result = self.ret(stmt.value)
            else:
                raise Unsupported(f"statement not understood: {ast.unparse(stmt)}")
        if result is None:
            raise Unsupported("the step returns nothing")
        output, writes = result
        return StepIR(self.H, self.sources, self.ops, output, writes, self.xs_widths,
                      self.num_states, self.statics)

    def assign(self, target: ast.expr, value: ast.expr):
        if isinstance(value, ast.Name) and value.id in ("xs", "state"):
            names = self.target_names(target)
            if value.id == "xs":
                if len(names) != len(self.xs_widths):
                    raise Unsupported(f"step unpacks {len(names)} hoisted inputs, "
                                      f"got {len(self.xs_widths)}")
                for k, name in enumerate(names):
                    self.env[name] = ("xs", k)
            else:
                if len(names) != self.num_states:
                    raise Unsupported("state unpacking does not match the state fields")
                for j, name in enumerate(names):
                    self.env[name] = (self.new_lane(("state", j)),)
            return
        if (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
                and value.func.attr == "split"):
            parts = self.split(value)
            names = self.target_names(target)
            if len(names) != len(parts):
                raise Unsupported(f"split into {len(parts)} parts, unpacked into {len(names)}")
            for name, part in zip(names, parts):
                self.env[name] = part
            return
        if not isinstance(target, ast.Name):
            raise Unsupported(f"assignment not understood: {ast.unparse(target)}")
        self.env[target.id] = self.expr(value)

    @staticmethod
    def target_names(target: ast.expr) -> list[str]:
        if isinstance(target, ast.Tuple) and all(isinstance(e, ast.Name) for e in target.elts):
            return [e.id for e in target.elts]
        raise Unsupported(f"unpacking target not understood: {ast.unparse(target)}")

    def ret(self, value: ast.expr):
        if not (isinstance(value, ast.Tuple) and len(value.elts) == 2
                and isinstance(value.elts[1], ast.Tuple)):
            raise Unsupported("the step must return (output, (state, …))")
        output = self.single_lane(self.expr(value.elts[0]), "the output")
        writes = tuple(self.single_lane(self.expr(e), "a state write")
                       for e in value.elts[1].elts)
        if len(writes) != self.num_states:
            raise Unsupported("the step writes a different number of state fields")
        return output, writes

    def single_lane(self, value, what: str) -> int:
        lanes = self.lanes(value)
        if len(lanes) != 1 or not isinstance(lanes[0], int):
            raise Unsupported(f"{what} is not one H-wide vector")
        return lanes[0]

    # ---- expressions --------------------------------------------------------------------------
    def lanes(self, value) -> tuple:
        """A value as a tuple of operands (lanes, Params); a hoisted input becomes its lanes."""
        if isinstance(value, tuple) and len(value) == 2 and value[0] == "xs":
            k = value[1]
            if k not in self.xs_lanes:
                width = self.xs_widths[k]
                if width % self.H:
                    raise Unsupported(f"hoisted input {k} has {width} columns, not lanes of "
                                      f"{self.H}")
                self.xs_lanes[k] = tuple(self.new_lane(("xs", k, i))
                                         for i in range(width // self.H))
            return self.xs_lanes[k]
        if isinstance(value, _Static):
            return self.params_of(value)
        if isinstance(value, tuple):
            return value
        raise Unsupported(f"not a vector value: {value!r}")

    def params_of(self, value: _Static) -> tuple:
        """A static value as parameter lanes (a computed one gets a key of its own)."""
        node = ast.parse(value.src, mode="eval").body
        if isinstance(node, ast.Subscript):
            key = self.weight_key(node)
        else:
            key = f"={value.src}"
            self.statics[key] = value.src
        return tuple(Param(key, i) for i in range(value.lanes))

    @staticmethod
    def static_src(value) -> str | None:
        """Source of a value made of parameters and numbers only, else None."""
        if isinstance(value, float):
            return repr(value)
        if isinstance(value, _Static):
            return value.src
        return None

    def expr(self, node: ast.expr):
        if isinstance(node, ast.Name):
            if node.id not in self.env:
                raise Unsupported(f"unknown name {node.id}")
            return self.env[node.id]
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) \
                and isinstance(node.operand, ast.Constant):
            return -float(node.operand.value)
        if isinstance(node, ast.Subscript):
            key = self.weight_key(node)
            shape = self.shapes.get(key)
            if shape is None or len(shape) != 1 or shape[0] % self.H:
                raise Unsupported(f"w[{key!r}] used as a vector has shape {shape}")
            return _Static(f"w[{key!r}]", shape[0] // self.H)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return self.binary(_BINARY[type(node.op)], self.expr(node.left),
                               self.expr(node.right))
        if isinstance(node, ast.Call):
            return self.call(node)
        raise Unsupported(f"expression not understood: {ast.unparse(node)}")

    @staticmethod
    def weight_key(node: ast.Subscript) -> str:
        if (isinstance(node.value, ast.Name) and node.value.id == "w"
                and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
            return node.slice.value
        raise Unsupported(f"subscript not understood: {ast.unparse(node)}")

    def binary(self, op: str, a, b):
        if isinstance(a, float) and isinstance(b, float):
            raise Unsupported("arithmetic on two numbers inside the step")
        sa, sb = self.static_src(a), self.static_src(b)
        if sa is not None and sb is not None:  # parameters only: computed once per sequence
            lanes = a.lanes if isinstance(a, _Static) else b.lanes
            if isinstance(a, _Static) and isinstance(b, _Static) and a.lanes != b.lanes:
                raise Unsupported(f"{op} of {a.lanes} and {b.lanes} lanes")
            return _Static(f"({sa} {_SYMBOL[op]} {sb})", lanes)
        width = len(self.lanes(a)) if not isinstance(a, float) else len(self.lanes(b))
        ea = [a] * width if isinstance(a, float) else list(self.lanes(a))
        eb = [b] * width if isinstance(b, float) else list(self.lanes(b))
        if len(ea) != len(eb):
            raise Unsupported(f"{op} of {len(ea)} and {len(eb)} lanes")
        out = []
        for x, y in zip(ea, eb):
            if not (isinstance(x, int) or isinstance(y, int)):
                raise Unsupported("arithmetic on parameters alone inside the step")
            out.append(self.ew(op, (x, y)))
        return tuple(out)

    def ew(self, op: str, args: tuple) -> int:
        lane = self.new_lane(("ew", len(self.ops)))
        self.ops.append(Ew(op, lane, args))
        return lane

    def call(self, node: ast.Call):
        func = node.func
        if node.keywords:
            raise Unsupported(f"call with keywords: {ast.unparse(node)}")
        if isinstance(func, ast.Attribute) and func.attr == "expand":
            # a parameter-only output or state: the same vector on every row
            value = self.expr(func.value)
            if isinstance(value, float):
                return (self.ew("copy", (value,)),)
            return tuple(self.ew("copy", (p,)) if not isinstance(p, int) else p
                         for p in self.lanes(value))
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                and func.value.id == "torch"):
            raise Unsupported(f"call not understood: {ast.unparse(node)}")
        name = func.attr
        if name in _ACTIVATIONS and len(node.args) == 1:
            value = self.expr(node.args[0])
            if isinstance(value, _Static):
                return _Static(f"torch.{name}({value.src})", value.lanes)
            arg = self.lanes(value)
            if not all(isinstance(x, int) for x in arg):
                raise Unsupported(f"{name} of a parameter inside the step")
            return tuple(self.ew(name, (x,)) for x in arg)
        if name == "matmul" and len(node.args) == 2:
            value = self.expr(node.args[0])
            if isinstance(value, _Static):  # W @ (parameters only) is a vector too
                key = self.weight_key(node.args[1]) if isinstance(node.args[1], ast.Subscript) \
                    else None
                shape = self.shapes.get(key)
                if shape is None or len(shape) != 2 or shape[1] % self.H:
                    raise Unsupported(f"matmul of a parameter by {ast.unparse(node.args[1])}")
                return _Static(f"torch.matmul({value.src}, w[{key!r}])", shape[1] // self.H)
            return self.gemm("mm", node.args)
        if name in ("addmm", "mm"):
            return self.gemm(name, node.args)
        raise Unsupported(f"torch.{name} is not an op the fused engine knows")

    def gemm(self, name: str, args: list[ast.expr]):
        if name == "addmm":
            if len(args) != 3:
                raise Unsupported("addmm with other than 3 arguments")
            bias_value = self.expr(args[0])
            if not (isinstance(bias_value, tuple) and len(bias_value) == 2
                    and bias_value[0] == "xs"):
                raise Unsupported("addmm whose first argument is not a hoisted input")
            bias = bias_value[1]
            arg_node, weight_node = args[1], args[2]
        else:
            if len(args) != 2:
                raise Unsupported("mm with other than 2 arguments")
            bias, (arg_node, weight_node) = None, args
        operands = self.gemm_args(arg_node)
        if not isinstance(weight_node, ast.Subscript):
            raise Unsupported("GEMM weight is not w[...]")
        key = self.weight_key(weight_node)
        shape = self.shapes.get(key)
        H = self.H
        if shape is None or len(shape) != 2 or shape[0] != len(operands) * H or shape[1] % H:
            raise Unsupported(f"GEMM weight w[{key!r}] has shape {shape} for "
                              f"{len(operands)} argument lanes")
        if bias is not None and self.xs_widths[bias] != shape[1]:
            raise Unsupported("GEMM bias width differs from its output width")
        g = self.num_gemms
        self.num_gemms += 1
        out = tuple(self.new_lane(("gemm", g, i)) for i in range(shape[1] // H))
        self.ops.append(Gemm(g, key, tuple(operands), bias, out))
        return out

    def gemm_args(self, node: ast.expr) -> list[int]:
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "cat" and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"):
            if (len(node.args) != 2 or not isinstance(node.args[0], ast.List)
                    or not (isinstance(node.args[1], ast.Constant) and node.args[1].value == 1)):
                raise Unsupported(f"cat not understood: {ast.unparse(node)}")
            parts = [self.lanes(self.expr(e)) for e in node.args[0].elts]
            lanes = [x for part in parts for x in part]
        else:
            lanes = list(self.lanes(self.expr(node)))
        if not all(isinstance(x, int) for x in lanes):
            raise Unsupported("a GEMM argument is a parameter")
        return lanes

    def split(self, node: ast.Call) -> list[tuple]:
        value = self.lanes(self.expr(node.func.value))
        args = node.args
        if len(args) != 2 or not (isinstance(args[1], ast.Constant) and args[1].value == 1):
            raise Unsupported(f"split not understood: {ast.unparse(node)}")
        spec = args[0]
        if isinstance(spec, ast.Constant) and isinstance(spec.value, int):
            sizes = [spec.value] * (len(value) * self.H // spec.value)
        elif isinstance(spec, ast.List) and all(isinstance(e, ast.Constant) for e in spec.elts):
            sizes = [e.value for e in spec.elts]
        else:
            raise Unsupported(f"split sizes not understood: {ast.unparse(spec)}")
        if any(s % self.H for s in sizes) or sum(sizes) != len(value) * self.H:
            raise Unsupported(f"split sizes {sizes} are not whole lanes of {self.H}")
        parts, at = [], 0
        for s in sizes:
            parts.append(tuple(value[at:at + s // self.H]))
            at += s // self.H
        return parts


@dataclass
class HoistIR:
    """The hoist in lanes over all T·B rows: ``X = x W (+ b)`` (one GEMM, done by torch), then
    elementwise work; hoisted input k = the lanes ``outputs[k]``.

    ``sources[lane]``: ``("X", i)`` lane i of X, ``("x", i)`` lane i of the input itself,
    ``("ew", n)`` the n-th op of ``ops``."""

    hidden_size: int
    weight: str | None  # key of the (input, N) matrix of X = x W (+ b); None: no GEMM
    bias: str | None
    width: int  # N
    sources: list[tuple]
    ops: list  # Ew
    outputs: list[tuple[int, ...]]
    statics: dict[str, str]


@dataclass(frozen=True)
class _Zeros:
    """``x2d.new_zeros(rows, n)``: a zero block of ``lanes`` lanes."""

    lanes: int


def lift_hoist(source: str, hidden_size: int, input_size: int,
               weight_shapes: dict[str, tuple[int, ...]], num_xs: int) -> HoistIR | None:
    """The ``hoist`` function of ``source`` in lanes, or None for a form it does not read."""
    tree = ast.parse(source)
    fn = next((f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "hoist"),
              None)
    if fn is None:
        return None
    try:
        return _HoistReader(hidden_size, input_size, weight_shapes, num_xs).read_hoist(fn)
    except Unsupported:
        return None


class _HoistReader(_Reader):
    def __init__(self, H, input_size, weight_shapes, num_xs):
        super().__init__(H, (), weight_shapes, 0)
        self.input_size = input_size
        self.num_xs = num_xs
        self.matrix: str | None = None  # the name bound to X
        self.weight = self.bias = None
        self.width = 0
        self.X_lanes: dict[int, int] = {}
        self.x_lanes: tuple[int, ...] | None = None

    def read_hoist(self, fn: ast.FunctionDef) -> HoistIR:
        body = list(fn.body)
        if body and isinstance(body[0], ast.Assign) and self.projection(body[0]):
            body = body[1:]
        if not body or not isinstance(body[-1], ast.Return):
            raise Unsupported("hoist without a return")
        for stmt in body[:-1]:
            if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name)):
                raise Unsupported(f"hoist statement not understood: {ast.unparse(stmt)}")
            self.env[stmt.targets[0].id] = self.expr(stmt.value)
        value = body[-1].value
        if not isinstance(value, ast.Tuple) or len(value.elts) != self.num_xs:
            raise Unsupported("hoist returns other than one value per hoisted input")
        outputs = [tuple(self.as_lanes(self.expr(e))) for e in value.elts]
        return HoistIR(self.H, self.weight, self.bias, self.width, self.sources, self.ops,
                       outputs, self.statics)

    def projection(self, stmt: ast.Assign) -> bool:
        """``X = torch.addmm(w[b], x2d, w[W])`` or ``torch.mm(x2d, w[W])``."""
        call = stmt.value
        if not (len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                and isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name) and call.func.value.id == "torch"
                and not call.keywords):
            return False
        args = call.args
        is_x = [isinstance(a, ast.Name) and a.id == "x2d" for a in args]
        if call.func.attr == "addmm" and len(args) == 3 and is_x[1]:
            bias, weight = self.weight_key(args[0]), self.weight_key(args[2])
        elif call.func.attr == "mm" and len(args) == 2 and is_x[0]:
            bias, weight = None, self.weight_key(args[1])
        else:
            return False
        shape = self.shapes.get(weight)
        if shape is None or len(shape) != 2 or shape[0] != self.input_size or shape[1] % self.H:
            raise Unsupported(f"input weight w[{weight!r}] has shape {shape}")
        if bias is not None and self.shapes.get(bias) != (shape[1],):
            raise Unsupported(f"input bias w[{bias!r}] does not match")
        self.matrix, self.weight, self.bias, self.width = stmt.targets[0].id, weight, bias, \
            shape[1]
        return True

    def as_lanes(self, value) -> list:
        """A value as lanes the loop can read: parameters and zeros become copied lanes."""
        if isinstance(value, _Zeros):
            return [self.ew("copy", (0.0,)) for _ in range(value.lanes)]
        if isinstance(value, _Static):
            return [self.ew("copy", (p,)) for p in self.params_of(value)]
        lanes = self.lanes(value)
        return [x if isinstance(x, int) else self.ew("copy", (x,)) for x in lanes]

    def lanes(self, value) -> tuple:
        if isinstance(value, _Zeros):
            return tuple(self.as_lanes(value))
        return super().lanes(value)

    def binary(self, op: str, a, b):
        a = 0.0 if isinstance(a, _Zeros) else a  # zeros broadcast like the number 0
        b = 0.0 if isinstance(b, _Zeros) else b
        return super().binary(op, a, b)

    def expr(self, node: ast.expr):
        if isinstance(node, ast.Name) and node.id == "x2d":
            if self.x_lanes is None:
                if self.input_size % self.H:
                    raise Unsupported("the raw input is read but is not whole lanes")
                self.x_lanes = tuple(self.new_lane(("x", i))
                                     for i in range(self.input_size // self.H))
            return self.x_lanes
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                and node.value.id == self.matrix and self.matrix is not None:
            return self.columns(node)
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr == "new_zeros"
                    and isinstance(func.value, ast.Name) and func.value.id == "x2d"
                    and len(node.args) == 2 and isinstance(node.args[1], ast.Constant)):
                n = node.args[1].value
                if not isinstance(n, int) or n % self.H:
                    raise Unsupported("zeros that are not whole lanes")
                return _Zeros(n // self.H)
            if (isinstance(func, ast.Attribute) and func.attr == "cat"
                    and isinstance(func.value, ast.Name) and func.value.id == "torch"):
                if (len(node.args) != 2 or not isinstance(node.args[0], ast.List)
                        or not (isinstance(node.args[1], ast.Constant)
                                and node.args[1].value == 1)):
                    raise Unsupported(f"cat not understood: {ast.unparse(node)}")
                return tuple(x for e in node.args[0].elts for x in self.as_lanes(self.expr(e)))
            if (isinstance(func, ast.Attribute) and func.attr in ("matmul", "mm", "addmm")
                    and isinstance(func.value, ast.Name) and func.value.id == "torch"):
                value = self.expr(node.args[0]) if func.attr == "matmul" else None
                if isinstance(value, _Static):
                    return super().expr(node)
                raise Unsupported("a second GEMM in the hoist")
        return super().expr(node)

    def columns(self, node: ast.Subscript) -> tuple:
        """``X[:, a:b]``: lanes a/H … of X."""
        sl = node.slice
        if not (isinstance(sl, ast.Tuple) and len(sl.elts) == 2):
            raise Unsupported(f"X subscript not understood: {ast.unparse(node)}")
        rows, span = sl.elts
        if not (isinstance(rows, ast.Slice) and rows.lower is None and rows.upper is None
                and rows.step is None and isinstance(span, ast.Slice) and span.step is None
                and isinstance(span.lower, ast.Constant) and isinstance(span.upper, ast.Constant)):
            raise Unsupported(f"X subscript not understood: {ast.unparse(node)}")
        lo, hi = span.lower.value, span.upper.value
        if lo % self.H or hi % self.H or not 0 <= lo < hi <= self.width:
            raise Unsupported(f"columns {lo}:{hi} of X are not whole lanes")
        out = []
        for i in range(lo // self.H, hi // self.H):
            if i not in self.X_lanes:
                self.X_lanes[i] = self.new_lane(("X", i))
            out.append(self.X_lanes[i])
        return tuple(out)
