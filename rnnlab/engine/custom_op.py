"""The fused engine as one custom op, so ``torch.compile(fullgraph=True)`` sees a single node.

Dynamo traces ``rnnlab.RNN`` down to the cell's weight assembly (``Program.prepare``: slicing and
concatenation it compiles) and then calls ``rnnlab::sequence``: (x, states, prepared weights) ->
(output, final states, token). Inside, the op runs the ordinary eager path (the fused engine, or
the reference loop where it does not apply). When gradients are wanted it keeps that call's
autograd graph in a side table under the integer ``token`` (freed with the token tensor), and
``rnnlab::sequence_backward`` differentiates it. Plans are found by a handle (``handle_of``)
because an op's arguments must be tensors and numbers. Which executor runs inside is the route
table's choice (``rnnlab.engine.route``), asked eagerly there.

Variable lengths (packed input) read the lengths as Python numbers and are not traced; they run
eagerly (a graph break).
"""

from __future__ import annotations

import itertools
import threading
import weakref

import torch
from torch import Tensor

from ..lang.compile import Program
from . import fused
from .route import Executor, execute, route

_SAVED: dict[int, tuple] = {}
_TOKENS = itertools.count(1)
_LOCK = threading.Lock()
_PROGRAMS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # handle -> program
_HANDLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # program -> handle
_NUMBERS = itertools.count(1)


def _constant_result(fn):
    """``torch.compiler.assume_constant_result`` without its import of ``torch._dynamo`` (2 s,
    60% of ``import rnnlab``): the decorator only marks the function, and dynamo reads the mark
    when it traces a call (tests/engine/test_engine_torch_use.py checks both)."""
    fn._dynamo_marked_constant = True
    return fn


@_constant_result
def handle_of(program: Program) -> int:
    """A number naming ``program`` while it lives (custom ops take numbers, not objects);
    a constant to torch.compile."""
    with _LOCK:
        handle = _HANDLES.get(program)
        if handle is None:
            handle = _HANDLES[program] = next(_NUMBERS)
            _PROGRAMS[handle] = program
    return handle


def program_by_handle(handle: int) -> Program:
    return _PROGRAMS[handle]


def _keys(program: Program) -> list[str]:
    return sorted([*program.weight_specs, *program.static_keys])


def _save(entry) -> int:
    with _LOCK:
        number = next(_TOKENS)
        _SAVED[number] = entry
    return number


def _route(program: Program, x: Tensor, training: bool):
    return route(program, x.shape[0], x.shape[1], x.device, x.dtype, training, False)


def _direct_forward(program: Program, keys: list, x: Tensor, states: list, weights: list):
    """The fused forward run as the eager op's forward, without building an autograd graph:
    (output, finals, what the backward needs), or None where the route is not the fused engine
    or its hoist is computed with torch (then the graph path below differentiates that too)."""
    chosen = _route(program, x, True)
    if chosen.executor not in (Executor.NATIVE, Executor.TORCH) or chosen.plan.plan.hoist is None:
        return None
    w = dict(zip(keys, weights))
    run, front = fused.prepare_call(chosen.plan, chosen.loops, program, w, x, None, None)
    comp = run.comp
    inputs = (*front, *states, *(w[k] for k in comp.keys))
    output, finals, tensors = fused._forward(run, front, tuple(states),
                                             {k: w[k] for k in comp.keys})
    hoist = comp.plan.hoist
    # the front (fused.prepare_call): x[, W[, b]][, the step masks]; x and the masks have no key
    front_keys = [None]
    if hoist.weight is not None:
        front_keys.append(hoist.weight)
        if hoist.bias is not None:
            front_keys.append(hoist.bias)
    front_keys += [None] * (len(front) - len(front_keys))
    return output, finals, ("direct", run, tensors, inputs, len(front), front_keys)


def _run(program: Program, weights: dict, x: Tensor, states: tuple, training: bool):
    """The eager call, on whatever executor the route table chooses."""
    return execute(_route(program, x, training), program, weights, x, states, None, None,
                   training)


