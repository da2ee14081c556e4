"""The device a run trains on: ``run.device`` (cpu, cuda or auto) resolved on this machine.

``cpu`` (the default) trains on the CPU; ``cuda`` on the GPU, ``cuda:LOCAL_RANK`` under
torchrun (``rnnlab.train.distributed.setup``); ``auto`` is cuda when torch sees a GPU, else cpu.
A resumed run may name another device than the one it started on: checkpoints are read onto the
CPU and moved to the model's device (``rnnlab.train.checkpoint``).
"""

from __future__ import annotations

import torch

from rnnlab.train.bodies import ConfigError

DEVICES = ("cpu", "cuda", "auto")


def resolve(name: str) -> str:
    """``run.device`` -> ``"cpu"`` or ``"cuda"`` on this machine; ``cuda`` without a GPU is
    refused (ConfigError, one line naming the alternatives)."""
    if name not in DEVICES:
        raise ConfigError(f"run.device must be one of {', '.join(DEVICES)}; got {name!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "run.device=cuda, but torch sees no CUDA GPU on this machine "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); train "
            "on the CPU with --run.device=cpu, or --run.device=auto to take a GPU when there is one"
        )
    return name


def gpu(device: str | torch.device) -> dict:
    """What summary.json's machine record says of the GPU: ``{"gpu": its name}`` on CUDA
    (``"NVIDIA H100 80GB HBM3"``), nothing on the CPU."""
    device = torch.device(device)
    return {"gpu": torch.cuda.get_device_name(device)} if device.type == "cuda" else {}
