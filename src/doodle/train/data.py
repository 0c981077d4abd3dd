"""Batches straight from a store: deterministic, resumable, DDP-aware, with Parquet locality.

`EpochBatches` is a map-style dataset over *batch* indices of one epoch. `ds[i]` is a pure function
of (store, split, seed, epoch, i, settings): whichever worker process computes it, and whenever, it
is the same batch, so restarting a loader at `start=i` (`make_loader`) continues a run exactly.

The epoch plan (computed in the parent from Parquet metadata, plus the `label`/`key_id` columns
only when rows must be filtered or balanced):

1. the split's row groups (all shards) are shuffled with `default_rng([seed, epoch, _PLAN_SALT])`
   (store order when `shuffle=False`) and cut into windows of `window` consecutive row groups;
2. the rows kept in each window (labelled rows; with `balanced_block`, one block per class) are
   shuffled with `default_rng([seed, epoch, _WINDOW_SALT, w])`;
3. the windows' rows are concatenated; global batch b is rows [b*B, (b+1)*B) of it (after `limit`);
4. with `world_size` R, rank r gets global batches r, r+R, r+2R, ...; with `drop_last` the tail is
   dropped so every rank has the same number of full batches (ranks stay in step). Without
   `drop_last` (validation) every row appears exactly once: the last batch is partial and, when
   R > 1, ranks past the end get empty batches so that all ranks still have `len(ds)` batches.

A worker reads only the row groups of the window(s) a batch needs and caches the last window, so
consecutive batches cost one read per window: memory is about one window per worker, and each
worker reads every row group at most once per epoch. DataLoader hands batches to workers round
robin, so every worker decodes every window once: with W workers a drawing is decoded W times.
That keeps a batch independent of the worker count (exact resume with any), at a price that grows
with W: about 1.5 us per drawing per worker on a store prepared with `--simplify`
(benchmarks/train_bench.py, the loader's read share), next to 15-60 us to make the batch.

A batch is made without a `Drawing` object: the rows' Arrow list columns become packed arrays
(`table_to_packed`), and `Preprocessor.table` simplifies, augments and renders (or makes sequence
features) the whole batch in compiled passes. From a store prepared with `--simplify` and
`input.simplify`, only the simplified strokes are read (`SIMPLIFIED_READ_COLUMNS`).

Curriculum epochs (`curriculum`, e.g. `doodle.post.clean.SampleWeights`): the parent also keeps only
the rows whose key_id the curriculum admits in this epoch; workers receive that decision as a
packed bit mask over the split's rows in store order (N / 8 bytes), not the curriculum itself, so
rows not admitted are never decoded into drawings, preprocessed or rendered.

Balanced epochs: each class of n rows is split into K = ceil(n / balanced_block) blocks by
`splitmix64(key_id) % K`, and each epoch keeps one block per class, drawn per (seed, epoch). A block
holds n / K <= balanced_block rows on average (binomial spread, std < sqrt(balanced_block));
classes no bigger than the block contribute all their rows every epoch.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from doodle.data.drawing import PackedDrawings
from doodle.data.split import splitmix64
from doodle.data.store import load_manifest, store_files
from doodle.data.table import SIMPLIFIED_COLUMNS, table_to_packed
from doodle.errors import DoodleError
from doodle.packed import concat_packed, take_packed

__all__ = ["EpochBatches", "MixedBatches", "class_counts", "make_loader", "READ_COLUMNS"]

READ_COLUMNS = ["key_id", "label", "countrycode", "stroke_len", "x", "y", "t"]
"""Columns a batch reads (everything the Preprocessor can use; no word, bitmap, source or timestamp)."""
SIMPLIFIED_READ_COLUMNS = ["key_id", "label", "countrycode", *SIMPLIFIED_COLUMNS]
"""What it reads instead with `input.simplify` from a store prepared with simplified strokes: no
raw points to decode, nothing to simplify."""

_PLAN_SALT = 0x9A1A
_WINDOW_SALT = 0x517D
_BALANCE_SALT = 0xBA1A
_BLOCK_SALT = 0xB10C
_MIX_SALT = 0x313C
_LABELLED_SPLITS = ("train", "val")
_MAX_OPEN_FILES = 64
_CHUNK = 1 << 22  # rows per step of the parent's vectorised selection
_COLUMN_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_COLUMN_CACHE_SIZE = 2  # train and val of one store


@dataclass(frozen=True)
class _WindowArrays:
    """One window's rows ready for the batch path (see `EpochBatches._window_arrays`)."""

    packed: PackedDrawings | None
    labels: np.ndarray
    keys: np.ndarray
    countries: np.ndarray


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


