"""The op table of the cell language: every op, its arity, its kind and how it prints.

Kinds:
- ``leaf``: ``input`` (the step input ``x``), ``state`` (a previous-state vector), ``param``
  (a learned vector such as a bias or a peephole), ``const`` (a scalar constant);
- ``linear``: ``W @ v``, a learned matrix applied to one argument;
- ``binary``: elementwise ``add``, ``sub``, ``mul``;
- ``activation``: elementwise ``tanh``, ``sigmoid``, ``relu``, ``identity`` and ``scale``
  (Jozefowicz's ``Linear(a, x) = a·x``).

The evolutionary search (Jozefowicz et al. 2015) draws its replacements from the groups
``ACTIVATIONS`` and ``BINARY_OPS`` below, so a mutation is a lookup here, not special code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpSpec:
    name: str
    kind: str  # "leaf" | "linear" | "binary" | "activation"
    arity: int
    symbol: str  # how the op prints in equations


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in [
        OpSpec("input", "leaf", 0, "x"),
        OpSpec("state", "leaf", 0, ""),
        OpSpec("param", "leaf", 0, ""),
        OpSpec("const", "leaf", 0, ""),
        OpSpec("linear", "linear", 1, "@"),
        OpSpec("add", "binary", 2, "+"),
        OpSpec("sub", "binary", 2, "−"),
        OpSpec("mul", "binary", 2, "⊙"),
        OpSpec("tanh", "activation", 1, "tanh"),
        OpSpec("sigmoid", "activation", 1, "σ"),
        OpSpec("relu", "activation", 1, "ReLU"),
        OpSpec("identity", "activation", 1, ""),
        OpSpec("scale", "activation", 1, "Linear"),
    ]
}

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
