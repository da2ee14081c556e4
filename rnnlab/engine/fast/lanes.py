"""The fused engine's view of a plan: its values laid out as lanes.

The compiler's plan (``rnnlab.lang.compile.Program``) is a list of instructions over values that
are (rows, n·H) column blocks. The engine works on **lanes**: one (rows, H) block each — a gate,
a state vector, one H-wide slice of a hoisted input — so that every elementwise op of a step is
the same small loop over H columns, whatever the cell. Laying out is a direct walk over the
plan's instructions (no re-planning, nothing parsed):

* ``Gemm``: ``out lanes = [hoisted input xs_k +] cat(arg lanes) @ w[weight]``;
* ``Pool``: ``out lanes = norm(arg lanes side by side)``, one row instruction over n·H columns
  (the cell language's ``pnorm``: layer norm with statistics over several gates);
* ``Ew``: ``out lane = op(operands)``, op an engine instruction of the op table
  (``rnnlab.lang.ops.INSTRUCTIONS``: add, sub, mul, tanh, sigmoid, relu, copy), operands lanes,
  H-wide slices of a weight vector (``Param``; the plan's statics are such vectors too) or
  numbers.

``cols`` and ``cat`` only re-index lanes, ``identity`` is no op and ``scale`` is a ``mul`` by a
number. The hoist is laid out the same way when it is the input GEMM ``X = x W (+ b)`` plus
elementwise work on whole lanes (``hoist_lanes``; a zoned-out cell's step masks, which follow x
in its input row, are lanes of their own); otherwise (a second GEMM over x-only values, or the
raw input read elementwise at a width that is not whole lanes) the engine runs the plan's
hoist with torch under autograd and still runs the time loop fused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from ...lang.compile import Instr, Program
from ...lang.ops import CODE, INSTRUCTIONS, OPS


def _is_row(instruction: str) -> bool:
    return INSTRUCTIONS[CODE[instruction]].row


class Unsupported(Exception):
    """The fused engine cannot run this plan (the message says why)."""


class SourceKind(Enum):
    """Where a lane's value comes from (the ``kind`` of a ``Source``)."""

    STEP_INPUT = auto()  # lane ``lane`` of hoisted input ``index``, at this step
    STATE = auto()  # state field ``index``
    GEMM = auto()  # lane ``lane`` of the result of GEMM ``index``
    OP = auto()  # the result of ``ops[index]``, an elementwise op (computed in the loop)
    PROJECTION = auto()  # the hoist's: lane ``lane`` of X = x W (+ b)
    INPUT = auto()  # the hoist's: lane ``lane`` of the input x itself
    MASK = auto()  # the hoist's: step mask ``lane`` (zoneout's), read from the input row after x


@dataclass(frozen=True)
class Source:
    """Where one lane comes from: its ``kind``, which one of that kind, which lane of it."""

    kind: SourceKind
    index: int = 0
    lane: int = 0


@dataclass(frozen=True)
class Param:
    """Lane ``index`` (columns index·H …) of the weight vector ``w[key]``."""

    key: str
    index: int


@dataclass(frozen=True)
class Ew:
    """``out = op(*args)``; args are lanes (int), ``Param`` or numbers (float).
    op: an instruction of the op table (``copy``: a parameter broadcast to the rows)."""

    op: str
    out: int
    args: tuple


@dataclass(frozen=True)
class Pool:
    """``out = op(args)`` for a row instruction over the n lanes together (``norm`` of a value
    n·H wide: the cell language's ``pnorm``, layer norm over all gates): one mean and variance
    over all n·H columns of a row; ``out[k]`` is block k of the result."""

    op: str
    out: tuple[int, ...]
    args: tuple[int, ...]


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
    """One step in lanes; ``sources[lane]`` says where a lane comes from (a hoisted input, a
    state field, a GEMM or an op of ``ops``)."""

    hidden_size: int
    sources: list[Source]
    ops: list  # Ew | Gemm, in the order the step computes them
    output: int
    writes: tuple[int, ...]  # the new value of each state field
    xs_widths: tuple[int, ...]  # columns of each hoisted input
    num_states: int

    @property
    def gemms(self) -> list[Gemm]:
        return [op for op in self.ops if isinstance(op, Gemm)]


