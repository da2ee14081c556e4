"""The fused sequence engine: a whole sequence as one autograd op.

``rnnlab.engine.run`` hands a call here when the route table chooses it. It lays the cell's
plan (``rnnlab.lang.compile``) out as lanes (``fast.lanes``: the step, and the hoist when it
is the input GEMM plus elementwise work), plans buffers and the instructions of a prologue (the
hoist over all T·B rows), one forward step, one backward step and an epilogue (``fast.plan``),
and runs it all as one ``torch.autograd.Function``:

* forward computes ``X = x W + b`` (one GEMM) and the prologue, then runs the loop without
  autograd, keeping only what the backward step reads (gate values, the state history, each
  GEMM's argument rows);
* backward runs the derived backward step in reverse time and the epilogue, then computes every
  weight gradient as ONE GEMM over all T·B rows (``dR = Aᵀ dG``, ``dW = xᵀ dX``, ``dx = dX Wᵀ``).

Two executors run the same instructions:

* ``"native"``: a small C++ loop (``fast.native``), compiled once per machine with the system
  C++ compiler and cached; elementwise work is fused row by row and GEMMs call BLAS directly,
  with the recurrent weights packed once per sequence. CPU, float32 and float64.
* ``"python"``: the same instructions as torch calls in a generated Python loop
  (``fast.pyexec``); needs no compiler and runs on any device and dtype.

Which executor runs a call — these two, a single small step, or the reference loop — is
decided by the route table (``rnnlab.engine.route``), never here; ``rnnlab.engine.explain``
prints its choice. Double backward (``create_graph=True``) differentiates the reference loop
inside this op's backward, so it stays exact. See docs/speed.md for the design and the
measurements.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from functools import cached_property
from typing import NamedTuple

import torch

from ..lang.compile import Program
from . import settings
from .fast.lanes import Unsupported, hoist_lanes, step_lanes
from .fast.plan import Plan, Slices, make_plan, reads
from .fast.pyexec import PythonLoops
from .reference import step_loop


# ---- compiled plans ---------------------------------------------------------------------------
class Compiled:
    """A plan and its executors for one program."""

    def __init__(self, program: Program, plan: Plan):
        self.plan = plan
        self.python = PythonLoops(plan)
        self._native = None
        self._native_tried = False
        self._lock = threading.Lock()
        self.shapes: dict = {}  # (T, B, threads, executor) -> buffer shapes
        self.steps: dict = {}  # (B, dtype, threads) -> _PreparedStep (the "native step" route)
        H, cols = plan.ir.hidden_size, list(plan.state_cols)
        # the state fields fill S's columns side by side, in order (``_load_states``)
        self.states_side_by_side = (cols == [k * H for k in range(len(cols))]
                                    and plan.buffers[plan.S].width == len(cols) * H)
        ir = plan.ir
        self.gemm_keys = list(dict.fromkeys(g.weight for g in ir.gemms))
        self.keys = self.gemm_keys + list(plan.params)
        # vectors of parameters alone that the loops read (computed by Program.prepare)
        self.statics = tuple(k for k in program.static_keys if k in plan.params)
        self.num_forward = next((i for i, b in enumerate(plan.buffers) if b.name == "dY"),
                                len(plan.buffers))
        # buffers that leave the engine (the output, gradients it returns): never reused
        self.escaping = {plan.Y, *plan.dP.values()}
        if plan.dx is not None:  # x read elementwise by the hoist: dx may be x's gradient
            self.escaping.add(plan.dx)
        if plan.hoist is None:  # each hoisted input's gradient is its GEMM's dG (or dxs)
            self.escaping |= {ref.buf for ref, g in zip(plan.dG, ir.gemms) if g.bias is not None}
            self.escaping |= set(plan.dxs.values())
        # forward buffers that nothing after the forward loop reads (X = x W + b above all: the
        # backward reads gate values, not pre-activations): handed back to the workspace as
        # soon as the forward is done, so that the backward's buffers (dX) reuse their memory
        kept = reads(plan.backward) | reads(plan.epilogue) | {r.buf for r in plan.gemm_args}
        kept |= {r.buf for r in plan.dG} | {plan.S, plan.dX, plan.dx, plan.dS, plan.dF}
        self.forward_only = [i for i in range(self.num_forward)
                             if i not in kept and i not in self.escaping
                             and not plan.buffers[i].given]

    def native(self):
        """The native executor, or None where it cannot be built."""
        if self._native_tried:  # (read without the lock once it is settled)
            return self._native
        with self._lock:
            if not self._native_tried:
                from .fast import native

                self._native = native.NativeLoops.create(self.plan)
                self._native_tried = True
        return self._native

    @cached_property
    def summary(self) -> str:
        """The plan's shape in words (what ``explain`` prints)."""
        ir = self.plan.ir
        hoist = "by the engine" if self.plan.hoist is not None else "with torch"
        ew = sum(1 for op in ir.ops if not hasattr(op, "weight"))
        return (f"{len(ir.gemms)} GEMM(s) and {ew} lane op(s) per step, hoist {hoist}, "
                f"{len(self.statics)} static vector(s)")


