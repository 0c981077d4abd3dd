"""grow_on_plateau: the effective batch doubles when validation stalls, and the learning-rate
schedule (planned in optimizer steps) still ends exactly when training ends."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from doodle.config import load_config
from doodle.runs.checkpoint import read_checkpoint
from doodle.train.config import TrainConfig
from doodle.train.data import EpochBatches
from doodle.train.logger import RunLogger
from doodle.train.loop import Trainer, train

PEAK, MIN_LR = 0.1, 0.001
SETTINGS = ["input.size=32", "data.batch_size=16", "data.workers=0", "log_every=50", "keep_checkpoints=0",
            "epochs=4", "grow_on_plateau=true", "schedule.plateau_patience=1", f"optim.lr={PEAK}",
            f"schedule.min_lr={MIN_LR}"]
PLANNED = 32  # 4 epochs of 8 batches, one batch per optimizer step
# Every validation but the first is stale: accumulation 1 for epochs 0-1 (16 steps), 2 for epoch 2
# (4 steps covering planned positions 16..24), 4 for epoch 3 (2 steps covering 24..32).
POSITIONS = [*range(1, 17), 18, 20, 22, 24, 28, 32]
ACCUMULATE = [1] * 16 + [2] * 4 + [4] * 2


def cosine(position: float) -> float:
    return MIN_LR + 0.5 * (PEAK - MIN_LR) * (1 + math.cos(math.pi * position / PLANNED))


def onecycle_reference() -> list[float]:
    """torch's OneCycleLR stepped once per planned step: its rate at every integer position."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=PEAK, total_steps=PLANNED + 1, pct_start=0.25)
    out = [opt.param_groups[0]["lr"]]
    for _ in range(PLANNED):
        opt.step()
        ref.step()
        out.append(opt.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("name", ["cosine", "onecycle"])
def test_schedule_ends_on_the_last_step_after_the_batch_grows(synth_store: Path, tmp_path: Path, tiny_net,
                                                              monkeypatch, name: str):
    assert [len(EpochBatches(synth_store, "train", None, 16, 0, e)) for e in range(4)] == [8] * 4
    stale = {"loss": 1.0, "map3": 0.5, "acc1": 0.5, "acc3": 0.5, "n": 21}  # never improves after the first
    monkeypatch.setattr(Trainer, "validate", lambda self, model: dict(stale))
    monkeypatch.setattr(RunLogger, "plot", lambda self: None)
    record: list[tuple[int, float]] = []  # (accumulation of the step, learning rate after it)
    step = Trainer._optimizer_step

    def spy(self):
        step(self)
        record.append((self.state.accumulate, self.schedule.lr))

    monkeypatch.setattr(Trainer, "_optimizer_step", spy)
    summary = train(load_config(TrainConfig, None, SETTINGS + [f"schedule.name={name}"]), synth_store, tmp_path / "r")
    assert summary["steps"] == len(POSITIONS) == len(record)
    assert [a for a, _ in record] == ACCUMULATE
    end = MIN_LR if name == "cosine" else PEAK / 25 / 1e4
    assert record[-1][1] == pytest.approx(end, rel=1e-12, abs=0)  # the end value, at the last step
    assert record[-2][1] > 2 * end
    want = [cosine(p) for p in POSITIONS] if name == "cosine" else [onecycle_reference()[p] for p in POSITIONS]
    assert [lr for _, lr in record] == pytest.approx(want, rel=1e-9)
    counters = read_checkpoint(tmp_path / "r" / "last.pt")["train_state"]["counters"]
    assert counters["epoch"] == 4 and counters["step"] == 22 and counters["accumulate"] == 4
    val_epochs = [float(r.split(",")[1]) for r in (tmp_path / "r" / "metrics.csv").read_text().splitlines()
                  if ",val," in r]
    assert val_epochs == [1.0, 2.0, 3.0, 4.0]  # trained to the planned last epoch
