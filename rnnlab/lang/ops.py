"""The op table of the cell language: the one place where each op is defined.

Every entry says, for one op: its arity and kind, how it prints (symbol and precedence), its
torch function (the reference executor runs it), how it folds over constants (the compiler),
which engine instruction computes it and how its derivative is formed from engine instructions
(the fused engine derives its backward step from these), so adding an op touches this table and,
for the native loop, the C++ expression of a new instruction below — nothing else.

Kinds:
- ``leaf``: ``input`` (the step input ``x``), ``state`` (a previous-state vector), ``param``
  (a learned vector such as a bias or a peephole), ``const`` (a scalar constant);
- ``linear``: ``W @ v``, a learned matrix applied to one argument;
- ``binary``: elementwise ``add``, ``sub``, ``mul``;
- ``activation``: elementwise ``tanh``, ``sigmoid``, ``relu``, ``identity`` and ``scale``
  (Jozefowicz's ``Linear(a, x) = a·x``).

The evolutionary search (Jozefowicz et al. 2015) draws its replacements from the groups
``ACTIVATIONS`` and ``BINARY_OPS`` below, so a mutation is a lookup here, not special code.

**Engine instructions** (``INSTRUCTIONS``) are what the fused engine's loops execute over
H-wide column blocks: each has a C++ expression over ``a[j]``, ``b[j]`` (the native loop's
``enum Code`` and its ``switch`` are generated from this list) and a torch form (the Python
executor). An op's ``grad`` lists, per argument, the instruction that adds its contribution to
that argument's adjoint: operands are ``"dy"`` (the adjoint of the result), ``"y"`` (the
result), ``"a"``/``"b"`` (the arguments).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Instruction:
    """One elementwise instruction of the fused engine: ``d (+)= f(a, b)``.

    ``cpp``: the C++ expression (scalar type ``T``; ``tanh_``/``sigmoid_`` are the kernel's
    vectorisable forms); ``torch_out``: a torch call writing into ``{D}``; ``torch_value``: the
    same as a value (used to accumulate)."""

    name: str
    cpp: str | None
    torch_out: str | None
    torch_value: str | None


INSTRUCTIONS: tuple[Instruction, ...] = (
    Instruction("copy", "a[j]", "{D}.copy_({A})", "{A}"),
    Instruction("neg", "-a[j]", "torch.neg({A}, out={D})", "torch.neg({A})"),
    Instruction("add", "a[j] + b[j]", "torch.add({A}, {B}, out={D})", "torch.add({A}, {B})"),
    Instruction("sub", "a[j] - b[j]", "torch.sub({A}, {B}, out={D})", "torch.sub({A}, {B})"),
    Instruction("mul", "a[j] * b[j]", "torch.mul({A}, {B}, out={D})", "torch.mul({A}, {B})"),
    Instruction("tanh", "tanh_(a[j])", "torch.tanh({A}, out={D})", "torch.tanh({A})"),
    Instruction("sigmoid", "sigmoid_(a[j])", "torch.sigmoid({A}, out={D})",
                "torch.sigmoid({A})"),
    Instruction("relu", "a[j] < T(0) ? T(0) : a[j]", "torch.clamp_min({A}, 0, out={D})",
                "torch.clamp_min({A}, 0)"),
    Instruction("tanh_bwd", "a[j] * (T(1) - b[j] * b[j])",
                "aten.tanh_backward.grad_input({A}, {B}, grad_input={D})",
                "aten.tanh_backward({A}, {B})"),
    Instruction("sigmoid_bwd", "a[j] * ((T(1) - b[j]) * b[j])",
                "aten.sigmoid_backward.grad_input({A}, {B}, grad_input={D})",
                "aten.sigmoid_backward({A}, {B})"),
    Instruction("relu_bwd", "b[j] <= T(0) ? T(0) : a[j]",
                "aten.threshold_backward.grad_input({A}, {B}, 0, grad_input={D})",
                "aten.threshold_backward({A}, {B}, 0)"),
    # fill: d = a constant (the native loop copies it from the constants buffer)
    Instruction("fill", None, None, None),
)
CODE: dict[str, int] = {ins.name: k for k, ins in enumerate(INSTRUCTIONS)}


def _sigmoid(a: float) -> float:
    return 1.0 / (1.0 + math.exp(-a)) if a >= 0 else math.exp(a) / (1.0 + math.exp(a))


@dataclass(frozen=True)
class OpSpec:
    """One op of the cell language (see the module docstring).

    ``torch``: f(args..., value) on tensors; ``fold``: the same on floats; ``instruction``: the
    engine instruction of the forward op (None: not an elementwise instruction; ``identity`` is
    a no-op and ``scale`` a ``mul`` by its factor); ``grad``: per argument, (instruction,
    operand, operand)."""

    name: str
    kind: str  # "leaf" | "linear" | "binary" | "activation"
    arity: int
    symbol: str = ""  # how the op prints in equations
    precedence: int = 0  # binary ops: binding strength in printed equations
    torch: Callable | None = None
    fold: Callable | None = None
    instruction: str | None = None
    grad: tuple = ()


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in [
        OpSpec("input", "leaf", 0, "x"),
        OpSpec("state", "leaf", 0),
        OpSpec("param", "leaf", 0),
        OpSpec("const", "leaf", 0),
        OpSpec("linear", "linear", 1, "@"),
        OpSpec("add", "binary", 2, "+", 1, lambda a, b, v: a + b, lambda a, b, v: a + b, "add",
               (("copy", "dy", None), ("copy", "dy", None))),
        OpSpec("sub", "binary", 2, "−", 1, lambda a, b, v: a - b, lambda a, b, v: a - b, "sub",
               (("copy", "dy", None), ("neg", "dy", None))),
        OpSpec("mul", "binary", 2, "⊙", 2, lambda a, b, v: a * b, lambda a, b, v: a * b, "mul",
               (("mul", "dy", "b"), ("mul", "dy", "a"))),
        OpSpec("tanh", "activation", 1, "tanh", 0, lambda a, v: torch.tanh(a),
               lambda a, v: math.tanh(a), "tanh", (("tanh_bwd", "dy", "y"),)),
        OpSpec("sigmoid", "activation", 1, "σ", 0, lambda a, v: torch.sigmoid(a),
               lambda a, v: _sigmoid(a), "sigmoid", (("sigmoid_bwd", "dy", "y"),)),
        OpSpec("relu", "activation", 1, "ReLU", 0, lambda a, v: torch.relu(a),
               lambda a, v: max(a, 0.0), "relu", (("relu_bwd", "dy", "y"),)),
        OpSpec("identity", "activation", 1, "", 0, lambda a, v: a, lambda a, v: a),
        OpSpec("scale", "activation", 1, "Linear", 0, lambda a, v: v * a,
               lambda a, v: v * a),
    ]
}
# the engine's own ops on lanes besides the cell language's: a broadcast copy of a parameter
COPY_GRAD = (("copy", "dy", None),)

BINARY_OPS = ("add", "mul", "sub")
# Jozefowicz et al.'s activation set: tanh, σ, ReLU, Linear(0,x), Linear(1,x), Linear(0.9,x),
# Linear(1.1,x); Linear(a, x) is read as the scaling a·x (Linear(1, x) is the identity).
ACTIVATIONS: tuple[tuple[str, float | None], ...] = (
    ("tanh", None),
    ("sigmoid", None),
    ("relu", None),
    ("scale", 0.0),
    ("identity", None),
    ("scale", 0.9),
    ("scale", 1.1),
)


def spec(op: str) -> OpSpec:
    try:
        return OPS[op]
    except KeyError:
        raise ValueError(f"unknown op {op!r}; known ops: {', '.join(OPS)}") from None


def apply(op: str, args: list, value: float | None = None):
    """The op on tensors (or floats mixed with tensors): the reference executor's step."""
    return OPS[op].torch(*args, value)


def fold(op: str, args: list[float], value: float | None = None) -> float:
    """The op on constants, computed once at compile time."""
    return float(OPS[op].fold(*args, value))
