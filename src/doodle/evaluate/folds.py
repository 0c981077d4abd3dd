"""An evaluation protocol that cannot flatter a recipe: k folds by key_id hash, nested.

One validation split scores a recipe with a standard error of about 0.006 MAP@3 at 1,000 drawings,
and a recipe chosen on that split reports the luck of the choice as well as its skill. So:

* every labelled drawing of a store gets a fold, 0..k-1, from a salted hash of its key_id
  (`fold_of`): the same drawing lands in the same fold in every run, whatever the store's own
  train/val split, and the folds are disjoint and together hold every drawing;
* one fold is the **test fold** (`FoldPlan.test_fold`). Recipes are compared only on the other,
  **inner** folds: each is trained on all inner folds but one and scored on that one, for every
  inner fold (`FoldPlan.inner_splits`), and the recipe with the best mean wins (`choose`);
* only the chosen recipe is then trained on all inner folds and scored on the test fold
  (`FoldPlan.outer_split`); that figure is the one to quote. `run_protocol` enforces the order:
  no recipe is scored on the test fold before the choice is made.

`write_fold_store` makes the store a (train folds, scoring fold) pair trains on: its train split
is the rows of the train folds, its val split the rows of the scoring fold. `estimate` gives the
mean, standard error and spread of fold scores; `per_drawing_se` the standard error of one fold's
MAP@3 from its drawings.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from doodle.data.split import splitmix64
from doodle.data.store import load_manifest, store_files, write_shard
from doodle.errors import DoodleError

FOLD_SALT = 0xF01D5
"""Salt of the fold hash (apart from the store's split and bucket hashes)."""
LABELLED_SPLITS = ("train", "val")


def fold_of(key_ids: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """The fold (int64, 0..k-1) of each key_id: a salted splitmix64 hash, so deterministic."""
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    return (splitmix64(np.asarray(key_ids, np.uint64), FOLD_SALT + seed) % np.uint64(k)).astype(np.int64)


@dataclass(frozen=True)
class FoldPlan:
    """Which folds train and which score, for k folds with one held out as the test fold."""

    k: int = 5
    """Number of folds (at least 3: two inner folds to compare recipes on, plus the test fold)."""
    seed: int = 0
    """Salt of the fold hash: another seed deals the drawings into other folds."""
    test_fold: int = 0
    """The fold recipe selection never sees."""

    def __post_init__(self) -> None:
        if self.k < 3:
            raise DoodleError(f"k must be at least 3 (two inner folds and a test fold), got {self.k}")
        if not 0 <= self.test_fold < self.k:
            raise DoodleError(f"test_fold must be in 0..{self.k - 1}, got {self.test_fold}")

    @property
    def inner(self) -> tuple[int, ...]:
        """Every fold but the test fold."""
        return tuple(f for f in range(self.k) if f != self.test_fold)

    def inner_splits(self) -> list[tuple[tuple[int, ...], int]]:
        """(train folds, scoring fold) for each inner fold: the comparisons recipes are chosen by."""
        return [(tuple(f for f in self.inner if f != held), held) for held in self.inner]

    def outer_split(self) -> tuple[tuple[int, ...], int]:
        """(all inner folds, the test fold): the one score of the chosen recipe to quote."""
        return self.inner, self.test_fold


def _labelled_rows(store: Path) -> pa.Table:
    tables = [pq.read_table(p) for split in LABELLED_SPLITS for p in store_files(store, split)]
    if not tables:
        raise DoodleError(f"{store}: no labelled drawings (train or val) to deal into folds")
    return pa.concat_tables(tables, promote_options="permissive")


def write_fold_store(source: str | os.PathLike, out: str | os.PathLike, plan: FoldPlan,
                     train_folds: Sequence[int], score_fold: int) -> Path:
    """A store at `out` whose train split is `source`'s labelled drawings of `train_folds` and whose
    val split is those of `score_fold` (replacing `out`). Its manifest is the source's with the
    counts of the new splits and a "folds" entry saying how it was cut."""
    if score_fold in train_folds:
        raise DoodleError(f"fold {score_fold} cannot both train and score")
    source, out = Path(source), Path(out)
    manifest = load_manifest(source)
    rows = _labelled_rows(source)
    folds = fold_of(rows.column("key_id").to_numpy(), plan.k, plan.seed)
    if out.exists():
        shutil.rmtree(out)
    per_class: dict[str, dict[str, int]] = {}
    splits = {"train": np.isin(folds, list(train_folds)), "val": folds == score_fold}
    for split, mask in splits.items():
        part = rows.filter(pa.array(mask)).drop_columns(["split"])
        part = part.append_column("split", pa.array([split] * part.num_rows, pa.string()))
        write_shard(part.select(rows.schema.names), out / split / "part-00000.parquet",
                    manifest.get("config", {}).get("row_group_size", 8192))
        counts = pc.value_counts(part.column("word")).to_pylist()
        per_class[split] = {c: 0 for c in manifest["classes"]} | {v["values"]: v["counts"] for v in counts}
    manifest.update(splits={"train": int(splits["train"].sum()), "val": int(splits["val"].sum()), "test": 0},
                    per_class=per_class, unlabelled=0,
                    folds={"k": plan.k, "seed": plan.seed, "train": list(train_folds), "val": score_fold,
                           "source": str(source)})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


@dataclass(frozen=True)
class Estimate:
    """A mean over folds (or seeds) with its standard error and spread."""

    mean: float
    se: float
    """Standard error of the mean: sample standard deviation / sqrt(n) (NaN for one value)."""
    values: tuple[float, ...] = field(default=())

    @property
    def n(self) -> int:
        return len(self.values)

    def __str__(self) -> str:
        spread = f", folds {min(self.values):.4f}-{max(self.values):.4f}" if self.n > 1 else ""
        return f"{self.mean:.4f} +- {self.se:.4f} (n={self.n}{spread})"


def estimate(values: Sequence[float]) -> Estimate:
    """Mean, standard error and the values themselves."""
    vals = tuple(float(v) for v in values)
    if not vals:
        raise ValueError("no values to estimate from")
    se = statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else math.nan
    return Estimate(statistics.fmean(vals), se, vals)


def per_drawing_se(precisions: np.ndarray) -> float:
    """Standard error of one fold's MAP@3 from its drawings' precisions (1, 1/2, 1/3 or 0 each)."""
    p = np.asarray(precisions, np.float64)
    return float(p.std(ddof=1) / math.sqrt(len(p))) if len(p) > 1 else math.nan


def choose(inner: Mapping[str, Estimate]) -> str:
    """The recipe with the best inner mean (the first listed among equals)."""
    if not inner:
        raise ValueError("no recipes to choose from")
    return max(inner, key=lambda name: inner[name].mean)


Score = Callable[[str, tuple[int, ...], int], float]
"""score(recipe, train folds, scoring fold) -> MAP@3 of the recipe trained on those folds."""


@dataclass(frozen=True)
class ProtocolResult:
    """What the protocol found: every recipe's inner estimate, the choice, and its test score."""

    inner: dict[str, Estimate]
    chosen: str
    test: float


def run_protocol(recipes: Sequence[str], plan: FoldPlan, score: Score) -> ProtocolResult:
    """Score every recipe on every inner split, choose by the inner means, then score only the
    chosen recipe on the test fold."""
    if not recipes:
        raise ValueError("no recipes")
    inner = {r: estimate([score(r, train, held) for train, held in plan.inner_splits()]) for r in recipes}
    chosen = choose(inner)
    train, test = plan.outer_split()
    return ProtocolResult(inner, chosen, score(chosen, train, test))