_CACHE: OrderedDict = OrderedDict()  # (program.key, training, lengths, own hoist) -> plan
_CACHE_SIZE = 256
_CACHE_LOCK = threading.Lock()
# each program's own plans first: found without hashing its structure; they go with it
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compiled(program: Program, training: bool, lengths: bool):
    """The Compiled plan of a program (cached by the plan's structure), or an Unsupported
    exception instance saying why the engine cannot run it. Safe to call from threads."""
    own_hoist = settings.current().own_hoist
    mine = _PLANS.get(program)
    if mine is None:
        mine = _PLANS.setdefault(program, {})
    value = mine.get((training, lengths, own_hoist))
    if value is not None:
        return value
    key = (program.key, training, lengths, own_hoist)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            mine[training, lengths, own_hoist] = _CACHE[key]
            return _CACHE[key]
    try:
        ir = step_lanes(program)
        hoist = hoist_lanes(program) if own_hoist else None
        value = Compiled(program, make_plan(ir, training, lengths, hoist))
    except Unsupported as error:
        value = error
    with _CACHE_LOCK:
        value = _CACHE.setdefault(key, value)  # a racing thread's equal plan wins
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    mine[training, lengths, own_hoist] = value
    return value


# ---- running ------------------------------------------------------------------------------------
class _Run:
    """Everything about one call that is not a tensor input of the autograd op."""

    def __init__(self, comp: Compiled, executor, T: int, B: int, sizes, lengths, program):
        self.comp = comp
        self.step = program.step  # the reference step, for the double-backward fallback
        self.hoist = program.hoist
        self.executor = executor  # a PythonLoops or a NativeLoops
        self.T, self.B = T, B
        self.sizes = sizes  # active rows per step, or None (all B rows for T steps)
        self.steps = len(sizes) if sizes is not None else T
        self.lengths = lengths
        self.program = program
        self.threads = executor.threads() if executor is not comp.python else 1


class Workspace:
    """Buffers the engine reuses between calls.

    Fresh memory costs a page fault per 4 KiB on first touch, which is as slow as the arithmetic
    of a small LSTM step. Internal buffers (state history, kept gate values, scratch) therefore
    go back here when a pass is done and serve the next call of the same shape; what is handed
    to the caller (outputs, gradients) never does. At most ``RNNLAB_WORKSPACE_MB`` (default
    512, read when buffers are handed back) are kept; ``clear()`` releases them.
    """

    def __init__(self):
        self.bytes = 0
        self.free: dict[tuple, list[torch.Tensor]] = {}
        self.lock = threading.Lock()

    def take(self, shape: tuple, like: torch.Tensor, zeros: bool) -> torch.Tensor:
        key = (shape, like.dtype, like.device)
        with self.lock:
            stack = self.free.get(key)
            t = stack.pop() if stack else None
            if t is not None:
                self.bytes -= t.nbytes
        if t is None:
            return (torch.zeros if zeros else torch.empty)(shape, dtype=like.dtype,
                                                           device=like.device)
        return t.zero_() if zeros else t

    def give(self, tensors) -> None:
        limit = settings.current().workspace_bytes
        with self.lock:
            for t in tensors:
                if self.bytes + t.nbytes <= limit:
                    self.free.setdefault((tuple(t.shape), t.dtype, t.device), []).append(t)
                    self.bytes += t.nbytes

    def clear(self) -> None:
        with self.lock:
            self.free.clear()
            self.bytes = 0


workspace = Workspace()


