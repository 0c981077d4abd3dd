"""Per-drawing weights, the curriculum and extra (pseudo-label) stores in training."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from doodle.config import load_config
from doodle.data.store import PrepareConfig, iter_store, prepare
from doodle.data.synth import synth
from doodle.errors import DoodleError
from doodle.post.clean import Scores, image_entropy, write_scores
from doodle.preprocess import InputConfig, Preprocessor
from doodle.train.config import TrainConfig
from doodle.train.data import EpochBatches, MixedBatches, make_loader
from doodle.train.loop import Trainer, train
from doodle.train.losses import make_loss
from doodle.train.weights import SampleWeights, class_ranks

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

        def loss_fn(logits, target, weight=None, *rest):
            assert weight is not None
            seen.append((self.state.epoch, float(weight.sum()), len(weight)))
            return inner(logits, target, weight, *rest)

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


# -- the curriculum in the loader, on a synthetic store where one class is uniformly harder ---------

SYNTH_CLASSES = ["circle", "square"]  # labels 0, 1
START, EPOCHS = 0.5, 3  # admitted fractions 0.5, 0.75, 1.0


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory) -> Path:
    """Two synthetic classes (~33 train drawings each) in row groups of 8, so windows hold several."""
    root = tmp_path_factory.mktemp("curriculum")
    files = synth(root / "raw", per_class=40, classes=SYNTH_CLASSES)
    prepare(files, root / "store", PrepareConfig(val_fraction=0.2, progress=False, workers=1, row_group_size=8))
    return root / "store"


@pytest.fixture(scope="module")
def hard_squares(synth_store: Path, tmp_path_factory) -> tuple[Path, dict[int, tuple[int, float]]]:
    """A scores file where every square (loss 10..11) is harder than every circle (loss 0..1), and
    key_id -> (label, loss) of each scored drawing. The first train drawing is left unscored."""
    drawings = list(iter_store(synth_store, "train"))
    rng = np.random.default_rng(3)
    table = {d.key_id: (SYNTH_CLASSES.index(d.word), 10.0 * SYNTH_CLASSES.index(d.word) + rng.random())
             for d in drawings[1:]}
    keys = np.array(list(table), np.uint64)
    labels = np.array([v[0] for v in table.values()], np.int64)
    loss = np.array([v[1] for v in table.values()], np.float32)
    path = tmp_path_factory.mktemp("scores") / "scores.parquet"
    write_scores(Scores(keys, labels, loss, np.ones(len(keys), np.float32)), np.ones(len(keys)), path)
    return path, table


def curriculum(path: Path, start: float = START, epochs: int = EPOCHS) -> SampleWeights:
    cfg = SimpleNamespace(sample_weights=None, curriculum=str(path), curriculum_start=start, epochs=epochs)
    return SampleWeights.from_config(cfg)


def easiest(table: dict[int, tuple[int, float]], fraction: float) -> set[int]:
    """The ceil(fraction * n) lowest-loss drawings of each class of n scored drawings."""
    out: set[int] = set()
    for label in range(len(SYNTH_CLASSES)):
        ranked = sorted((loss, key) for key, (c, loss) in table.items() if c == label)
        out |= {key for _, key in ranked[:math.ceil(fraction * len(ranked))]}
    return out


def loader_keys(ds) -> list[int]:
    return [int(k) for batch in make_loader(ds, workers=0, pin_memory=False) for k in
            batch["key_id"].numpy().view(np.uint64)]


def test_class_ranks_by_hand():
    labels = np.array([1, 0, 1, 1, 0])
    loss = np.array([3.0, 1.0, 1.0, 2.0, 0.0])
    assert class_ranks(labels, loss).tolist() == [2 / 3, 1 / 2, 0.0, 1 / 3, 0.0]


def test_curriculum_admits_the_easiest_fraction_of_each_class(hard_squares):
    path, table = hard_squares
    sw = curriculum(path)
    assert [sw.admitted_fraction(e) for e in range(EPOCHS)] == [0.5, 0.75, 1.0]
    assert curriculum(path, epochs=1).admitted_fraction(0) == 1.0  # one epoch: everything
    keys = np.array(list(table), np.uint64)
    sizes = np.bincount([c for c, _ in table.values()])
    for epoch, fraction in enumerate([0.5, 0.75, 1.0]):
        admitted = set(keys[sw.admits(keys, epoch)].tolist())
        assert admitted == easiest(table, fraction)
        per_class = np.bincount([table[k][0] for k in admitted], minlength=2)
        assert per_class.tolist() == [math.ceil(fraction * n) for n in sizes]  # the hard class too
    assert sw.admits(np.array([12345], np.uint64), 0).tolist() == [True]  # unscored: always admitted


def test_loader_reads_only_admitted_drawings(synth_store, hard_squares, monkeypatch):
    path, table = hard_squares
    sw = curriculum(path)
    unscored = {d.key_id for d in iter_store(synth_store, "train")} - set(table)
    rendered: list[int] = []  # drawings preprocessed, batch by batch
    real_packed = Preprocessor.packed

    def spy(self, packed, *args, **kwargs):
        rendered.append(len(packed))
        return real_packed(self, packed, *args, **kwargs)

    monkeypatch.setattr(Preprocessor, "packed", spy)
    prep = Preprocessor(InputConfig(size=32), "image")
    for epoch, fraction in enumerate([0.5, 0.75, 1.0]):
        rendered.clear()
        ds = EpochBatches(synth_store, "train", prep, 5, seed=2, epoch=epoch, drop_last=False, curriculum=sw)
        expected = easiest(table, fraction) | unscored
        assert ds.rows == len(expected) and len(ds) == math.ceil(len(expected) / 5)
        keys = loader_keys(ds)
        assert sorted(keys) == sorted(expected)  # each admitted drawing once, no other
        assert sum(rendered) == len(expected)  # the admitted drawings, and nothing else, were preprocessed
        copy = pickle.loads(pickle.dumps(ds))  # what a worker process receives
        assert copy.curriculum is None and loader_keys(copy) == keys
        with pytest.raises(RuntimeError, match="curriculum mask"):
            copy.set_epoch(epoch + 1)


def test_curriculum_with_balanced_blocks_and_no_curriculum(synth_store, hard_squares):
    path, table = hard_squares
    train = {d.key_id for d in iter_store(synth_store, "train")}
    assert sorted(loader_keys(EpochBatches(synth_store, "train", None, 7, drop_last=False))) == sorted(train)
    ds = EpochBatches(synth_store, "train", None, 7, epoch=0, drop_last=False, balanced_block=10,
                      curriculum=curriculum(path))
    plain = EpochBatches(synth_store, "train", None, 7, epoch=0, drop_last=False, balanced_block=10)
    kept = set(loader_keys(plain))
    assert set(loader_keys(ds)) == kept & (easiest(table, 0.5) | (train - set(table)))
