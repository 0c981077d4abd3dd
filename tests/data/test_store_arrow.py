"""A store root is one Parquet dataset to every Arrow tool: its metadata (`_manifest.json`,
`_rejects.ndjson`) is named so that they skip it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest
from store_helpers import awkward_drawings

from doodle.data.formats import read, write_kaggle_csv, write_ndjson
from doodle.data.store import PrepareConfig, load_manifest, prepare

QUIET = {"progress": False, "workers": 1}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Labelled drawings of three words, unlabelled ones (a Kaggle test CSV) and one bad record, in 3 shards."""
    root = tmp_path_factory.mktemp("arrow")
    drawings = awkward_drawings(90)
    for i, d in enumerate(drawings):
        d.word = ("cat", "dog", "eye")[i % 3]
    write_ndjson(drawings[:70], root / "labelled.ndjson")
    with open(root / "labelled.ndjson", "ab") as handle:
        handle.write(b'{"key_id": "1", "word": "cat", "drawing": "broken"}\n')
    write_kaggle_csv(drawings[70:], root / "test.csv", test=True)
    config = PrepareConfig(val_fraction=0.3, shards=3, **QUIET)
    prepare([root / "labelled.ndjson", root / "test.csv"], root / "s", config)
    return root / "s"


def expected_splits(store: Path) -> dict[str, int]:
    manifest = load_manifest(store)
    assert manifest["rejected"] == 1 and all(manifest["splits"].values())  # every split is there to be counted
    return manifest["splits"]


def test_metadata_is_named_for_arrow_tools_to_skip(store: Path):
    assert sorted(p.name for p in store.iterdir() if p.is_file()) == ["_manifest.json", "_rejects.ndjson"]
    assert orjson.loads((store / "_manifest.json").read_bytes())["accepted"] == 90
    assert len((store / "_rejects.ndjson").read_bytes().splitlines()) == 1


def test_pyarrow_dataset_reads_the_store_root(store: Path):
    import pyarrow.dataset as ds

    table = ds.dataset(store).to_table()
    assert dict(Counter(table.column("split").to_pylist())) == expected_splits(store)
    assert len(set(table.column("key_id").to_pylist())) == table.num_rows
    # and a split folder alone
    assert ds.dataset(store / "val").count_rows() == expected_splits(store)["val"]


def test_pandas_reads_the_store_root(store: Path):
    import pandas as pd

    frame = pd.read_parquet(store)
    assert frame["split"].value_counts().to_dict() == expected_splits(store)
    assert frame.loc[frame["split"] == "test", "label"].eq(-1).all()


def test_polars_reads_the_store(store: Path):
    import polars as pl

    # Polars lists every file of a folder (it skips no names), so it takes the store by glob.
    for frame in (pl.read_parquet(f"{store}/**/*.parquet"), pl.scan_parquet(f"{store}/**/*.parquet").collect()):
        counts = dict(frame.group_by("split").len().iter_rows())
        assert counts == expected_splits(store)
        assert frame.schema["x"] == pl.List(pl.Float64)


def test_duckdb_reads_the_store_exactly(store: Path):
    import duckdb

    rows = duckdb.sql(f"select split, count(*) from '{store}/**/*.parquet' group by 1").fetchall()
    assert dict(rows) == expected_splits(store)
    want = awkward_drawings(90)[5]
    ((xs,),) = duckdb.sql(f"select x from '{store}/**/*.parquet' where key_id = {want.key_id}").fetchall()
    assert np.array_equal(np.array(xs), want.to_flat()[0][:, 0])  # every digit, as given


def test_split_folders_stay_sources_of_their_own(store: Path):
    val = {d.key_id for d in read(store / "val")}
    assert len(val) == expected_splits(store)["val"]
    assert {d.key_id for d in read(store)} >= val