def _shapes(run: _Run) -> list:
    """Every buffer's shape for this call (cached per sizes, threads and executor: the native
    loop and the Triton loops lay out a parameter's gradient sums differently, one row per
    thread or per batch row)."""
    comp = run.comp
    key = (run.T, run.B, run.threads, run.executor)
    shapes = comp.shapes.get(key)
    if shapes is None:
        n = len(comp.plan.buffers)
        shapes = [run.executor.buffer_shape(i, run.T, run.B, run.threads) for i in range(n)]
        if len(comp.shapes) > 64:
            comp.shapes.clear()
        comp.shapes[key] = shapes
    return shapes


def _allocate(run: _Run, indices, like: torch.Tensor, given: dict, fresh=()) -> list:
    """Each buffer of ``indices``: given, new memory (escaping or ``fresh``), or reused."""
    plan = run.comp.plan
    tensors: list = [None] * len(plan.buffers)
    shapes = _shapes(run)
    for i in indices:
        buf = plan.buffers[i]
        if i in given:
            tensors[i] = given[i]
            continue
        shape = shapes[i]
        if i in run.comp.escaping or i in fresh:
            tensors[i] = (torch.zeros if buf.zeros else torch.empty)(
                shape, dtype=like.dtype, device=like.device)
        else:
            tensors[i] = workspace.take(shape, like, buf.zeros)
    return tensors


def _release(run: _Run, tensors: list, indices) -> None:
    """Hand internal buffers back to the workspace."""
    plan = run.comp.plan
    workspace.give(tensors[i] for i in indices
                   if tensors[i] is not None and not plan.buffers[i].given
                   and i not in run.comp.escaping)


def _execute(run: _Run, name: str, tensors: list, weights: dict):
    """Run the time loop ("forward", "backward", or with the hoist inside it "hoisted_forward",
    "hoisted_backward") or a pass over all T·B rows at once ("prologue", "epilogue": buffers
    seen as one step of T·B rows)."""
    if name in ("forward", "hoisted_forward", "backward", "hoisted_backward"):
        run.executor.run(name, tensors, weights, run.sizes, run.B, run.steps, run.threads)
        return
    plan, rows = run.comp.plan, run.T * run.B
    flat = [t.view(1, rows, t.shape[-1]) if t is not None and t.dim() == 3
            and plan.buffers[i].slices is Slices.STEPS and t.shape[:2] == (run.T, run.B)
            else t for i, t in enumerate(tensors)]
    run.executor.run(name, flat, weights, None, rows, 1, run.threads)


def _given(plan: Plan, front, weights: dict, in_loop: bool) -> tuple[dict, dict]:
    """The buffers a forward call is handed (buffer index -> tensor: the inputs, the static
    vectors of ``weights``) and the weights its loop reads (with the hoist in the loop, the
    hoist's matrix too)."""
    if plan.hoist is None:
        given = {plan.xs[k]: x for k, x in enumerate(front)}
    else:
        given = {}
        x = _rows(front[0])
        given.update({i: x for i in (plan.x, plan.xin) if i is not None})
        if plan.bx is not None:
            given[plan.bx] = front[2].contiguous()
        if plan.masks is not None:
            given[plan.masks] = _rows(front[-1])
        if in_loop:
            weights = {**weights, plan.hoist.weight: front[1]}
    given.update({i: weights[key] for key, i in plan.params.items()})
    return given, weights


def _unused_twins(plan: Plan, in_loop: bool) -> set:
    """The forward buffers a call leaves out: with the hoist in the loop, the (T, B, ·)
    buffers that one-slice twins stand for and the twins it does not use; else every twin."""
    twins = set(plan.twins)
    return set(plan.step_twins) | (twins - set(plan.step_twins.values())) if in_loop else twins


def _load_states(comp: Compiled, S: torch.Tensor, states) -> None:
    """The state fields into slice 0 of the state buffer S: one ``cat`` where they fill its
    columns side by side in order (``Compiled.states_side_by_side``), else field by field."""
    plan, H = comp.plan, comp.plan.ir.hidden_size
    if comp.states_side_by_side:
        torch.cat(tuple(states), 1, out=S[0])
        return
    for j, c in enumerate(plan.state_cols):
        S[0, :, c:c + H].copy_(states[j])


