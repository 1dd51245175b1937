"""The few torch.distributed operations GoRA needs; each is a no-op in a single process."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def _communication_device(tensor: torch.Tensor) -> torch.device:
    # NCCL only moves CUDA tensors; gloo moves CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu") if tensor.device.type != "cpu" else tensor.device


def average_(tensor: torch.Tensor) -> torch.Tensor:
    """In-place mean across ranks."""
    if not is_distributed():
        return tensor
    device = _communication_device(tensor)
    staged = tensor.to(device)
    dist.all_reduce(staged, op=dist.ReduceOp.SUM)
    staged /= world_size()
    if staged is not tensor:
        tensor.copy_(staged)
    return tensor


def sum_int(value: int) -> int:
    if not is_distributed():
        return value
    total = torch.tensor([value], dtype=torch.int64)
    total = total.to(_communication_device(total))
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return int(total.item())


def broadcast_object(value: Any, src: int = 0) -> Any:
    """Rank src's value on every rank (ranks, reports: small picklable objects)."""
    if not is_distributed():
        return value
    holder = [value if rank() == src else None]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """In place: every rank gets rank src's tensor."""
    if not is_distributed():
        return tensor
    staged = tensor.to(_communication_device(tensor))
    dist.broadcast(staged, src=src)
    if staged is not tensor:
        tensor.copy_(staged)
    return tensor
