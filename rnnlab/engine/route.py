"""The route table: which executor runs a call, and why.

Every call of ``rnnlab.engine.run`` asks ``route`` once. The rules, first match wins:

=====  ===================================================  ==================================
rule   when                                                 executor
=====  ===================================================  ==================================
1      backend ``reference`` (``RNNLAB_FAST=0``)              reference
2      no steps or no rows                                  reference
2b     ``explain`` (steps None) of a cell cuDNN computes,    cudnn (what ``rnnlab.RNN`` runs
       backend ``auto`` off the CPU, or backend ``cudnn``   it on; see ``network_route``)
2c     backend ``auto``/``native``, T = 1 without           native step (the native loop on
       gradients or lengths, ``NATIVE_STEP_VALUES``         tables prepared once per batch
       (below), CPU float32/float64, the native loop        size: ``fused.one_step``)
       built, not traced by torch.compile
3      backend ``auto``, T = 1 and a small step (below)     small step (the plan's step, torch
                                                            ops; under torch.compile traced
                                                            into the graph)
4      torch.compile is tracing, no lengths                 custom op (one ``rnnlab::sequence``
                                                            node; inside, the table again)
5      the plan has a form the fused engine does not know   reference (warned once)
6      ``auto``/``native`` on CPU float32/float64, built    native (C++ loop)
7      ``native`` otherwise                                 refused (RuntimeError)
8a     ``auto`` on CUDA, float32/float64, Triton imports    fused (triton): the same plan, each
       and every instruction has a Triton form              step one GEMM + one generated
                                                            kernel (``triton_step``; with
                                                            ``cuda_graphs`` each loop replayed
                                                            from a CUDA graph)
8      ``auto`` off the CPU otherwise                       reference
9      otherwise (``python``; ``auto`` without a compiler)  torch (the generated torch loop)
=====  ===================================================  ==================================

Backend ``cudnn`` answers the per-call rules as ``auto`` does: it changes which networks run
whole (below), not how one layer runs.

**Whole networks.** ``rnnlab.RNN.forward`` asks ``network_route`` first; where it answers, all
layers and directions run in one call of torch's own RNN function (``rnnlab.engine.cudnn``:
cuDNN on CUDA, torch's loop on the CPU), and nothing above is asked. First match wins:

=====  ===================================================  ==================================
rule   when                                                 whole-network route
=====  ===================================================  ==================================
N1     backend ``reference``, ``native`` or ``python``      none (layer by layer, each ``run``)
N2     backend ``auto`` on the CPU                          none: the native engine is as fast
N3     torch.compile is tracing                             none (the custom op per layer)
N4     skip connections, dilations, a cell cuDNN does not   none (``cudnn.network_kind`` says
       compute (peephole, Greff's variants, ``gru``,        why)
       MUT1-3, any regularised cell …)
N5     otherwise (``auto`` off the CPU; ``cudnn``           cudnn
       anywhere, which is how the CPU tests run it)
=====  ===================================================  ==================================

``execute`` runs a route's executor; it is the one place a call falls back to the reference.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch

from ..lang.compile import Program
from . import cudnn, fused, reference, settings
from .fast.lanes import Unsupported

# One step (T = 1) of at most SMALL_STEP_HIDDEN hidden units and at most SMALL_STEP_VALUES
# batch × hidden values without gradients, or SMALL_TRAINING_STEP_VALUES with them, runs the
# plan's step with torch ops under "auto": the engine's fixed cost per call (buffers, the native
# call's table; with gradients also the autograd node and the weight-gradient GEMMs) exceeds
# such a step. Measured without gradients: 5-14% per step at H <= 256, B <= 64; with gradients
# (gru and lstm, H = 48 and 128, 1 thread, engine time over torch's): 1.05-1.13 at 3K-12K
# values, 0.98-1.01 at 32K, 0.86-0.89 at 49K-131K, 0.73-0.80 at 197K-524K.
SMALL_STEP_HIDDEN, SMALL_STEP_VALUES, SMALL_TRAINING_STEP_VALUES = 512, 4096, 16384
# One step without gradients of at most NATIVE_STEP_VALUES batch × hidden values runs on the
# native loop's prepared tables (``fused.one_step``), which keep their scratch buffers between
# calls (up to ``fused._STEP_BATCHES`` batch sizes per plan). Measured against the routes it
# replaced (``benchmarks/native_step.py``, 1 layer, 1 thread, AMD EPYC): 0.80-0.96x the time
# per call at H = 64 and 256, B = 1-64 (lstm and gru), 0.97-1.02x at 65,536 values; above,
# the scratch kept would grow while the gain is gone, and a step over many rows (the grid's
# depth step over T·B rows) takes the fused engine with its workspace.
NATIVE_STEP_VALUES = 1 << 16


class Executor(enum.Enum):
    """What can run a call (``Route.executor``)."""

    NATIVE = "fused (native)"  # the fused engine's C++ loop
    TORCH = "fused (torch)"  # the fused engine's generated torch loop
    NATIVE_STEP = "native step"  # one step without gradients, the native loop's table prepared
    SMALL_STEP = "small step"  # one step of the plan with torch ops, no engine setup
    CUSTOM_OP = "custom op"  # one rnnlab::sequence node for torch.compile
    FUSED_CUDA = "fused (triton)"  # the fused engine's loops with generated Triton kernels
    CUDNN = "cudnn"  # torch's own RNN function over a whole network (rnnlab.RNN)
    REFERENCE = "reference"  # the plan stepped with torch ops under autograd


@dataclass(frozen=True)
class Route:
    """The executor of one call and the reason the table chose it.

    ``plan``: the fused engine's compiled plan (``fused.Compiled``) when the table looked it up,
    the ``Unsupported`` error saying why the engine cannot run the cell, or for ``CUDNN`` the
    torch cell (``cudnn.TorchCell``); not part of the route's identity."""

    executor: Executor
    reason: str
    plan: object = field(default=None, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.executor.value}: {self.reason}"

    @property
    def loops(self):
        """The fused executor object (``PythonLoops``, ``NativeLoops`` or ``TritonLoops``) of a
        fused route."""
        if self.executor is Executor.FUSED_CUDA:
            from . import triton_step

            return triton_step.loops_of(self.plan)
        return self.plan.native() if self.executor is Executor.NATIVE else self.plan.python


