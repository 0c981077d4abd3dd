"""Per-drawing loss weights under DDP: two gloo processes on a CPU, each with a batch of a
different total weight, average to the gradient of the weighted mean over both batches."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from doodle.train.config import LossConfig
from doodle.train.distributed import Env
from doodle.train.losses import make_loss, micro_batch_loss

SMOOTHING = 0.1


def batches() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(inputs, targets, weights) of each rank: 3 drawings of weight 3 in all, 5 of weight 10."""
    g = torch.Generator().manual_seed(7)
    x0, x1 = torch.randn(3, 4, generator=g), torch.randn(5, 4, generator=g)
    return [(x0, torch.tensor([0, 1, 2]), torch.tensor([1.0, 1.0, 1.0])),
            (x1, torch.tensor([2, 2, 0, 1, 0]), torch.tensor([4.0, 0.5, 2.0, 0.0, 3.5]))]


def linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(4, 3)


def grads(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def rank_main(rank: int, init_file: str, out: str) -> None:
    """One DDP process: the training loop's micro-batch loss on this rank's batch, then backward."""
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        model = linear()
        ddp = DistributedDataParallel(model)
        x, y, w = batches()[rank]
        env = Env(rank, 2, rank, torch.device("cpu"))
        loss_fn = make_loss(LossConfig(label_smoothing=SMOOTHING))
        micro_batch_loss(loss_fn, env, ddp(x), y, w, accumulate=1).backward()
        torch.save(grads(model), Path(out) / f"grad{rank}.pt")
    finally:
        dist.destroy_process_group()


def weighted_mean_grad(parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """One process, by hand: the gradient of sum(w * loss) / sum(w) over the concatenated batches."""
    model = linear()
    x, y, w = (torch.cat(t) for t in zip(*parts, strict=True))
    each = F.cross_entropy(model(x), y, label_smoothing=SMOOTHING, reduction="none")
    ((each * w).sum() / w.sum()).backward()
    return grads(model)


def test_ddp_average_is_the_gradient_of_the_global_weighted_mean(tmp_path: Path):
    mp.spawn(rank_main, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    g0, g1 = (torch.load(tmp_path / f"grad{r}.pt") for r in (0, 1))
    assert torch.allclose(g0, g1)  # DDP left both ranks the same (averaged) gradient
    parts = batches()
    assert torch.allclose(g0, weighted_mean_grad(parts), atol=1e-6)
    # the mean of the per-rank weighted means weighs rank 0's 3 units of weight like rank 1's 10
    per_rank = (weighted_mean_grad(parts[:1]) + weighted_mean_grad(parts[1:])) / 2
    assert not torch.allclose(g0, per_rank, atol=1e-3)
