"""`doodle clean`: which drawings are weighted 0 (loss, entropy), and the cleaned store's accounting."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

import doodle.infer.predict as predict_mod
import doodle.post.clean as clean_mod
import doodle.render
from doodle.cli import main
from doodle.data.store import PrepareConfig, iter_store, load_manifest, prepare
from doodle.data.synth import synth
from doodle.post.clean import Scores, image_entropy, weights_from_scores
from doodle.train.data import EpochBatches, class_counts

CLASSES = ["circle", "square"]
LOW, EDGE = 0.1, 0.3  # entropies below and at --min-entropy 0.3


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    files = synth(root / "raw", per_class=25, classes=CLASSES)
    prepare(files, root / "store", PrepareConfig(val_fraction=0.2, progress=False, workers=1, row_group_size=8))
    return root / "store"


def known_losses(store: Path) -> dict[int, float]:
    """key_id -> the loss the fake model gives: within each class, 0.5, 0.75, 1.0, ... by key_id."""
    out = {}
    for word in CLASSES:
        keys = sorted(d.key_id for d in iter_store(store, "train") if d.word == word)
        out.update({k: 0.5 + 0.25 * j for j, k in enumerate(keys)})
    return out


class LossModel(nn.Module):
    """Log-probabilities whose -log p(label) is the loss its input carries (two classes)."""

    def forward(self, batch):
        loss, label = batch["loss"].double(), batch["label"]
        other = torch.log1p(-torch.exp(-loss))  # log(1 - p(label)): the other class
        out = torch.stack([other, other], 1)
        out[torch.arange(len(label)), label] = -loss
        return out.float()


@pytest.fixture
def fake_model(store: Path, tmp_path: Path, monkeypatch) -> Path:
    """A checkpoint file that loads as LossModel, and entropies patched to known values: the two
    easiest drawings of each class get LOW and EDGE, the hardest LOW, the others 3 bits."""
    losses = known_losses(store)
    entropy = {}
    for word in CLASSES:
        keys = sorted(d.key_id for d in iter_store(store, "train") if d.word == word)
        entropy.update({keys[0]: LOW, keys[1]: EDGE, keys[-1]: LOW})

    def preprocess(drawings):
        return {"loss": np.array([losses[d.key_id] for d in drawings], np.float64),
                "label": np.array([CLASSES.index(d.word) for d in drawings], np.int64)}

    def load_model(path, weights="model"):
        return LossModel(), preprocess, list(CLASSES), {}

    monkeypatch.setattr(predict_mod, "load_model", load_model)
    monkeypatch.setattr(clean_mod, "image_entropy",
                        lambda drawings: np.array([entropy.get(d.key_id, 3.0) for d in drawings], np.float32))
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"")
    return checkpoint


def train_keys(store: Path) -> dict[int, str]:
    return {d.key_id: d.word for d in iter_store(store, "train")}


def expected_drops(store: Path, drop: float) -> set[int]:
    """The floor(drop * n) last key_ids (highest loss) of each class, and the LOW-entropy ones."""
    out = set()
    for word in CLASSES:
        keys = sorted(d.key_id for d in iter_store(store, "train") if d.word == word)
        n_drop = int(np.floor(drop * len(keys)))
        out |= set(keys[len(keys) - n_drop:]) | {keys[0], keys[-1]}
    return out


def test_weights_from_scores_by_hand():
    scores = Scores(np.arange(6, dtype=np.uint64), np.array([0, 0, 0, 0, 1, 1]),
                    np.array([1, 4, 2, 3, 9, 8], np.float32), np.array([1, 1, 0.1, 1, 1, 1], np.float32))
    # class 0 drops its 2 hardest (losses 4, 3), class 1 its hardest (9); row 2 is too blank
    assert weights_from_scores(scores, 0.5, 0.5).tolist() == [1, 0, 0, 0, 0, 1]
    assert weights_from_scores(scores, 0.2).tolist() == [1] * 6  # floor(0.2 * 4) = floor(0.2 * 2) = 0


def test_image_entropy_by_hand(monkeypatch):
    images = np.zeros((4, 1, 32, 32), np.uint8)
    images[1, :, :16] = 255  # half 0, half 255: 1 bit
    images[2].reshape(-1)[:] = np.repeat([0, 64, 128, 192], 256)  # 4 equal bins: 2 bits
    images[3, :, :16] = 8  # 0 and 8 share the first of 16 bins: 0 bits
    monkeypatch.setattr(doodle.render, "render", lambda drawings, encoding, size: images[:len(drawings)])
    assert image_entropy(list(range(4))).tolist() == [0.0, 1.0, 2.0, 0.0]
    assert image_entropy([]).shape == (0,)


def test_clean_min_entropy_and_store_out(store, fake_model, tmp_path, capsys):
    out, cleaned = tmp_path / "scores.parquet", tmp_path / "cleaned"
    assert main(["-q", "clean", str(fake_model), "--data", str(store), "--out", str(out), "--drop", "0.2",
                 "--min-entropy", str(EDGE), "--store-out", str(cleaned)]) == 0
    keys, dropped = train_keys(store), expected_drops(store, 0.2)
    n_train = len(keys)
    table = pq.read_table(out).to_pydict()
    assert sorted(table["key_id"]) == sorted(keys)
    assert {k for k, w in zip(table["key_id"], table["weight"], strict=True) if w == 0} == dropped
    losses = known_losses(store)
    assert np.allclose(table["loss"], [losses[k] for k in table["key_id"]], atol=1e-5)
    assert table["label"] == [CLASSES.index(keys[k]) for k in table["key_id"]]
    printed = capsys.readouterr().out
    assert f"{len(dropped)} weighted 0" in printed and f"{n_train - len(dropped)} train drawings" in printed
    # the cleaned store: the train split without the dropped drawings, val untouched, counts updated
    assert sorted(train_keys(cleaned)) == sorted(set(keys) - dropped)
    assert [d.key_id for d in iter_store(cleaned, "val")] == [d.key_id for d in iter_store(store, "val")]
    before, after = load_manifest(store), load_manifest(cleaned)
    removed = Counter(keys[k] for k in dropped)
    assert after["splits"] == {**before["splits"], "train": n_train - len(dropped)}
    assert after["per_class"]["train"] == {w: before["per_class"]["train"][w] - removed[w] for w in CLASSES}
    assert after["per_class"]["val"] == before["per_class"]["val"]
    assert after["accepted"] == before["accepted"] - len(dropped)
    assert after["cleaned"] == {"from": str(store), "split": "train", "removed": len(dropped)}
    assert class_counts(cleaned).tolist() == [Counter(train_keys(cleaned).values())[w] for w in CLASSES]
    assert EpochBatches(cleaned, "train", None, 4, drop_last=False).rows == n_train - len(dropped)


def test_min_entropy_alone_drops_below_the_threshold_only(store, fake_model, tmp_path):
    out = tmp_path / "scores.parquet"
    assert main(["-q", "clean", str(fake_model), "--data", str(store), "--out", str(out),
                 "--min-entropy", str(EDGE)]) == 0
    table = pq.read_table(out).to_pydict()
    zero = {k for k, w in zip(table["key_id"], table["weight"], strict=True) if w == 0}
    assert zero == expected_drops(store, 0.0)  # entropy LOW only: EDGE (= the threshold) is kept
    assert sorted(e for e in table["entropy"] if e < 1) == pytest.approx([LOW] * 4 + [EDGE] * 2)


def test_existing_store_out_is_refused_before_scoring(store, fake_model, tmp_path, monkeypatch):
    cleaned = tmp_path / "cleaned"
    cleaned.mkdir()
    monkeypatch.setattr(clean_mod, "image_entropy", lambda drawings: pytest.fail("scored anyway"))
    assert main(["-q", "clean", str(fake_model), "--data", str(store), "--out", str(tmp_path / "s.parquet"),
                 "--store-out", str(cleaned)]) == 2
    assert not (tmp_path / "s.parquet").exists() and not list(cleaned.iterdir())