class Curriculum(Protocol):
    """Which drawings an epoch admits (`doodle.post.clean.SampleWeights` is one)."""

    def admits(self, key_ids: np.ndarray, epoch: int) -> np.ndarray:
        """bool [N]: whether each drawing (uint64 key_id) is admitted in `epoch`."""
        ...


@dataclass(frozen=True)
class _Selection:
    """Which rows of a split an epoch keeps: a pure per-row rule, applied alike by parent and workers."""

    labelled_only: bool
    blocks: np.ndarray | None  # K per class (balanced epochs), else None
    chosen: np.ndarray | None  # the block each class keeps this epoch
    salt: int

    def keep(self, labels: np.ndarray, keys: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels)
        keep = labels >= 0 if self.labelled_only or self.blocks is not None else np.ones(len(labels), bool)
        if self.blocks is not None:
            idx = np.flatnonzero(keep)
            lab = labels[idx]
            k = self.blocks[lab].astype(np.uint64)
            block = (splitmix64(np.asarray(keys)[idx], self.salt) % k).astype(np.int64)
            keep[idx] = block == self.chosen[lab]
        return keep


class EpochBatches:
    """The batches of one epoch of one split of a store (see the module docstring for the plan).

    `ds[i]` is a dict of numpy arrays: the Preprocessor outputs (none when `preprocess` is None),
    "label" int64 [B] and "key_id" int64 [B] (the uint64 key_id viewed as int64). With a
    `curriculum`, only the rows it admits in `epoch` are in the plan.
    """

    def __init__(self, store: str | os.PathLike, split: str = "train", preprocess=None, batch_size: int = 256,
                 seed: int = 0, epoch: int = 0, augment=None, balanced_block: int | None = None, rank: int = 0,
                 world_size: int = 1, shuffle: bool = True, drop_last: bool = True, limit: int | None = None,
                 window: int = 4, curriculum: Curriculum | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        if window < 1:
            raise ValueError(f"window must be >= 1 row group, got {window}")
        if balanced_block is not None and balanced_block < 1:
            raise ValueError(f"balanced_block must be >= 1, got {balanced_block}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        self.store = Path(store)
        self.split = split
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.seed = seed
        self.augment = augment
        self.balanced_block = balanced_block
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.limit = limit
        self.window = window
        self.curriculum = curriculum
        self._row_mask: np.ndarray | None = None  # packed bits: rows kept this epoch (with a curriculum)
        manifest = load_manifest(self.store)
        self.classes: list[str] = list(manifest["classes"])
        self.files = [str(p) for p in store_files(self.store, split)]
        self.columns = self._read_columns()
        """The store columns a batch reads (`READ_COLUMNS` or `SIMPLIFIED_READ_COLUMNS`)."""
        # Row groups in store order: (file index, group index), rows, and whether labels are all >= 0.
        groups, rows, labelled = [], [], []
        for f, path in enumerate(self.files):
            meta = pq.ParquetFile(path).metadata
            label_col = meta.schema.names.index("label")
            for g in range(meta.num_row_groups):
                rg = meta.row_group(g)
                groups.append((f, g))
                rows.append(rg.num_rows)
                stats = rg.column(label_col).statistics
                labelled.append(bool(stats is not None and stats.has_min_max and stats.min >= 0)
                                or rg.num_rows == 0)
        self.groups = np.array(groups, np.int64).reshape(-1, 2)
        self.group_rows = np.array(rows, np.int64)
        self.group_starts = np.concatenate([[0], np.cumsum(self.group_rows)]).astype(np.int64)
        """Start of each row group's rows in the split's store order."""
        self._all_labelled = all(labelled)
        self._labels: np.ndarray | None = None
        self._keys: np.ndarray | None = None
        self.row_group_reads: Counter = Counter()
        """(file index, row group) -> reads by this process: the locality of the plan, for tests and logs."""
        self._open: dict[int, pq.ParquetFile] = {}
        self._cached: tuple[int, pa.Table, np.ndarray] | None = None
        self._arrays: tuple[int, _WindowArrays] | None = None
        self.set_epoch(epoch)

    def _read_columns(self) -> list[str]:
        simplify = bool(getattr(getattr(self.preprocess, "config", None), "simplify", False))
        if simplify and self.files and SIMPLIFIED_COLUMNS[0] in pq.read_schema(self.files[0]).names:
            return SIMPLIFIED_READ_COLUMNS
        return READ_COLUMNS

    # -- the plan ---------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Re-plan for another epoch (reuses the label/key_id columns already read)."""
        if self.curriculum is None and self._row_mask is not None:
            raise RuntimeError("this copy holds one epoch's curriculum mask, not the curriculum: re-plan the "
                               "original EpochBatches")
        self.epoch = epoch
        labelled_only = self.split in _LABELLED_SPLITS
        blocks = chosen = None
        if self.balanced_block is not None:
            labels, _ = self._columns()
            n = np.bincount(labels[labels >= 0], minlength=len(self.classes))
            blocks = np.maximum(1, np.ceil(n / self.balanced_block)).astype(np.int64)
            rng = np.random.default_rng([self.seed, epoch, _BALANCE_SALT])
            chosen = (rng.random(len(blocks)) * blocks).astype(np.int64)
        self._selection = _Selection(labelled_only, blocks, chosen, _BLOCK_SALT + self.seed)
        # Rows kept per row group (store order).
        if blocks is None and self.curriculum is None and (self._all_labelled or not labelled_only):
            kept = self.group_rows.copy()
        else:
            keep = self._keep_rows(epoch)
            if self.curriculum is not None:
                self._row_mask = np.packbits(keep)
            csum = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
            kept = csum[self.group_starts[1:]] - csum[self.group_starts[:-1]]
        n_groups = len(self.group_rows)
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch, _PLAN_SALT]).permutation(n_groups)
        else:
            order = np.arange(n_groups)
        self.windows: list[np.ndarray] = [order[i:i + self.window] for i in range(0, n_groups, self.window)]
        """Row-group indices (into `groups`) of each window, in plan order."""
        window_rows = np.array([kept[w].sum() for w in self.windows], np.int64)
        self.window_offsets = np.concatenate([[0], np.cumsum(window_rows)]).astype(np.int64)
        """Start of each window's rows in the epoch's concatenation (length n_windows + 1)."""
        total = int(self.window_offsets[-1])
        self.rows = total if self.limit is None else min(total, self.limit)
        """Rows in this epoch's plan (after `limit`, before dropping the tail)."""
        B, R = self.batch_size, self.world_size
        self.global_batches = self.rows // B if self.drop_last else math.ceil(self.rows / B)
        """Batches of all ranks together (full ones only with `drop_last`)."""
        self._len = self.global_batches // R if self.drop_last else math.ceil(self.global_batches / R)
        self._cached = self._arrays = None

    def _keep_rows(self, epoch: int) -> np.ndarray:
        """bool [rows of the split]: the rows this epoch keeps, in store order."""
        labels, keys = self._columns()
        keep = np.empty(len(labels), bool)
        for lo in range(0, len(labels), _CHUNK):  # bounded temporaries at 50 M rows
            part = slice(lo, lo + _CHUNK)
            keep[part] = self._selection.keep(labels[part], keys[part])
            if self.curriculum is not None:
                keep[part] &= np.asarray(self.curriculum.admits(keys[part], epoch), bool)
        return keep

    def _columns(self) -> tuple[np.ndarray, np.ndarray]:
        """label (int32) and key_id (uint64) of every row of the split, in store order (cached)."""
        if self._labels is None:
            sig = (str(self.store.resolve()), self.split,
                   tuple((p, os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in self.files))
            cached = _COLUMN_CACHE.get(sig)
            if cached is None:
                labels, keys = [np.zeros(0, np.int32)], [np.zeros(0, np.uint64)]
                for path in self.files:
                    table = pq.read_table(path, columns=["label", "key_id"])
                    labels.append(table.column("label").to_numpy().astype(np.int32, copy=False))
                    keys.append(table.column("key_id").to_numpy().astype(np.uint64, copy=False))
                cached = (np.concatenate(labels), np.concatenate(keys))
                while len(_COLUMN_CACHE) >= _COLUMN_CACHE_SIZE:
                    _COLUMN_CACHE.pop(next(iter(_COLUMN_CACHE)))
                _COLUMN_CACHE[sig] = cached
            self._labels, self._keys = cached
        return self._labels, self._keys

    # -- batches ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Batches this rank gets in this epoch."""
        return self._len

    def global_index(self, i: int) -> int:
        """The global batch index of this rank's batch i (the augmentation RNG is seeded with it)."""
        return i * self.world_size + self.rank

    def _pieces(self, i: int) -> list[tuple[int, slice]]:
        """(window, slice of its planned rows) making up this rank's batch i, in batch order
        (nothing is read: a caller reads each window in turn, so the one-window cache serves it)."""
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"batch {i} out of range (epoch has {self._len} batches for this rank)")
        g = self.global_index(i)
        lo, hi = g * self.batch_size, min((g + 1) * self.batch_size, self.rows)
        pieces = []
        pos = lo
        while pos < hi:
            w = int(np.searchsorted(self.window_offsets, pos, side="right")) - 1
            start, end = int(self.window_offsets[w]), int(self.window_offsets[w + 1])
            pieces.append((w, slice(pos - start, min(hi, end) - start)))
            pos = min(hi, end)
        return pieces

    def batch_rows(self, i: int) -> pa.Table:
        """The store rows (`self.columns`) of this rank's batch i, in batch order."""
        tables = []
        for w, part in self._pieces(i):
            table, order = self._window_rows(w)
            tables.append(table.take(pa.array(order[part])))
        if not tables:
            return self._empty_table()
        return pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        g = self.global_index(i if i >= 0 else i + self._len)
        parts = [(self._window_arrays(w), self._window_rows(w)[1][part]) for w, part in self._pieces(i)]
        batch: dict[str, np.ndarray] = {}
        if self.preprocess is not None:
            rng = np.random.default_rng([self.seed, self.epoch, g])
            packed = concat_packed([take_packed(arrays.packed, take) for arrays, take in parts])
            countries = [c for arrays, take in parts for c in arrays.countries[take]]
            done = np.ones(len(packed), bool) if self.columns == SIMPLIFIED_READ_COLUMNS else None
            batch = dict(self.preprocess.packed(packed, countries, self.augment, rng, simplified=done))
        batch["label"] = _cat([arrays.labels[take] for arrays, take in parts], np.int64)
        batch["key_id"] = _cat([arrays.keys[take] for arrays, take in parts], np.uint64).view(np.int64)
        return batch

    def _window_arrays(self, w: int) -> _WindowArrays:
        """Window w's rows as packed strokes and numpy columns, made once per window (the batch
        path then gathers rows from them: no Arrow `take` of the point lists per batch)."""
        table, _ = self._window_rows(w)
        if self._arrays is None or self._arrays[0] != w:
            self._arrays = None
            presimplified = self.columns == SIMPLIFIED_READ_COLUMNS
            packed = table_to_packed(table, simplified=presimplified) if self.preprocess is not None else None
            countries = np.array(table.column("countrycode").to_pylist(), dtype=object)
            self._arrays = (w, _WindowArrays(packed, table.column("label").to_numpy().astype(np.int64),
                                             table.column("key_id").to_numpy().astype(np.uint64), countries))
        return self._arrays[1]

    def _window_rows(self, w: int) -> tuple[pa.Table, np.ndarray]:
        """Window w's table and the indices of its kept rows in plan order (caches the last window)."""
        if self._cached is not None and self._cached[0] == w:
            return self._cached[1], self._cached[2]
        self._cached = self._arrays = None  # free the old window before reading the next
        tables = [self._read_row_group(int(f), int(g)) for f, g in self.groups[self.windows[w]]]
        table = pa.concat_tables(tables, promote_options="permissive") if tables else self._empty_table()
        if self._row_mask is not None:
            keep = self._masked_rows(w, table.num_rows)
        else:
            keep = self._selection.keep(table.column("label").to_numpy(),
                                        table.column("key_id").to_numpy().astype(np.uint64, copy=False))
        order = np.flatnonzero(keep)
        expected = int(self.window_offsets[w + 1] - self.window_offsets[w])
        if len(order) != expected:
            raise DoodleError(f"{self.store} changed while in use: window {w} has {len(order)} rows, "
                              f"planned {expected}")
        if self.shuffle:
            order = order[np.random.default_rng([self.seed, self.epoch, _WINDOW_SALT, w]).permutation(len(order))]
        self._cached = (w, table, order)
        return table, order

    def _masked_rows(self, w: int, n_rows: int) -> np.ndarray:
        """bool [n_rows]: the planned mask of window w's rows (its row groups in plan order)."""
        groups = self.windows[w]
        if int(self.group_rows[groups].sum()) != n_rows:
            raise DoodleError(f"{self.store} changed while in use: window {w} has {n_rows} rows")
        parts = [_bits(self._row_mask, int(self.group_starts[g]), int(self.group_starts[g + 1])) for g in groups]
        return np.concatenate(parts) if parts else np.zeros(0, bool)

    def _read_row_group(self, file_index: int, group: int) -> pa.Table:
        self.row_group_reads[(file_index, group)] += 1
        handle = self._open.get(file_index)
        if handle is None:
            if len(self._open) >= _MAX_OPEN_FILES:
                self._open.clear()
            handle = self._open[file_index] = pq.ParquetFile(self.files[file_index])
        return handle.read_row_group(group, columns=self.columns)

    def _empty_table(self) -> pa.Table:
        from doodle.data.table import SCHEMA, SIMPLIFIED_FIELDS

        return pa.schema([*SCHEMA, *SIMPLIFIED_FIELDS]).empty_table().select(self.columns)

    # -- pickling (DataLoader workers) ----------------------------------------------------------------

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        # Workers need only the plan: not the split's columns, open files or the cached window, nor
        # the curriculum (per scored drawing) when this epoch's row mask (a bit per row) says it all.
        state.update(_labels=None, _keys=None, _open={}, _cached=None, _arrays=None, row_group_reads=Counter())
        if self._row_mask is not None:
            state["curriculum"] = None
        return state

    def __repr__(self) -> str:
        return (f"EpochBatches({str(self.store)!r}, split={self.split!r}, epoch={self.epoch}, "
                f"batch_size={self.batch_size}, rows={self.rows}, batches={self._len}, "
                f"rank={self.rank}/{self.world_size})")


