"""Fixtures of the training tests that need no real data: a synthetic store and a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

SYNTH_CLASSES = ("circle", "square", "star")


@pytest.fixture(scope="session")
def synth_store(tmp_path_factory) -> Path:
    """A store of 150 synthetic drawings of three classes (129 train, 21 val). Read-only."""
    from doodle.data.store import PrepareConfig, prepare
    from doodle.data.synth import synth

    root = tmp_path_factory.mktemp("synth_store")
    synth(root / "synth", per_class=50, classes=list(SYNTH_CLASSES))
    prepare([root / "synth"], root / "store", PrepareConfig(val_fraction=0.2, progress=False, workers=1))
    return root / "store"


class TinyNet(nn.Module):
    """An image model of one linear layer on a 4 x 4 pooled image: trains in microseconds."""

    input_kind = "image"

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.fc = nn.Linear(16, num_classes)

    def forward(self, batch: dict) -> torch.Tensor:
        x = batch["image"].float().mean(dim=1, keepdim=True) / 255.0
        return self.fc(F.adaptive_avg_pool2d(x, 4).flatten(1))


@pytest.fixture
def tiny_net(monkeypatch) -> type[TinyNet]:
    """Make the training loop build `TinyNet`s instead of the configured model."""
    monkeypatch.setattr("doodle.train.loop.create_model", lambda model, inputs, n: TinyNet(n))
    return TinyNet
