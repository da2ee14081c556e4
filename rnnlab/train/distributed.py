"""Data-parallel training with torch.distributed, as launched by ``torchrun``.

``torchrun --nproc_per_node=2 -m rnnlab train ...`` starts one process per rank with ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. Every rank builds the same model from
the same seed (then receives rank 0's parameters to be sure), reads the same stream of batches,
and takes its own disjoint block of each batch's sequences (columns): rank r of W gets columns
``[r * B / W, (r + 1) * B / W)``. After each backward pass the gradients are averaged over the
ranks with one all-reduce, so every rank takes the same optimiser step and the parameters stay
identical. On the CPU (``run.device=cpu``) the backend is gloo; on CUDA each rank trains on
GPU ``cuda:LOCAL_RANK`` (torchrun's local rank: one GPU per process on each machine) with nccl,
whose collectives take tensors on that GPU (:attr:`World.device`). Only rank 0 writes the run
directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch import nn

from rnnlab.tasks.base import Batch


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    device: str = "cpu"  # where this rank trains: cpu, or cuda:LOCAL_RANK

    @property
    def main(self) -> bool:
        """True on the rank that writes files and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched() -> bool:
    """True when started by torchrun (or another launcher setting WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def placed(kind: str, local_rank: int = 0) -> str:
    """The device of a process: ``cuda:LOCAL_RANK`` for ``kind`` cuda, else ``cpu``."""
    return f"cuda:{local_rank}" if kind == "cuda" else "cpu"


def setup(kind: str = "cpu") -> World:
    """Join the process group when launched with several processes; else a world of one.
    ``kind`` is the resolved ``run.device``, cpu or cuda (``rnnlab.train.device.resolve``)."""
    if not launched():
        return World(device=placed(kind))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if kind == "cuda":
        torch.cuda.set_device(local_rank)  # nccl and the object collectives use this GPU
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if kind == "cuda" else "gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size(),
                 device=placed(kind, local_rank))


def teardown(world: World) -> None:
    """Leave the process group; all ranks leave together.

    Without the barrier a rank that finishes first tears down its gloo connections while the
    other is still closing its own, which can abort the other process at exit ("terminate
    called without an active exception").
    """
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(batch: Batch, world: World) -> Batch:
    """This rank's block of the batch's sequences (columns of the time-major tensors)."""
    if not world.distributed:
        return batch
    total = batch.batch_size
    if total % world.size:
        raise ValueError(
            f"batch size {total} cannot be split evenly over {world.size} processes; "
            f"set task.batch_size to a multiple of {world.size}"
        )
    width = total // world.size
    columns = slice(world.rank * width, (world.rank + 1) * width)

    def cut(tensor, dim):
        return None if tensor is None else tensor.narrow(dim, columns.start, width)

    targets_dim = 0 if batch.targets.dim() == 1 else 1  # Classes targets are (B,)
    return replace(
        batch,
        inputs=cut(batch.inputs, 1),
        targets=cut(batch.targets, targets_dim),
        mask=cut(batch.mask, 1),
        lengths=cut(batch.lengths, 0),
    )


def broadcast_parameters(model: nn.Module, world: World) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not world.distributed:
        return
    for tensor in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(tensor.data, src=0)


def average_gradients(model: nn.Module, world: World) -> None:
    """Replace every gradient by its mean over the ranks (one flat all-reduce)."""
    if not world.distributed:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world.size
    offset = 0
    for g in grads:
        count = g.numel()
        g.copy_(flat[offset : offset + count].view_as(g))
        offset += count


def mean(value: float, world: World) -> float:
    """The mean of a number over the ranks."""
    if not world.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor) / world.size


def gather(obj, world: World) -> list:
    """Every rank's ``obj`` (picklable, in memory only), in rank order, on every rank."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj, world: World):
    """Rank 0's ``obj`` on every rank."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def parameter_spread(model: nn.Module, world: World) -> float:
    """Largest absolute difference of any parameter between any two ranks (0.0: in sync)."""
    if not world.distributed:
        return 0.0
    flat = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
    low, high = flat.clone(), flat.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return float((high - low).max())


def stop_vote(stop: bool, world: World) -> bool:
    """True on every rank if any rank wants to stop (budget clocks differ between ranks)."""
    if not world.distributed:
        return stop
    flag = torch.tensor([1 if stop else 0], device=world.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())
