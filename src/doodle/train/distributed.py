"""Device choice and torchrun/DDP set-up: the same code runs on one CPU, one GPU or many nodes."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Env:
    """Where this process trains."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def choose_device(wanted: str = "auto", local_rank: int = 0) -> torch.device:
    """CUDA (this process's GPU) when present and wanted, else CPU."""
    if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from doodle.errors import DoodleError

            raise DoodleError("device=cuda was asked for but no CUDA device is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup(wanted_device: str = "auto", threads: int = 0) -> Env:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), join the process group (NCCL on
    GPUs, gloo on CPU) and pick the device. On CPU, model threads default to all cores shared among
    the local training processes: loader workers render a batch in a few percent of the time the
    model needs for it, so reserving cores for them would idle the model."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(wanted_device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
        cores = os.cpu_count() or 1
        torch.set_num_threads(threads or max(1, cores // max(local, 1)))
    return Env(rank, world, local_rank, device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: Env) -> None:
    if env.distributed:
        dist.barrier()


def broadcast_object(env: Env, obj):
    """rank 0's `obj` on every rank."""
    if not env.distributed:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def weights_in_sync(env: Env, model: torch.nn.Module) -> bool:
    """True when every rank holds exactly the same parameters (compares a checksum across ranks)."""
    if not env.distributed:
        return True
    total = torch.zeros(2, dtype=torch.float64, device=env.device)
    for p in model.parameters():
        flat = p.detach().double().flatten()
        total[0] += flat.sum()
        total[1] += (flat * torch.arange(1, flat.numel() + 1, device=flat.device, dtype=torch.float64)).sum()
    low, high = total.clone(), total.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))


def weight_share(env: Env, weight: torch.Tensor) -> torch.Tensor:
    """The denominator of this process's weighted loss sum(weight * loss) / share.

    DDP averages the gradients of the processes, so dividing each process's weighted sum by
    (weight sum over all processes) / world_size makes that average the gradient of the weighted
    mean over every process's batch; a per-process weighted mean would instead weigh each
    process's batch equally, however much weight it holds. One process: weight.sum().
    """
    total = weight.detach().sum()
    if not env.distributed:
        return total
    total = total.clone()
    dist.all_reduce(total)
    return total / env.world_size


def any_rank(env: Env, flag: bool) -> bool:
    """True on every rank when `flag` is true on any (ranks that decide alone could part ways and hang)."""
    if not env.distributed:
        return flag
    value = torch.tensor([float(flag)], device=env.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
