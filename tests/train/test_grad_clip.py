"""optim.grad_clip: the optimizer step applies the gradient clipped to the configured norm."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from doodle.config import load_config
from doodle.train.config import TrainConfig
from doodle.train.distributed import Env
from doodle.train.loop import Trainer

PLAIN_SGD = ["input.size=32", "data.batch_size=16", "data.workers=0", "epochs=1", "optim.name=sgd",
             "optim.momentum=0", "optim.nesterov=false", "optim.weight_decay=0", "optim.lr=0.1",
             "schedule.name=constant"]


def step_with(trainer: Trainer, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """The parameter change of one optimizer step with these gradients."""
    params = list(trainer.model.parameters())
    before = [p.detach().clone() for p in params]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    trainer._optimizer_step()
    return [p.detach() - b for p, b in zip(params, before, strict=True)]


def test_sgd_step_moves_by_lr_times_the_clipped_gradient(synth_store: Path, tmp_path: Path, tiny_net):
    cfg = load_config(TrainConfig, None, PLAIN_SGD + ["optim.grad_clip=1.0"])
    trainer = Trainer(cfg, synth_store, tmp_path / "run", Env(0, 1, 0, torch.device("cpu")), resume=False)
    try:
        weight, bias = trainer.model.parameters()
        # a huge gradient: 48 entries of 1e6 and 3 of 2e6, norm 1e6 * sqrt(48 + 12)
        grads = [torch.full_like(weight, 1e6), torch.full_like(bias, 2e6)]
        norm = 1e6 * math.sqrt(60)
        for delta, g in zip(step_with(trainer, grads), grads, strict=True):
            assert torch.allclose(delta, -0.1 * g / (norm + 1e-6), rtol=1e-5, atol=1e-7)
        assert math.sqrt(sum(float((d ** 2).sum()) for d in step_with(trainer, grads))) == pytest.approx(0.1)
        trainer.cfg.optim.grad_clip = 0.0  # off: the raw gradient
        small = [torch.full_like(weight, 0.01), torch.full_like(bias, -0.02)]
        for delta, g in zip(step_with(trainer, small), small, strict=True):
            assert torch.allclose(delta, -0.1 * g, rtol=0, atol=1e-7)  # float32 weights near 0.25
    finally:
        trainer.logger.close()
