"""Losses: cross-entropy with label smoothing, optionally mixed with a top-3 loss (24th place)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from doodle.train.config import LossConfig
from doodle.train.distributed import Env, weight_share


def top3_loss(logits: torch.Tensor, target: torch.Tensor, margin: float = 1.0, reduction: str = "mean"
              ) -> torch.Tensor:
    """Hinge on the true class against the third-best other class: MAP@3 only cares whether the
    true class is in the top three, so this loss is zero once it leads the third-best rival by
    `margin`, whatever the order above it."""
    true = logits.gather(1, target[:, None]).squeeze(1)
    others = logits.scatter(1, target[:, None], float("-inf"))
    k = min(3, logits.shape[1] - 1)
    third = others.topk(k, dim=1).values[:, -1]
    hinge = F.relu(margin - (true - third))
    return hinge if reduction == "none" else hinge.mean()


def make_loss(cfg: LossConfig):
    """loss(logits, target, weight=None, weight_total=None) -> scalar tensor, as the config mixes them.

    With per-drawing `weight`s the loss is sum(weight * loss) / weight_total, weight_total being
    weight.sum() unless given: a process of a multi-process run passes its share of the weight sum
    of all processes' batches, so that the gradients DDP averages are those of the global weighted
    mean (`doodle.train.distributed.weight_share`).
    """

    def mixed(logits: torch.Tensor, target: torch.Tensor, reduction: str) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), target, label_smoothing=cfg.label_smoothing, reduction=reduction)
        if cfg.top3_weight <= 0:
            return ce
        top3 = top3_loss(logits.float(), target, cfg.top3_margin, reduction=reduction)
        return (1 - cfg.top3_weight) * ce + cfg.top3_weight * top3

    def loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
             weight_total: torch.Tensor | None = None) -> torch.Tensor:
        if weight is None:
            return mixed(logits, target, "mean")
        # per-drawing weights (cleaning, curriculum): a weighted mean
        total = weight.sum() if weight_total is None else weight_total
        return (mixed(logits, target, "none") * weight).sum() / total.clamp_min(1e-12)

    return loss


def micro_batch_loss(loss_fn, env: Env, logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None,
                     accumulate: int) -> torch.Tensor:
    """The loss one micro-batch backpropagates: its part of the optimizer step's mean over
    `accumulate` micro-batches. With per-drawing weights and several processes, the weighted sum
    is divided by this process's share of the weight sum of all processes (`weight_share`), so
    that the gradients DDP averages are those of the weighted mean over the global batch."""
    share = weight_share(env, weight) if weight is not None else None
    return loss_fn(logits, labels, weight, share) / accumulate
