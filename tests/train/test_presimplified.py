"""A store prepared with simplified strokes: they equal `doodle.simplify`, and the loader uses them
to make exactly the batches it makes from a plain store by simplifying as it goes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from doodle.data.simplify import simplify
from doodle.data.store import PrepareConfig, load_manifest, prepare, store_files
from doodle.data.table import SIMPLIFIED_COLUMNS, table_to_drawings
from doodle.preprocess import InputConfig, Preprocessor, needs_simplification
from doodle.render.augment import AugmentConfig
from doodle.train.data import READ_COLUMNS, SIMPLIFIED_READ_COLUMNS, EpochBatches, make_loader

CLASSES = ["airplane", "camera", "eye"]


def sources(quickdraw: Path) -> list[Path]:
    """Raw (timed) and simplified drawings of three classes: the store holds both kinds."""
    return ([quickdraw / "raw" / f"{c}.ndjson" for c in CLASSES]
            + [quickdraw / "simplified" / f"JulienDuranleau_{c}.ndjson" for c in CLASSES])


@pytest.fixture(scope="module")
def stores(quickdraw: Path, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("presimplified")
    made = []
    for name, simple in (("plain", False), ("simple", True)):
        cfg = PrepareConfig(val_fraction=0.2, progress=False, workers=1, row_group_size=64, shards=2,
                            simplify=simple)
        prepare(sources(quickdraw), root / name, cfg)
        made.append(root / name)
    return made[0], made[1]


def test_simplified_columns_equal_simplify(stores):
    _, simple = stores
    assert load_manifest(simple)["config"]["simplify"] is True
    assert set(SIMPLIFIED_COLUMNS) <= set(load_manifest(simple)["schema"])
    timed = 0
    for path in store_files(simple):
        table = pq.read_table(path)
        for d, row in zip(table_to_drawings(table), table.select(SIMPLIFIED_COLUMNS).to_pylist(), strict=True):
            want = simplify(d) if needs_simplification(d) else d
            timed += d.has_time
            ends = np.cumsum(row["simple_stroke_len"])
            got = np.split(np.column_stack([row["simple_x"], row["simple_y"]]).astype(float), ends[:-1])
            assert len(got) == len(want.strokes)
            for g, w in zip(got, want.strokes, strict=True):
                np.testing.assert_array_equal(g, w[:, :2])
        assert pq.read_schema(path).field("simple_x").type == pa.list_(pa.uint8())
    assert timed > 50  # raw drawings were simplified, not only copied


@pytest.mark.parametrize("kind", ["image", "sequence"])
def test_loader_batches_equal_those_simplified_on_the_fly(stores, kind):
    plain, simple = stores
    pre = Preprocessor(InputConfig(size=32, simplify=True, max_points=64), kind)
    aug = AugmentConfig(rotate=20.0, dropout=0.1, jitter=0.005)
    a = EpochBatches(plain, "train", pre, 32, seed=3, epoch=1, augment=aug)
    b = EpochBatches(simple, "train", pre, 32, seed=3, epoch=1, augment=aug)
    assert a.columns == READ_COLUMNS and b.columns == SIMPLIFIED_READ_COLUMNS  # no raw points read
    assert len(a) == len(b) > 5
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=f"batch {i} {key}")
    workers = [next(iter(make_loader(b, workers=w, start=2)))["label"].numpy() for w in (0, 2)]
    np.testing.assert_array_equal(workers[0], workers[1])


def test_without_simplify_the_raw_strokes_are_read(stores):
    _, simple = stores
    pre = Preprocessor(InputConfig(size=32, encoding="order-speed-accel-time"))
    ds = EpochBatches(simple, "train", pre, 64, seed=0)
    assert ds.columns == READ_COLUMNS  # timing kept for the encodings that need it
    drawings = table_to_drawings(ds.batch_rows(0))
    assert any(d.has_time for d in drawings)
    np.testing.assert_array_equal(ds[0]["image"], pre.reference(drawings)["image"])


def test_prepare_cli_simplify(quickdraw: Path, tmp_path: Path, capsys):
    from doodle.cli import main

    out = tmp_path / "store"
    src = str(quickdraw / "raw" / "eye.ndjson")
    assert main(["prepare", src, "--out", str(out), "--simplify", "--no-progress", "--workers", "1"]) == 0
    assert "store written" in capsys.readouterr().out
    assert load_manifest(out)["config"]["simplify"] is True
    assert set(SIMPLIFIED_COLUMNS) <= set(pq.read_schema(store_files(out, "train")[0]).names)
