"""Checks a candidate passes before any training: not degenerate; which engine runs it.

Degenerate (Jozefowicz et al. 2015 discard these before training): a cell whose output does
not depend on its input, or does not depend on its state, or whose state carries nothing of
earlier inputs — e.g. ``h' = h``, ``h' = σ(W x)``, or anything multiplied by Linear(0, ·).
Reading the graph is not enough (``a − a``, ``0·x``, a ReLU of a constant all cut a dependency
the edges still show), so the check is numerical: the cell runs three steps in float64 from a
random state with random parameters, and the gradients of the last output with respect to the
initial state and to each step's input say which dependencies exist (two random draws, so one
unlucky ReLU pattern cannot fake a zero).
"""

from __future__ import annotations

import torch

from ..lang import Graph

STEPS = 3
SIZE = 6
TOLERANCE = 1e-9


def degenerate_reason(graph: Graph, seed: int = 0) -> str | None:
    """Why ``graph`` is degenerate (one line), or None if it is a proper recurrent cell."""
    from .. import cells

    g = graph.resized(SIZE, SIZE)
    generator = torch.Generator().manual_seed(seed)
    d_state = d_now = d_past = 0.0
    for _ in range(2):
        cell = cells.make(g, SIZE, SIZE).double()
        with torch.no_grad():
            for p in cell.parameters():
                p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * 0.7)
        xs = torch.randn(STEPS, 4, SIZE, generator=generator, dtype=torch.float64)
        xs.requires_grad_(True)
        state = tuple(
            torch.randn(4, SIZE, generator=generator, dtype=torch.float64).requires_grad_(True)
            for _ in g.states
        )
        current = state
        for t in range(STEPS):
            out, current = cell(xs[t], current)
        if not torch.isfinite(out).all():
            return "its output is not finite (NaN or inf) for random parameters"
        weights = torch.randn(out.shape, generator=generator, dtype=torch.float64)
        grads = torch.autograd.grad((out * weights).sum(), [xs, *state], allow_unused=True)
        d_x, d_s = grads[0], grads[1:]
        if d_x is not None:
            d_now = max(d_now, float(d_x[-1].abs().max()))
            d_past = max(d_past, float(d_x[:-1].abs().max()))
        d_state = max(d_state, *(float(d.abs().max()) for d in d_s if d is not None), 0.0)
    if d_now <= TOLERANCE and d_past <= TOLERANCE:
        return "its output does not depend on the input x"
    if d_state <= TOLERANCE:
        return "its output does not depend on the state (a feed-forward cell)"
    if d_past <= TOLERANCE:
        return "its state carries nothing of earlier inputs (the output sees only the current x)"
    return None


def engine_used(graph: Graph) -> str:
    """``"fused"`` if rnnlab's fused sequence engine runs this cell in training, else
    ``"reference"`` (the step-by-step loop), as ``rnnlab.engine.explain`` decides."""
    from ..engine import explain

    return "fused" if explain(graph).startswith("fused") else "reference"