def _forward(run: _Run, front, states, weights: dict, own_state: bool = False):
    """Run the forward loop; returns (output, finals, buffers).

    ``front``: the hoisted inputs, or with the engine's own hoist (x[, W[, b]][, masks]).
    With ``own_state`` the state buffer S is new memory and the finals are views of it (no
    copy; the caller must not hand S back to the workspace)."""
    plan = run.comp.plan
    # with variable lengths the rows past an end still need their hoisted values (the
    # epilogue reads every row), so the hoist is then computed over all rows beforehand
    in_loop = plan.hoisted_forward and run.executor.hoists_in_loop and run.sizes is None
    given, weights = _given(plan, front, weights, in_loop)
    unused = _unused_twins(plan, in_loop)
    tensors = _allocate(run, [i for i in range(run.comp.num_forward) if i not in unused],
                        front[0] if front else states[0], given,
                        fresh={plan.S} if own_state else ())
    if plan.hoist is not None and not in_loop:  # (in the loop: X_t and the prologue per step)
        if plan.X is not None:  # X = x W (+ b) for every step: one GEMM
            x2d = front[0].reshape(run.T * run.B, front[0].shape[-1])
            X = tensors[plan.X].view(run.T * run.B, -1)
            if plan.bias_in_X:
                torch.addmm(front[2], x2d, front[1], out=X)
            else:
                torch.mm(x2d, front[1], out=X)
        if plan.prologue:
            _execute(run, "prologue", tensors, weights)
    S = tensors[plan.S]
    H = plan.ir.hidden_size
    _load_states(run.comp, S, states)
    _execute(run, "hoisted_forward" if in_loop else "forward", tensors, weights)
    if run.lengths is None:
        last = S[run.steps % S.shape[0]]
    else:
        last = S[run.lengths.to(S.device), torch.arange(run.B, device=S.device)]
    finals = [last[:, c:c + H] if own_state else last[:, c:c + H].clone()  # S is reused
              for c in plan.state_cols]
    return tensors[plan.Y], finals, tensors


