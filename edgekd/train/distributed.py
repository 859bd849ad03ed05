"""One code path for one and many processes. Under torchrun (WORLD_SIZE>1) the process group is initialised
(nccl on CUDA, gloo on CPU) and gradients are averaged explicitly after backward, instead of wrapping the model
in DistributedDataParallel: objectives call model.forward_features/forward_head and second-player updates
(adversarial discriminators) outside model(), which DDP's forward hooks would not see."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from edgekd.errors import EdgekdError


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str = "auto") -> Context:
    """Read torchrun's environment, pick the device, init the process group when there is more than one rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    from edgekd.devices import resolve_device

    device = resolve_device(device, "torch")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EdgekdError(f"--device {device}: CUDA is not available on this machine")
        dev = torch.device("cuda", local if world > 1 or ":" not in device else int(device.split(":")[1]))
        torch.cuda.set_device(dev)
    elif device == "cpu":
        dev = torch.device("cpu")
    else:
        raise EdgekdError(f"unknown device '{device}' (auto, cpu, cuda, cuda:N)")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return Context(rank, world, local, dev)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def all_reduce_grads(params: list[torch.nn.Parameter], extra: torch.Tensor | None = None) -> torch.Tensor | None:
    """Average the gradients of `params` (missing ones count as zero) over all ranks in one flat all-reduce.

    `extra` (e.g. the loss) rides along and comes back averaged, so every rank sees the same NaN and stops together.
    A no-op returning `extra` in a single process.
    """
    if world_size() == 1:
        return extra
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    parts = [g.reshape(-1).float() for g in grads] + ([extra.detach().reshape(-1).float()] if extra is not None else [])
    flat = torch.cat(parts)
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
        offset += n
    return flat[offset:].reshape(extra.shape) if extra is not None else None


def broadcast_module(module: torch.nn.Module) -> None:
    """Start every rank from rank 0's weights and buffers."""
    if world_size() > 1:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, 0)


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