_OFF = Route(Executor.REFERENCE, "the fused engine is switched off (backend 'reference')")
_EMPTY = Route(Executor.REFERENCE, "a call without steps or rows")
_TRACED = Route(Executor.CUSTOM_OP, "torch.compile is tracing: the whole sequence is one "
                                    "rnnlab::sequence op, run eagerly inside")


def small_step(steps: int, rows: int, hidden_size: int, training: bool) -> bool:
    """Whether (T, B) = (steps, rows) is one step small enough that the engine's fixed cost per
    call would exceed it (``SMALL_STEP_VALUES``; ``SMALL_TRAINING_STEP_VALUES`` with
    gradients)."""
    limit = SMALL_TRAINING_STEP_VALUES if training else SMALL_STEP_VALUES
    return steps == 1 and hidden_size <= SMALL_STEP_HIDDEN and rows * hidden_size <= limit


def route(program: Program, steps: int | None, rows: int, device: torch.device | str,
          dtype: torch.dtype, training: bool, lengths: bool) -> Route:
    """The route of a call of ``program`` over (steps, rows) inputs (see the module docstring).

    Args:
        program: the cell's plan.
        steps: T, or None for "a sequence" (``explain``: no small-step shortcut).
        rows: B.
        device, dtype: of the inputs.
        training: whether gradients are wanted.
        lengths: whether the sequences have lengths of their own.

    Raises RuntimeError where backend ``native`` is forced and cannot run the call.
    """
    chosen = settings.current().backend
    if chosen == "reference":
        return _OFF
    if steps == 0 or rows == 0:
        return _EMPTY
    if isinstance(device, str):
        device = torch.device(device)
    if steps is None and (chosen == "cudnn" or (chosen == "auto" and device.type != "cpu")):
        kind, why = cudnn.kind_of(program.graph)
        if kind is not None:
            return Route(Executor.CUDNN, f"{why}; rnnlab.RNN runs all its layers and directions "
                                         "in one call of torch's RNN function", kind)
    if chosen == "cudnn":
        chosen = "auto"
    H = program.hidden_size
    if (steps == 1 and not training and not lengths and chosen in ("auto", "native")
            and rows * H <= NATIVE_STEP_VALUES and device.type == "cpu"
            and dtype in (torch.float32, torch.float64) and not torch.compiler.is_compiling()):
        comp = fused.compiled(program, False, False)
        if fused.prepares_steps(comp):
            return _native_step(comp)
    # a small step is plain torch ops: under torch.compile it is traced into the graph (and
    # differentiated there), which an opaque custom op running it inside could not be
    if chosen == "auto" and steps is not None and small_step(steps, rows, H, training):
        return Route(Executor.SMALL_STEP, f"one step of {rows} x {H} values costs less than "
                                          "the engine's setup")
    if not lengths and torch.compiler.is_compiling():
        return _TRACED
    comp = fused.compiled(program, training, lengths)
    if isinstance(comp, Unsupported):
        return Route(Executor.REFERENCE, str(comp), comp)
    native_ok = device.type == "cpu" and dtype in (torch.float32, torch.float64)
    if chosen in ("auto", "native") and native_ok and comp.native() is not None:
        return Route(Executor.NATIVE, comp.summary, comp)
    if chosen == "native":
        if native_ok:
            from .fast import native

            raise RuntimeError(f"the native engine is unavailable: {native.why_unavailable()}")
        raise RuntimeError(f"the native engine runs float32/float64 on CPU, got {dtype} on "
                           f"{device}; use backend('auto')")
    if chosen == "auto" and device.type == "cuda":
        why = _no_triton_route(comp, dtype)
        if why is None:
            graphs = ("; each loop replayed from a CUDA graph per buffer layout"
                      if settings.current().cuda_graphs else "")
            return Route(Executor.FUSED_CUDA, f"{comp.summary}; each step's elementwise work "
                                              f"one generated Triton kernel{graphs}", comp)
        return Route(Executor.REFERENCE, f"no fused route on {device}: {why}", comp)
    if chosen == "auto" and device.type != "cpu":
        return Route(Executor.REFERENCE, f"no fused route for {device.type} yet: backend 'auto' "
                                         f"runs the fused engine on CPU only, got {device} "
                                         "(backend('python') runs it there with torch ops)",
                     comp)
    return Route(Executor.TORCH, comp.summary, comp)


