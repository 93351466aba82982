"""torch.distributed set-up for `trigan train` under torchrun (one process per GPU, or per CPU
worker with gloo), and the few collectives the loop needs.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous variables; without them training runs
as a single process and every collective below is the identity.

Gradients are averaged by an explicit all-reduce after each phase's backward pass (as EpiGRAF
does): the loop alternates G and D phases that freeze the other network, which DistributedDataParallel's
hooks do not model well, and one flat all-reduce per phase is what DDP would send anyway.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable, List

import torch
import torch.distributed as dist

from trigan.core.devices import parse_device


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # noqa: RUF009 - a torch.device is immutable

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU) and pick the device."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = parse_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(info: DistInfo, tensor: torch.Tensor) -> torch.Tensor:
    """Average a tensor over processes (in place; returned for chaining)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= info.world_size
    return tensor


def any_true(info: DistInfo, flag: bool) -> bool:
    """True on every process if it is True on any (stop requests, non-finite losses)."""
    if not info.enabled:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def average_gradients(info: DistInfo, params: Iterable[torch.nn.Parameter]) -> None:
    """Average the gradients of `params` over processes in one flat all-reduce, then replace
    non-finite entries (nan -> 0, inf -> +-1e5) as EpiGRAF does, so one bad sample cannot poison
    the optimiser state; the loop separately watches the losses for divergence."""
    params: List[torch.nn.Parameter] = [p for p in params if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.flatten() for p in params])
    all_reduce_mean(info, flat)
    torch.nan_to_num(flat, nan=0.0, posinf=1e5, neginf=-1e5, out=flat)
    for p, g in zip(params, flat.split([p.numel() for p in params]), strict=True):
        p.grad.copy_(g.view_as(p.grad))


def broadcast_module(info: DistInfo, module: torch.nn.Module) -> None:
    """Make every process start from rank 0's parameters and buffers."""
    if not info.enabled:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def broadcast_object(info: DistInfo, obj):
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
