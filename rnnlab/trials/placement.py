"""Which GPU each worker process of a study or search sees: one worker per visible GPU.

    >>> placement(None, "cuda", 4)             # default: one worker per GPU
    ['0', '1', '2', '3']
    >>> placement(6, "cuda", 4)                # more workers than GPUs: round-robin
    ['0', '1', '2', '3', '0', '1']
    >>> placement(None, "cuda", 2, visible="GPU-a1,GPU-b2")   # under CUDA_VISIBLE_DEVICES
    ['GPU-a1', 'GPU-b2']
    >>> placement(None, "cpu", 4, cpu_workers=2)  # on the CPU nothing is pinned
    [None, None]

Each entry is the ``CUDA_VISIBLE_DEVICES`` of one worker process (None: a CPU worker, whose
environment is left as it is). ``rnnlab.trials.run_workers`` puts it in the environment the
process *starts* with, so the worker sees exactly one GPU, as ``cuda`` (``cuda:0``), from its
first line on. That is the robust way with spawned (or forked) workers: a spawned worker
imports the parent's main module and unpickles its target before it runs a line of its own,
and anything on the way that asks torch about CUDA (``torch.cuda.is_available()``, the cached
``device_count()``) would fix the set of visible GPUs before the worker could narrow it. With
``torch.cuda.set_device(k)`` and ``cuda:k`` instead, every piece that uses the default device
(a context created before ``set_device``, a library kernel, the trainer's ``cuda``) would land
on GPU 0; with one visible GPU there is no other to land on.
"""

from __future__ import annotations

import os

from rnnlab.train.device import DEVICES


def placement(
    workers: int | None,
    device: str,
    gpu_count: int,
    *,
    cpu_workers: int = 1,
    visible: str | None = None,
) -> list[str | None]:
    """Each worker's ``CUDA_VISIBLE_DEVICES`` (None for a CPU worker); one entry per worker.

    Args:
        workers: worker processes asked for; None: one per GPU on CUDA, ``cpu_workers`` on
            the CPU.
        device: where the trials train, ``cpu``, ``cuda`` or ``auto`` (cuda when
            ``gpu_count > 0``).
        gpu_count: GPUs this process sees (``torch.cuda.device_count()``).
        cpu_workers: the default number of workers on the CPU.
        visible: this process's own ``CUDA_VISIBLE_DEVICES`` (None or empty: not set); worker
            k then sees its k-th entry (an index, a UUID or a MIG name), else GPU ``k``.

    Worker k gets GPU ``k mod gpu_count``: more workers than GPUs share them round-robin.
    Raises ValueError for an unknown device, ``workers < 1``, or ``cuda`` without a GPU.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if device == "cuda" and gpu_count < 1:
        raise ValueError(
            "--device cuda, but torch sees no CUDA GPU on this machine; run the trials on the "
            "CPU with --device cpu, or --device auto to take the GPUs when there are some"
        )
    if device == "cpu" or (device == "auto" and gpu_count < 1):
        return [None] * (cpu_workers if workers is None else workers)
    names = [name.strip() for name in visible.split(",")] if visible else []
    gpus = [names[k] if k < len(names) else str(k) for k in range(gpu_count)]
    return [gpus[k % gpu_count] for k in range(gpu_count if workers is None else workers)]


def kind(gpus: list[str | None]) -> str:
    """``"cuda"`` if the placed workers train on GPUs, else ``"cpu"`` (the resolved device)."""
    return "cpu" if not gpus or gpus[0] is None else "cuda"


def place(workers: int | None, device: str, *, cpu_workers: int = 1) -> list[str | None]:
    """:func:`placement` on this machine: the GPUs torch sees here and this process's
    ``CUDA_VISIBLE_DEVICES``. On the CPU (``device`` cpu) CUDA is not asked at all."""
    import torch

    count = 0 if device == "cpu" else torch.cuda.device_count()
    return placement(workers, device, count, cpu_workers=cpu_workers,
                     visible=os.environ.get("CUDA_VISIBLE_DEVICES"))
