"""Plan the fused loops of a cell: where every lane lives, and one step's instructions.

A plan turns the lanes of one step (``lanes.StepIR``) into

* **buffers**, each a 3-D tensor (slices, B, columns): the hoisted inputs, the state history
  ``S`` (slice t holds the state entering step t), the output ``Y``, each GEMM's result ``G``,
  the values kept for the backward pass ``P``, per-step scratch, and their adjoints;
* **instructions** of one forward step and one backward step over those buffers: ``Op``
  (elementwise, on whole lanes), ``GemmI`` (one BLAS call) and ``Refill`` (variable lengths).

An operand names a buffer, a first column and a step offset: slice ``(t + toff) % slices`` of
the buffer at step t. So a history buffer (T+1 slices) written at offset +1 and read at 0 carries
the state, and a two-slice buffer alternates between steps. The same instructions run in two
executors: ``pyexec`` (torch ops, no compiler) and ``native`` (a C++ loop, row by row).

The backward step is derived here, op by op in reverse, from each op's derivative as the op
table states it (``rnnlab.lang.ops``: ``d(a+b)``: both get dy; ``d(a−b)``: dy and −dy;
``d(a⊙b)``: dy⊙b and dy⊙a; tanh: dy⊙(1−y²); σ: dy⊙y⊙(1−y); ReLU: dy where y > 0);
``xs + A @ W``: the hoisted input gets dy (the same buffer), A gets dy @ Wᵀ. The weight
gradients are not summed step by step: every step's argument rows and result adjoints stay in
(T, B, ·) buffers, and after the loop ``dW = Aᵀ dG`` is one GEMM over T·B rows (as cuDNN and
oneDNN do). What the backward reads is kept, with two exceptions: a row instruction's result
(layer norm's ``norm``) is computed again from its argument, which ``norm_bwd`` keeps anyway
(a pass over a row in cache instead of a lane written to memory and read back at every step),
and step masks (zoneout's) are constants of the loss, so nothing is kept for their adjoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from ...lang.ops import CODE, COPY_GRAD, INSTRUCTIONS, OPS
from .lanes import Ew, Gemm, HoistIR, Param, Pool, Source, SourceKind, StepIR

# Elementwise instruction codes (the op table's order). acc=True adds to the destination.
COPY, NEG, ADD, SUB, MUL, FILL = (CODE[n] for n in ("copy", "neg", "add", "sub", "mul", "fill"))
SIGMOID = CODE["sigmoid"]
ROW_CODES = frozenset(k for k, ins in enumerate(INSTRUCTIONS) if ins.row)
# instruction of a lane op -> per argument: (instruction, operand, operand) of its adjoint
_GRAD = {spec.instruction: spec.grad for spec in OPS.values() if spec.instruction}
_GRAD["copy"] = COPY_GRAD


# lane ops the backward recomputes rather than reads back when their arguments are at hand
_CHEAP = frozenset({ADD, SUB, MUL}) | ROW_CODES


def _outs(op: Ew | Pool) -> tuple[int, ...]:
    """The lanes an elementwise op writes."""
    return op.out if isinstance(op, Pool) else (op.out,)


def _remade(ops: list, needed: list) -> dict[int, Ew | Pool]:
    """Lanes the backward pass recomputes instead of reading them back: the result of a row
    instruction (layer norm's ``norm``, read by its gain's gradient), of a pooled norm (all its
    blocks), or of a sum, difference or product (a gain times a deviation of statistics written
    out with ``mean`` and ``rsqrt``) whose lane arguments the backward keeps anyway. A pass over
    a row that is in cache costs less than a lane written to memory at every step and read
    back. lane -> its op."""
    remade = {op.out: op for op in ops if isinstance(op, Ew) and CODE[op.op] in _CHEAP
              and needed[op.out] and all(needed[a] for a in op.args if isinstance(a, int))}
    for op in ops:  # a pooled norm: all its blocks, side by side, when one is read back
        if isinstance(op, Pool) and any(needed[x] for x in op.out):
            remade.update((x, op) for x in op.out)
    return remade


def _mark_needed(op: Ew | Pool, needed: list, constant=frozenset()) -> None:
    """Lanes whose values the backward step reads for ``op``: its result or an argument.
    ``constant``: lanes that get no adjoint (step masks)."""
    if isinstance(op, Pool):  # norm_bwd reads the input (the statistics are recomputed)
        for a in op.args:
            needed[a] = needed[a] or a not in constant
        return
    args = {"a": op.args[0], "b": op.args[1] if len(op.args) > 1 else None}
    for k, (_, *operands) in enumerate(_GRAD[op.op]):
        if isinstance(op.args[k], float) or op.args[k] in constant:  # no adjoint wanted
            continue
        for name in operands:
            if name == "y":
                needed[op.out] = True
            elif name in args and isinstance(args[name], int):
                needed[args[name]] = True


class Slices(Enum):
    """How many slices a buffer has over T steps."""

    STEPS = "T"  # one per step
    HISTORY = "T+1"  # the state entering each step, then the final state
    ONE = "1"  # rewritten every step
    TWO = "2"  # alternating from step to step

    def size(self, T: int) -> int:
        """The number of slices over T steps."""
        return T + 1 if self is Slices.HISTORY else T if self is Slices.STEPS else int(self.value)


@dataclass
class Buffer:
    """A (slices, B, width) tensor (see the module doc)."""

    name: str
    slices: Slices
    width: int
    shared: bool = False  # one row for the whole batch (parameters and their gradient sums)
    temp: bool = False  # scratch within one stage of one step (native: a single row)
    zeros: bool = False  # must start at zero
    given: bool = False  # supplied by the caller (inputs, parameters, incoming gradients)


@dataclass(frozen=True)
class Ref:
    """Columns ``col …`` of slice ``(t + toff) % slices`` of buffer ``buf``."""

    buf: int
    col: int
    toff: int = 0


@dataclass(frozen=True)
class Op:
    """``dst (+)= code(a, b)`` over ``width`` columns; a, b are Refs, numbers or None; ``c``
    the third operand of the two fused row instructions (``fuse_gains``), else None."""

    code: int
    dst: Ref
    a: object
    b: object
    width: int
    acc: bool = False
    c: object = None


@dataclass(frozen=True)
class GemmI:
    """``dst (+)= [bias +] a @ op(w[weight])``; a is (rows, k), op(W) is W or Wᵀ, (k, n).

    ``bias`` is rows (a hoisted input) or one shared vector; with ``acc`` both the bias and the
    product are added to what ``dst`` holds (the input projection computed in place)."""

    dst: Ref
    a: Ref
    k: int
    n: int
    weight: str
    transpose: bool
    bias: Ref | None = None
    acc: bool = False


@dataclass(frozen=True)
class Refill:
    """Rows that become active at this step (going backward) take their values from ``src``."""

    dst: Ref
    src: Ref
    width: int


@dataclass
class Plan:
    """Buffers and per-step instructions of a fused forward (and backward) pass. A buffer field
    is an index into ``buffers``, None where there is no such buffer (S, Y: never; dY, dF, dS:
    when not training)."""

    ir: StepIR
    training: bool
    hoist: HoistIR | None = None  # the engine computes the hoist itself (prologue, epilogue)
    buffers: list[Buffer] = field(default_factory=list)
    forward: list = field(default_factory=list)
    backward: list = field(default_factory=list)
    xs: list[int | None] = field(default_factory=list)  # per hoisted input (None: it is in X)
    # with the engine's own hoist: X = x W (+ b) over all rows (T, B, N), computed by torch;
    # the prologue (one pass over all T·B rows) computes the other hoisted inputs from it, and
    # a hoisted input that is just columns of X (a GEMM's bias) is those columns: its GEMM adds
    # to X in place. The epilogue takes the hoisted inputs' adjoints back to dX.
    prologue: list = field(default_factory=list)
    epilogue: list = field(default_factory=list)
    X: int | None = None
    bias_in_X: bool = False  # X = x W + b (one addmm) whenever the hoist has a bias
    # The same hoist step by step, for an executor that runs it inside its loop (native): at
    # step t, X_t = x_t W (+ b) (one GEMM of B rows, the weight packed once per sequence), then
    # the prologue's work on those rows, then the step. X_t is used while it is still in cache,
    # and X = x W + b over all rows is never written to memory at once. ``xin``: the input x
    # (given), ``bx``: the bias as one shared row (given).
    hoisted_forward: list = field(default_factory=list)
    xin: int | None = None
    bx: int | None = None
    # One-slice twins of the hoist's (T, B, ·) buffers (X, the hoisted inputs) for
    # ``hoisted_forward``: ``twins`` every twin made, ``step_twins`` those it uses (buffer ->
    # twin): the buffers that nothing after the forward reads, whose step t values then stay
    # in cache from step to step instead of going to memory
    twins: list[int] = field(default_factory=list)
    step_twins: dict[int, int] = field(default_factory=dict)
    # The backward step and then the epilogue on step t's rows, for the same executor: the
    # adjoints of the hoisted inputs (``dxs``) are then used while they are in cache, each in
    # a one-slice twin (``back_twins``: buffer -> twin) instead of a (T, B, ·) buffer
    hoisted_backward: list = field(default_factory=list)
    back_twins: dict[int, int] = field(default_factory=dict)
    x: int | None = None  # the input x (given) when the prologue reads it
    # the step masks (given; zoneout's): the columns of the input row after x, read as lanes
    # like x; constants of the loss, so they get no adjoint
    masks: int | None = None
    dX: int | None = None
    dx: int | None = None  # adjoint of the input read by the prologue
    params: dict[str, int] = field(default_factory=dict)  # weight key -> buffer (vectors)
    state_cols: list[int] = field(default_factory=list)  # column of each state field in S
    S: int | None = None
    Y: int | None = None
    # backward
    dY: int | None = None
    dF: int | None = None  # gradient of the final states, in S's layout
    dS: int | None = None  # adjoint of the state: slice t % 2 enters step t
    dG: list[Ref] = field(default_factory=list)  # per GEMM: adjoint of its result (T slices)
    dxs: dict[int, int] = field(default_factory=dict)  # hoisted input read by an op -> adjoint
    dP: dict[str, int] = field(default_factory=dict)  # vector weight key -> gradient sum
    gemm_args: list[Ref] = field(default_factory=list)  # per GEMM: its argument rows (T slices)

    def add(self, buffer: Buffer) -> int:
        self.buffers.append(buffer)
        return len(self.buffers) - 1


def make_plan(ir: StepIR, training: bool, lengths: bool, hoist: HoistIR | None = None) -> Plan:
    """Plan the loops of ``ir``; ``training`` adds the backward step, ``lengths`` variable
    lengths (buffers then start at zero so that rows past their end stay zero). With ``hoist``
    (``lanes.hoist_lanes``) the engine computes the hoisted inputs itself; without, they are
    given."""
    return _Planner(ir, training, lengths, hoist).plan


@dataclass
class _Adjoints:
    """One backward pass (the step's, or the epilogue) as it is derived: ``adj``: lane -> (its
    adjoint's place, owned: else an alias of another value, copied before anything is added)."""

    H: int
    dP: dict[str, int]  # vector weight key -> gradient sum
    fixed: Callable[[int], Ref | None]  # the one place a lane's adjoint must end up, or None
    scratch: dict[int, Ref]  # a place for each other lane
    out: list  # the pass's instructions
    constant: frozenset = frozenset()  # lanes whose adjoint nobody wants (step masks)
    adj: dict[int, tuple] = field(default_factory=dict)

    def contribute(self, x, code: int, a, b=None):
        """Add ``code(a, b)`` to the adjoint of operand x (a lane, a Param or a number)."""
        H, adj, out = self.H, self.adj, self.out
        if isinstance(x, float) or x in self.constant:
            return
        if isinstance(x, Param):
            out.append(Op(code, Ref(self.dP[x.key], x.index * H), a, b, H, acc=True))
            return
        current = adj.get(x)
        if current is None:
            dst = self.fixed(x)
            if dst is None and code == COPY:
                adj[x] = (a, False)  # an alias: no copy until someone adds to it
                return
            dst = dst or self.scratch[x]
            out.append(Op(code, dst, a, b, H))
            adj[x] = (dst, True)
            return
        ref, owned = current
        if not owned:
            dst = self.scratch[x]
            out.append(Op(ADD if code == COPY else COPY, dst, ref, a if code == COPY else None,
                          H))
            adj[x] = (dst, True)
            if code == COPY:
                return
            ref = dst
        out.append(Op(code, ref, a, b, H, acc=True))

    def derive(self, op: Ew, value, operand):
        """Contributions of one elementwise op to its arguments' adjoints (reverse mode)."""
        dy = self.adj[op.out][0]
        refs = {"dy": dy, "y": value(op.out), None: None}
        for k, (instruction, *operands) in enumerate(_GRAD[op.op]):
            for j, name in enumerate(("a", "b")[:len(op.args)]):
                refs[name] = operand(op.args[j])
            self.contribute(op.args[k], CODE[instruction], *(refs[o] for o in operands))


class _Planner:
    def __init__(self, ir: StepIR, training: bool, lengths: bool, hoist: HoistIR | None):
        self.ir, self.H, self.training, self.lengths = ir, ir.hidden_size, training, lengths
        self.plan = Plan(ir, training, hoist)
        self.remade_buffers: set[int] = set()  # where the backward recomputes row results
        self._analyse()
        if hoist is not None:
            self._analyse_hoist()
        self._forward_buffers()
        if hoist is not None:
            self._prologue()
        self._forward()
        if training:
            self._backward_buffers()
            self._backward()
            if hoist is not None:
                self._epilogue()
        lists = ("prologue", "forward", "backward", "epilogue")
        everything = [ins for name in lists for ins in getattr(self.plan, name)]
        scratch = {k for k, b in enumerate(self.plan.buffers) if b.temp} | self.remade_buffers
        for name in lists:
            setattr(self.plan, name, fuse_norms(getattr(self.plan, name), everything, scratch))
        everything = [ins for name in lists for ins in getattr(self.plan, name)]
        for name in lists:
            setattr(self.plan, name,
                    merge(fuse_gains(getattr(self.plan, name), everything, scratch)))
        if hoist is not None and hoist.weight is not None:
            self._hoisted_forward()
            if training and self.plan.epilogue:
                self._hoisted_backward()

    # ---- analysis -----------------------------------------------------------------------------
    def _analyse(self):
        ir, hoist = self.ir, self.plan.hoist
        n = len(ir.sources)
        # the step masks: hoisted inputs made of mask lanes, and the step's lanes of them
        self.mask_inputs = {k for k, lanes in enumerate(hoist.outputs) if lanes and all(
            hoist.sources[x].kind is SourceKind.MASK for x in lanes)} if hoist else set()
        self.constant = frozenset(x for x, src in enumerate(ir.sources)
                                  if src.kind is SourceKind.STEP_INPUT
                                  and src.index in self.mask_inputs)
        self.stage = [0] * n  # the stage (run of elementwise ops between GEMMs) of each lane
        self.readers: list[list[int]] = [[] for _ in range(n)]  # stages of elementwise readers
        self.gemm_uses: list[list[tuple[int, int]]] = [[] for _ in range(n)]  # (gemm, position)
        self.needed = [False] * n  # value read by the backward step
        stage = 0
        for op in ir.ops:
            if isinstance(op, Gemm):
                stage += 1
                for p, lane in enumerate(op.args):
                    self.gemm_uses[lane].append((op.index, p))
                for lane in op.out:
                    self.stage[lane] = stage
            else:
                for lane in _outs(op):
                    self.stage[lane] = stage
                for a in op.args:
                    if isinstance(a, int):
                        self.readers[a].append(stage)
                _mark_needed(op, self.needed, self.constant)
        self.writes_of: list[list[int]] = [[] for _ in range(n)]
        for j, lane in enumerate(ir.writes):
            self.writes_of[lane].append(j)
        self.remade = _remade(ir.ops, self.needed)
        self.crossing = [
            ir.sources[x].kind is SourceKind.OP and any(s > self.stage[x] for s in self.readers[x])
            for x in range(n)
        ]
        self.param_width: dict[str, int] = {}  # weight vector -> the columns ops read of it
        self._widen_params(ir.ops)
        # state layout: the arguments of the first GEMM that reads several states come first,
        # in its order, so that its argument is a column range of S
        order: list[int] = []
        for g in ir.gemms:
            src = [ir.sources[x] for x in g.args]
            if len(g.args) > 1 and all(s.kind is SourceKind.STATE for s in src):
                js = [s.index for s in src]
                if len(set(js)) == len(js):
                    order = js
                    break
        order += [j for j in range(ir.num_states) if j not in order]
        self.state_order = order
        self.aliased: dict[int, int] = {}  # hoisted input -> its first column in X
        self.in_masks: dict[int, int] = {}  # hoisted input -> its first column in the masks

    def _analyse_hoist(self):
        """Which hoisted inputs are plain columns of X, and what the prologue reads."""
        ir, hoist, H = self.ir, self.plan.hoist, self.H
        read = {a for op in hoist.ops for a in op.args if isinstance(a, int)}
        positions: dict[int, list] = {}
        for k, lanes in enumerate(hoist.outputs):
            for i, x in enumerate(lanes):
                positions.setdefault(x, []).append((k, i))
        step_read = {src.index for src in ir.sources if src.kind is SourceKind.STEP_INPUT}
        biases = [g.bias for g in ir.gemms if g.bias is not None]
        for k, lanes in enumerate(hoist.outputs):
            src = [hoist.sources[x] for x in lanes]
            if (lanes and all(s.kind is SourceKind.PROJECTION for s in src)
                    and [s.lane for s in src] == list(range(src[0].lane, src[0].lane + len(src)))
                    and k not in step_read and biases.count(k) == 1
                    and not any(x in read or len(positions[x]) > 1 for x in lanes)):
                self.aliased[k] = src[0].lane * H
            elif (k in self.mask_inputs and k not in biases
                  and [s.lane for s in src] == list(range(src[0].lane, src[0].lane + len(src)))):
                self.in_masks[k] = src[0].lane * H  # read where the caller put them
        self.hoist_positions = {x: [(k, i) for k, i in pos
                                    if k not in self.aliased and k not in self.in_masks]
                                for x, pos in positions.items()}
        self.hoist_constant = frozenset(x for x, src in enumerate(hoist.sources)
                                        if src.kind is SourceKind.MASK)
        self.hoist_needed = [False] * len(hoist.sources)
        for op in hoist.ops:
            _mark_needed(op, self.hoist_needed, self.hoist_constant)
        self.hoist_remade = _remade(hoist.ops, self.hoist_needed)
        self._widen_params(hoist.ops)

    def _widen_params(self, ops: list) -> None:
        widths = self.param_width
        for a in (a for op in ops if isinstance(op, Ew) for a in op.args):
            if isinstance(a, Param):
                widths[a.key] = max(widths.get(a.key, 0), (a.index + 1) * self.H)

    def hoist_lane(self, x: int, X: int | None, inputs: int | None,
                   masks: int | None = None) -> Ref | None:
        """Hoist lane x as a lane of X, of the input or of the masks, held in ``X``,
        ``inputs`` and ``masks``."""
        match self.plan.hoist.sources[x]:
            case Source(SourceKind.PROJECTION, _, i):
                return Ref(X, i * self.H)
            case Source(SourceKind.INPUT, _, i):
                return Ref(inputs, i * self.H)
            case Source(SourceKind.MASK, _, i) if masks is not None:
                return Ref(masks, i * self.H)
        return None

    def hoist_loc(self, x: int) -> Ref:
        """Where hoist lane x's value is (over all T·B rows)."""
        p = self.plan
        return self.hoist_lane(x, p.X, p.x, p.masks) or self.hoist_home[x]

    def _prologue(self):
        """The hoist's elementwise work over all T·B rows, into the hoisted inputs."""
        p, hoist, H, code = self.plan, self.plan.hoist, self.H, self.plan.prologue
        self.hoist_home: dict[int, Ref] = {}
        saved, scratch = [], []
        pools = [op for op in hoist.ops if isinstance(op, Pool)]
        pooled = {x for op in pools for x in op.out}
        for x, src in enumerate(hoist.sources):
            if src.kind is not SourceKind.OP or x in pooled:
                continue
            if self.hoist_positions.get(x):
                k, i = self.hoist_positions[x][0]
                self.hoist_home[x] = Ref(p.xs[k], i * H)
            elif self.training and self.hoist_needed[x] and x not in self.hoist_remade:
                saved.append(x)
            else:
                scratch.append(x)
        for name, lanes, temp in (("Ph", saved, False), ("Rh", scratch, True)):
            if lanes:
                self.hoist_home.update(self._side_by_side(name, Slices.STEPS, lanes, temp=temp))
        for k, op in enumerate(pools):  # as in the step (``_forward_buffers``)
            self.hoist_home.update(self._side_by_side(f"Nh{k}", Slices.STEPS, list(op.out),
                                                      temp=True))
            self._pool_input(op, hoist.sources, SourceKind.PROJECTION, self.hoist_loc,
                             f"Qh{k}", Slices.STEPS)
        self.hoist_remade = {x: op for x, op in self.hoist_remade.items()
                             if x in scratch or x in pooled}
        for op in hoist.ops:
            if isinstance(op, Pool):
                self._pool_forward(op, self.hoist_loc, self.hoist_home[op.out[0]], code)
                continue
            dst = self.hoist_home[op.out]
            args = [self.operand(a, self.hoist_loc) for a in op.args] + [None]
            code.append(Op(CODE[op.op], dst, args[0], args[1], H))
        for x, pos in self.hoist_positions.items():
            for k, i in pos:
                ref = Ref(p.xs[k], i * H)
                if ref != self.hoist_loc(x):
                    code.append(Op(COPY, ref, self.hoist_loc(x), None, H))

    def _hoisted_forward(self):
        """``hoisted_forward``: the hoist's GEMM and prologue for step t's rows, then the step."""
        p, hoist = self.plan, self.plan.hoist
        gemm = GemmI(Ref(p.X, 0), Ref(p.xin, 0), hoist.input_size, hoist.width, hoist.weight,
                     False, None if p.bx is None else Ref(p.bx, 0))
        code = [gemm, *p.prologue, *p.forward]
        later = p.backward + p.epilogue
        for buf, twin in zip(self.twinned, p.twins, strict=True):
            if not any(buf in _buffers(ins, _REF_FIELDS) for ins in later):  # within its step
                code = [_rebuffer(ins, buf, twin) for ins in code]
                p.step_twins[buf] = twin
        p.hoisted_forward = merge(code)

    def _hoisted_backward(self):
        """``hoisted_backward``: the backward step, then the epilogue for step t's rows (its
        instructions read slice t of every (T, B, ·) buffer, as they read row t·B + b of the
        T·B rows in one pass)."""
        p = self.plan
        code = [*p.backward, *p.epilogue]
        for buf in p.dxs.values():  # nothing after the loop reads them (a hoist is there)
            old = p.buffers[buf]
            twin = p.add(Buffer(f"{old.name}_step", Slices.ONE, old.width, zeros=old.zeros))
            code = [_rebuffer(ins, buf, twin) for ins in code]
            p.back_twins[buf] = twin
        p.hoisted_backward = merge(code)

    def _epilogue(self):
        """The hoist's backward over all T·B rows: hoisted inputs' adjoints back to dX, dx."""
        p, ir, hoist, H = self.plan, self.ir, self.plan.hoist, self.H
        if p.x is not None:
            p.dx = p.add(Buffer("dx", Slices.STEPS, p.buffers[p.x].width, zeros=True))
        ew = [x for x, src in enumerate(hoist.sources) if src.kind is SourceKind.OP]
        scratch = self._side_by_side("dRh", Slices.STEPS, ew, temp=True)
        slots: dict[int, Ref] = {}  # a pooled norm's blocks' adjoints, side by side
        for k, op in enumerate(op for op in hoist.ops if isinstance(op, Pool)):
            slots.update(self._side_by_side(f"dNh{k}", Slices.STEPS, list(op.out), temp=True))
        adjoints = _Adjoints(H, p.dP, lambda x: slots.get(x) or self.hoist_lane(x, p.dX, p.dx),
                             scratch, p.epilogue, self.hoist_constant)
        dG_of = {g.bias: p.dG[i] for i, g in enumerate(ir.gemms) if g.bias is not None}
        for x, pos in self.hoist_positions.items():  # the step's adjoints of hoisted inputs
            for k, i in pos:
                if k in dG_of:
                    adjoints.contribute(x, COPY, Ref(dG_of[k].buf, dG_of[k].col + i * H))
                if k in p.dxs:
                    adjoints.contribute(x, COPY, Ref(p.dxs[k], i * H))
        loc = self._remaking(self.hoist_remade, self.hoist_loc, "Prh", Slices.STEPS, p.epilogue)
        for op in reversed(hoist.ops):
            if isinstance(op, Pool):
                self._pool_backward(op, adjoints, slots, Slices.STEPS)
            elif op.out in adjoints.adj:
                adjoints.derive(op, loc, lambda a: self.operand(a, loc))
        aliased_cols = {self.aliased[k] + i * H for k in self.aliased
                        for i in range(len(hoist.outputs[k]))}
        lane_of = {src.lane: x for x, src in enumerate(hoist.sources)
                   if src.kind is SourceKind.PROJECTION}
        for i in range(hoist.width // H):  # columns of dX nobody writes
            if i * H not in aliased_cols and lane_of.get(i) not in adjoints.adj:
                p.epilogue.append(Op(FILL, Ref(p.dX, i * H), 0.0, None, H))

    # ---- forward ------------------------------------------------------------------------------
    def _forward_buffers(self):
        p, ir, H = self.plan, self.ir, self.H
        history = self.training or self.lengths
        hoist = p.hoist
        if hoist is None:
            p.xs = [p.add(Buffer(f"xs{k}", Slices.STEPS, w, given=True))
                    for k, w in enumerate(ir.xs_widths)]
        else:
            if hoist.weight is not None:
                p.X = p.add(Buffer("X", Slices.STEPS, hoist.width))
                # X = x W + b in one addmm over all T·B rows: no bias pass in every step
                p.bias_in_X = hoist.bias is not None
                p.xin = p.add(Buffer("xin", Slices.STEPS, hoist.input_size, given=True))
                if hoist.bias is not None:
                    p.bx = p.add(Buffer("bx", Slices.ONE, hoist.width, shared=True, given=True))
            # x as lanes: only where the hoist reads them elementwise or hands them to the
            # step (else its adjoint would be a zero-filled (T, B, I) buffer nobody writes)
            read = {a for op in hoist.ops for a in op.args if isinstance(a, int)}
            read |= {x for lanes in hoist.outputs for x in lanes}
            inputs = [x for x, src in enumerate(hoist.sources) if src.kind is SourceKind.INPUT]
            if read.intersection(inputs):
                p.x = p.add(Buffer("x", Slices.STEPS, len(inputs) * H, given=True))
            if hoist.masks:
                p.masks = p.add(Buffer("masks", Slices.STEPS, hoist.masks * H, given=True))
            p.xs = [None if k in self.aliased or k in self.in_masks
                    else p.add(Buffer(f"xs{k}", Slices.STEPS, w))
                    for k, w in enumerate(ir.xs_widths)]
            if hoist.weight is not None:  # twins for the hoist inside the native loop
                self.twinned = [b for b in (p.X, *p.xs) if b is not None]
                p.twins = [p.add(Buffer(f"{p.buffers[b].name}_step", Slices.ONE,
                                        p.buffers[b].width)) for b in self.twinned]
        p.params = {key: p.add(Buffer(f"w[{key}]", Slices.ONE, self.param_width[key],
                                      shared=True, given=True)) for key in self.param_width}
        p.S = p.add(Buffer("S", Slices.HISTORY if history else Slices.TWO,
                           len(self.state_order) * H, zeros=self.lengths))
        p.state_cols = [self.state_order.index(j) * H for j in range(ir.num_states)]
        p.Y = p.add(Buffer("Y", Slices.STEPS, H, zeros=self.lengths))
        self.G: list[Ref] = []  # where each GEMM's result is
        for g in ir.gemms:
            if g.bias is not None and g.bias in self.aliased:  # in place, in X
                self.G.append(self.xs_ref(g.bias))
                continue
            keep = self.training and any(self.needed[x] for x in g.out)
            self.G.append(Ref(p.add(Buffer(f"G{g.index}", Slices.STEPS if keep else Slices.ONE,
                                           len(g.out) * H)), 0))
        # each GEMM reads its argument from S when it is a run of state columns, else from its
        # own buffer A (kept for the weight gradient when training)
        self.A: list[Ref] = []
        self.dedicated: list[bool] = []
        for g in ir.gemms:
            src = [ir.sources[x] for x in g.args]
            cols = [p.state_cols[s.index] for s in src if s.kind is SourceKind.STATE]
            if len(cols) == len(src) and cols == list(range(cols[0], cols[0] + len(cols) * H, H)):
                self.A.append(Ref(p.S, cols[0]))
                self.dedicated.append(False)
            else:
                buf = p.add(Buffer(f"A{g.index}", Slices.STEPS if self.training else Slices.ONE,
                                   len(g.args) * H, zeros=self.lengths))
                self.A.append(Ref(buf, 0))
                self.dedicated.append(True)
        p.gemm_args = list(self.A)
        # homes of the elementwise lanes
        n = len(ir.sources)
        self.home: dict[int, Ref] = {}
        pooled = {x for op in ir.ops if isinstance(op, Pool) for x in op.out}
        slots = {"P": [], "M": [], "R": []}
        for x in range(n):
            if ir.sources[x].kind is not SourceKind.OP or x in pooled:
                continue
            dedicated_uses = [(g, q) for g, q in self.gemm_uses[x] if self.dedicated[g]]
            if self.writes_of[x]:
                self.home[x] = Ref(p.S, p.state_cols[self.writes_of[x][0]], 1)
            elif dedicated_uses:
                g, q = dedicated_uses[0]
                self.home[x] = Ref(self.A[g].buf, q * H)
            elif self.training and self.needed[x] and x not in self.remade:
                slots["P"].append(x)
            elif self.crossing[x]:
                slots["M"].append(x)
            elif x == ir.output:
                self.home[x] = Ref(p.Y, 0)
            else:
                slots["R"].append(x)
        for name, lanes in slots.items():
            if lanes:
                self.home.update(self._side_by_side(
                    name, Slices.STEPS if name == "P" else Slices.ONE, lanes, temp=name == "R"))
        # a pooled norm's blocks side by side in a buffer of their own (remade, not kept, where
        # the backward reads them); its input where the arguments are when they are one GEMM's
        # result in order, else a buffer they are copied to (kept for the backward)
        self.pool_in: dict[int, Ref] = {}  # id(op) -> the n·H columns it normalises
        self.pool_copied: set[int] = set()
        for op in ir.ops:
            if not isinstance(op, Pool):
                continue
            k = len(self.pool_in)
            self.home.update(self._side_by_side(f"N{k}", Slices.ONE, list(op.out), temp=not any(
                self.crossing[x] for x in op.out)))
            self._pool_input(op, ir.sources, SourceKind.GEMM, self.loc, f"Q{k}",
                             Slices.STEPS if self.training else Slices.ONE)
        # (a lane kept anyway, in the state history or a GEMM's arguments, is read back)
        self.remade = {x: op for x, op in self.remade.items()
                       if p.buffers[self.home[x].buf].slices is Slices.ONE}

    def _remaking(self, remade: dict[int, Ew], loc, name: str, slices: Slices, out: list):
        """``loc`` for a backward pass that computes each lane of ``remade`` again (into a new
        buffer ``name``) where it is first read, from its arguments (kept for the backward)."""
        if not remade:
            return loc
        place = self._side_by_side(name, slices, list(remade), temp=slices is Slices.STEPS)
        self.remade_buffers.add(next(iter(place.values())).buf)
        done: set[int] = set()

        def where(x: int) -> Ref:
            if x in remade and x not in done:
                op = remade[x]
                if isinstance(op, Pool):  # all blocks at once (side by side in ``place``)
                    out.append(Op(CODE[op.op], place[op.out[0]], self.pool_in[id(op)], None,
                                  len(op.out) * self.H))
                    done.update(op.out)
                else:
                    args = [self.operand(a, where) for a in op.args] + [None]
                    out.append(Op(CODE[op.op], place[x], args[0], args[1], self.H))
                    done.add(x)
            return place[x] if x in remade else loc(x)

        return where

    def _side_by_side(self, name: str, slices: Slices, lanes: list, **flags) -> dict[int, Ref]:
        """A new buffer with ``lanes`` side by side, H columns each: lane -> its place."""
        buf = self.plan.add(Buffer(name, slices, max(len(lanes), 1) * self.H, **flags))
        return {x: Ref(buf, k * self.H) for k, x in enumerate(lanes)}

    def xs_ref(self, k: int) -> Ref:
        """Hoisted input k: its own buffer, or its columns of X or of the masks."""
        if k in self.aliased:
            return Ref(self.plan.X, self.aliased[k])
        if k in self.in_masks:
            return Ref(self.plan.masks, self.in_masks[k])
        return Ref(self.plan.xs[k], 0)

    def loc(self, x: int) -> Ref:
        """Where lane x's value is during (forward) and after (backward) its step."""
        match self.ir.sources[x]:
            case Source(SourceKind.STEP_INPUT, k, i):
                base = self.xs_ref(k)
                return Ref(base.buf, base.col + i * self.H)
            case Source(SourceKind.STATE, j):
                return Ref(self.plan.S, self.plan.state_cols[j])
            case Source(SourceKind.GEMM, g, i):
                return Ref(self.G[g].buf, self.G[g].col + i * self.H)
        return self.home[x]

    def operand(self, a, loc=None):
        """Where an op's argument is: a lane (at ``loc``, else ``self.loc``), a Param, a number."""
        if isinstance(a, Param):
            return Ref(self.plan.params[a.key], a.index * self.H)
        if isinstance(a, int):
            return (loc or self.loc)(a)
        return float(a)

    def sinks(self, x: int) -> list[Ref]:
        """Every place lane x must be written at its step."""
        p, out = self.plan, []
        for j in self.writes_of[x]:
            out.append(Ref(p.S, p.state_cols[j], 1))
        for g, q in self.gemm_uses[x]:
            if self.dedicated[g]:
                out.append(Ref(self.A[g].buf, q * self.H))
        if x == self.ir.output:
            out.append(Ref(p.Y, 0))
        return out

    def _pool_input(self, op: Pool, sources: list, kind: SourceKind, loc, name: str,
                    slices: Slices) -> None:
        """Where pooled norm ``op`` reads its n·H columns (``pool_in``): in place when its
        arguments are the lanes of one source of ``kind`` in order (the recurrent GEMM's
        result, X), else a new buffer ``name`` they are copied to (``pool_copied``)."""
        src = [sources[a] for a in op.args]
        if (all(s.kind is kind and s.index == src[0].index for s in src)
                and [s.lane for s in src] == list(range(src[0].lane, src[0].lane + len(src)))):
            self.pool_in[id(op)] = loc(op.args[0])
            return
        self.pool_in[id(op)] = Ref(self.plan.add(Buffer(name, slices, len(op.args) * self.H)), 0)
        self.pool_copied.add(id(op))

    def _pool_forward(self, op: Pool, loc, home: Ref, code: list) -> None:
        """A pooled norm: its arguments copied side by side where they are not, one row
        instruction over all n·H columns into ``home``."""
        src = self.pool_in[id(op)]
        if id(op) in self.pool_copied:
            for i, a in enumerate(op.args):
                code.append(Op(COPY, Ref(src.buf, src.col + i * self.H), loc(a), None, self.H))
        code.append(Op(CODE[op.op], home, src, None, len(op.out) * self.H))

    def _pool_backward(self, op: Pool, adjoints: _Adjoints, slots: dict[int, Ref],
                       slices: Slices) -> None:
        """A pooled norm's adjoint: its blocks' adjoints (side by side at ``slots``; zeros for
        a block nobody read) through one ``norm_bwd`` over all n·H columns, written where the
        arguments' adjoints must be when those are side by side in order and have nothing yet
        (the recurrent GEMM's result), else into a buffer and added from there."""
        H, adj, out = self.H, adjoints.adj, adjoints.out
        if not any(y in adj for y in op.out):
            return
        for y in op.out:
            if y not in adj:
                out.append(Op(FILL, slots[y], 0.0, None, H))
                adj[y] = (slots[y], True)
        width, x, dy = len(op.out) * H, self.pool_in[id(op)], slots[op.out[0]]
        places = [adjoints.fixed(a) for a in op.args]
        if places[0] is not None and not any(a in adj for a in op.args) and places == [
                Ref(places[0].buf, places[0].col + i * H, places[0].toff)
                for i in range(len(op.args))]:
            out.append(Op(NORM_BWD, places[0], dy, x, width))
            for a, place in zip(op.args, places, strict=True):
                adj[a] = (place, True)
            return
        dx = Ref(self.plan.add(Buffer(f"dQ{len(self.plan.buffers)}", slices, width, temp=True)), 0)
        out.append(Op(NORM_BWD, dx, dy, x, width))
        for i, a in enumerate(op.args):
            adjoints.contribute(a, COPY, Ref(dx.buf, dx.col + i * H))

    def _forward(self):
        ir, H, code = self.ir, self.H, self.plan.forward
        for op in ir.ops:
            if isinstance(op, Pool):
                self._pool_forward(op, self.loc, self.home[op.out[0]], code)
                for x in op.out:
                    for ref in self.sinks(x):
                        if ref != self.home[x]:
                            code.append(Op(COPY, ref, self.home[x], None, H))
            elif isinstance(op, Ew):
                dst = self.home[op.out]
                args = [self.operand(a) for a in op.args] + [None]
                code.append(Op(CODE[op.op], dst, args[0], args[1], H))
                for ref in self.sinks(op.out):
                    if ref != dst:
                        code.append(Op(COPY, ref, dst, None, H))
            else:
                g = op.index
                if self.dedicated[g]:  # computed lanes were written there by their op
                    for q, x in enumerate(op.args):
                        if ir.sources[x].kind is not SourceKind.OP:
                            code.append(Op(COPY, Ref(self.A[g].buf, q * H), self.loc(x), None, H))
                # a bias that is columns of X: X holds x W + b already, the product is added
                in_X = op.bias in self.aliased
                bias = None if op.bias is None or in_X else self.xs_ref(op.bias)
                code.append(GemmI(self.G[g], self.A[g], len(op.args) * H, len(op.out) * H,
                                  op.weight, False, bias, acc=in_X))
        p = self.plan
        for j, x in enumerate(ir.writes):  # values passed through from elsewhere
            if ir.sources[x].kind is not SourceKind.OP:
                code.append(Op(COPY, Ref(p.S, p.state_cols[j], 1), self.loc(x), None, H))
        if ir.sources[ir.output].kind is not SourceKind.OP:
            code.append(Op(COPY, Ref(p.Y, 0), self.loc(ir.output), None, H))

    # ---- backward -----------------------------------------------------------------------------
    def _backward_buffers(self):
        p, ir, H = self.plan, self.ir, self.H
        width = len(self.state_order) * H
        p.dY = p.add(Buffer("dY", Slices.STEPS, H, given=True))
        p.dF = p.add(Buffer("dF", Slices.ONE, width, given=True))
        p.dS = p.add(Buffer("dS", Slices.TWO, width))
        if p.X is not None:
            p.dX = p.add(Buffer("dX", Slices.STEPS, p.hoist.width, zeros=self.lengths))
        p.dG = []
        for g in ir.gemms:
            if g.bias is not None and g.bias in self.aliased:
                p.dG.append(Ref(p.dX, self.aliased[g.bias]))
            else:
                p.dG.append(Ref(p.add(Buffer(f"dG{g.index}", Slices.STEPS, len(g.out) * H,
                                             zeros=self.lengths)), 0))
        self.dA = [p.add(Buffer(f"dA{g.index}", Slices.ONE, len(g.args) * H))
                   if self.dedicated[i] else None for i, g in enumerate(ir.gemms)]
        used = [a for op in ir.ops for a in (op.args if isinstance(op, Ew | Pool) else ())
                if isinstance(a, int)] + [ir.output, *ir.writes]
        read_xs = sorted({ir.sources[x].index for x in used
                          if ir.sources[x].kind is SourceKind.STEP_INPUT
                          and x not in self.constant})
        p.dxs = {k: p.add(Buffer(f"dxs{k}", Slices.STEPS, ir.xs_widths[k], zeros=True))
                 for k in read_xs}
        p.dP = {key: p.add(Buffer(f"d w[{key}]", Slices.ONE, self.param_width[key],
                                  shared=True, zeros=True)) for key in self.param_width}
        crossing = [x for x in range(len(ir.sources)) if self.crossing[x]]
        self.dM = self._side_by_side("dM", Slices.ONE, crossing) if crossing else {}
        ew = [x for x, src in enumerate(ir.sources) if src.kind is SourceKind.OP]
        self.dR = self._side_by_side("dR", Slices.ONE, ew, temp=True)
        self.pool_adj: dict[int, Ref] = {}  # a pooled norm's blocks' adjoints, side by side
        for k, op in enumerate(op for op in ir.ops if isinstance(op, Pool)):
            self.pool_adj.update(self._side_by_side(f"dN{k}", Slices.ONE, list(op.out)))

    def fixed(self, x: int) -> Ref | None:
        """The one place lane x's adjoint must end up in, if it has one."""
        p = self.plan
        if x in self.pool_adj:
            return self.pool_adj[x]
        match self.ir.sources[x]:
            case Source(SourceKind.STATE, j):
                return Ref(p.dS, p.state_cols[j])
            case Source(SourceKind.GEMM, g, i):
                return Ref(p.dG[g].buf, p.dG[g].col + i * self.H)
            case Source(SourceKind.STEP_INPUT, k, i):
                return Ref(p.dxs[k], i * self.H)
        return self.dM.get(x)

    def _backward(self):
        ir, p, H, out = self.ir, self.plan, self.H, self.plan.backward
        width = len(self.state_order) * H
        out.append(Refill(Ref(p.dS, 0, 1), Ref(p.dF, 0), width))
        adjoints = _Adjoints(H, p.dP, self.fixed, self.dR, out, self.constant)
        # one slice, not scratch: a lane may be read again after a GEMM of the backward step
        loc = self._remaking(self.remade, self.loc, "Pr", Slices.ONE, out)
        adj, contribute = adjoints.adj, adjoints.contribute

        def external(x):
            if x == ir.output:
                contribute(x, COPY, Ref(p.dY, 0))
            for j in self.writes_of[x]:
                contribute(x, COPY, Ref(p.dS, p.state_cols[j], 1))

        for x in dict.fromkeys([ir.output, *ir.writes]):
            if ir.sources[x].kind is not SourceKind.OP:
                external(x)
        for op in reversed(ir.ops):
            if isinstance(op, Pool):
                for y in op.out:
                    external(y)
                    for g, q in self.gemm_uses[y]:
                        if self.dedicated[g]:
                            contribute(y, COPY, Ref(self.dA[g], q * H))
                self._pool_backward(op, adjoints, self.pool_adj, Slices.ONE)
            elif isinstance(op, Ew):
                y = op.out
                external(y)
                for g, q in self.gemm_uses[y]:
                    if self.dedicated[g]:
                        contribute(y, COPY, Ref(self.dA[g], q * H))
                if y in adj:  # else its adjoint is zero
                    adjoints.derive(op, loc, lambda a: self.operand(a, loc))
            else:
                g = op.index
                for x in op.out:
                    if x not in adj:
                        out.append(Op(FILL, self.fixed(x), 0.0, None, H))
                        adj[x] = (self.fixed(x), True)
                K, N = len(op.args) * H, len(op.out) * H
                if self.dedicated[g]:
                    out.append(GemmI(Ref(self.dA[g], 0), p.dG[g], N, K, op.weight, True))
                    for q, x in enumerate(op.args):
                        if ir.sources[x].kind is not SourceKind.OP:
                            contribute(x, COPY, Ref(self.dA[g], q * H))
                else:
                    started = [x in adj for x in op.args]
                    if any(started):
                        for x in op.args:
                            if x not in adj:
                                out.append(Op(FILL, self.fixed(x), 0.0, None, H))
                    out.append(GemmI(Ref(p.dS, self.A[g].col), p.dG[g], N, K,
                                     op.weight, True, acc=any(started)))
                    for x in op.args:
                        adj[x] = (self.fixed(x), True)
        lane_of_state = {src.index: x for x, src in enumerate(ir.sources)
                         if src.kind is SourceKind.STATE}
        for j in range(ir.num_states):
            if lane_of_state.get(j) not in adj:
                out.append(Op(FILL, Ref(p.dS, p.state_cols[j]), 0.0, None, H))
        # a hoisted input's adjoint is written whole at every step (its first contribution is
        # a write) unless a lane of it gets none, or rows stop early: only then zeros first
        written = {(src.index, src.lane) for x, src in enumerate(ir.sources)
                   if src.kind is SourceKind.STEP_INPUT and x in adj}
        for k, buf in p.dxs.items():
            p.buffers[buf].zeros = self.lengths or any(
                (k, i) not in written for i in range(ir.xs_widths[k] // H))


# ---- merging ------------------------------------------------------------------------------------
_READ_FIELDS = ("a", "b", "c", "src", "bias")  # an instruction's operands (Refs, numbers or None)
_REF_FIELDS = ("dst", *_READ_FIELDS)


def _buffers(ins, fields) -> set[int]:
    return {r.buf for r in (getattr(ins, name, None) for name in fields) if isinstance(r, Ref)}


def reads(code: list) -> set[int]:
    """The buffers a list of instructions reads (an accumulating write reads its target)."""
    found: set[int] = set()
    for ins in code:
        found |= _buffers(ins, _READ_FIELDS)
        if getattr(ins, "acc", False):
            found.add(ins.dst.buf)
    return found


def _rebuffer(ins, old: int, new: int):
    """The instruction with buffer ``old`` replaced by ``new`` (same columns and offsets)."""
    moved = {name: Ref(new, r.col, r.toff) for name in _REF_FIELDS
             if isinstance(r := getattr(ins, name, None), Ref) and r.buf == old}
    return dataclasses.replace(ins, **moved) if moved else ins


def _overlap(a: Ref, wa: int, b: Ref, wb: int) -> bool:
    return a.buf == b.buf and a.toff == b.toff and a.col < b.col + wb and b.col < a.col + wa


def _adjacent(x, y, wx: int, wy: int):
    """+1 if y continues x to the right, -1 to the left, 0 if both are the same number, None."""
    if isinstance(x, float) or isinstance(y, float) or x is None or y is None:
        return 0 if x == y and not isinstance(x, Ref) else None
    if x.buf != y.buf or x.toff != y.toff:
        return None
    if y.col == x.col + wx:
        return 1
    if x.col == y.col + wy:
        return -1
    return None


def _mergeable(p: Op, q: Op) -> bool:
    if not (isinstance(p, Op) and isinstance(q, Op)) or p.code != q.code or p.acc != q.acc:
        return False
    if p.code in ROW_CODES:  # a row reduction over one lane: wider would be another function
        return False
    sides = {_adjacent(u, v, p.width, q.width) for u, v in ((p.dst, q.dst), (p.a, q.a), (p.b, q.b))}
    sides.discard(0)
    if len(sides) != 1 or None in sides:
        return False
    # q must not read what p writes (its inputs are read before p's outputs exist once merged)
    for src in (q.a, q.b):
        if isinstance(src, Ref) and _overlap(src, q.width, p.dst, p.width):
            return False
    for src in (p.a, p.b):
        if isinstance(src, Ref) and _overlap(src, p.width, q.dst, q.width):
            return False
    return True


MUL_NORM, NORM = CODE["mul_norm"], CODE["norm"]


def _reads_of(everything: list, t: Ref, width: int) -> int:
    """How many operands of ``everything`` read the columns of ``t``."""
    return sum(isinstance(r, Ref) and _overlap(r, width, t, width)
               for ins in everything for r in (getattr(ins, f, None) for f in _READ_FIELDS))


def fuse_norms(code: list, everything: list, scratch: set[int]) -> list:
    """``n = norm(x)`` followed by ``d (+)= a ⊙ n`` becomes ``d (+)= mul_norm(a, x)`` where the
    product is n's only reader (in ``everything``, every list of the plan) and n lives in a
    ``scratch`` buffer (one that nothing reads after the loops): a layer norm's gain times its
    normalised row, and in the backward step the gain's gradient dy ⊙ norm(x) (n remade
    there, see ``_remade``). One pass over the row fewer and the normalised row never
    written; the results are the same numbers."""
    out: list = []
    k = 0
    while k < len(code):
        ins = code[k]
        nxt = code[k + 1] if k + 1 < len(code) else None
        if (isinstance(ins, Op) and ins.code == NORM and not ins.acc and isinstance(nxt, Op)
                and nxt.code == MUL and nxt.width == ins.width
                and ins.dst.buf in scratch
                and _reads_of(everything, ins.dst, ins.width) == 1):
            other = nxt.b if nxt.a == ins.dst else nxt.a if nxt.b == ins.dst else None
            if isinstance(other, Ref) and not _overlap(other, nxt.width, ins.dst, ins.width):
                out.append(Op(MUL_NORM, nxt.dst, other, ins.a, ins.width, nxt.acc))
                k += 2
                continue
        out.append(ins)
        k += 1
    return out


MUL_NORM_ADD, NORM_BWD_MUL, NORM_BWD = (CODE[n] for n in ("mul_norm_add", "norm_bwd_mul",
                                                         "norm_bwd"))


def _fused_gain(p, q, everything: list, scratch: set[int]) -> Op | None:
    """The one instruction for ``p`` then ``q`` (see ``fuse_gains``), or None."""
    if not (isinstance(p, Op) and isinstance(q, Op) and not p.acc and p.width == q.width
            and p.dst.buf in scratch and _reads_of(everything, p.dst, p.width) == 1):
        return None
    t = p.dst
    if p.code == MUL_NORM and q.code == ADD and t in (q.a, q.b):
        # t = a ⊙ norm(b); d (+)= t + c  →  d (+)= a ⊙ norm(b) + c
        fused = Op(MUL_NORM_ADD, q.dst, p.a, p.b, p.width, q.acc, q.b if q.a == t else q.a)
    elif p.code == MUL and q.code == NORM_BWD and q.a == t and q.b != t:
        # t = a ⊙ c; d (+)= norm_bwd(t, x)  →  d (+)= norm_bwd_mul(a, x, c)
        fused = Op(NORM_BWD_MUL, q.dst, p.a, q.b, p.width, q.acc, p.b)
    else:
        return None
    operands = (fused.a, fused.b, fused.c)
    if not all(isinstance(r, Ref) for r in operands):
        return None
    # the row is read whole (its statistics) before d is written column by column: d may be
    # an operand itself, but must not overlap one at other columns
    if any(_overlap(r, p.width, fused.dst, p.width) and r != fused.dst for r in operands):
        return None
    return fused


def fuse_gains(code: list, everything: list, scratch: set[int]) -> list:
    """Two instructions of layer norm as one row instruction of three operands, where the
    first's result lives in a ``scratch`` buffer and the second is its only reader:
    ``t = g ⊙ norm(v)`` (``fuse_norms``' product) then ``d = t + c`` (the gate's other part,
    or the memory cell's shift) becomes ``mul_norm_add(g, v, c)``; in the backward step
    ``t = dy ⊙ g`` then ``norm_bwd(t, v)`` becomes ``norm_bwd_mul(dy, v, g)``. One pass over
    the row and one lane written fewer each. The Python executor gives the same numbers as
    the two instructions apart; the native loop's compiler may contract the product and the
    sum that reads it into one fused multiply-add (rounded once, not twice), so there they
    agree to float32's last digit."""
    out: list = []
    k = 0
    while k < len(code):
        fused = (_fused_gain(code[k], code[k + 1], everything, scratch)
                 if k + 1 < len(code) else None)
        if fused is not None:
            out.append(fused)
            k += 2
            continue
        out.append(code[k])
        k += 1
    return out


def merge(code: list) -> list:
    """Join consecutive elementwise instructions that continue each other column-wise
    (sigmoid of gate i, then of f, then of o become one sigmoid over three lanes)."""
    out: list = []
    for ins in code:
        if out and _mergeable(out[-1], ins):
            p = out[-1]
            left = _adjacent(p.dst, ins.dst, p.width, ins.width) == -1
            first = ins if left else p
            out[-1] = Op(p.code, first.dst, first.a, first.b, p.width + ins.width, p.acc)
        else:
            out.append(ins)
    return out
