"""Checkpoints: atomic writes, safe loads, and the random-number state a run needs to resume.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, saved with
``torch.save`` and read back with ``torch.load(..., weights_only=True)``: loading a checkpoint
never unpickles arbitrary objects. Random-number generator states (torch, numpy, Python's
``random``) are stored as tensors and lists for the same reason.

Writes are atomic (``rnnlab.atomic``): the bytes go to a temporary file in the checkpoint's own
directory, which is flushed and fsync'ed and then renamed over the target with ``os.replace``.
A crash at any point leaves either the previous checkpoint or the new one, never a partial file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rnnlab.atomic import write_atomic

FORMAT = 1  # bumped when the checkpoint layout changes


def save_atomic(payload: dict, path: str | os.PathLike) -> None:
    """Write ``payload`` to ``path`` with torch.save, atomically (temp file, fsync, os.replace)."""
    write_atomic(path, "wb", lambda handle: torch.save(payload, handle))


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded (damaged, truncated, or not a checkpoint)."""


def load(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary unpickling), on the CPU
    (``map_location``), whatever device wrote it: ``load_state_dict`` then copies each tensor to
    where the model and optimiser live, so a run resumes on another device.

    Raises FileNotFoundError when there is no file, and :class:`CheckpointError` (one line,
    naming the file) when it is empty, truncated, random bytes, another program's file, or
    lacks one of the ``required`` entries.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001  (torch raises many kinds for a damaged file)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "weights_only" in reason or "Weights only" in reason:
            reason = "it holds objects other than tensors and plain values"
        raise CheckpointError(
            f"{path} is damaged and cannot be loaded ({type(error).__name__}: {reason[:120]})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an rnnlab checkpoint of format {FORMAT}; "
            "it was written by another program or version"
        )
    missing = [key for key in required if key not in payload]
    if missing:
        raise CheckpointError(f"{path} is damaged: it has no {', '.join(missing)}")
    return payload


def rng_state(device: str | torch.device = "cpu") -> dict:
    """The torch, numpy and Python random states as tensors and lists (weights_only-safe), and
    on a CUDA ``device`` its generator's state (dropout masks drawn on the GPU)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    device = torch.device(device)
    cuda = {"cuda": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}
    return {
        **cuda,
        "torch": torch.get_rng_state(),
        "python": [version, list(internal), gauss],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }


def set_rng_state(state: dict, device: str | torch.device = "cpu") -> None:
    """Restore the states captured by :func:`rng_state`; the CUDA generator's when both the
    checkpoint and ``device`` are CUDA (a run resumed on another kind of device draws its GPU
    or CPU masks afresh from there)."""
    device = torch.device(device)
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached"],
        )
    )


def flatten_state(state: Any) -> list[torch.Tensor] | None:
    """Copies of the tensors of a (nested) recurrent state on the CPU, in order; None for no
    state."""
    if state is None:
        return None
    leaves: list[torch.Tensor] = []

    def visit(node):
        if isinstance(node, torch.Tensor):
            leaves.append(node.detach().to("cpu", copy=True))
        elif isinstance(node, dict):
            for key in node:
                visit(node[key])
        elif isinstance(node, (tuple, list)):
            for item in node:
                visit(item)
        else:
            raise TypeError(f"state must be made of tensors, got {type(node).__name__}")

    visit(state)
    return leaves


def unflatten_state(template: Any, leaves: list[torch.Tensor]) -> Any:
    """Put ``leaves`` (from :func:`flatten_state`) back into the structure of ``template``, on
    its tensors' devices and dtypes."""
    queue = iter(leaves)

    def build(node):
        if isinstance(node, torch.Tensor):
            leaf = next(queue)
            if leaf.shape != node.shape:
                raise ValueError(
                    f"saved state tensor has shape {tuple(leaf.shape)}, "
                    f"the model expects {tuple(node.shape)}"
                )
            return leaf.to(device=node.device, dtype=node.dtype)
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            return type(node)(*(build(item) for item in node))
        if isinstance(node, (tuple, list)):
            return type(node)(build(item) for item in node)
        if isinstance(node, dict):
            return {key: build(value) for key, value in node.items()}
        raise TypeError(f"state must be made of tensors, got {type(node).__name__}")

    restored = build(template)
    if next(queue, None) is not None:
        raise ValueError("saved state has more tensors than the model's state")
    return restored
