"""Bounded memory past `MAX_SHARDS`: a bucket bigger than a worker's share is reduced in passes, by a
second hash of key_id, and the store holds exactly what one pass per bucket would have written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from doodle.data.drawing import Drawing
from doodle.data.formats import write_ndjson
from doodle.data.store import PrepareConfig, iter_store, prepare, store_files

N = 4000
POINTS = 150  # about 4 kB of Arrow a drawing: N of them are about 3x a 16 MB budget's pass


def big_drawings(keys: range, timed: bool, word: str, seed: int) -> list[Drawing]:
    rng = np.random.default_rng(seed)
    out = []
    for k in keys:
        pts = np.round(rng.uniform(0, 1000, (POINTS, 3 if timed else 2)), 3)
        if timed:
            pts[:, 2] = np.cumsum(np.abs(pts[:, 2]))
        out.append(Drawing(key_id=10**9 + k, strokes=[pts[: POINTS // 2], pts[POINTS // 2:]], word=word))
    return out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Timed drawings in b_timed; copies of many of them in other files: untimed ones read before them
    (timing wins), timed ones read after (the first read wins), with other words to tell them apart."""
    folder = tmp_path_factory.mktemp("passes")
    write_ndjson(big_drawings(range(0, N, 3), timed=False, word="dog", seed=1), folder / "a_untimed.ndjson")
    write_ndjson(big_drawings(range(N), timed=True, word="cat", seed=2), folder / "b_timed.ndjson")
    write_ndjson(big_drawings(range(1, N, 4), timed=True, word="eye", seed=3), folder / "c_timed_copies.ndjson")
    return folder


def by_key(store: Path):
    return ds.dataset(store_files(store), format="parquet").to_table().sort_by("key_id")


def test_a_bucket_over_budget_is_reduced_in_passes_with_the_same_content(inputs: Path, tmp_path: Path):
    common = {"progress": False, "workers": 1, "shards": 2, "val_fraction": 0.2}
    small = prepare([inputs], tmp_path / "small", PrepareConfig(memory_mb=16, **common))
    large = prepare([inputs], tmp_path / "large", PrepareConfig(memory_mb=4096, **common))
    assert large["passes"] == large["shards"] == 2
    assert small["shards"] == 2 and small["passes"] >= 4  # each bucket split
    names = sorted(p.name for p in store_files(tmp_path / "small", "train"))
    assert len(names) == small["passes"] and all(n.count("-") == 2 for n in names)  # part-BBBBB-JJJ.parquet
    for key in ("input", "accepted", "duplicates", "rejected", "splits", "per_class", "classes"):
        assert small[key] == large[key], key
    a_untimed, c_copies = len(range(0, N, 3)), len(range(1, N, 4))
    assert small["accepted"] == N and small["duplicates"] == a_untimed + c_copies
    assert by_key(tmp_path / "small").equals(by_key(tmp_path / "large"))
    # deduplication is exact across passes and files: every key once, timed copy first read
    words = {d.key_id: (d.word, d.has_time) for d in iter_store(tmp_path / "small")}
    assert len(words) == N and all(timed for _, timed in words.values())
    assert {w for w, _ in words.values()} == {"cat"}  # b_timed is read before c_timed_copies


def test_passes_follow_the_bytes_of_each_bucket():
    from doodle.data.store import _plan_passes

    sizes = np.array([0, 100, 101, 500, 1000], np.int64)
    passes = _plan_passes(sizes, budget=100)
    per_bucket = {b: k for b, _, k in passes}
    assert per_bucket == {0: 1, 1: 1, 2: 2, 3: 5, 4: 10}
    assert sorted((b, j) for b, j, _ in passes) == [(b, j) for b, k in per_bucket.items() for j in range(k)]


def test_the_pass_hash_splits_a_bucket_evenly_and_apart_from_the_bucket_hash():
    from doodle.data.split import bucket_of, pass_of

    keys = np.arange(10**6, dtype=np.uint64) * np.uint64(7919)
    one_bucket = keys[bucket_of(keys, 16) == 3]
    counts = np.bincount(pass_of(one_bucket, 5), minlength=5)
    assert counts.min() > 0.9 * len(one_bucket) / 5
    assert np.array_equal(pass_of(keys[:100], 5), pass_of(keys[:100].copy(), 5))  # a function of key_id
