"""Optimizers and learning-rate schedules behind one small interface the loop steps."""

from __future__ import annotations

from dataclasses import asdict, dataclass

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


@dataclass
class ScheduleClock:
    """Where optimizer step `step` falls on a schedule planned for `total` steps.

    Until `resize`, step s is position s. When the run's remaining steps change (the effective
    batch grows, so fewer optimizer steps are left), `resize(step, steps_left)` spreads the rest
    of the schedule evenly over the steps left: the last of them is position `total` exactly, so
    a schedule that decays to its end value still reaches it when training ends.
    """

    total: int
    anchor_step: int = 0
    anchor_position: float = 0.0
    steps_left: int = 0
    """Optimizer steps from anchor_step to the end (0: `total`, the plan before any resize)."""

    def position(self, step: int) -> float:
        """The schedule position of optimizer step `step`, never past `total`."""
        span = self.steps_left or self.total
        left = max(0, span - (step - self.anchor_step))
        # written from the end so that the last step lands on `total` without rounding error
        return self.total - (self.total - self.anchor_position) * left / span

    def resize(self, step: int, steps_left: int) -> None:
        """From optimizer step `step` on, `steps_left` (>= 1) more steps finish the schedule."""
        if steps_left < 1:
            raise ValueError(f"steps_left must be at least 1, got {steps_left}")
        self.anchor_position = self.position(step)
        self.anchor_step, self.steps_left = step, steps_left


def onecycle_pct(pct_start: float, cycle: int) -> float:
    """pct_start for OneCycleLR over `cycle` steps, raised so that the warm-up phase spans at least
    two steps: torch divides by the phase's length in steps less one, so a 5-step cycle at 0.2 (a
    short run sized by a time budget) would fail with a division by zero."""
    return max(pct_start, min(2 / cycle, 0.5))


class Schedule:
    """The learning rate over training: `after_step(step)` after every optimizer step,
    `after_eval(map3)` after every validation, `resize(step, steps_left)` when the run's remaining
    optimizer steps change; `state_dict()` makes it resumable.

    cosine: timm's cosine annealing with warm restarts (cycles growing by cycle_mul);
    onecycle: torch's OneCycleLR; plateau: torch's ReduceLROnPlateau on validation MAP@3;
    constant. cosine, plateau and constant start with a linear warm-up. Positions on the schedule
    are counted in the optimizer steps planned at the start (see `ScheduleClock`).
    """

    def __init__(self, cfg: ScheduleConfig, optimizer: torch.optim.Optimizer, peak_lr: float, total_steps: int):
        self.cfg, self.optimizer, self.peak_lr = cfg, optimizer, peak_lr
        self.clock = ScheduleClock(max(1, total_steps))
        self.inner = self._make_inner(self.clock.total)
        self.plateau_scale = 1.0
        self._warmed = False  # plateau: the warm-up's end has set the peak learning rate
        self.after_step(0)

    def _make_inner(self, total_steps: int):
        cfg = self.cfg
        if cfg.name == "cosine":
            from timm.scheduler import CosineLRScheduler

            first = cfg.cycle_steps or max(1, total_steps - cfg.warmup_steps)
            return CosineLRScheduler(
                self.optimizer, t_initial=first, lr_min=cfg.min_lr, cycle_mul=cfg.cycle_mul,
                cycle_decay=cfg.cycle_decay, cycle_limit=1 if not cfg.cycle_steps else 10**6,
                warmup_t=cfg.warmup_steps, warmup_lr_init=cfg.warmup_lr, warmup_prefix=True, t_in_epochs=False)
        if cfg.name == "onecycle":
            # one step more than planned: the last optimizer step lands on the cycle's end value
            cycle = max(3, total_steps + 1)
            return torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, max_lr=self.peak_lr, total_steps=cycle, pct_start=onecycle_pct(cfg.pct_start, cycle))
        if cfg.name == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
                min_lr=cfg.min_lr)
        return None

    def _warmup(self, position: float) -> float | None:
        if position < self.cfg.warmup_steps:
            return self.cfg.warmup_lr + (self.peak_lr - self.cfg.warmup_lr) * position / self.cfg.warmup_steps
        return None

    def after_step(self, step: int) -> None:
        """Set the learning rate of the optimizer step after `step` steps."""
        position = self.clock.position(step)
        name = self.cfg.name
        if name == "cosine":
            self.inner.step_update(num_updates=position)
        elif name == "onecycle":
            self._onecycle(position)
        else:
            self._warm_or_constant(position)

    def _onecycle(self, position: float) -> None:
        # OneCycleLR reads its position from last_epoch, which its step() advances by one; position
        # 0 is where it starts (stepping it there before the optimizer has stepped only warns).
        if position > 0:
            self.inner.last_epoch = position - 1
            self.inner.step()

    def _warm_or_constant(self, position: float) -> None:
        warm = self._warmup(position)
        if warm is not None:
            self._set(warm)
        elif self.cfg.name == "constant" or not self._warmed:
            # plateau: after the warm-up only validations (ReduceLROnPlateau) change the rate
            self._set(self.peak_lr * self.plateau_scale)
            self._warmed = True

    def resize(self, step: int, steps_left: int) -> None:
        """The run now ends `steps_left` optimizer steps after `step`: the rest of the schedule is
        spread over them, so that it still ends at the run's last step."""
        self.clock.resize(step, steps_left)

    def after_eval(self, map3: float) -> None:
        """plateau: reduce the learning rate when validation MAP@3 stops improving."""
        if self.cfg.name == "plateau" and self.inner is not None:
            self.inner.step(map3)
            self.plateau_scale = self.lr / self.peak_lr

    def _set(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @property
    def lr(self) -> float:
        """The learning rate of the next optimizer step."""
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        """Everything `load_state_dict` needs to continue the schedule exactly."""
        inner = self.inner.state_dict() if self.inner is not None else {}
        return {"inner": inner, "plateau_scale": self.plateau_scale, "clock": asdict(self.clock)}

    def load_state_dict(self, state: dict) -> None:
        """Continue the schedule saved by `state_dict` (a state without a clock: never resized)."""
        if self.inner is not None:
            self.inner.load_state_dict(state["inner"])
        self.plateau_scale = state["plateau_scale"]
        self.clock = ScheduleClock(**state.get("clock", {"total": self.clock.total}))