@dataclass
class HoistIR:
    """The hoist in lanes: ``X = x W (+ b)`` (one torch GEMM over all T·B rows before the loop
    for the python executor; in the native loop one GEMM per step, see
    ``Plan.hoisted_forward``), then elementwise work; hoisted input k = the lanes
    ``outputs[k]``; ``sources[lane]``: a lane of X, of the input itself, or an op of ``ops``."""

    hidden_size: int
    weight: str | None  # key of the (input, N) matrix of X = x W (+ b); None: no GEMM
    bias: str | None
    width: int  # N
    sources: list[Source]
    ops: list  # Ew
    outputs: list[tuple[int, ...]]
    input_size: int = 0  # columns of x (the GEMM's k)
    masks: int = 0  # step masks after x in the input row (H columns each; ``SourceKind.MASK``)


class _Values(dict):
    """value id -> operands; a hoisted input gets its lanes when first read elementwise (a GEMM
    that only adds it names it by index, so it can stay where the hoist put it)."""

    def __init__(self):
        super().__init__()
        self.pending: dict = {}

    def __missing__(self, key):
        value = self.pending.pop(key)()
        self[key] = value
        return value

    def get(self, key, default=None):
        return self[key] if key in self or key in self.pending else default


class _Layout:
    """Values -> tuples of operands (lanes, Params, numbers), walking instructions in order."""

    def __init__(self, H: int):
        self.H = H
        self.sources: list[Source] = []
        self.ops: list = []
        self.env = _Values()

    def lanes(self, kind: SourceKind, n: int, index: int = 0) -> tuple[int, ...]:
        """n new lanes: lanes 0 … n−1 of the ``index``-th thing of that kind."""
        self.sources += [Source(kind, index, i) for i in range(n)]
        return tuple(range(len(self.sources) - n, len(self.sources)))

    def ew(self, op: str, args: tuple) -> int:
        (lane,) = self.lanes(SourceKind.OP, 1, len(self.ops))
        self.ops.append(Ew(op, lane, args))
        return lane

    def lanes_of(self, width: int) -> int:
        if width % self.H:
            raise Unsupported(f"a value of {width} columns is not whole lanes of {self.H}")
        return width // self.H

    def rows(self, value: tuple) -> tuple:
        """A value as lanes the loop can hold: parameters and numbers become copied lanes."""
        return tuple(x if isinstance(x, int) else self.ew("copy", (x,)) for x in value)

    def common(self, ins: Instr) -> bool:
        """Lay out the instructions both the step and the hoist have; False for others."""
        op, env = ins.op, self.env
        if op == "w":
            env[ins.out] = tuple(Param(ins.key, i) for i in range(self.lanes_of(ins.width)))
        elif op == "const":
            env[ins.out] = (float(ins.value),)
        elif op == "cols":
            lo = self.lanes_of(int(ins.value))
            env[ins.out] = env[ins.args[0]][lo:lo + self.lanes_of(ins.width)]
        elif op == "cat":
            env[ins.out] = tuple(x for a in ins.args for x in self.rows(env[a]))
        elif op == "expand":
            value = env[ins.args[0]]
            n = self.lanes_of(ins.width)
            env[ins.out] = self.rows(value * n if len(value) == 1 and n > 1 else value)
        elif op == "zeros":
            env[ins.out] = tuple(self.ew("copy", (0.0,)) for _ in range(self.lanes_of(ins.width)))
        elif op in OPS and OPS[op].kind in ("binary", "activation"):
            env[ins.out] = self.elementwise(ins)
        else:
            return False
        return True

    def elementwise(self, ins: Instr) -> tuple:
        args = [self.env[a] for a in ins.args]
        if ins.op == "identity":
            return args[0]
        if ins.op == "scale":
            op, args = "mul", [args[0], (float(ins.value),)]
        else:
            op = OPS[ins.op].instruction
        n = max(len(a) for a in args)
        if OPS[ins.op].instruction is not None and n > 1 and _is_row(OPS[ins.op].instruction):
            if ins.op != "norm":
                raise Unsupported(f"{ins.op} over {n} lanes (only norm is pooled over lanes)")
            lanes = self.rows(args[0])
            out = self.lanes(SourceKind.OP, n, len(self.ops))
            self.ops.append(Pool(op, out, lanes))
            return out
        # a single number broadcasts; a one-lane value does not (widths are checked upstream)
        wide = [a * n if len(a) == 1 and isinstance(a[0], float) else a for a in args]
        if any(len(a) != n for a in wide):
            raise Unsupported(f"{ins.op} of {[len(a) for a in args]} lanes")
        out = []
        for operands in zip(*wide):
            if not any(isinstance(x, int) for x in operands):
                raise Unsupported(f"{ins.op} of parameters alone inside a loop (not a static)")
            out.append(self.ew(op, tuple(operands)))
        return tuple(out)


