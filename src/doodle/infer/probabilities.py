"""Saved class probabilities: one Parquet file per model run, for blending without re-running models.

Layout (written in row groups, so writing and streaming reading take constant memory):

* "key_id": uint64 (Quick, Draw! ids use the full unsigned 64-bit range);
* "word": string, the drawing's label where the input had one, else null (for evaluation and
  for fitting ensembles on a labelled holdout);
* "probs": fixed_size_list<float32>[K], the class probabilities in class order;
* "time_features": fixed_size_list<float32>[6], the drawing's timing (`doodle.preprocess.time_features`,
  computed from the input strokes before any preprocessing), for the LightGBM stacker.

The class list (and free-form provenance) lives in the schema metadata under b"doodle.classes"
and b"doodle.meta" (JSON). `read_predictions` loads a whole file; `iter_prediction_batches` streams
it, and `iter_aligned` several files side by side, in memory that does not grow with the file
(one batch, and one row group being decoded); `read_key_ids` and `read_labels` read one column;
`check_aligned` makes sure files to blend describe the same drawings and classes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from doodle.errors import DoodleError
from doodle.preprocess import TIME_FEATURES

PathLike = str | os.PathLike[str]
CLASSES_KEY = b"doodle.classes"
META_KEY = b"doodle.meta"
N_TIME = len(TIME_FEATURES)


@dataclass
class Predictions:
    """Predictions of one model (or blend) for N drawings over K classes, in memory."""

    key_ids: np.ndarray
    """uint64 [N]."""
    probs: np.ndarray
    """float32 [N, K] class probabilities (rows sum to about 1; re-ranked outputs may not)."""
    classes: list[str]
    """Class names in column order."""
    words: list[str | None] = field(default_factory=list)
    """The labels where known, else None (empty list: none known)."""
    time_features: np.ndarray | None = None
    """float32 [N, 6] drawing timing (None: not recorded)."""
    meta: dict = field(default_factory=dict)
    """Provenance (checkpoint, TTA, ...)."""

    def __len__(self) -> int:
        return len(self.key_ids)

    def labels(self) -> np.ndarray:
        """int64 [N] class index of each word (-1 where unknown or not a class)."""
        index = {c: i for i, c in enumerate(self.classes)}
        words = self.words or [None] * len(self)
        return np.array([index.get(w, -1) if w is not None else -1 for w in words], np.int64)

    def labelled(self) -> Predictions:
        """The rows whose label is one of the classes."""
        return self.take(np.flatnonzero(self.labels() >= 0))

    def take(self, rows: np.ndarray) -> Predictions:
        """A subset of rows (in the given order)."""
        rows = np.asarray(rows, np.int64)
        words = [self.words[i] for i in rows] if self.words else []
        tf = self.time_features[rows] if self.time_features is not None else None
        return Predictions(self.key_ids[rows], self.probs[rows], list(self.classes), words, tf, dict(self.meta))

    def with_probs(self, probs: np.ndarray, **meta) -> Predictions:
        """The same drawings with other scores (blends, re-ranking, balancing)."""
        if probs.shape != self.probs.shape:
            raise ValueError(f"probs of shape {probs.shape}, expected {self.probs.shape}")
        return Predictions(self.key_ids, np.asarray(probs, np.float32), list(self.classes), list(self.words),
                           self.time_features, {**self.meta, **meta})


def _json_default(value):
    """numpy scalars and arrays in the provenance metadata become plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def schema(classes: Sequence[str], meta: dict | None = None) -> pa.Schema:
    """The Parquet schema of a predictions file over `classes`."""
    fields = [
        pa.field("key_id", pa.uint64(), nullable=False),
        pa.field("word", pa.string()),
        pa.field("probs", pa.list_(pa.float32(), len(classes)), nullable=False),
        pa.field("time_features", pa.list_(pa.float32(), N_TIME)),
    ]
    metadata = {CLASSES_KEY: orjson.dumps(list(classes)), META_KEY: orjson.dumps(meta or {}, default=_json_default)}
    return pa.schema(fields, metadata=metadata)


def _batch(sch: pa.Schema, key_ids, probs: np.ndarray, words, time_features) -> pa.RecordBatch:
    n, k = probs.shape
    flat = pa.array(np.ascontiguousarray(probs, np.float32).reshape(-1), pa.float32())
    probs_arr = pa.FixedSizeListArray.from_arrays(flat, k)
    if time_features is None:
        tf_arr = pa.nulls(n, sch.field("time_features").type)
    else:
        tf = np.ascontiguousarray(time_features, np.float32).reshape(-1)
        tf_arr = pa.FixedSizeListArray.from_arrays(pa.array(tf, pa.float32()), N_TIME)
    words = list(words) if words is not None and len(words) else [None] * n
    return pa.record_batch([pa.array(np.asarray(key_ids, np.uint64), pa.uint64()), pa.array(words, pa.string()),
                            probs_arr, tf_arr], schema=sch)


