"""find_batch in the training loop with a fake memory limit: the batch it finds, and the run's config."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from doodle.config import load_config
from doodle.train.config import TrainConfig
from doodle.train.distributed import Env
from doodle.train.loop import Trainer

LIMIT = 100  # drawings a forward pass holds before the fake device runs out of memory


def test_find_batch_takes_90_percent_of_the_largest_fitting_batch_and_saves_it(
        synth_store: Path, tmp_path: Path, tiny_net, monkeypatch):
    tried: list[int] = []

    def fake_memory(module, args):
        n = args[0]["image"].shape[0]
        if module.training:
            tried.append(n)
            if n > LIMIT:
                raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {n} drawings")

    def build(model_cfg, inputs, n):
        model = tiny_net(n)
        model.register_forward_pre_hook(fake_memory)
        return model

    monkeypatch.setattr("doodle.train.loop.create_model", build)
    monkeypatch.setattr(Trainer, "_runs_out_of_memory", lambda self: True)
    cfg = load_config(TrainConfig, None, ["input.size=32", "data.batch_size=16", "data.workers=0", "epochs=1",
                                          "find_batch=true"])
    run = tmp_path / "run"
    trainer = Trainer(cfg, synth_store, run, Env(0, 1, 0, torch.device("cpu")), resume=False)
    trainer.logger.close()
    # doubling from data.batch_size (16) until 128 fails, then bisection between 64 and 128
    assert tried == [16, 32, 64, 128, 96, 112, 104, 100, 102, 101]
    assert trainer.cfg.data.batch_size == 90  # 90 % of 100: a margin for the optimizer state
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["batch_size"] == 90
    assert all(p.grad is None for p in trainer.model.parameters())  # the tries leave no gradients


def test_find_batch_on_a_cpu_keeps_the_configured_batch(synth_store: Path, tmp_path: Path, tiny_net):
    cfg = load_config(TrainConfig, None, ["input.size=32", "data.batch_size=16", "data.workers=0", "epochs=1",
                                          "find_batch=true"])
    trainer = Trainer(cfg, synth_store, tmp_path / "run", Env(0, 1, 0, torch.device("cpu")), resume=False)
    trainer.logger.close()
    assert trainer.cfg.data.batch_size == 16
