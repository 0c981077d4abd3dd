"""amp=bf16 on a CPU: the forward pass runs in bfloat16 under autocast, the weights stay float32."""

from __future__ import annotations

from pathlib import Path

import torch

from doodle.config import load_config
from doodle.runs.checkpoint import read_checkpoint
from doodle.train.config import TrainConfig
from doodle.train.distributed import Env
from doodle.train.logger import RunLogger
from doodle.train.loop import Trainer, train

TINY = ["input.size=32", "data.batch_size=16", "data.workers=0", "epochs=1", "max_steps=2", "log_every=1",
        "keep_checkpoints=0", "data.limit_val=16", "device=cpu"]


def test_bf16_autocast_on_cpu_trains_float32_weights(synth_store: Path, tmp_path: Path, tiny_net, monkeypatch):
    seen: list[tuple[bool, torch.dtype, torch.dtype]] = []  # (training, activation dtype, weight dtype)
    initial = {}

    def build(model_cfg, inputs, n):
        model = tiny_net(n)
        initial.update({k: v.clone() for k, v in model.state_dict().items()})
        model.fc.register_forward_hook(lambda m, args, out: seen.append((m.training, out.dtype, m.weight.dtype)))
        return model

    monkeypatch.setattr("doodle.train.loop.create_model", build)
    monkeypatch.setattr(RunLogger, "plot", lambda self: None)
    train(load_config(TrainConfig, None, TINY + ["amp=bf16"]), synth_store, tmp_path / "run")
    training = [s for s in seen if s[0]]
    assert len(training) == 2 and len(seen) > 2  # two training steps, then validation
    assert all(dtype == torch.bfloat16 and weight == torch.float32 for _, dtype, weight in seen)
    final = read_checkpoint(tmp_path / "run" / "last.pt")["model"]
    assert all(v.dtype == torch.float32 for v in final.values())
    assert not torch.equal(final["fc.weight"], initial["fc.weight"])  # the steps did update the weights


def test_auto_precision_is_float32_on_cpu(synth_store: Path, tmp_path: Path, tiny_net):
    cfg = load_config(TrainConfig, None, TINY)
    trainer = Trainer(cfg, synth_store, tmp_path / "run", Env(0, 1, 0, torch.device("cpu")), resume=False)
    trainer.logger.close()
    assert trainer.amp_dtype is None and not trainer.scaler.is_enabled()
    with trainer._autocast():
        out = trainer.model({"image": torch.zeros(2, 3, 32, 32, dtype=torch.uint8)})
    assert out.dtype == torch.float32
