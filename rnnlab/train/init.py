"""Whole-model initialisation: one scheme over every parameter (embedding, cells, head).

``model.init`` reaches the cells only; the papers' recipes initialise *everything* the same way.
:func:`initialize` is called once by :class:`~rnnlab.train.model.SequenceModel` when
``model.init_all`` is set, after every part has made its own default initialisation:

``uniform:A``
    every parameter ~ U(−A, A), biases included (Zaremba, Sutskever & Vinyals 2014: "We
    initialize ... uniformly in [−0.1, 0.1]", A = 0.1).
``scaled:S``
    every parameter ~ U(−S/√n, S/√n) with n the fan-in of the matrix it belongs to (its number
    of columns; a bias or vector uses the fan-in of the layer, i.e. its own size). Jozefowicz,
    Zaremba & Sutskever (2015) draw an "init scale" S per run and scale by the layer width;
    see docs/reproductions.md for what the paper states.

The forget-gate bias is then *added* to the uniformly drawn ``b_f`` of every cell that has
one: ``model.forget_bias`` (or the cell's own default, 1.0, when it is None). So
``forget_bias=0`` is Zaremba's LSTM exactly (b_f ~ U(−A, A), no offset) and ``forget_bias=1``
is Jozefowicz's LSTM-b (b_f ~ U(−A, A) + 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn

SCHEMES = ("uniform", "scaled")


def parse(spec: str) -> tuple[str, float]:
    """``"uniform:0.1"`` -> ("uniform", 0.1); raises ValueError with the expected form."""
    name, colon, value = spec.partition(":")
    try:
        number = float(value) if colon else math.nan
    except ValueError:
        number = math.nan
    if name not in SCHEMES or not (number > 0 and math.isfinite(number)):
        raise ValueError(
            f"model.init_all must be 'uniform:A' or 'scaled:S' with a number > 0 "
            f"(e.g. uniform:0.1), got {spec!r}"
        )
    return name, number


def _fan_in(parameter: nn.Parameter) -> int:
    return parameter.shape[1] if parameter.dim() >= 2 else parameter.shape[0]


@torch.no_grad()
def initialize(model: nn.Module, spec: str, forget_bias: float | None = None) -> None:
    """Re-initialise every parameter of ``model`` by ``spec`` (see the module docstring), then
    add the forget-gate bias to each cell's ``b_f``."""
    name, value = parse(spec)
    for parameter in model.parameters():
        bound = value if name == "uniform" else value / math.sqrt(_fan_in(parameter))
        parameter.uniform_(-bound, bound)
    for module in model.modules():
        b_f = getattr(module, "b_f", None)
        if isinstance(b_f, nn.Parameter):
            offset = forget_bias if forget_bias is not None else getattr(module, "forget_bias", 0.0)
            b_f.add_(float(offset or 0.0))
