"""The one entry to the engine: ``run`` a cell's plan over a sequence, and ``explain`` a route.

Every caller — ``rnnlab.RNN`` (through dilation and packing), a grid's schedules, a zoo cell
as a grid dimension — reaches the executors here::

    callers --> run --> route (one table: rnnlab.engine.route) --> native C++ | torch loop
                                                                 | small step | custom op
                                                                 | reference (the fallback)

``run`` puts sequences of their own lengths in decreasing order (the packed layout every
executor reads) once, asks the route table once, runs that executor and hands the results back
in the caller's order. Time-major: x (T, B, input_size), state fields (B, hidden_size).
"""

from __future__ import annotations

import warnings

import torch

from ..lang import Graph
from ..lang.compile import Program, compile_graph
from . import custom_op
from .fast.lanes import Unsupported
from .reference import batch_sizes_of
from .route import Executor, Route, execute, route

_WARNED: set = set()  # plans whose fall back to the reference loop was reported


def run(program: Program, weights: dict, x: torch.Tensor, state: tuple,
        lengths: torch.Tensor | None = None):
    """Run a cell's plan over a sequence on the executor the route table chooses.

    Args:
        program: the cell's plan (``Cell.program``, ``compile_graph(graph)``).
        weights: its prepared weights (``Cell.weights()``, ``Program.prepare(parameters)``).
        x: (T, B, input_size), or (T, B, program.row_size) for a cell with per-step masks
            (zoneout): x then the masks of each step (``Cell.with_step_masks``), so that
            sorting, packing, dilation and reversal move every mask row with its input row.
        state: a tuple of (B, hidden_size) tensors, the cell's state fields.
        lengths: None (every sequence has T steps) or (B,) lengths in any order.

    Returns:
        output (T, B, hidden_size), zero after each sequence's end, and the state after each
        sequence's last step (a sequence of length 0 keeps its state).
    """
    state = tuple(state)
    if program.step_masks and x.shape[-1] != program.row_size:
        raise ValueError(
            f"cell {program.graph.name!r} has per-step masks {program.step_masks}: each step's "
            f"input row is x ({program.input_size}) then the masks ({program.mask_size}), "
            f"{program.row_size} columns, got {x.shape[-1]}; append them with "
            "Cell.with_step_masks(x)")
    order = None
    sizes = None
    if lengths is not None:
        lengths = lengths.cpu()
        if bool((lengths == x.shape[0]).all()):  # every sequence runs to the end
            lengths = None
        else:
            if not bool((lengths[:-1] >= lengths[1:]).all()):  # the one sort by length
                lengths, order = torch.sort(lengths, descending=True, stable=True)
                index = order.to(x.device)
                x = x.index_select(1, index)
                state = tuple(s.index_select(0, index) for s in state)
            if int(lengths[0]) == 0:  # nothing to run: zeros, the state as it came
                return x.new_zeros(*x.shape[:2], program.hidden_size), _unsorted(state, order)
            sizes = batch_sizes_of(lengths)
    training = torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, *state, *weights.values()))
    chosen = route(program, x.shape[0], x.shape[1], x.device, x.dtype, training,
                   lengths is not None)
    if chosen.executor is Executor.CUSTOM_OP:
        output, final = custom_op.call(program, weights, x, state, training)
    else:
        if isinstance(chosen.plan, Unsupported):
            _warn_once(program, chosen.reason)
        output, final = execute(chosen, program, weights, x, state, lengths, sizes, training)
    if order is None:
        return output, tuple(final)
    inverse = torch.argsort(order).to(x.device)
    return output.index_select(1, inverse), _unsorted(final, order)


def _unsorted(state: tuple, order: torch.Tensor | None) -> tuple:
    """State rows in sorted order -> the caller's order."""
    if order is None:
        return tuple(state)
    inverse = torch.argsort(order).to(state[0].device)
    return tuple(s.index_select(0, inverse) for s in state)


def _warn_once(program: Program, reason: str) -> None:
    if program.key not in _WARNED:
        _WARNED.add(program.key)
        warnings.warn(f"rnnlab: cell {program.graph.name!r} runs on the slow reference loop: "
                      f"{reason}", RuntimeWarning, stacklevel=4)


def explain(cell, device="cpu", dtype=torch.float32, training: bool = True) -> str:
    """How ``run`` would run ``cell`` (a Cell, Graph or Program) over a sequence on this device
    and dtype: the route table's choice and its reason, e.g. ``"fused (native): 1 GEMM(s) and
    5 lane op(s) per step, …"`` or ``"reference: <reason>"``. (A single small step, T = 1, may
    take the ``small step`` route instead; see ``rnnlab.engine.route``.)"""
    return str(route_of(cell, device, dtype, training))


def route_of(cell, device="cpu", dtype=torch.float32, training: bool = True) -> Route:
    """The ``Route`` that ``explain`` prints; a forced backend that cannot run the call gives
    a reference route whose reason is the refusal."""
    if isinstance(cell, Graph):
        program = compile_graph(cell)
    elif isinstance(cell, Program):
        program = cell
    elif hasattr(cell, "program"):
        program = cell.program
    else:
        raise TypeError(f"explain() takes a Cell, Graph or Program, got {type(cell).__name__}")
    try:
        return route(program, None, 1, device, dtype, training, False)
    except RuntimeError as error:
        return Route(Executor.REFERENCE, str(error))
