"""Plans of registered cells, compiled once per size, and their weights from stacked matrices.

Callers that hold a cell's weights in a layout of their own (a Grid LSTM block keeps each
dimension's gates side by side in one matrix) get the plan of the zoo cell that computes the
same step here, and hand their matrices over with ``stacked_weights``, without knowing how the
compiler names or assembles its fused weights.
"""

from __future__ import annotations

import functools

import torch

from ..lang.compile import Program, compile_graph


@functools.lru_cache(maxsize=256)
def cell_program(name: str, input_size: int, hidden_size: int) -> Program:
    """The plan of registered cell ``name`` at these sizes (compiled once per process)."""
    from .. import cells  # the zoo sits beside the engine; read when a plan is first asked for

    return compile_graph(cells.graph(name, input_size, hidden_size))


def stacked_weights(program: Program, W: torch.Tensor, R: torch.Tensor, b: torch.Tensor,
                    gates: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The prepared weights of a cell ``W_g @ x + R_g @ h + b_g`` from its gates stacked.

    Args:
        program: the cell's plan; its parameters are ``W_g``, ``R_g``, ``b_g`` for g in gates.
        W: (input_size, n · H), input-major: columns ``[W_g1ᵀ W_g2ᵀ …]``.
        R: (H, n · H), the recurrent matrices the same way.
        b: (n · H,), the biases side by side.
        gates: the gate names in the order of the columns.

    When the plan assembles its fused weights exactly as stacked here (one input GEMM over the
    gates in this order, their biases, one recurrent GEMM), the matrices are used as they are:
    no copy, and gradients reach them directly. Otherwise they are split into the paper-named
    parameters and assembled as ``Program.prepare`` does.
    """
    H = program.hidden_size
    named = {"W": tuple((f"W_{g}",) for g in gates), "b": tuple((f"b_{g}",) for g in gates),
             "R": tuple(((f"R_{g}",),) for g in gates)}
    given = {"input": ("W", W), "bias": ("b", b), "recurrent": ("R", R)}
    direct, used = {}, set()
    for key, spec in program.weight_specs.items():
        kind = given.get(spec.kind)
        if kind is None or spec.refs != named[kind[0]] or spec.kind in used:
            break
        used.add(spec.kind)
        direct[key] = kind[1]
    else:
        if len(used) == 3 and not program.statics:
            return direct
    params = {}
    for prefix, matrix in (("W", W), ("R", R)):
        for gate, part in zip(gates, matrix.T.split(H), strict=True):
            params[f"{prefix}_{gate}"] = part
    for gate, part in zip(gates, b.split(H), strict=True):
        params[f"b_{gate}"] = part
    return program.prepare(params)