@torch.library.custom_op("rnnlab::sequence", mutates_args=())
def sequence(handle: int, x: Tensor, states: list[Tensor], weights: list[Tensor],
             training: bool) -> list[Tensor]:
    """(x (T, B, I), states, weights in ``_keys`` order) -> [output, *finals, token]."""
    program = program_by_handle(handle)
    keys = _keys(program)
    if not training:
        with torch.no_grad():
            out, finals = _run(program, dict(zip(keys, weights)), x, tuple(states), False)
        return [out, *(f.clone() for f in finals), torch.zeros((), dtype=torch.int64)]
    direct = _direct_forward(program, keys, x, states, weights)
    if direct is not None:  # the engine's own forward, its buffers kept for the backward
        output, finals, saved = direct
        number = _save(saved)
        token = torch.tensor(number, dtype=torch.int64)
        weakref.finalize(token, _SAVED.pop, number, None)
        return [output, *finals, token]
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() for t in (x, *states, *weights)]
        n = len(states)
        out, finals = _run(program, dict(zip(keys, leaves[1 + n:])), leaves[0],
                           tuple(leaves[1:1 + n]), True)
    number = _save(("graph", leaves, [out, *finals]))
    token = torch.tensor(number, dtype=torch.int64)
    weakref.finalize(token, _SAVED.pop, number, None)  # the graph lives as long as the token
    return [out.detach(), *(f.detach().clone() for f in finals), token]


@sequence.register_fake
def _(handle, x, states, weights, training):
    H = program_by_handle(handle).hidden_size
    T, B = x.shape[:2]
    return [x.new_empty(T, B, H), *(s.new_empty(s.shape) for s in states),
            x.new_empty((), dtype=torch.int64)]


@torch.library.custom_op("rnnlab::sequence_backward", mutates_args=())
def sequence_backward(token: Tensor, inputs: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
    """Gradients of a training ``sequence`` call with respect to its inputs."""
    entry = _SAVED[int(token)]
    if entry[0] == "graph":
        _, leaves, outputs = entry
        found = torch.autograd.grad(outputs, leaves, grads, retain_graph=True,
                                    allow_unused=True)
        return _laid_out(found, inputs)
    _, run, tensors, engine_inputs, num_front, front_keys = entry
    if tensors is not None:  # a second backward redoes the forward (retain_graph)
        _SAVED[int(token)] = (*entry[:2], None, *entry[3:])
    num_states = len(grads) - 1
    found = fused.backward_pass(run, tensors, engine_inputs, num_front, num_states, grads[0],
                          grads[1:], need_dx=True)
    if run.program.step_masks:  # x is the input row: x, then the masks (constants: no gradient)
        dx = found[0]
        found[0] = torch.cat([dx, dx.new_zeros(*dx.shape[:2], run.program.mask_size)], -1)
    program_keys = _keys(run.program)
    by_key: dict = {}
    for key, g in [*zip(front_keys[1:], found[1:num_front]),
                   *zip(run.comp.keys, found[num_front + num_states:])]:
        if g is not None:
            by_key[key] = g if key not in by_key else by_key[key] + g
    out = [found[0], *found[num_front:num_front + num_states],
           *(by_key.get(k) for k in program_keys)]
    return _laid_out(out, inputs)


def _laid_out(grads, inputs) -> list[Tensor]:
    """Each input's gradient laid out as the fake kernel says (contiguous, zeros where there is
    none): the engine hands a weight assembled as ``cat(…).t()`` its gradient as a transposed
    view, which a compiled graph would read with the fake's strides."""
    return [t.new_zeros(t.shape) if g is None else g.contiguous()
            for g, t in zip(grads, inputs, strict=True)]


@sequence_backward.register_fake
def _(token, inputs, grads):
    return [t.new_empty(t.shape) for t in inputs]


def _setup(ctx, inputs, output):
    _, x, states, weights, _ = inputs
    ctx.counts = (len(states), len(weights))
    ctx.save_for_backward(x, *states, *weights, *output)


def _backward(ctx, grads):
    n, m = ctx.counts
    saved = ctx.saved_tensors
    inputs, outputs = list(saved[:1 + n + m]), list(saved[1 + n + m:])
    grads = [torch.zeros_like(o) if g is None else g for g, o in zip(grads, outputs[:-1])]
    found = sequence_backward(outputs[-1], inputs, grads)
    return None, found[0], found[1:1 + n], found[1 + n:], None


sequence.register_autograd(_backward, setup_context=_setup)


def call(program: Program, weights: dict, x: Tensor, state: tuple, training: bool):
    """The route ``CUSTOM_OP``: the call as torch.compile sees it, one ``rnnlab::sequence``."""
    values = [weights[k] for k in _keys(program)]
    out = sequence(handle_of(program), x, list(state), values, training)
    return out[0], tuple(out[1:-1])