class FusedSequence(torch.autograd.Function):
    """The whole sequence as one op: (hoisted inputs, states, weights) -> (output, finals)."""

    @staticmethod
    def forward(ctx, run: _Run, num_front: int, num_states: int, *inputs):
        front = inputs[:num_front]
        states = inputs[num_front:num_front + num_states]
        weights = dict(zip(run.comp.keys, inputs[num_front + num_states:]))
        output, finals, tensors = _forward(run, front, states, weights)
        forward_only = run.comp.forward_only
        if forward_only:
            workspace.give(tensors[i] for i in forward_only if tensors[i] is not None)
            for i in forward_only:
                tensors[i] = None
        ctx.run, ctx.tensors, ctx.counts = run, tensors, (num_front, num_states)
        ctx.save_for_backward(*inputs)
        return (output, *finals)

    @staticmethod
    def backward(ctx, d_output, *d_finals):
        run = ctx.run
        num_front, num_states = ctx.counts
        inputs = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: the gradient must itself be differentiable
            return (None, None, None,
                    *_differentiable_gradients(run, inputs, num_front, num_states, d_output,
                                               d_finals))
        tensors, ctx.tensors = ctx.tensors, None
        grads = backward_pass(run, tensors, inputs, num_front, num_states, d_output, d_finals)
        return (None, None, None, *grads)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` (T, B, n) as the loops read an input: rows of unit column stride, each step's rows
    right after the previous step's, so that all T·B rows are one matrix (a view of the
    input row's columns, as x and the masks of a zoned-out cell are, is taken as it is)."""
    if (t.stride(-1) == 1 and t.stride(1) >= t.shape[-1]
            and t.stride(0) == t.shape[1] * t.stride(1)):
        return t
    return t.contiguous()


def _unit_columns(t: torch.Tensor) -> torch.Tensor:
    """``t`` (slices, rows, columns) with unit column stride, as the native loop reads it: a
    gradient broadcast from one row (the adjoint of ``output.sum()``, strides 0) stays a
    broadcast of one contiguous row instead of becoming a full copy."""
    if t.stride(-1) == 1 or t.shape[-1] == 1:
        return t
    if all(t.stride(d) == 0 for d in range(t.dim() - 1)):
        return t[(0,) * (t.dim() - 1)].contiguous().expand(t.shape)
    return t.contiguous()


def backward_pass(run: _Run, tensors, inputs, num_front: int, num_states: int, d_output,
                  d_finals, need_dx: bool | None = None) -> list:
    """The backward loop and the weight gradients of one forward (``tensors``: its buffers, or
    None to redo it); returns the gradients of ``inputs`` (front, states, weights)."""
    plan = run.comp.plan
    weights = dict(zip(run.comp.keys, inputs[num_front + num_states:]))
    if tensors is None:  # a second backward through a retained graph: redo the forward
        _, _, tensors = _forward(run, inputs[:num_front],
                                 inputs[num_front:num_front + num_states], weights)
    order = sorted(range(num_states), key=lambda j: plan.state_cols[j])
    dF = torch.cat([d_finals[j] for j in order], 1).unsqueeze(0)
    given = {plan.dY: d_output, plan.dF: dF}
    if run.executor is not run.comp.python:
        given = {i: _unit_columns(t) for i, t in given.items()}
    n = run.comp.num_forward
    # the epilogue inside the loop, as the forward's hoist (not with variable lengths: the
    # epilogue then reads rows past their sequence's end, which the loop skips)
    in_loop = plan.hoisted_backward and run.executor.hoists_in_loop and run.sizes is None
    unused = set(plan.back_twins) if in_loop else set(plan.back_twins.values())
    # one step over many rows (the grid's depth step): the states' gradients are as large as
    # the step's input, so they are views of a dS of their own instead of copies
    own = run.T == 1 and run.sizes is None
    tensors = tensors[:n] + _allocate(run, [i for i in range(n, len(plan.buffers))
                                            if i not in unused], d_output, given,
                                      fresh={plan.dS} if own else ())[n:]
    _execute(run, "hoisted_backward" if in_loop else "backward", tensors, weights)
    if plan.epilogue and not in_loop:
        _execute(run, "epilogue", tensors, weights)
    grads = _gradients(run, tensors, inputs, num_front, num_states, need_dx, own)
    _release(run, tensors, [i for i in range(len(plan.buffers)) if not (own and i == plan.dS)])
    return grads


def _differentiable_gradients(run: _Run, inputs, num_xs: int, num_states: int, d_output,
                              d_finals) -> list:
    """Gradients through the reference loop under autograd (for double backward)."""
    front, states = inputs[:num_xs], inputs[num_xs:num_xs + num_states]
    weights = dict(zip(run.comp.keys, inputs[num_xs + num_states:]))
    if run.comp.plan.hoist is None:
        xs = list(front)
    else:  # the compiler's hoist, under autograd
        w = dict(weights)
        hoist = run.comp.plan.hoist
        if hoist.weight is not None:
            w[hoist.weight] = front[1]
        if hoist.bias is not None:
            w[hoist.bias] = front[2]
        row = front[0] if run.comp.plan.masks is None else torch.cat([front[0], front[-1]], -1)
        xs = list(run.hoist(row, w))
    output, finals = step_loop(run.step, xs, tuple(states), weights, run.sizes, run.T)
    wanted = [i for i, t in enumerate(inputs) if t.requires_grad]
    grads = torch.autograd.grad([output, *finals], [inputs[i] for i in wanted],
                                [d_output, *d_finals], create_graph=True, allow_unused=True)
    result: list = [None] * len(inputs)
    for i, g in zip(wanted, grads):
        result[i] = g
    return result


def _gradients(run: _Run, tensors: list, inputs, num_front: int, num_states: int,
               need_dx: bool | None = None, own_dS: bool = False) -> list:
    """The gradients of ``inputs`` (front, states, weights) from the backward loop's buffers;
    with ``own_dS`` the states' gradients are views of dS (new memory, not handed back)."""
    plan, ir = run.comp.plan, run.comp.plan.ir
    T, B, H = run.T, run.B, ir.hidden_size
    d_front: list = [None] * num_front
    if plan.hoist is None:  # the hoisted inputs: each the adjoint of its GEMM's result
        for ref, gemm in zip(plan.dG, ir.gemms):
            if gemm.bias is not None:
                dG = tensors[ref.buf]
                k = gemm.bias
                d_front[k] = dG if d_front[k] is None else d_front[k] + dG
        for k, i in plan.dxs.items():
            d_front[k] = tensors[i] if d_front[k] is None else d_front[k] + tensors[i]
    else:  # X = x W + b: dW = xᵀ dX, db = Σ dX, dx = dX Wᵀ, one GEMM each
        x = inputs[0]
        need_dx = x.requires_grad if need_dx is None else need_dx
        x2d = x.reshape(T * B, x.shape[-1])
        if plan.X is not None:
            W = inputs[1]
            dX = tensors[plan.dX].view(T * B, -1)
            if need_dx:
                d_front[0] = (dX @ W.t()).view(x.shape)
            d_front[1] = _product_like(W, x2d, dX)
            if plan.hoist.bias is not None:
                d_front[2] = dX.sum(0)
        if plan.dx is not None and need_dx:  # x read elementwise by the hoist
            dx = tensors[plan.dx].view(x.shape)
            d_front[0] = dx if d_front[0] is None else d_front[0] + dx
    dS = tensors[plan.dS][0]
    if run.sizes is not None and run.sizes[0] < B:  # sequences of length 0 keep their state
        dS = dS.clone()
        dS[run.sizes[0]:] = tensors[plan.dF][0, run.sizes[0]:]
    d_states = [dS[:, c:c + H] if own_dS else dS[:, c:c + H].clone()  # dS is reused
                for c in plan.state_cols]
    d_weights = {}
    weights = dict(zip(run.comp.keys, inputs[num_front + num_states:]))
    for ref, dG, gemm in zip(plan.gemm_args, plan.dG, ir.gemms):
        K, N = len(gemm.args) * H, len(gemm.out) * H
        A = tensors[ref.buf][:T, :, ref.col:ref.col + K].reshape(T * B, K)
        key = gemm.weight
        dW = _product_like(weights[key], A, tensors[dG.buf][:, :, dG.col:dG.col + N]
                           .reshape(T * B, N))
        d_weights[key] = dW if key not in d_weights else d_weights[key] + dW
    for key, i in plan.dP.items():  # native: one partial sum per thread
        d_weights[key] = tensors[i].reshape(-1, plan.buffers[i].width).sum(0)
    return [*d_front, *d_states, *(d_weights[k] for k in run.comp.keys)]


def _product_like(weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``aᵀ b``, the gradient of ``weight``, laid out as ``weight`` is: a weight assembled as
    ``cat(paper-named parameters).t()`` gets a transposed view of a contiguous product, so
    that autograd hands each parameter a contiguous block it keeps without copying."""
    if weight.dim() == 2 and not weight.is_contiguous() and weight.t().is_contiguous():
        return (b.t() @ a).t()
    return a.t() @ b


def sequence(comp: Compiled, loops, program: Program, weights: dict, x: torch.Tensor,
             state: tuple, lengths: torch.Tensor | None, sizes: list[int] | None,
             training: bool):
    """Run x (T, B, I) from ``state`` on ``loops`` (``comp.python`` or ``comp.native()``, as the
    route chose): one autograd op when ``training``, else the forward loop alone.

    ``lengths``: None or (B,) sorted decreasing, ``sizes`` their active rows per step."""
    run, front = prepare_call(comp, loops, program, weights, x, lengths, sizes)
    if not training:
        # one step over many rows (the grid's depth step): the finals are as large as the
        # step's input, so they are views of a state buffer of their own instead of copies
        own = run.T == 1 and lengths is None
        output, finals, tensors = _forward(run, front, state,
                                           {k: weights[k] for k in comp.keys}, own)
        _release(run, tensors, [i for i in range(comp.num_forward)
                                if not (own and i == comp.plan.S)])
        return output, tuple(finals)
    outputs = FusedSequence.apply(run, len(front), len(state), *front, *state,
                                  *(weights[k] for k in comp.keys))
    return outputs[0], tuple(outputs[1:])


def prepare_call(comp: Compiled, loops, program: Program, weights: dict, x: torch.Tensor,
                 lengths, sizes):
    """The run of one call and the engine's front inputs: x[, W[, b]][, masks] with the
    engine's own hoist, else the hoisted inputs computed by torch. The input row of a cell
    with per-step masks is x then the masks (``Program.row_size``): the engine reads both as
    columns of the row (no copy), and only x has a gradient."""
    T, B = x.shape[:2]
    return _Run(comp, loops, T, B, sizes, lengths, program), _front(comp, program, weights, x)


def _front(comp: Compiled, program: Program, weights: dict, x: torch.Tensor) -> list:
    """The engine's front inputs of a call (``prepare_call``)."""
    hoist = comp.plan.hoist
    if hoist is None:
        return [t if t.stride(-1) == 1 else t.contiguous() for t in program.hoist(x, weights)]
    # the engine computes the hoist itself
    masks = None
    if hoist.masks:
        x = _rows(x)
        x, masks = x[..., :program.input_size], x[..., program.input_size:]
    front = [x]
    if hoist.weight is not None:
        front.append(weights[hoist.weight])
        if hoist.bias is not None:
            front.append(weights[hoist.bias])
    if masks is not None:
        front.append(masks)
    return front


# ---- one step without gradients on prepared buffers (the route table's "native step") --------
_STEP_BATCHES = 8  # batch sizes (and dtypes) whose prepared buffers a plan keeps


class _PreparedStep:
    """The native forward loop of one step without gradients, its tables made once for one
    batch size, dtype and thread count: the scratch buffers stay allocated and the weights'
    pointers stay in the tables while the caller hands the same weights (a module's cached
    ``Cell.weights()``), so that a call only points the buffer table at its input and at a
    fresh output and state buffer (the caller keeps those), copies the state in and calls the
    loop — the engine's per-call setup removed from a step one token at a time (sampling,
    streaming). One call at a time (``lock``)."""

    def __init__(self, comp: Compiled, loops, program: Program, B: int, like: torch.Tensor):
        plan = self.plan = comp.plan
        self.comp, self.loops, self.B, self.dtype = comp, loops, B, like.dtype
        self.in_loop = bool(plan.hoisted_forward)
        # the loops of a step: with the hoist's GEMM inside; or the hoist's elementwise work
        # (at T = 1 over the step's own rows: the same buffer table), then the step
        self.names = (("hoisted_forward",) if self.in_loop else
                      ("prologue", "forward") if plan.prologue else ("forward",))
        self.lock = threading.Lock()
        # the buffers each call hands in (its input) and those bound with the weights (the
        # hoist's bias, the static vectors); x is read in place unless torch hoists it or
        # step masks follow it in the row
        if plan.hoist is None:
            self.inputs = [i for i in plan.xs if i is not None]
        else:
            self.inputs = [i for i in (plan.x, plan.xin, plan.masks) if i is not None]
        self.direct = plan.hoist is not None and plan.masks is None
        bias = [plan.bx] if plan.hoist is not None and plan.bx is not None else []
        self.statics = bias + list(plan.params.values())
        unused = _unused_twins(plan, self.in_loop)
        run = _Run(comp, loops, 1, B, None, None, program)
        self.shapes, self.threads = _shapes(run), run.threads
        self.fresh = [plan.S, plan.Y]
        handed = {*self.inputs, *self.statics, *self.fresh}
        tensors: list = [None] * len(plan.buffers)
        for i in range(comp.num_forward):  # the scratch buffers: this object's own memory
            if i not in unused and i not in handed:
                tensors[i] = torch.zeros(self.shapes[i], dtype=like.dtype, device=like.device)
        self.zeroed = [t for i, t in enumerate(tensors) if t is not None
                       and plan.buffers[i].zeros]
        tensors[plan.S] = torch.zeros(self.shapes[plan.S], dtype=like.dtype, device=like.device)
        self.table = loops.table(tensors)
        self.scratch = tensors  # (their memory stays alive while the table points at it)
        self.bindings: dict = {}  # _weights_key -> _Binding (a stack's layers share one plan)
        self.current = None  # the binding whose static vectors the table points at

    def bind(self, weights: dict, front: list, knobs: tuple) -> _Binding:
        """These weights' loop arguments (their matrices in a weight table) and static
        vectors, made once per weights and kept while the caller hands the same dict."""
        given, loop_weights = _given(self.plan, front, weights, self.in_loop)
        wtable, keep, weight_bytes = self.loops.weight_table(loop_weights)
        arguments = [self.loops.arguments(name, self.table, wtable, weight_bytes, None, self.B,
                                          1, self.threads, self.dtype) for name in self.names]
        if len(self.bindings) >= _STEP_BINDINGS:  # drop those of weights gone, else all
            self.bindings = {k: b for k, b in self.bindings.items() if b.alive()}
            if len(self.bindings) >= _STEP_BINDINGS:
                self.bindings.clear()
            self.current = None
        binding = _Binding(tuple(weakref.ref(t) for t in weights.values()), knobs, arguments,
                           [(i, given[i]) for i in self.statics], keep)
        self.bindings[_weights_key(weights)] = binding
        return binding

    def __call__(self, program: Program, weights: dict, x: torch.Tensor, states: tuple):
        plan, loops = self.plan, self.loops
        knobs = _knobs()
        if self.direct:
            x = _rows(x)
            front = None
            inputs = {i: x for i in self.inputs}
        else:
            front = _front(self.comp, program, weights, x)
            given, _ = _given(plan, front, weights, self.in_loop)
            inputs = {i: given[i] for i in self.inputs}
        binding = self.bindings.get(_weights_key(weights))
        if binding is None or binding.knobs != knobs or not binding.holds(weights):
            binding = self.bind(weights, front or _front(self.comp, program, weights, x), knobs)
        for t in self.zeroed:  # scratch the loop accumulates into
            t.zero_()
        like = states[0]
        S = torch.empty(self.shapes[plan.S], dtype=like.dtype, device=like.device)
        Y = torch.empty(self.shapes[plan.Y], dtype=like.dtype, device=like.device)
        if binding is not self.current:  # the static vectors: set when the weights change
            for i, t in binding.statics:
                loops.set_buffer(self.table, i, t)
            self.current = binding
        for i, t in (*inputs.items(), (plan.S, S), (plan.Y, Y)):
            loops.set_buffer(self.table, i, t)
        _load_states(self.comp, S, states)
        for arguments in binding.arguments:
            loops.call(arguments)
        last = S[1 % S.shape[0]]
        H = plan.ir.hidden_size
        if self.comp.states_side_by_side:  # the finals: one split
            return Y, last.split(H, 1)
        return Y, tuple(last[:, c:c + H] for c in plan.state_cols)


class _Binding(NamedTuple):
    """A prepared step's arguments for one weights dict (``_PreparedStep.bind``). It refers to
    the caller's tensors weakly (weights replaced after each optimiser step must not be kept
    alive by a cache); a binding whose tensors are gone, or whose key (their ids) a new tensor
    took, is never used: ``holds`` checks that the tensors are the very ones bound."""

    refs: tuple  # weak references to the weights' tensors, in the dict's order
    knobs: tuple
    arguments: list  # of each loop (``_PreparedStep.names``)
    statics: list  # (buffer, tensor) of the static vectors (vectors: held)
    copies: list  # matrices copied to a layout the loop reads (the binding's own)

    def holds(self, weights: dict) -> bool:
        return len(self.refs) == len(weights) and all(
            ref() is t for ref, t in zip(self.refs, weights.values()))

    def alive(self) -> bool:
        return all(ref() is not None for ref in self.refs)


def _weights_key(weights: dict) -> tuple:
    """A prepared step's key of a weights dict: its tensors' identities (``_Binding.holds``
    tells a reused id apart)."""
    return tuple(map(id, weights.values()))


_STEP_BINDINGS = 64  # weights dicts a prepared step keeps arguments for (layers, directions)


def _knobs() -> tuple:
    """The settings that a prepared step's arguments depend on."""
    chosen = settings.current()
    return chosen.native_split_bytes, chosen.native_parallel_work


def prepares_steps(comp) -> bool:
    """Whether ``one_step`` runs this compiled plan (or Unsupported): the native loop is built
    and the hoist is torch's, or the engine's without a GEMM before the loop (its GEMM then
    runs inside the loop, ``Plan.hoisted_forward``)."""
    if isinstance(comp, Unsupported) or comp.native() is None:
        return False
    plan = comp.plan
    return plan.hoist is None or bool(plan.hoisted_forward) or plan.X is None


def one_step(comp: Compiled, program: Program, weights: dict, x: torch.Tensor, state: tuple):
    """x (1, B, row_size) from ``state`` without gradients on the native loop through tables
    prepared once per batch size, dtype and thread count (``_PreparedStep``): the result of
    ``sequence`` for T = 1 (``prepares_steps`` says which plans it runs). A second thread
    stepping the same plan at the same time takes ``sequence``."""
    loops = comp.native()
    key = (x.shape[1], x.dtype, loops.threads())
    prepared = comp.steps.get(key)
    if prepared is None:
        if len(comp.steps) >= _STEP_BATCHES:
            comp.steps.clear()
        prepared = comp.steps.setdefault(key, _PreparedStep(comp, loops, program, x.shape[1], x))
    if not prepared.lock.acquire(blocking=False):
        return sequence(comp, loops, program, weights, x, state, None, None, False)
    try:
        return prepared(program, weights, x, tuple(state))
    finally:
        prepared.lock.release()