class MixedBatches:
    """The batches of several `EpochBatches` (a labelled store plus extra ones, e.g. pseudo-labels) in one
    epoch, interleaved: batch i is batch j of source s by a permutation seeded with (seed, epoch), so
    `ds[i]` stays a pure function of its index (resume stays exact). Every source's batches appear once."""

    def __init__(self, sources: list[EpochBatches], seed: int = 0, epoch: int = 0):
        if not sources:
            raise ValueError("no sources to mix")
        for other in sources[1:]:
            if other.classes != sources[0].classes:
                raise DoodleError(f"{other.store}: its classes differ from {sources[0].store}'s; "
                                  "build extra stores with the main store's class list")
        self.sources = sources
        self.classes = sources[0].classes
        owner = np.concatenate([np.full(len(src), s, np.int64) for s, src in enumerate(sources)])
        local = np.concatenate([np.arange(len(src), dtype=np.int64) for src in sources])
        order = np.random.default_rng([seed, epoch, _MIX_SALT]).permutation(len(owner))
        self._owner, self._local = owner[order], local[order]

    def __len__(self) -> int:
        return len(self._owner)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        return self.sources[int(self._owner[i])][int(self._local[i])]


def _bits(packed: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """bool [hi - lo]: bits lo..hi-1 of a `np.packbits` array, unpacking only the bytes they span."""
    first = lo // 8
    bits = np.unpackbits(packed[first:(hi + 7) // 8])
    return bits[lo - 8 * first:hi - 8 * first].astype(bool)


def _worker_init(_: int) -> None:
    import torch

    torch.set_num_threads(1)


def make_loader(ds: EpochBatches, workers: int = 2, start: int = 0, *, pin_memory: bool | None = None,
                prefetch_factor: int = 4, context: str | None = None):
    """A torch DataLoader yielding ds[start], ds[start + 1], ..., ds[len(ds) - 1] in order (as tensors).

    `pin_memory` defaults to whether CUDA is available; `context` is the multiprocessing start
    method of the workers (None: torch's default).
    """
    import torch
    from torch.utils.data import DataLoader

    if not 0 <= start <= len(ds):
        raise ValueError(f"start must be in 0..{len(ds)}, got {start}")
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    extra = {}
    if workers > 0:
        extra = {"prefetch_factor": prefetch_factor, "multiprocessing_context": context,
                 "worker_init_fn": _worker_init}
    return DataLoader(ds, batch_size=None, sampler=range(start, len(ds)), num_workers=workers,
                      pin_memory=pin, **extra)


def class_counts(store: str | os.PathLike, split: str = "train") -> np.ndarray:
    """Drawings per label (int64, in label order) of a labelled split, from the manifest."""
    manifest = load_manifest(store)
    per_class = manifest.get("per_class", {})
    if split not in per_class:
        raise DoodleError(f"no per-class counts for split {split!r} (labelled splits: {', '.join(per_class)})")
    counts = per_class[split]
    return np.array([counts.get(c, 0) for c in manifest["classes"]], np.int64)
