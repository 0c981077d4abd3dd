"""A store gives back exactly what it was given (float64 points), and still reads stores written
with float32 points and the old metadata names."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import TIERS, tier_folder
from store_helpers import awkward_drawings

from doodle.data.drawing import Drawing
from doodle.data.formats import expand_sources, read, write_ndjson
from doodle.data.store import PrepareConfig, iter_store, load_manifest, prepare, store_files

QUIET = {"progress": False, "workers": 1}


def first_copies(drawings) -> dict[int, Drawing]:
    """key_id -> the drawing prepare keeps of one kind of input (all timed or all untimed): the first."""
    out: dict[int, Drawing] = {}
    for d in drawings:
        out.setdefault(d.key_id, d)
    return out


def assert_exact(stored: list[Drawing], original: dict[int, Drawing]) -> None:
    assert sorted(d.key_id for d in stored) == sorted(original)
    for d in stored:
        o = original[d.key_id]
        assert (d.word, d.countrycode, d.recognized, d.timestamp) == (o.word, o.countrycode, o.recognized, o.timestamp)
        assert len(d.strokes) == len(o.strokes), d.key_id
        for a, b in zip(d.strokes, o.strokes, strict=True):
            assert a.dtype == np.float64 and a.shape == b.shape and np.array_equal(a, b), d.key_id


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("kind", ["raw", "simplified"])
def test_every_real_drawing_comes_back_exactly(request, tmp_path: Path, kind: str, tier: str):
    """Every drawing of the sample's raw/ or simplified/ folder, and (breadth) of the shared one's."""
    quickdraw = tier_folder(request, tier)
    original = first_copies(read(quickdraw / kind))
    prepare([quickdraw / kind], tmp_path / "s", PrepareConfig(val_fraction=0.1, **QUIET))
    assert_exact(list(iter_store(tmp_path / "s")), original)


def test_generated_values_come_back_exactly_through_a_store(tmp_path: Path):
    drawings = awkward_drawings(60)
    write_ndjson(drawings, tmp_path / "in.ndjson")
    assert first_copies(read(tmp_path / "in.ndjson")).keys() == {d.key_id for d in drawings}  # the file holds them
    manifest = prepare([tmp_path / "in.ndjson"], tmp_path / "s", PrepareConfig(val_fraction=0.3, **QUIET))
    assert manifest["accepted"] == len(drawings) and manifest["rejected"] == 0
    assert_exact(list(iter_store(tmp_path / "s")), first_copies(drawings))
    # and again through a store made from that store
    prepare([tmp_path / "s"], tmp_path / "s2", PrepareConfig(**QUIET))
    assert_exact(list(iter_store(tmp_path / "s2")), first_copies(drawings))
    schema = pq.read_schema(store_files(tmp_path / "s")[0])
    assert {schema.field(c).type.value_type for c in ("x", "y", "t")} == {pa.float64()}


def make_legacy(store: Path) -> Path:
    """Turn a store into one as written before: float32 points, manifest.json and rejects.ndjson."""
    for path in store_files(store):
        table = pq.read_table(path)
        for name in ("x", "y", "t"):
            i = table.schema.get_field_index(name)
            table = table.set_column(i, name, pc.cast(table.column(name), pa.list_(pa.float32())))
        pq.write_table(table, path)
    (store / "_manifest.json").rename(store / "manifest.json")
    (store / "_rejects.ndjson").rename(store / "rejects.ndjson")
    return store


def test_stores_written_before_still_read(tmp_path: Path):
    from doodle.data.store import find_manifest, find_rejects, is_store
    from doodle.post.clean import clean_store
    from doodle.train.data import EpochBatches

    drawings = awkward_drawings(40)
    write_ndjson(drawings, tmp_path / "in.ndjson")
    with open(tmp_path / "in.ndjson", "ab") as handle:
        handle.write(b"{broken\n")
    prepare([tmp_path / "in.ndjson"], tmp_path / "s", PrepareConfig(val_fraction=0.25, **QUIET))
    old = make_legacy(tmp_path / "s")
    assert is_store(old) and find_manifest(old) == old / "manifest.json" and find_rejects(old) == old / "rejects.ndjson"
    manifest = load_manifest(old)
    assert manifest["accepted"] == len(drawings) and manifest["rejected"] == 1
    want = {d.key_id: d for d in drawings}
    for d in iter_store(old):
        for a, b in zip(d.strokes, want[d.key_id].strokes, strict=True):
            assert a.dtype == np.float64 and np.array_equal(a, b.astype(np.float32))
    # detected as a store (and its split folders as splits) by every reader
    assert expand_sources(old)[0] == [(old, "store")]
    assert expand_sources(old / "val")[0] == [(old / "val", "store-split")]
    assert len(list(read(old / "val"))) == manifest["splits"]["val"] > 0
    again = prepare([old], tmp_path / "again", PrepareConfig(**QUIET))
    assert again["accepted"] == len(drawings)
    ds = EpochBatches(old, "train", batch_size=4, shuffle=False, drop_last=False)
    assert sum(len(ds.batch_rows(i)) for i in range(len(ds))) == manifest["splits"]["train"]
    # replaced by --overwrite like any store, and cleaned into a store with the new names
    cleaned = clean_store(old, tmp_path / "clean", np.array([drawings[0].key_id], np.uint64), split="train")
    assert find_manifest(tmp_path / "clean") == tmp_path / "clean" / "_manifest.json"
    assert find_rejects(tmp_path / "clean") == tmp_path / "clean" / "_rejects.ndjson"
    assert cleaned["accepted"] in (len(drawings), len(drawings) - 1)
    shutil.copytree(old, tmp_path / "copy")
    prepare([tmp_path / "in.ndjson"], old, PrepareConfig(**QUIET), overwrite=True)
    assert sorted(p.name for p in old.iterdir() if p.is_file()) == ["_manifest.json", "_rejects.ndjson"]
