"""Per-drawing weights, the curriculum and extra (pseudo-label) stores in training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from doodle.clean import SampleWeights, Scores, image_entropy, write_scores
from doodle.config import load_config
from doodle.data.store import PrepareConfig, iter_store, prepare
from doodle.errors import DoodleError
from doodle.train.config import TrainConfig
from doodle.train.data import EpochBatches, MixedBatches
from doodle.train.loop import Trainer, train
from doodle.train.losses import make_loss

CLASSES = ("airplane", "eye", "map")
TINY = ["model.arch=resnet10t", "input.size=32", "data.batch_size=16", "data.workers=0", "log_every=50",
        "data.limit_val=32", "keep_checkpoints=0"]


@pytest.fixture(scope="module")
def stores(quickdraw: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A labelled store and a second one over the same classes (standing in for pseudo-labels)."""
    root = tmp_path_factory.mktemp("stores")
    files = [quickdraw / "simplified" / f"JulienDuranleau_{c}.ndjson" for c in CLASSES]
    prepare(files, root / "main", PrepareConfig(val_fraction=0.2, progress=False, workers=1, row_group_size=128))
    prepare(files, root / "extra", PrepareConfig(val_fraction=0.96, seed=5, progress=False, workers=1,
                                                 row_group_size=128, classes=list(CLASSES)))
    return root / "main", root / "extra"


def test_weighted_loss_is_the_weighted_mean():
    loss = make_loss(load_config(TrainConfig, None, []).loss)
    logits, target = torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    each = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    w = torch.tensor([1.0, 0.0, 2.0, 1.0])
    assert torch.allclose(loss(logits, target, w), (each * w).sum() / 4)
    assert torch.allclose(loss(logits, target, torch.ones(4)), loss(logits, target))


def test_sample_weights_and_curriculum_admission():
    keys = np.array([2**64 - 1, 5, 7, 9], np.uint64)
    sw = SampleWeights(keys, np.array([0.5, 1.0, 0.0, 2.0]), difficulty_rank=np.array([0.0, 0.25, 0.5, 0.75]),
                       start=0.5, epochs=3)
    assert [sw.admitted_fraction(e) for e in range(3)] == [0.5, 0.75, 1.0]
    batch = torch.from_numpy(np.array([2**64 - 1, 9, 5, 11], np.uint64).view(np.int64))  # 11: unscored
    assert sw.batch(batch, 0).tolist() == [0.5, 0.0, 1.0, 1.0]  # rank 0.75 not yet admitted
    assert sw.batch(batch, 2).tolist() == [0.5, 2.0, 1.0, 1.0]


def test_image_entropy_orders_blank_below_busy(stores):
    main, _ = stores
    drawings = list(iter_store(main, "train"))[:50]
    h = image_entropy(drawings)
    dot = drawings[0].replace(strokes=[drawings[0].strokes[0][:1]])
    assert h.shape == (50,) and (h > 0).all()
    assert image_entropy([dot])[0] < h.min()  # a single point is nearly blank


def test_mixed_batches_cover_every_source_once(stores):
    main, extra = stores
    a = EpochBatches(main, "train", None, 32, seed=1, epoch=0)
    b = EpochBatches(extra, "train", None, 32, seed=1, epoch=0)
    mixed = MixedBatches([a, b], seed=1, epoch=0)
    assert len(mixed) == len(a) + len(b) > len(a)
    keys = [tuple(mixed[i]["key_id"].tolist()) for i in range(len(mixed))]
    expected = [tuple(a[i]["key_id"].tolist()) for i in range(len(a))] + [
        tuple(b[i]["key_id"].tolist()) for i in range(len(b))]
    assert sorted(keys) == sorted(expected) and keys != expected  # all of them, interleaved
    assert [tuple(MixedBatches([a, b], 1, 0)[i]["key_id"].tolist()) for i in range(3)] == keys[:3]


def test_training_uses_weights_curriculum_and_extra_stores(stores, tmp_path, monkeypatch):
    main, extra = stores
    drawings = list(iter_store(main, "train"))
    keys = np.array([d.key_id for d in drawings], np.uint64)
    loss = np.arange(len(keys), dtype=np.float32)  # drawing i is the i-th hardest
    scores = Scores(keys, np.zeros(len(keys), np.int64), loss, np.ones(len(keys), np.float32))
    weights = np.ones(len(keys), np.float32)
    weights[::2] = 0.0
    write_scores(scores, weights, tmp_path / "scores.parquet")
    seen: list[tuple[int, float, int]] = []
    original = Trainer._train_epoch

    def spy(self):
        inner = self.loss_fn

        def loss_fn(logits, target, weight=None):
            assert weight is not None
            seen.append((self.state.epoch, float(weight.sum()), len(weight)))
            return inner(logits, target, weight)

        self.loss_fn = loss_fn
        original(self)

    monkeypatch.setattr(Trainer, "_train_epoch", spy)
    cfg = load_config(TrainConfig, None, TINY + ["epochs=2", "data.limit_train=32", f"extra_train=[{extra}]",
                                                  f"sample_weights={tmp_path / 'scores.parquet'}",
                                                  f"curriculum={tmp_path / 'scores.parquet'}",
                                                  "curriculum_start=0.2"])
    train(cfg, main, tmp_path / "run")
    first = [s for e, s, n in seen if e == 0]
    last = [s for e, s, n in seen if e == 1]
    assert len(first) > 2  # the main store's 2 batches plus the extra store's
    # epoch 0 admits the easiest 20 % and half of them weigh 0; extra-store drawings are unscored (weight 1)
    assert sum(first) < sum(n for e, s, n in seen if e == 0)
    assert np.mean(last) >= np.mean(first)
    with pytest.raises(DoodleError, match="no such scores file"):
        train(load_config(TrainConfig, None, TINY + [f"sample_weights={tmp_path / 'none.parquet'}"]), main,
              tmp_path / "run2")
