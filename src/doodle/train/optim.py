"""Optimizers and learning-rate schedules behind one small interface the loop steps."""

from __future__ import annotations

import torch
from torch import nn

from doodle.train.config import OptimConfig, ScheduleConfig


def build_optimizer(cfg: OptimConfig, model: nn.Module) -> torch.optim.Optimizer:
    """AdamW or SGD; no weight decay on biases and normalisation weights (1-D parameters)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


class Schedule:
    """The learning rate over training: `after_step(step)` after every optimizer step,
    `after_eval(map3)` after every validation; `state_dict()` makes it resumable.

    cosine: timm's cosine annealing with warm restarts (cycles growing by cycle_mul);
    onecycle: torch's OneCycleLR; plateau: torch's ReduceLROnPlateau on validation MAP@3;
    constant. cosine, plateau and constant start with a linear warm-up.
    """

    def __init__(self, cfg: ScheduleConfig, optimizer: torch.optim.Optimizer, peak_lr: float, total_steps: int):
        self.cfg, self.optimizer, self.peak_lr = cfg, optimizer, peak_lr
        total_steps = max(1, total_steps)
        self.inner = None
        if cfg.name == "cosine":
            from timm.scheduler import CosineLRScheduler

            first = cfg.cycle_steps or max(1, total_steps - cfg.warmup_steps)
            self.inner = CosineLRScheduler(
                optimizer, t_initial=first, lr_min=cfg.min_lr, cycle_mul=cfg.cycle_mul, cycle_decay=cfg.cycle_decay,
                cycle_limit=1 if not cfg.cycle_steps else 10**6, warmup_t=cfg.warmup_steps,
                warmup_lr_init=cfg.warmup_lr, warmup_prefix=True, t_in_epochs=False)
        elif cfg.name == "onecycle":
            self.inner = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=peak_lr, total_steps=total_steps + 1, pct_start=cfg.pct_start)
        elif cfg.name == "plateau":
            self.inner = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr)
        self.plateau_scale = 1.0
        self.after_step(0)

    def _warmup(self, step: int) -> float | None:
        if step < self.cfg.warmup_steps:
            return self.cfg.warmup_lr + (self.peak_lr - self.cfg.warmup_lr) * step / self.cfg.warmup_steps
        return None

    def after_step(self, step: int) -> None:
        name = self.cfg.name
        if name == "cosine":
            self.inner.step_update(num_updates=step)
        elif name == "onecycle":
            if step > 0:
                self.inner.step()
        else:
            warm = self._warmup(step)
            if warm is not None or name == "constant" or step == self.cfg.warmup_steps:
                self._set(warm if warm is not None else self.peak_lr * self.plateau_scale)

    def after_eval(self, map3: float) -> None:
        if self.cfg.name == "plateau" and self.inner is not None:
            self.inner.step(map3)
            self.plateau_scale = self.lr / self.peak_lr

    def _set(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        inner = self.inner.state_dict() if self.inner is not None else {}
        return {"inner": inner, "plateau_scale": self.plateau_scale}

    def load_state_dict(self, state: dict) -> None:
        if self.inner is not None:
            self.inner.load_state_dict(state["inner"])
        self.plateau_scale = state["plateau_scale"]