def step_lanes(program: Program) -> StepIR:
    """The step of ``program`` in lanes."""
    H = program.hidden_size
    layout = _Layout(H)
    env = layout.env
    xs_lanes: dict[int, tuple] = {}
    num_gemms = 0
    for ins in program.step_code:
        if layout.common(ins):
            continue
        if ins.op == "xs":
            k = int(ins.value)
            xs_lanes[ins.out] = (k,)
            n = layout.lanes_of(ins.width)
            env.pending[ins.out] = lambda k=k, n=n: layout.lanes(SourceKind.STEP_INPUT, n, k)
        elif ins.op == "state":
            env[ins.out] = layout.lanes(SourceKind.STATE, 1, int(ins.value))
        elif ins.op == "gemm":
            args = tuple(x for a in ins.args for x in env[a])
            if not all(isinstance(x, int) for x in args):
                raise Unsupported("a GEMM argument is a parameter")
            bias = None
            if ins.bias is not None:
                if ins.bias not in xs_lanes:
                    raise Unsupported("a GEMM's added term is not a hoisted input")
                bias = xs_lanes[ins.bias][0]
            out = layout.lanes(SourceKind.GEMM, layout.lanes_of(ins.width), num_gemms)
            layout.ops.append(Gemm(num_gemms, ins.key, args, bias, out))
            num_gemms += 1
            env[ins.out] = out
        else:
            raise Unsupported(f"{ins.op} in a step")

    def single(v: int, what: str) -> int:
        lanes = env[v]
        if len(lanes) != 1 or not isinstance(lanes[0], int):
            raise Unsupported(f"{what} is not one H-wide vector")
        return lanes[0]

    output = single(program.output, "the output")
    writes = tuple(single(v, "a state write") for v in program.writes)
    return StepIR(H, layout.sources, layout.ops, output, writes, program.xs_widths,
                  len(program.writes))


def hoist_lanes(program: Program) -> HoistIR | None:
    """The hoist of ``program`` in lanes, or None where the engine leaves it to torch.

    A cell with per-step masks (zoneout) reads an input row of x followed by the masks
    (``Program.row_size``): the GEMM reads the row's x columns, and each mask is a lane of its
    own (``SourceKind.MASK``), so that the engine is handed x and the masks as two buffers over
    the same rows and runs the hoist as for any cell."""
    H = program.hidden_size
    layout = _Layout(H)
    env = layout.env
    weight = bias = None
    width = 0
    row = None  # the input row, when it is x followed by the step masks
    try:
        for ins in program.hoist_code:
            if row is not None and ins.op == "cols" and ins.args[0] == row:
                env[ins.out] = _row_part(program, layout, int(ins.value), ins.width)
                continue
            projection = ins.op == "gemm" and weight is None and ins.key == "Wx"
            if not projection and any(env.get(a) is None for a in ins.args):
                raise Unsupported("the raw input read at a width that is not whole lanes")
            if layout.common(ins):
                continue
            if ins.op == "x" and program.step_masks:
                row = ins.out  # read through its columns only (above)
            elif ins.op == "x":
                env[ins.out] = _row_part(program, layout, 0, program.input_size)
            elif projection:
                weight, width = ins.key, ins.width
                if ins.bias is not None:
                    bias = next(i.key for i in program.hoist_code if i.out == ins.bias)
                env[ins.out] = layout.lanes(SourceKind.PROJECTION, layout.lanes_of(width))
            else:
                raise Unsupported(f"{ins.op} in the hoist")
        if any(env.get(v) is None for v in program.xs):
            raise Unsupported("the raw input is handed to the step at a width of no lanes")
        outputs = [layout.rows(env[v]) for v in program.xs]
    except Unsupported:
        return None
    return HoistIR(H, weight, bias, width, layout.sources, layout.ops, outputs,
                   program.input_size, len(program.step_masks))


def _row_part(program: Program, layout: _Layout, start: int, width: int) -> tuple | None:
    """Columns ``start … start + width`` of the input row as lanes: x itself (lanes of the
    input where its width is whole lanes, else None: only the GEMM reads it), or step masks."""
    H, I = program.hidden_size, program.input_size
    if start == 0 and width == I:
        return layout.lanes(SourceKind.INPUT, I // H) if I and I % H == 0 else None
    if start >= I and (start - I) % H == 0 and width % H == 0:
        first = (start - I) // H
        layout.sources += [Source(SourceKind.MASK, 0, first + i) for i in range(width // H)]
        n = len(layout.sources)
        return tuple(range(n - width // H, n))
    raise Unsupported(f"columns {start}…{start + width} of the input row")
