"""Helpers for recurrent state: the nested (named) tuples of tensors that layers carry."""

from __future__ import annotations

from typing import Any

import torch


def map_state(fn, state: Any) -> Any:
    """Apply ``fn`` to every tensor in a nested tuple / NamedTuple / list / dict of tensors."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # NamedTuple keeps its type
        return type(state)(*(map_state(fn, s) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(fn, s) for s in state)
    if isinstance(state, dict):
        return {k: map_state(fn, v) for k, v in state.items()}
    raise TypeError(
        f"state must be made of tensors, tuples, lists or dicts; got {type(state).__name__}"
    )


def detach(state: Any) -> Any:
    """Cut the autograd history of a state, keeping its values (truncated BPTT between batches)."""
    return map_state(torch.Tensor.detach, state)
