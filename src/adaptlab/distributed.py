"""Data-parallel meta-training with ``torch.distributed``: shard the tasks of a meta-step, all-reduce gradients.

Every process samples the *same* meta-batch (same seed, same generator), keeps its contiguous shard of the
episodes, computes the loss of its shard weighted by the shard's share of the meta-batch, and back-propagates;
:func:`all_reduce_gradients` then sums the gradients over processes. Because the meta-loss is a mean over
independent tasks (batch norm uses per-episode statistics), the summed gradient equals the single-process
gradient of the whole meta-batch, and every process applies the identical optimizer step:

.. math:: \\nabla_\\theta \\frac1T \\sum_{t=1}^T L_t = \\sum_{r} \\frac{|S_r|}{T}\\,\\nabla_\\theta \\frac{1}{|S_r|}
          \\sum_{t\\in S_r} L_t

Checkpoints and run files are written by rank 0 only (:func:`is_main`). Launch with ``torchrun``::

    torchrun --nproc_per_node=2 -m adaptlab run omniglot-protonet --set train.meta_batch=4

``init_from_env`` picks gloo on CPU and NCCL when the device is CUDA. Without ``torchrun`` (no ``WORLD_SIZE``)
everything degrades to a single process and these helpers are no-ops.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


def init_from_env(device: str = "cpu") -> tuple[int, int]:
    """Join the process group described by torchrun's environment variables, if any.

    Returns:
        ``(rank, world_size)``; ``(0, 1)`` when not launched by torchrun.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return rank(), world_size()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that writes checkpoints and files."""
    return rank() == 0


def shard_bounds(total: int, r: int | None = None, world: int | None = None) -> tuple[int, int]:
    """``[lo, hi)`` of rank ``r``'s contiguous shard of ``total`` tasks (sizes differ by at most one)."""
    r = rank() if r is None else r
    world = world_size() if world is None else world
    if total < world:
        raise ValueError(f"meta-batch of {total} tasks cannot be split across {world} processes; "
                         f"use train.meta_batch >= {world}")
    return r * total // world, (r + 1) * total // world


def all_reduce_gradients(params: Iterable[torch.Tensor]) -> None:
    """Sum ``.grad`` of ``params`` over all processes in place (one flattened all-reduce); no-op alone.

    Callers weight each process's loss by its share of the meta-batch, so the sum is the global mean.
    """
    if world_size() == 1:
        return
    params = [p for p in params if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset: offset + g.numel()].view_as(g).clone()
        offset += g.numel()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
