"""The k-fold protocol: folds disjoint and deterministic, the test fold untouched by selection,
statistics checked by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from doodle.data.store import load_manifest, store_files
from doodle.errors import DoodleError
from doodle.evaluate.folds import (
    FoldPlan,
    choose,
    estimate,
    fold_of,
    per_drawing_se,
    run_protocol,
    write_fold_store,
)
from doodle.train.data import EpochBatches


def test_folds_are_deterministic_disjoint_and_balanced():
    keys = np.random.default_rng(0).integers(0, 2**63, 50_000, dtype=np.int64).astype(np.uint64)
    folds = fold_of(keys, 5)
    np.testing.assert_array_equal(folds, fold_of(keys.copy(), 5))  # same key, same fold
    assert set(folds.tolist()) == set(range(5))  # one fold per key: disjoint and covering
    assert np.abs(np.bincount(folds) / len(keys) - 0.2).max() < 0.01
    assert np.mean(fold_of(keys, 5, seed=1) == folds) < 0.3  # another seed deals again
    np.testing.assert_array_equal(fold_of(keys[::-1], 5), folds[::-1])  # order does not matter


def test_plan_splits():
    plan = FoldPlan(k=5, test_fold=2)
    assert plan.inner == (0, 1, 3, 4)
    splits = plan.inner_splits()
    assert [held for _, held in splits] == [0, 1, 3, 4]
    for train, held in splits:
        assert held not in train and 2 not in train and len(train) == 3
    assert plan.outer_split() == ((0, 1, 3, 4), 2)
    with pytest.raises(DoodleError, match="at least 3"):
        FoldPlan(k=2)
    with pytest.raises(DoodleError, match="test_fold"):
        FoldPlan(k=5, test_fold=5)


def test_estimate_and_per_drawing_se_by_hand():
    e = estimate([0.90, 0.92, 0.94])
    assert e.mean == pytest.approx(0.92)
    # sample sd of (-0.02, 0, 0.02) = 0.02; / sqrt(3)
    assert e.se == pytest.approx(0.02 / math.sqrt(3))
    assert e.n == 3 and str(e) == "0.9200 +- 0.0115 (n=3, folds 0.9000-0.9400)"
    assert math.isnan(estimate([0.5]).se)
    # precisions 1, 0.5, 0: mean 0.5, sd 0.5, se 0.5 / sqrt(3)
    assert per_drawing_se(np.array([1.0, 0.5, 0.0])) == pytest.approx(0.5 / math.sqrt(3))


def test_the_test_fold_is_scored_once_after_the_choice():
    plan = FoldPlan(k=5, test_fold=4)
    calls: list[tuple[str, tuple[int, ...], int]] = []
    # "lucky" looks best on the test fold only: the protocol must not see that when choosing
    table = {"steady": {0: 0.90, 1: 0.91, 2: 0.90, 3: 0.91, 4: 0.90},
             "lucky": {0: 0.88, 1: 0.89, 2: 0.88, 3: 0.88, 4: 0.99}}

    def score(recipe, train, held):
        assert (held == 4) == (train == (0, 1, 2, 3))
        if held == 4:
            assert all(h != 4 for _, _, h in calls)  # first and only visit to the test fold
            assert len(calls) == 2 * 4  # every inner score came before
        calls.append((recipe, train, held))
        return table[recipe][held]

    result = run_protocol(["lucky", "steady"], plan, score)
    assert result.chosen == "steady" and result.test == 0.90
    assert [c for c in calls if c[2] == 4] == [("steady", (0, 1, 2, 3), 4)]
    assert result.inner["lucky"].mean == pytest.approx(0.8825)
    assert choose({"a": estimate([0.5, 0.5]), "b": estimate([0.5, 0.5])}) == "a"  # ties: first listed


def fold_keys(store: Path, split: str) -> np.ndarray:
    return np.concatenate([pq.read_table(p, columns=["key_id"]).column("key_id").to_numpy()
                           for p in store_files(store, split)])


def test_fold_stores_hold_exactly_their_folds(small_store: Path, tmp_path: Path):
    plan = FoldPlan(k=5, test_fold=0)
    every = np.concatenate([fold_keys(small_store, s) for s in ("train", "val")])
    seen_in_inner: set[int] = set()
    for train, held in plan.inner_splits():
        out = write_fold_store(small_store, tmp_path / f"f{held}", plan, train, held)
        tr, va = fold_keys(out, "train"), fold_keys(out, "val")
        assert set(fold_of(tr, 5).tolist()) == set(train) and set(fold_of(va, 5).tolist()) == {held}
        assert not set(tr.tolist()) & set(va.tolist())
        seen_in_inner |= set(tr.tolist()) | set(va.tolist())
        m = load_manifest(out)
        assert m["splits"]["train"] == len(tr) and m["splits"]["val"] == len(va)
        assert sum(m["per_class"]["val"].values()) == len(va) and m["folds"]["val"] == held
    test_keys = set(every[fold_of(every, 5) == 0].tolist())
    assert test_keys and not test_keys & seen_in_inner  # selection never touches the test fold
    assert seen_in_inner | test_keys == set(every.tolist())
    out = write_fold_store(small_store, tmp_path / "outer", plan, *plan.outer_split())
    assert set(fold_keys(out, "val").tolist()) == test_keys
    assert len(EpochBatches(out, "val", None, 16, drop_last=False)) == math.ceil(len(test_keys) / 16)
    with pytest.raises(DoodleError, match="both train and score"):
        write_fold_store(small_store, tmp_path / "bad", plan, (1, 2), 2)
