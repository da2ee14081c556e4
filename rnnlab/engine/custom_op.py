"""The fused engine as one custom op, so ``torch.compile(fullgraph=True)`` sees a single node.

Dynamo traces ``rnnlab.RNN`` down to the cell's weight assembly (``Program.prepare``: slicing and
concatenation it compiles) and then calls ``rnnlab::sequence``: (x, states, prepared weights) ->
(output, final states, token). Inside, the op runs the ordinary eager path (the fused engine, or
the reference loop where it does not apply). When gradients are wanted it keeps that call's
autograd graph in a side table under the integer ``token`` (freed with the token tensor), and
``rnnlab::sequence_backward`` differentiates it. Plans are found by a handle (``Program.handle``)
because an op's arguments must be tensors and numbers.

Variable lengths (packed input) read the lengths as Python numbers and are not traced; they run
eagerly (a graph break).
"""

from __future__ import annotations

import itertools
import threading
import weakref

import torch
from torch import Tensor

from ..lang.compile import Program, program_by_handle

_SAVED: dict[int, tuple] = {}
_TOKENS = itertools.count(1)
_LOCK = threading.Lock()


def _keys(program: Program) -> list[str]:
    return sorted([*program.weight_specs, *program.static_keys])


def _save(entry) -> int:
    with _LOCK:
        number = next(_TOKENS)
        _SAVED[number] = entry
    return number


def _direct_forward(program: Program, keys: list, x: Tensor, states: list, weights: list):
    """The fused forward run as the eager op's forward, without building an autograd graph:
    (output, finals, what the backward needs), or None where the engine does not apply or
    computes its hoist with torch (then the graph path below differentiates that too)."""
    from .fused import _forward, prepare_call

    w = dict(zip(keys, weights))
    prepared = prepare_call(program, w, x, None, None, True)
    if prepared is None or prepared[0].comp.plan.hoist is None:
        return None
    run, front = prepared
    comp = run.comp
    inputs = (*front, *states, *(w[k] for k in comp.keys))
    output, finals, tensors = _forward(run, front, tuple(states),
                                       {k: w[k] for k in comp.keys})
    hoist = comp.plan.hoist
    front_keys = [None, hoist.weight, hoist.bias][:len(front)]
    return output, finals, ("direct", run, tensors, inputs, len(front), front_keys)


def _run(program: Program, weights: dict, x: Tensor, states: tuple):
    from .fused import run_program
    from .unroll import step_loop

    result = run_program(program, weights, x, states)
    if result is None:  # the reference loop, under autograd
        result = step_loop(program.step, program.hoist(x, weights), states, weights, None,
                           x.shape[0])
    return result


@torch.library.custom_op("rnnlab::sequence", mutates_args=())
def sequence(handle: int, x: Tensor, states: list[Tensor], weights: list[Tensor],
             training: bool) -> list[Tensor]:
    """(x (T, B, I), states, weights in ``_keys`` order) -> [output, *finals, token]."""
    program = program_by_handle(handle)
    keys = _keys(program)
    if not training:
        with torch.no_grad():
            out, finals = _run(program, dict(zip(keys, weights)), x, tuple(states))
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
                           tuple(leaves[1:1 + n]))
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
    from .fused import backward_pass

    _, run, tensors, engine_inputs, num_front, front_keys = entry
    if tensors is not None:  # a second backward redoes the forward (retain_graph)
        _SAVED[int(token)] = (*entry[:2], None, *entry[3:])
    num_states = len(grads) - 1
    found = backward_pass(run, tensors, engine_inputs, num_front, num_states, grads[0],
                          grads[1:], need_dx=True)
    program_keys = _keys(program_by_handle(run.handle))
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


def compiled_unroll(program: Program, weights: dict, x: Tensor, state: tuple):
    """``fused_unroll`` as seen by torch.compile: one ``rnnlab::sequence`` call."""
    keys = _keys(program)
    values = [weights[k] for k in keys]
    training = torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, *state, *values))
    out = sequence(program.handle, x, list(state), values, training)
    return out[0], tuple(out[1:-1])
