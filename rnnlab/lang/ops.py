"""The op table of the cell language: the one place where each op is defined.

Every entry says, for one op: its arity and kind, how it prints (symbol and precedence), its
torch function (the reference executor runs it), how it folds over constants (the compiler),
which engine instruction computes it and how its derivative is formed from engine instructions
(the fused engine derives its backward step from these), so adding an op touches this table and,
for a new instruction below, its C++ expression (the native loop) and its Triton expression (the
generated GPU kernels) — nothing else.

Kinds:
- ``leaf``: ``input`` (the step input ``x``), ``state`` (a previous-state vector), ``param``
  (a learned vector such as a bias or a peephole), ``const`` (a scalar constant), ``mask`` (a
  random vector drawn anew at every step, such as zoneout's ``d_h``: a ``step`` mask of
  ``Graph.masks``, read from the step's input row after x);
- ``linear``: ``W @ v``, a learned matrix applied to one argument;
- ``binary``: elementwise ``add``, ``sub``, ``mul``;
- ``activation``: elementwise ``tanh``, ``sigmoid``, ``relu``, ``identity``, ``scale``
  (Jozefowicz's ``Linear(a, x) = a·x``) and ``rsqrt`` (``1/sqrt(a)``); and two unary ops that
  are not elementwise but reduce over the H units of a row: ``norm(v) = (v − mean(v)) /
  sqrt(var(v) + ε)``, the normalisation of layer normalisation (Ba et al. 2016), ``LN(v) = g ⊙
  norm(v) + b``, and ``mean(v)``, the row's mean on every unit (with ``rsqrt`` it writes a
  normalisation whose statistics span several rows: layer norm over all gates of a cell).

The evolutionary search (Jozefowicz et al. 2015) draws its replacements from the groups
``ACTIVATIONS`` and ``BINARY_OPS`` below, so a mutation is a lookup here, not special code.

**Engine instructions** (``INSTRUCTIONS``) are what the fused engine's loops execute over
H-wide column blocks: each has a C++ expression over ``a[j]``, ``b[j]`` (the native loop's
``enum Code`` and its ``switch`` are generated from this list) and a torch form (the Python
executor). A **row** instruction (``norm``, ``norm_bwd``, ``mul_norm``, ``mean``, and the fused
``mul_norm_add``, ``norm_bwd_mul``) reduces over the columns of one row of one lane instead: its
C++ is a statement over the whole row (``w`` columns of ``a``, ``b`` and, for the fused two, a
third operand ``c``, written to ``d``), and the engine never widens it by merging it with its
neighbours. An op's ``grad`` lists, per argument, the instruction that adds its
contribution to that argument's adjoint: operands are ``"dy"`` (the adjoint of the result),
``"y"`` (the result), ``"a"``/``"b"`` (the arguments).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Instruction:
    """One elementwise instruction of the fused engine: ``d (+)= f(a, b)`` (``f(a, b, c)``
    for the two fused row instructions).

    ``cpp``: the C++ expression (scalar type ``T``; ``tanh_``/``sigmoid_`` are the kernel's
    vectorisable forms), or for a ``row`` instruction a C++ block over the row (``w`` columns;
    ``acc`` says whether to add to ``d``); ``torch_out``: a torch call writing into ``{D}``
    from ``{A}``, ``{B}`` (and ``{C}``); ``torch_value``: the same as a value (used to
    accumulate); ``triton``: the Triton expression over the column blocks ``{a}``, ``{b}``
    (``rnnlab.engine.triton_step``), or for a ``row`` instruction the body of a
    ``@triton.jit`` function of ``(a, b, c, m, w, eps)`` returning the row's result (``m``
    masks the ``w`` real columns of the block, ``eps`` is ``NORM_EPS`` in the data's dtype)."""

    name: str
    cpp: str | None
    torch_out: str | None
    torch_value: str | None
    row: bool = False  # reduces over the row (layer norm): one lane at a time, never merged
    triton: str | None = None


# Triton bodies of the row instructions (see ``Instruction.triton``): the row's normalised
# values x̂ of b, and norm's adjoint at b for the output adjoint ``dy`` (an expression)
_TRITON_XHAT = """\
mu = tl.sum(tl.where(m, b, 0.0), 0) / w
xc = tl.where(m, b - mu, 0.0)
xh = xc / tl.sqrt(tl.sum(xc * xc, 0) / w + eps)
"""


def _triton_norm_bwd(dy: str) -> str:
    return f"""\
dy = {dy}
mu = tl.sum(tl.where(m, b, 0.0), 0) / w
xc = tl.where(m, b - mu, 0.0)
r = 1.0 / tl.sqrt(tl.sum(xc * xc, 0) / w + eps)
xh = xc * r
g1 = tl.sum(tl.where(m, dy, 0.0), 0) / w
g2 = tl.sum(tl.where(m, dy * xh, 0.0), 0) / w
return r * (dy - g1 - xh * g2)
"""


