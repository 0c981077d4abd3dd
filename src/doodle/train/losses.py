"""Losses: cross-entropy with label smoothing, optionally mixed with a top-3 loss (24th place)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from doodle.train.config import LossConfig


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
    """loss(logits, target) -> scalar tensor, as the config mixes them."""

    def loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        if weight is not None:  # per-drawing weights (cleaning, curriculum): a weighted mean
            ce = F.cross_entropy(logits.float(), target, label_smoothing=cfg.label_smoothing, reduction="none")
            if cfg.top3_weight > 0:
                ce = (1 - cfg.top3_weight) * ce + cfg.top3_weight * top3_loss(
                    logits.float(), target, cfg.top3_margin, reduction="none")
            return (ce * weight).sum() / weight.sum().clamp_min(1e-12)
        ce = F.cross_entropy(logits.float(), target, label_smoothing=cfg.label_smoothing)
        if cfg.top3_weight <= 0:
            return ce
        return (1 - cfg.top3_weight) * ce + cfg.top3_weight * top3_loss(logits.float(), target, cfg.top3_margin)

    return loss