class PredictionWriter:
    """Writes a predictions file batch by batch, atomically (temporary file renamed on `close`).

    Use as a context manager: on an exception the temporary file is removed and an existing file
    at `path` is left untouched.
    """

    def __init__(self, path: PathLike, classes: Sequence[str], meta: dict | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.classes = list(classes)
        self.schema = schema(self.classes, meta)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        self._writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
        self.rows = 0

    def write(self, key_ids: Sequence[int] | np.ndarray, probs: np.ndarray, words: Sequence[str | None] | None = None,
              time_features: np.ndarray | None = None) -> None:
        """Append one batch (one Parquet row group)."""
        probs = np.asarray(probs)
        if probs.ndim != 2 or probs.shape[1] != len(self.classes) or probs.shape[0] != len(key_ids):
            raise ValueError(f"probs of shape {probs.shape} for {len(key_ids)} drawings and "
                             f"{len(self.classes)} classes")
        if len(key_ids):
            self._writer.write_batch(_batch(self.schema, key_ids, probs, words, time_features))
        self.rows += len(key_ids)

    def close(self) -> None:
        self._writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._writer.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_predictions(preds: Predictions, path: PathLike, *, rows_per_group: int = 65536) -> int:
    """Write an in-memory `Predictions` to `path` (atomically); returns the rows written."""
    with PredictionWriter(path, preds.classes, preds.meta) as writer:
        for lo in range(0, len(preds), rows_per_group):
            hi = lo + rows_per_group
            tf = preds.time_features[lo:hi] if preds.time_features is not None else None
            writer.write(preds.key_ids[lo:hi], preds.probs[lo:hi], preds.words[lo:hi] if preds.words else None, tf)
    return len(preds)


def _open(path: PathLike) -> tuple[pq.ParquetFile, list[str], dict]:
    path = Path(path)
    if not path.is_file():
        raise DoodleError(f"{path}: no such predictions file")
    try:
        # pre_buffer would keep every row group read so far cached until the file is closed:
        # streaming a 1,000,000-row file would then hold all of it
        handle = pq.ParquetFile(path, pre_buffer=False)
    except Exception as err:  # pyarrow raises several types for non-Parquet input
        raise DoodleError(f"{path} is not a Parquet file: {err}") from None
    metadata = handle.schema_arrow.metadata or {}
    if CLASSES_KEY not in metadata or "probs" not in handle.schema_arrow.names:
        raise DoodleError(f"{path} is not a doodle predictions file (no class list or probs column); "
                          f"write one with `doodle predict ... --out X.parquet`")
    return handle, list(orjson.loads(metadata[CLASSES_KEY])), orjson.loads(metadata.get(META_KEY, b"{}"))


def _from_table(table: pa.Table | pa.RecordBatch, classes: list[str], meta: dict) -> Predictions:
    k = len(classes)
    probs_col = table.column("probs")
    if isinstance(probs_col, pa.ChunkedArray):
        probs_col = probs_col.combine_chunks()
    probs = probs_col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, k)
    tf = None
    if "time_features" in table.column_names:
        col = table.column("time_features")
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if col.null_count == 0 and len(col):
            tf = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, N_TIME)
    words = table.column("word").to_pylist()
    return Predictions(table.column("key_id").to_numpy().astype(np.uint64), probs, classes,
                       words if any(w is not None for w in words) else [], tf, meta)


def read_predictions(path: PathLike) -> Predictions:
    """A whole predictions file in memory."""
    handle, classes, meta = _open(path)
    return _from_table(handle.read(), classes, meta)


def read_classes(path: PathLike) -> list[str]:
    """The class list of a predictions file (reads only its footer)."""
    return _open(path)[1]


def read_key_ids(path: PathLike) -> np.ndarray:
    """uint64 [N] key_ids of a predictions file (one column only)."""
    handle, _, _ = _open(path)
    return handle.read(columns=["key_id"]).column("key_id").to_numpy().astype(np.uint64)