def _native_step(comp) -> Route:
    """The native-step route of a compiled plan (made once: one step at a time asks often)."""
    chosen = comp.__dict__.get("native_step_route")
    if chosen is None:
        chosen = comp.__dict__["native_step_route"] = Route(
            Executor.NATIVE_STEP, "one step without gradients: the native loop on buffers "
                                  "prepared for this batch size", comp)
    return chosen


def _no_triton_route(comp, dtype: torch.dtype) -> str | None:
    """Why the generated Triton kernels (rule 8a) cannot run a plan on CUDA, or None."""
    from . import triton_step

    if dtype not in triton_step.DTYPES:
        return f"the generated kernels compute in float32 or float64, got {dtype}"
    return triton_step.triton_missing() or triton_step.unsupported(comp.plan)


def network_route(net, device: torch.device) -> Route | None:
    """The route of a whole ``rnnlab.RNN`` call (rules N1-N5 of the module docstring): the
    ``CUDNN`` route, whose ``plan`` is the torch cell (``cudnn.TorchCell``), or None, and then
    the network runs layer by layer, each layer and direction through ``rnnlab.engine.run``
    (``cudnn.network_kind(net)`` says why a network is not one cuDNN computes)."""
    chosen = settings.current().backend
    if chosen not in ("auto", "cudnn") or torch.compiler.is_compiling():
        return None
    if chosen == "auto" and torch.device(device).type == "cpu":
        return None
    kind, reason = cudnn.network_kind(net)
    return None if kind is None else Route(Executor.CUDNN, reason, kind)


def execute(chosen: Route, program: Program, weights: dict, x: torch.Tensor, state: tuple,
            lengths: torch.Tensor | None, sizes: list[int] | None, training: bool):
    """Run an eager route (any but ``CUSTOM_OP``, which ``rnnlab.engine.run`` dispatches).

    x (T, B, I), state fields (B, H); ``lengths`` None or (B,) sorted decreasing and ``sizes``
    their active rows per step. Returns (output (T, B, H), final state)."""
    executor = chosen.executor
    if executor in (Executor.NATIVE, Executor.TORCH, Executor.FUSED_CUDA):
        return fused.sequence(chosen.plan, chosen.loops, program, weights, x, state, lengths,
                              sizes, training)
    if executor is Executor.NATIVE_STEP:
        return fused.one_step(chosen.plan, program, weights, x, state)
    if executor is Executor.SMALL_STEP and sizes is None:
        return reference.one_step(program, weights, x, state)
    if executor is Executor.REFERENCE or executor is Executor.SMALL_STEP:
        return reference.sequence(program, weights, x, state, sizes)
    raise ValueError(f"route {chosen} is not run eagerly; rnnlab.engine.run dispatches it")