INSTRUCTIONS: tuple[Instruction, ...] = (
    Instruction("copy", "a[j]", "{D}.copy_({A})", "{A}", triton="{a}"),
    Instruction("neg", "-a[j]", "torch.neg({A}, out={D})", "torch.neg({A})", triton="-{a}"),
    Instruction("add", "a[j] + b[j]", "torch.add({A}, {B}, out={D})", "torch.add({A}, {B})",
                triton="{a} + {b}"),
    Instruction("sub", "a[j] - b[j]", "torch.sub({A}, {B}, out={D})", "torch.sub({A}, {B})",
                triton="{a} - {b}"),
    Instruction("mul", "a[j] * b[j]", "torch.mul({A}, {B}, out={D})", "torch.mul({A}, {B})",
                triton="{a} * {b}"),
    # Triton forms from tl.exp alone: tanh(a) = 2σ(2a) − 1 (libdevice's tanh is CUDA-only),
    # σ written out (tl.sigmoid is a jit function, which the interpreter cannot call when
    # Triton was imported before it was switched on)
    Instruction("tanh", "tanh_(a[j])", "torch.tanh({A}, out={D})", "torch.tanh({A})",
                triton="2.0 / (1.0 + tl.exp(-2.0 * {a})) - 1.0"),
    Instruction("sigmoid", "sigmoid_(a[j])", "torch.sigmoid({A}, out={D})",
                "torch.sigmoid({A})", triton="1.0 / (1.0 + tl.exp(-{a}))"),
    Instruction("relu", "a[j] < T(0) ? T(0) : a[j]", "torch.clamp_min({A}, 0, out={D})",
                "torch.clamp_min({A}, 0)", triton="tl.where({a} < 0.0, 0.0, {a})"),
    Instruction("tanh_bwd", "a[j] * (T(1) - b[j] * b[j])",
                "aten.tanh_backward.grad_input({A}, {B}, grad_input={D})",
                "aten.tanh_backward({A}, {B})", triton="{a} * (1.0 - {b} * {b})"),
    Instruction("sigmoid_bwd", "a[j] * ((T(1) - b[j]) * b[j])",
                "aten.sigmoid_backward.grad_input({A}, {B}, grad_input={D})",
                "aten.sigmoid_backward({A}, {B})",
                triton="{a} * ((1.0 - {b}) * {b})"),
    Instruction("relu_bwd", "b[j] <= T(0) ? T(0) : a[j]",
                "aten.threshold_backward.grad_input({A}, {B}, 0, grad_input={D})",
                "aten.threshold_backward({A}, {B}, 0)",
                triton="tl.where({b} <= 0.0, 0.0, {a})"),
    # fill: d = a constant (the native loop copies it from the constants buffer)
    Instruction("fill", None, None, None),
    # layer norm's normalisation over the row, and its adjoint (a: dy, b: the op's input x):
    # dx = r (dy − mean(dy) − x̂ mean(dy x̂)), x̂ = (x − μ) r, r = 1/sqrt(σ² + ε), recomputed
    # from x so that only x is kept for the backward step; in C++ the kernel's vectorised row
    # functions (``rnnlab.engine.fast.vm_source``)
    Instruction("norm", "norm_row(w, acc, d, a);", "{D}.copy_(norm({A}))", "norm({A})",
                row=True, triton="b = a\n" + _TRITON_XHAT + "return xh\n"),
    Instruction("norm_bwd", "norm_bwd_row(w, acc, d, a, b);",
                "{D}.copy_(norm_backward({A}, {B}))", "norm_backward({A}, {B})", row=True,
                triton=_triton_norm_bwd("a")),
    # the mean of the row on every column, and 1/sqrt(a): the pieces of a normalisation whose
    # statistics span several rows (Ba et al.'s layer norm over all gates of a cell,
    # ``rnnlab.lang.regularise.layer_norm(stats="joint")``); mean is its own adjoint
    Instruction("mean", "mean_row(w, acc, d, a);", "{D}.copy_(row_mean({A}))",
                "row_mean({A})", row=True,
                triton="return a * 0.0 + tl.sum(tl.where(m, a, 0.0), 0) / w\n"),
    Instruction("rsqrt", "T(1) / std::sqrt(a[j])", "torch.rsqrt({A}, out={D})",
                "torch.rsqrt({A})", triton="1.0 / tl.sqrt({a})"),
    # d/da a^(-1/2) = −y³/2 (a: dy, b: y)
    Instruction("rsqrt_bwd", "a[j] * (T(-0.5) * b[j] * b[j] * b[j])",
                "torch.mul({A}, {B}.pow(3).mul_(-0.5), out={D})", "{A} * {B}.pow(3) * -0.5",
                triton="{a} * (-0.5 * {b} * {b} * {b})"),
    # a ⊙ norm(b) in one pass: the engine's fusion of a norm and the product that is its only
    # reader (``rnnlab.engine.fast.plan.fuse_norms``): a layer norm's gain times the normalised
    # row, and in the backward step the gain's gradient dy ⊙ norm(x); no op of the language
    Instruction("mul_norm", "mul_norm_row(w, acc, d, a, b);", "{D}.copy_({A} * norm({B}))",
                "{A} * norm({B})", row=True, triton=_TRITON_XHAT + "return a * xh\n"),
    # two fusions of three operands (``rnnlab.engine.fast.plan.fuse_gains``): a gain times the
    # normalised row plus the sum's other term, ``a ⊙ norm(b) + c`` (the shift of a normalised
    # memory cell, the hoisted input part of a gate), and the adjoint of a norm whose output
    # adjoint is a product, ``norm_bwd(a ⊙ c, b)`` (dy times the gain), the product never
    # written
    Instruction("mul_norm_add", "mul_norm_add_row(w, acc, d, a, b, c);",
                "{D}.copy_({A} * norm({B}) + {C})", "{A} * norm({B}) + {C}", row=True,
                triton=_TRITON_XHAT + "return a * xh + c\n"),
    Instruction("norm_bwd_mul", "norm_bwd_mul_row(w, acc, d, a, b, c);",
                "{D}.copy_(norm_backward({A} * {C}, {B}))", "norm_backward({A} * {C}, {B})",
                row=True, triton=_triton_norm_bwd("a * c")),
)
CODE: dict[str, int] = {ins.name: k for k, ins in enumerate(INSTRUCTIONS)}