def read_labels(path: PathLike) -> np.ndarray:
    """int64 [N] class index of each drawing's word in a predictions file (-1 where unknown or not
    one of its classes), reading the word column only."""
    import pyarrow.compute as pc

    handle, classes, _ = _open(path)
    words = handle.read(columns=["word"]).column("word")
    index = pc.index_in(words, value_set=pa.array(classes, pa.string()))
    return pc.fill_null(index, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def read_meta(path: PathLike) -> dict:
    """The provenance of a predictions file (reads only its footer)."""
    return _open(path)[2]


def count_rows(path: PathLike) -> int:
    """The number of drawings of a predictions file (reads only its footer)."""
    return _open(path)[0].metadata.num_rows


def iter_prediction_batches(path: PathLike, batch_size: int = 8192) -> Iterator[Predictions]:
    """Stream a predictions file `batch_size` rows at a time (constant memory; every batch but the
    last holds exactly `batch_size` rows, whatever the file's row groups)."""
    handle, classes, meta = _open(path)
    for batch in handle.iter_batches(batch_size=batch_size):
        yield _from_table(batch, classes, meta)


def iter_aligned(paths: Sequence[PathLike], rows: np.ndarray | None = None, batch_size: int = 8192
                 ) -> Iterator[list[Predictions]]:
    """The same batch of drawings from each of several aligned predictions files (`check_aligned`),
    one list per batch, keeping only the rows where `rows` (bool [N]) is True; batches left empty
    are skipped. Memory holds one batch of each file."""
    streams = [iter_prediction_batches(p, batch_size) for p in paths]
    start = 0
    for parts in zip(*streams, strict=True):
        n = len(parts[0])
        if any(len(p) != n or not np.array_equal(p.key_ids, parts[0].key_ids) for p in parts[1:]):
            raise DoodleError(f"{paths[0]} and the other inputs differ at rows {start}..{start + n - 1}")
        keep = None if rows is None else np.flatnonzero(rows[start:start + n])
        start += n
        if keep is None or len(keep) == n:
            yield list(parts)
        elif len(keep):
            yield [p.take(keep) for p in parts]


def check_aligned(paths: Sequence[PathLike]) -> tuple[list[str], int]:
    """Check that predictions files share their classes (same order) and key_ids (same order);
    returns (classes, rows). Raises `DoodleError` naming the first file that differs."""
    if not paths:
        raise DoodleError("no predictions files given")
    classes = read_classes(paths[0])
    keys = read_key_ids(paths[0])
    for path in paths[1:]:
        other = read_classes(path)
        if other != classes:
            diff = sorted(set(classes) ^ set(other))[:5]
            detail = f"differing: {', '.join(diff)}" if diff else "same classes in another order"
            raise DoodleError(f"{path} has other classes than {paths[0]} ({len(other)} vs {len(classes)}; {detail})")
        other_keys = read_key_ids(path)
        if len(other_keys) != len(keys):
            raise DoodleError(f"{path} has {len(other_keys):,} drawings but {paths[0]} has {len(keys):,}: "
                              "predict the same input with every model")
        bad = np.flatnonzero(other_keys != keys)
        if len(bad):
            raise DoodleError(f"{path} and {paths[0]} differ in key_id at row {bad[0]} "
                              f"({other_keys[bad[0]]} vs {keys[bad[0]]}): predict the same input in the same order")
    return classes, len(keys)


def align(preds: Sequence[Predictions], names: Sequence[str] | None = None) -> None:
    """The in-memory form of `check_aligned` (raises `DoodleError` on a mismatch)."""
    names = list(names) if names else [f"input {i + 1}" for i in range(len(preds))]
    for name, p in zip(names[1:], preds[1:], strict=True):
        if p.classes != preds[0].classes:
            raise DoodleError(f"{name} has other classes than {names[0]}")
        if len(p) != len(preds[0]) or not np.array_equal(p.key_ids, preds[0].key_ids):
            raise DoodleError(f"{name} and {names[0]} do not hold the same key_ids in the same order")


def concat_batches(batches: Iterable[Predictions]) -> Predictions:
    """One `Predictions` from several batches of the same classes."""
    parts = list(batches)
    if not parts:
        raise ValueError("no batches")
    tf = None
    if all(p.time_features is not None for p in parts):
        tf = np.concatenate([p.time_features for p in parts])
    words: list[str | None] = []
    if any(p.words for p in parts):
        for p in parts:
            words.extend(p.words or [None] * len(p))
    return Predictions(np.concatenate([p.key_ids for p in parts]), np.concatenate([p.probs for p in parts]),
                       list(parts[0].classes), words, tf, dict(parts[0].meta))
