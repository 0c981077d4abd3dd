"""Cleaning training data: score drawings, weight or drop the suspicious ones, order them for a curriculum.

Two scores per drawing of a store split:

* model loss: -log p(label) under a trained checkpoint. The highest losses are mostly wrong labels
  and unrecognisable scribbles (a drawing of another class, an unfinished one);
* image entropy: Shannon entropy (bits) of the grey-level histogram of the drawing rendered at
  32 px. Near-blank drawings (a dot, a single short line) have very low entropy, scribbled-over
  ones very high.

`score_store` computes both; `write_scores` writes a Parquet file (key_id, label, loss, entropy,
weight) that `doodle train` reads as `sample_weights` (the weight column) or as `curriculum`
difficulty (the loss column, ranked within each label, see `SampleWeights`); `clean_store` writes a
copy of the store without the dropped drawings.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from doodle.data.formats.common import atomic_output
from doodle.errors import DoodleError
from doodle.train.weights import class_positions

PathLike = str | os.PathLike[str]
ENTROPY_SIZE = 32
ENTROPY_BINS = 16


def image_entropy(drawings: Sequence[Any], size: int = ENTROPY_SIZE) -> np.ndarray:
    """float32 [N] entropy in bits of each drawing's grey-level histogram (16 bins) at `size` px."""
    from doodle.render import render

    if not drawings:
        return np.zeros(0, np.float32)
    images = render(list(drawings), "grey", size).reshape(len(drawings), -1)
    bins = (images.astype(np.int64) * ENTROPY_BINS) // 256
    counts = np.stack([np.bincount(row, minlength=ENTROPY_BINS) for row in bins]).astype(np.float64)
    p = counts / counts.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0).sum(1)
    return h.astype(np.float32)


@dataclass
class Scores:
    """Per-drawing scores of one store split."""

    key_ids: np.ndarray
    """uint64 [N]."""
    labels: np.ndarray
    """int64 [N] the store's label."""
    loss: np.ndarray
    """float32 [N] -log p(label) under the model."""
    entropy: np.ndarray
    """float32 [N] image entropy in bits."""


def score_store(run_or_checkpoint: PathLike, store: PathLike, split: str = "train", *, checkpoint: str = "best",
                batch_size: int = 256, device: Any = None, progress: bool = True) -> Scores:
    """Model loss and image entropy of every labelled drawing of a store split."""
    from tqdm import tqdm

    from doodle.data.store import iter_store, load_manifest
    from doodle.infer.predict import iter_predictions, load_predictor

    classes = load_manifest(store)["classes"]
    model, preprocessor, model_classes, _meta, _ = load_predictor(run_or_checkpoint, checkpoint)
    if model_classes != classes:
        raise DoodleError(f"the model's classes differ from {store}'s: score a store with the model trained on it")
    index = {c: i for i, c in enumerate(classes)}
    keys, labels, losses, entropies = [], [], [], []
    buffer: list = []

    def drawings():
        for d in iter_store(store, split):
            if d.word in index:
                buffer.append(d)
                yield d

    with tqdm(unit=" drawings", desc="score", disable=not progress, dynamic_ncols=True) as bar:
        for pred in iter_predictions(model, preprocessor, drawings(), batch_size=batch_size, device=device,
                                     background=False):
            batch, buffer[:] = list(buffer[:len(pred)]), buffer[len(pred):]
            y = np.array([index[d.word] for d in batch], np.int64)
            keys.append(np.array(pred.key_ids, np.uint64))
            labels.append(y)
            losses.append(-pred.log_probs[np.arange(len(y)), y])
            entropies.append(image_entropy(batch))
            bar.update(len(y))
    if not keys:
        raise DoodleError(f"no labelled drawings in {store} split {split!r}")
    return Scores(np.concatenate(keys), np.concatenate(labels), np.concatenate(losses).astype(np.float32),
                  np.concatenate(entropies))


def weights_from_scores(scores: Scores, drop_loss: float = 0.0, min_entropy: float = 0.0) -> np.ndarray:
    """float32 [N] weights: 0 for the `drop_loss` fraction with the highest loss (per class, so that
    hard classes are not emptied) and for entropy below `min_entropy` bits, else 1."""
    if not 0.0 <= drop_loss < 1.0:
        raise DoodleError(f"drop fraction must be in [0, 1), got {drop_loss}")
    hardest_first, size = class_positions(scores.labels, -np.asarray(scores.loss, np.float64))
    w = np.ones(len(scores.key_ids), np.float32)
    w[hardest_first < np.floor(drop_loss * size)] = 0.0
    w[scores.entropy < min_entropy] = 0.0
    return w


def write_scores(scores: Scores, weights: np.ndarray, out: PathLike) -> None:
    """Write key_id, label, loss, entropy, weight to a Parquet file (atomically)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"key_id": pa.array(scores.key_ids, pa.uint64()), "label": scores.labels,
                      "loss": scores.loss, "entropy": scores.entropy, "weight": np.asarray(weights, np.float32)})
    with atomic_output(out) as handle:
        pq.write_table(table, handle)


def clean_store(store: PathLike, out: PathLike, drop_key_ids: np.ndarray, split: str = "train") -> dict:
    """Copy `store` to `out` without the drawings `drop_key_ids` in `split`; returns the new manifest."""
    from doodle.data.store import MANIFEST, REJECTS, find_rejects, load_manifest, store_files, write_shard

    store, out = Path(store), Path(out)
    if out.exists():
        raise DoodleError(f"{out} already exists")
    manifest = load_manifest(store)
    drop = pa.array(np.asarray(drop_key_ids, np.uint64), pa.uint64())
    work = out.with_name(out.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    removed: dict[str, int] = {}
    for path in store_files(store):
        rel = path.relative_to(store)
        (work / rel.parent).mkdir(parents=True, exist_ok=True)
        if rel.parts[0] != split:
            shutil.copy2(path, work / rel)
            continue
        handle = pq.ParquetFile(path)
        table = handle.read()
        keep = pc.invert(pc.is_in(table.column("key_id"), value_set=drop))
        kept = table.filter(keep)
        for word in table.filter(pc.invert(keep)).column("word").to_pylist():
            removed[word] = removed.get(word, 0) + 1
        rows_per_group = handle.metadata.row_group(0).num_rows if handle.metadata.num_row_groups else 8192
        write_shard(kept, work / rel, max(1, rows_per_group))
    manifest["splits"][split] -= sum(removed.values())
    if split in manifest.get("per_class", {}):
        for word, n in removed.items():
            manifest["per_class"][split][word] -= n
    manifest["accepted"] -= sum(removed.values())
    manifest["cleaned"] = {"from": str(store), "split": split, "removed": sum(removed.values())}
    (work / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    rejects = find_rejects(store)
    if rejects is not None:  # the records prepare rejected are still this store's history
        shutil.copy2(rejects, work / REJECTS)
    work.rename(out)
    return manifest