# ε of layer normalisation's variance (as torch.nn.LayerNorm's default)
NORM_EPS = 1e-5


def norm(a: torch.Tensor) -> torch.Tensor:
    """``(a − mean) / sqrt(var + ε)`` over the last axis (biased variance, as layer norm)."""
    return torch.nn.functional.layer_norm(a, a.shape[-1:], eps=NORM_EPS)


def norm_backward(dy: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """The adjoint of ``norm`` at input ``a`` for the output adjoint ``dy``."""
    var, mean = torch.var_mean(a, -1, keepdim=True, correction=0)
    r = torch.rsqrt(var + NORM_EPS)
    xhat = (a - mean) * r
    return r * (dy - dy.mean(-1, keepdim=True) - xhat * (dy * xhat).mean(-1, keepdim=True))


def pooled_norm(parts, k) -> torch.Tensor:
    """Member ``k`` of ``norm`` over the parts laid side by side (``pnorm``)."""
    H, k = parts[0].shape[-1], int(k)
    wide = torch.cat(torch.broadcast_tensors(*parts), -1)
    return norm(wide)[..., k * H:(k + 1) * H]


def row_mean(a: torch.Tensor) -> torch.Tensor:
    """The mean over the last axis, on every entry of it."""
    return a.mean(-1, keepdim=True).expand_as(a)


# names the Python executor's generated loops may call (besides torch and aten)
TORCH_HELPERS = {"norm": norm, "norm_backward": norm_backward, "row_mean": row_mean}


def _sigmoid(a: float) -> float:
    return 1.0 / (1.0 + math.exp(-a)) if a >= 0 else math.exp(a) / (1.0 + math.exp(a))


POOL = -1  # the arity of an op that takes any number of arguments (at least one)


@dataclass(frozen=True)
class OpSpec:
    """One op of the cell language (see the module docstring).

    ``torch``: f(args..., value) on tensors; ``fold``: the same on floats; ``instruction``: the
    engine instruction of the forward op (None: not an elementwise instruction; ``identity`` is
    a no-op and ``scale`` a ``mul`` by its factor); ``grad``: per argument, (instruction,
    operand, operand)."""

    name: str
    kind: str  # "leaf" | "linear" | "binary" | "activation" | "pool"
    arity: int  # POOL: any number, at least one
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
        OpSpec("mask", "leaf", 0),
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
        # a row of equal numbers normalises to zeros
        OpSpec("norm", "activation", 1, "norm", 0, lambda a, v: norm(a), lambda a, v: 0.0,
               "norm", (("norm_bwd", "dy", "a"),)),
        # the row's mean on every unit, and 1/sqrt: a normalisation over several rows is
        # written with them (layer norm over all gates, ``layer_norm(stats="joint")``)
        OpSpec("mean", "activation", 1, "mean", 0, lambda a, v: row_mean(a), lambda a, v: a,
               "mean", (("mean", "dy", None),)),
        # member k (value) of a normalisation pooled over all its arguments: the k-th H
        # columns of norm([a_0; …; a_{n-1}]), one mean and variance over the n·H units (layer
        # norm over all gates, ``layer_norm(stats="joint")``); any number of arguments. The
        # compiler lays the arguments side by side and emits one ``norm`` over all of them.
        OpSpec("pnorm", "pool", POOL, "pnorm", 0, lambda *a: pooled_norm(a[:-1], a[-1]),
               lambda *a: 0.0),
        OpSpec("rsqrt", "activation", 1, "rsqrt", 0, lambda a, v: torch.rsqrt(a),
               lambda a, v: 1.0 / math.sqrt(a), "rsqrt", (("rsqrt_bwd", "dy", "y"),)),
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


def fold(op: str, args: list[float], value: float | None = None) -> float:
    """The op on constants, computed once at compile time."""
    return float(OPS[op].fold(*args, value))
