"""Per-drawing loss weights and the curriculum in training: what `doodle clean` writes
(`doodle.post.clean.write_scores`) read back as `sample_weights` (the weight column) or as
`curriculum` difficulty (the loss column, ranked within each class)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from doodle.errors import DoodleError

PathLike = str | os.PathLike[str]


def read_scores(path: PathLike, columns: Sequence[str]) -> pa.Table:
    """Columns of a scores file (raises `DoodleError` naming what is missing)."""
    path = Path(path)
    if not path.is_file():
        raise DoodleError(f"{path}: no such scores file (write one with `doodle clean`)")
    names = pq.read_schema(path).names
    missing = [c for c in columns if c not in names]
    if missing:
        raise DoodleError(f"{path} has no column {', '.join(missing)} (columns: {', '.join(names)})")
    return pq.read_table(path, columns=list(columns))


class SampleWeights:
    """Per-drawing loss weights in training: the `weight` column of a scores file, and the curriculum.

    The curriculum ranks the scored drawings of each class by loss, easiest first (`difficulty_rank`:
    position within the class / class size, in [0, 1)). Epoch e admits, in every class of n scored
    drawings, the ceil(f * n) easiest, f = `admitted_fraction(e)` = start + (1 - start) * e / (epochs - 1)
    (1 with one epoch): ranking within each class keeps a uniformly harder class from being left out
    of the first epochs. Unscored drawings are always admitted and weigh 1. `admits` is the rule the
    loader applies (`EpochBatches(curriculum=...)`), so drawings not admitted are never read or rendered;
    `batch` also weighs them 0, for batches made without it.
    """

    def __init__(self, key_ids: np.ndarray, weights: np.ndarray, difficulty_rank: np.ndarray | None,
                 start: float = 0.5, epochs: int = 1):
        order = np.argsort(key_ids, kind="stable")
        self.keys = np.asarray(key_ids, np.uint64)[order]
        self.weights = np.asarray(weights, np.float32)[order]
        self.rank = None if difficulty_rank is None else np.asarray(difficulty_rank, np.float64)[order]
        self.start, self.epochs = start, epochs

    @classmethod
    def from_config(cls, cfg: Any) -> SampleWeights:
        """From a TrainConfig's `sample_weights`, `curriculum`, `curriculum_start` and `epochs`."""
        if not 0.0 < cfg.curriculum_start <= 1.0:
            raise DoodleError(f"curriculum_start must be in (0, 1], got {cfg.curriculum_start}")
        tables = {}
        if cfg.sample_weights:
            tables["w"] = read_scores(cfg.sample_weights, ["key_id", "weight"])
        if cfg.curriculum:
            tables["c"] = read_scores(cfg.curriculum, ["key_id", "label", "loss"])
        keys = np.unique(np.concatenate([t.column("key_id").to_numpy().astype(np.uint64) for t in tables.values()]))
        weights = np.ones(len(keys), np.float32)
        rank = None
        if "w" in tables:
            k = tables["w"].column("key_id").to_numpy().astype(np.uint64)
            weights[np.searchsorted(keys, k)] = tables["w"].column("weight").to_numpy()
        if "c" in tables:
            c = tables["c"]
            rank = np.full(len(keys), -1.0)  # unscored: always admitted
            k = c.column("key_id").to_numpy().astype(np.uint64)
            rank[np.searchsorted(keys, k)] = class_ranks(c.column("label").to_numpy(), c.column("loss").to_numpy())
        return cls(keys, weights, rank, cfg.curriculum_start, cfg.epochs)

    def admitted_fraction(self, epoch: int) -> float:
        """The fraction of each class's scored drawings the curriculum admits in `epoch` (0-based)."""
        if self.epochs <= 1:
            return 1.0
        return min(1.0, self.start + (1.0 - self.start) * epoch / (self.epochs - 1))

    def admits(self, key_ids: np.ndarray, epoch: int) -> np.ndarray:
        """bool [N]: which drawings (uint64 key_ids) the curriculum admits in `epoch`."""
        keys = _as_keys(key_ids)
        if self.rank is None or not len(self.keys):
            return np.ones(len(keys), bool)
        pos, found = self._find(keys)
        # rank i / n is admitted when i < f * n: ceil(f * n) of a class; the tolerance absorbs the
        # rounding of f (0.1 + 0.2 > 0.3) and is far below 1 / n
        return ~found | (self.rank[pos] < self.admitted_fraction(epoch) - 1e-12)

    def batch(self, key_ids: Any, epoch: int):
        """float32 tensor [B] of the weights of a batch's drawings (key_ids as int64-viewed uint64)."""
        import torch

        keys = _as_keys(key_ids.cpu().numpy() if hasattr(key_ids, "cpu") else key_ids)
        if not len(self.keys):
            return torch.ones(len(keys))
        pos, found = self._find(keys)
        w = np.where(found, self.weights[pos], 1.0)
        w = np.where(self.admits(keys, epoch), w, 0.0).astype(np.float32)
        return torch.from_numpy(w)

    def _find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index into `self.keys` of each key (clipped) and whether it is there."""
        pos = np.clip(np.searchsorted(self.keys, keys), 0, len(self.keys) - 1)
        return pos, self.keys[pos] == keys


def class_ranks(labels: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """float64 [N] each drawing's position among its class by loss (easiest 0) over the class size."""
    position, size = class_positions(labels, loss)
    return position / size


def class_positions(labels: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 [N] each row's position within its label by ascending `key` (ties in row order), and
    int64 [N] the size of its label: one sort, however many classes."""
    labels = np.asarray(labels)
    order = np.lexsort((np.asarray(key), labels))  # stable: by label, then key
    sorted_labels = labels[order]
    start = np.searchsorted(sorted_labels, sorted_labels, side="left")
    end = np.searchsorted(sorted_labels, sorted_labels, side="right")
    position, size = np.empty(len(order), np.int64), np.empty(len(order), np.int64)
    position[order] = np.arange(len(order)) - start
    size[order] = end - start
    return position, size


def _as_keys(key_ids: Any) -> np.ndarray:
    """uint64 key_ids from uint64 ones or int64-viewed ones (as batches carry them)."""
    keys = np.asarray(key_ids)
    return keys.view(np.uint64) if keys.dtype == np.int64 else keys.astype(np.uint64, copy=False)
