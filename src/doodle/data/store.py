"""`prepare`: any mix of Quick, Draw! files into a sharded, shuffled, deduplicated Parquet store.

The full dataset (50 M drawings, hundreds of GB of raw JSON) must go through one machine in bounded
memory with every core busy, so this is an external shuffle in two stages:

1. map: input files (big text files cut into byte ranges) are read in parallel; every valid drawing
   goes to a bucket chosen by a hash of its key_id, and each task writes its rows, grouped by
   bucket, to one Arrow IPC temp file in segments of bounded size. Bad records go to per-task
   reject files. Memory per worker: one segment.
2. reduce: each bucket (all copies of a key_id share one) is loaded, deduplicated, labelled,
   split by a hash of key_id, shuffled and written as one Parquet shard per split. The number of
   buckets is chosen from the input size to fit the budget, up to `MAX_SHARDS`; a bucket that still
   outgrows a worker's share (the map stage counts every bucket's bytes) is reduced in k passes,
   each taking the rows of one value of a second, independent hash of key_id, so all copies of a
   key_id still meet in one pass and each pass writes a shard of its own
   (`part-NNNNN-JJJ.parquet`). Memory per worker: one pass, whatever the input size.

The layout is `STORE/{train,val,test}/part-NNNNN.parquet` (the `split` column is also stored),
`STORE/_manifest.json` and `STORE/_rejects.ndjson`: Arrow tools skip names starting with `_`, so
`pyarrow.dataset.dataset(STORE)`, `pandas.read_parquet(STORE)`, Polars and DuckDB read the store
root as one dataset. Stores written before kept `manifest.json` and `rejects.ndjson`; every reader
here finds either (`find_manifest`, `find_rejects`). A failed run removes its `STORE.partial/`
(a killed one leaves it to the next run, which clears it first); an existing store (`overwrite`)
stays whole until the new one is complete (`doodle.fs.replace_folder`), and a lock beside the store
stops a second run into the same folder at once.
"""

from __future__ import annotations

import heapq
import logging
import math
import multiprocessing as mp
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from doodle.data.drawing import DEFAULT_LIMITS, Drawing, Limits, Reject
from doodle.data.split import bucket_of, is_val, pass_of, splitmix64, splitmix64_int
from doodle.data.table import (
    POINT_COLUMNS,
    SCHEMA,
    SCHEMA_SIMPLIFIED,
    drawings_to_table,
    table_to_drawings,
    with_simplified,
)
from doodle.errors import DoodleError
from doodle.fs import check_writable, exclusive_lock, recover_replaced, replace_folder
from doodle.version import code_version

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MIN_MEMORY_MB = 16
"""The smallest budget accepted; what is left for drawings never goes below `MIN_BUFFER_MB`."""
PROCESS_MB = 240
"""Resident memory of one prepare process before it holds a drawing (Python, NumPy, pyarrow and
numba: about 230 MB measured), counted against the budget for the parent and for every worker."""
MIN_BUFFER_MB = 16
"""The least memory given to drawings (segment buffers, reduce passes), whatever the budget."""
MAX_SHARDS = 4096
"""Most shuffle buckets (one open batch each per map segment; the automatic choice stops here too)."""
SAMPLE_SALT = 0x5A3B1E
"""Salt of the per-class sample's hash of key_id (apart from the split's: a sample is not biased to val)."""
_U64 = (1 << 64) - 1
STORE_SHARD = "store-shard"  # a task reading one Parquet shard of an input store
MANIFEST = "_manifest.json"
REJECTS = "_rejects.ndjson"
LEGACY_MANIFEST = "manifest.json"
LEGACY_REJECTS = "rejects.ndjson"
"""The names stores written before `_manifest.json` used (still read; Arrow tools choke on them)."""
WORDLESS_FORMATS = frozenset({"binary", "npz", "bitmap-npy", "bitmap-bin"})
"""Formats with no word field: `PrepareConfig.word` names their category (else the file name does)."""

# Arrow bytes per input byte, by format: raw JSON spells a coordinate in ~7-18 characters and a
# float64 takes 8 bytes, the binary format packs a coordinate in one byte. Used only to choose the
# number of buckets (the map stage measures the real sizes); a generous guess is harmless.
_EXPANSION = {"binary": 10.0, "npz": 10.0, "bitmap-npy": 1.2, "bitmap-bin": 1.2}
_DEFAULT_EXPANSION = 2.0
_SAMPLED_BYTES = 32 << 10
"""A generous Arrow size of one sampled drawing (raw ones with timing average ~10 KB), per class and
file, to choose the buckets of a per-class sample (which is far smaller than its input)."""
_WORKING_COPIES = 4
"""A bucket costs up to this many times its Arrow size in a worker in the reduce stage (read,
deduplicated, labelled, shuffled, split: three copies at once, plus what the allocator keeps)."""
_SEGMENT_COPIES = 8
"""A map segment costs up to this many times its Arrow size in a worker's resident memory: the
buffered drawings as Python objects, their flattened arrays, the Arrow table and its copy sorted by
bucket, plus what the allocators keep between segments (measured 4-5x on Kaggle's simplified CSVs)."""


@dataclass
class PrepareConfig:
    """How `prepare` builds a store."""

    val_fraction: float = 0.05
    """Fraction of labelled drawings put in the "val" split (chosen by a hash of key_id)."""
    seed: int = 0
    """Salt of the split, the buckets and the shuffle; same seed and input give the same store."""
    classes: list[str] | None = None
    """Class names in label order; drawings of other words are rejected. None: sorted words seen.
    Drawings without a word (Kaggle's test rows) are kept either way, in the "test" split."""
    word: str | None = None
    """The word of every drawing of a format without one (binary, npz, bitmaps), for files whose
    names are not their category; None: guessed from each file's name (`formats.infer_word`)."""
    workers: int = 0
    """Worker processes; 0 means one per core."""
    memory_mb: int = 2048
    """Budget for the whole process tree: each process's own `PROCESS_MB` and, with the rest, the
    workers' buffers; buckets and reduce passes are sized to fit it."""
    chunk_mb: float = 64
    """Size of the byte ranges big text files are cut into (the unit of parallel work)."""
    shards: int = 0
    """Number of shuffle buckets (shards per split, one more per extra reduce pass of a bucket that
    outgrows the budget); 0 chooses from input size and memory."""
    row_group_size: int = 8192
    """Rows per Parquet row group (the unit a loader reads at random)."""
    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)
    """Bounds past which a record is rejected as absurd."""
    per_class: int = 0
    """Keep at most this many drawings of each class (0: all): those whose key_id hashes lowest
    (salted by `seed`). A class's sample depends only on its own drawings, so adding classes (or
    files of other classes) later keeps the same drawings of the old ones; the rest are counted as
    sampled out. Drawings left out are dropped as they are read, so the temporary files stay near
    the sample's size (each reader keeps the `per_class` lowest hashes of each class it meets)."""
    simplify: bool = False
    """Also store every drawing's strokes in Google's simplified form (`SIMPLIFIED_COLUMNS`:
    `doodle.simplify` of raw drawings, computed here once), so that training with `input.simplify`
    reads them instead of simplifying raw drawings every epoch. The raw x, y, t stay (timing for the
    encodings that use it)."""
    progress: bool = True
    """Show progress bars."""

    def check(self) -> None:
        """Raise DoodleError naming the first option out of its range (before any work is done)."""
        rules = [
            (0.0 <= self.val_fraction < 1.0, f"val_fraction must be in [0, 1), got {self.val_fraction}"),
            (0 <= self.seed < 2**63, f"seed must be in 0..2**63-1, got {self.seed}"),
            (self.workers >= 0, f"workers must be 0 (one per core) or more, got {self.workers}"),
            (self.memory_mb >= MIN_MEMORY_MB, f"memory_mb must be at least {MIN_MEMORY_MB}, got {self.memory_mb}"),
            (self.chunk_mb > 0, f"chunk_mb must be positive, got {self.chunk_mb}"),
            (0 <= self.shards <= MAX_SHARDS, f"shards must be 0 (automatic) to {MAX_SHARDS}, got {self.shards}"),
            (self.row_group_size >= 1, f"row_group_size must be at least 1, got {self.row_group_size}"),
            (self.word is None or bool(self.word.strip()), f"word must name a category, got {self.word!r}"),
            (self.per_class >= 0, f"per_class must be 0 (all) or more, got {self.per_class}"),
        ]
        for ok, message in rules:
            if not ok:
                raise DoodleError(message)


@dataclass(frozen=True)
class _Part:
    """A file, or a byte range of a big text file."""

    path: str
    fmt: str
    start: int = 0
    end: int | None = None
    size: int = 0


@dataclass(frozen=True)
class _Task:
    """The unit of parallel work: one chunk of a big file, or several small files together."""

    index: int
    parts: tuple[_Part, ...]

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)


@dataclass
class _PartResult:
    inputs: int = 0
    rejected: int = 0
    lines: int = 0


@dataclass
class _TaskResult:
    index: int
    parts: list[_PartResult] = field(default_factory=list)
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    words: Counter = field(default_factory=Counter)
    segments: int = 0
    sampled_out: int = 0
    """Drawings this task left out of the per-class sample as it read them."""
    lowest: dict[str, np.ndarray] = field(default_factory=dict)
    """Per class, the `per_class` lowest sample hashes this task saw (merged into the class thresholds)."""
    bucket_bytes: np.ndarray | None = None
    """Arrow bytes this task wrote to each bucket (summed over tasks, they size the reduce passes)."""

    @property
    def inputs(self) -> int:
        return sum(p.inputs for p in self.parts)


# -- public API ---------------------------------------------------------------------------------


def prepare(sources: Sequence[str | os.PathLike], out: str | os.PathLike, config: PrepareConfig | None = None,
            *, overwrite: bool = False) -> dict:
    """Build a store at `out` from files and folders in `sources`; returns the manifest.

    Raises `DoodleError` before any work when an option is out of range, `out` exists (unless
    `overwrite`) or cannot be written, no input file is found, or another process is preparing
    `out`. An existing store is replaced only once the new one is complete.
    """
    from doodle.data.formats import expand_sources

    cfg = config or PrepareConfig()
    cfg.check()
    out = Path(out)
    _check_out(out, overwrite)
    files, skipped = expand_sources([Path(s) for s in sources])
    for path, reason in skipped:
        log.warning("skipped %s: %s", path, reason)
    if not files:
        raise DoodleError(f"no drawing files found in {', '.join(map(str, sources))}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out, "prepared"):
        recover_replaced(out)
        _check_out(out, overwrite)  # again, now that no other run can be changing it
        work = out.with_name(out.name + ".partial")
        try:
            manifest = _build(files, skipped, work, cfg)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)  # a half-built store is of no use: a rerun starts over
            raise
        replace_folder(work, out)
    return manifest


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an output that this run could not or should not replace."""
    if out.exists() and not out.is_dir():
        raise DoodleError(f"--out {out} is a file, not a store folder")
    if out.exists() and not overwrite:
        raise DoodleError(f"{out} already exists (pass --overwrite to replace it)")
    if out.is_dir() and any(out.iterdir()) and not is_store(out):
        raise DoodleError(f"--out {out} is a folder that is not a doodle store: refusing to replace it")
    check_writable(out.parent, shown=str(out))  # the lock, STORE.partial and the swap live beside it


def _build(files: list, skipped: list, work: Path, cfg: PrepareConfig) -> dict:
    """The whole store in `work`: map, reduce, rejects and manifest."""
    started = time.time()
    shutil.rmtree(work, ignore_errors=True)  # a killed run's leftovers (we hold the lock)
    (work / "_tmp").mkdir(parents=True)
    workers = cfg.workers or os.cpu_count() or 1
    tasks = _plan_tasks(files, max(1, int(cfg.chunk_mb * 2**20)))
    buffers = buffer_mb(workers, cfg.memory_mb)
    n_buckets = cfg.shards or _choose_buckets(tasks, workers, buffers, cfg.per_class)
    segment_bytes = max(1 << 20, (buffers << 20) // (_SEGMENT_COPIES * workers))
    results, bucket_bytes, thresholds = _run_map(tasks, work, n_buckets, segment_bytes, cfg, workers)
    classes, unknown = _resolve_classes(cfg.classes, results)
    passes = _plan_passes(bucket_bytes, _pass_budget(workers, buffers))
    counts = _run_reduce(work, n_buckets, passes, results, classes, cfg, workers, thresholds)
    rejected = _merge_rejects(work, tasks, results)
    manifest = _manifest(cfg, files, skipped, tasks, results, classes, counts, rejected, (n_buckets, len(passes)),
                         time.time() - started, unknown)
    (work / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    shutil.rmtree(work / "_tmp")
    return manifest


def find_manifest(folder: str | os.PathLike) -> Path | None:
    """The manifest file of a store folder (`_manifest.json`, or an older store's `manifest.json`), or None."""
    for name in (MANIFEST, LEGACY_MANIFEST):
        path = Path(folder) / name
        if path.is_file():
            return path
    return None


def is_store(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a store made by `prepare` (it holds a manifest)."""
    return find_manifest(folder) is not None


def find_rejects(store: str | os.PathLike) -> Path | None:
    """The rejects file of a store (`_rejects.ndjson`, or an older store's `rejects.ndjson`), or None."""
    for name in (REJECTS, LEGACY_REJECTS):
        path = Path(store) / name
        if path.is_file():
            return path
    return None


def load_manifest(store: str | os.PathLike) -> dict:
    """The manifest of a store (raises `DoodleError` when `store` is not one)."""
    path = find_manifest(store)
    if path is None:
        raise DoodleError(f"{store} is not a doodle store (no {MANIFEST})")
    return orjson.loads(path.read_bytes())


def store_files(store: str | os.PathLike, split: str | None = None) -> list[Path]:
    """The Parquet shards of a store, of one split or all."""
    load_manifest(store)
    splits = [split] if split else list(SPLITS)
    for name in splits:
        if name not in SPLITS:
            raise DoodleError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")
    return sorted(p for name in splits for p in (Path(store) / name).glob("part-*.parquet"))


def iter_store(store: str | os.PathLike, split: str | None = None, batch_size: int = 4096) -> Iterator[Drawing]:
    """Stream the drawings of a store (one split or all), shard after shard."""
    for path in store_files(store, split):
        yield from _iter_shard(path, batch_size)


def _iter_shard(path: str | os.PathLike, batch_size: int = 4096) -> Iterator[Drawing]:
    """The drawings of one Parquet shard, a batch of rows at a time."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
        yield from table_to_drawings(batch)


# -- planning -------------------------------------------------------------------------------------


def _plan_tasks(files: list[tuple[Path, str]], chunk_bytes: int) -> list[_Task]:
    """Cut big text files into byte ranges and pack small files together, about chunk_bytes a task."""
    from doodle.data.formats import SPLITTABLE_FORMATS

    parts: list[_Part] = []
    for path, fmt in files:
        if fmt in ("store", "store-split"):  # re-preparing a store (or one split): its shards are the parts
            shards = store_files(path) if fmt == "store" else store_files(path.parent, path.name)
            parts += [_Part(str(shard), STORE_SHARD, size=shard.stat().st_size * 3) for shard in shards]
            continue
        size = path.stat().st_size
        gz = path.name.endswith(".gz")
        if fmt in SPLITTABLE_FORMATS and not gz and size > chunk_bytes:
            parts += [_Part(str(path), fmt, start, min(start + chunk_bytes, size), min(chunk_bytes, size - start))
                      for start in range(0, size, chunk_bytes)]
        else:
            parts.append(_Part(str(path), fmt, 0, None, size * (4 if gz else 1)))
    tasks: list[_Task] = []
    group: list[_Part] = []
    for part in parts:
        chunk = part.end is not None  # a byte range of a big file is a task of its own
        if group and (chunk or sum(p.size for p in group) + part.size > chunk_bytes):
            tasks.append(_Task(len(tasks), tuple(group)))
            group = []
        group.append(part)
        if chunk:
            tasks.append(_Task(len(tasks), tuple(group)))
            group = []
    if group:
        tasks.append(_Task(len(tasks), tuple(group)))
    return tasks


def buffer_mb(workers: int, memory_mb: int) -> int:
    """The part of `memory_mb` left for drawings once the processes themselves are counted (the
    parent, plus `workers` pool processes when there is more than one); warns when it is too small."""
    processes = 1 + (workers if workers > 1 else 0)
    left = memory_mb - processes * PROCESS_MB
    if left < MIN_BUFFER_MB:
        log.warning("--memory-mb %d is below the ~%d MB that %d processes need before holding any drawing; "
                    "buffers get %d MB and peak memory will exceed the budget (raise --memory-mb or lower "
                    "--workers)", memory_mb, processes * PROCESS_MB + MIN_BUFFER_MB, processes, MIN_BUFFER_MB)
    return max(MIN_BUFFER_MB, left)


def _choose_buckets(tasks: list[_Task], workers: int, buffers_mb: int, per_class: int = 0) -> int:
    """Enough buckets that one per worker (with its working copies) fits the buffer budget, up to
    `MAX_SHARDS`; past that, buckets are reduced in several passes (`_plan_passes`)."""
    arrow_bytes = sum(p.size * _EXPANSION.get(p.fmt, _DEFAULT_EXPANSION) for t in tasks for p in t.parts)
    if per_class:  # the sample is what reaches the buckets; a bucket that outgrows its pass gets more passes
        arrow_bytes = min(arrow_bytes, per_class * len({p.path for t in tasks for p in t.parts}) * _SAMPLED_BYTES)
    return max(1, min(MAX_SHARDS, math.ceil(arrow_bytes / _pass_budget(workers, buffers_mb))))


def _pass_budget(workers: int, buffers_mb: int) -> float:
    """Arrow bytes one reduce pass may load: a worker's share of the buffers over its working copies."""
    return (buffers_mb << 20) / (_WORKING_COPIES * workers)


def _plan_passes(bucket_bytes: np.ndarray, budget: float) -> list[tuple[int, int, int]]:
    """(bucket, pass j, passes k) for every reduce pass: k = 1 unless the bucket outgrows `budget`."""
    passes = []
    for bucket, size in enumerate(bucket_bytes.tolist()):
        k = max(1, math.ceil(size / budget))
        passes += [(bucket, j, k) for j in range(k)]
    return passes


# -- the per-class sample ---------------------------------------------------------------------------


def sample_hash(key_id: int, seed: int = 0) -> int:
    """The sample's hash of one key_id: `splitmix64(key_id, SAMPLE_SALT + seed)`, one at a time
    (a reader calls it once per drawing)."""
    return splitmix64_int(key_id, SAMPLE_SALT + seed)


class _Sampler:
    """Per class, the `n` lowest distinct sample hashes one map task has seen (a max-heap each).

    A drawing whose hash is not among them cannot be among the `n` lowest of its class over all
    the input, so the task drops it at once; the reduce stage cuts the rest at the class threshold.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self.heaps: dict[str, list[int]] = {}
        self.members: dict[str, set[int]] = {}

    def offer(self, word: str, key_id: int) -> bool:
        """Whether the drawing may be in the sample (its hash is among the `n` lowest seen so far)."""
        h = sample_hash(key_id, self.seed)
        heap, members = self.heaps.setdefault(word, []), self.members.setdefault(word, set())
        if h in members:  # another copy of a drawing already kept
            return True
        if len(heap) < self.n:
            heapq.heappush(heap, -h)
        elif h < -heap[0]:
            members.discard(-heapq.heappushpop(heap, -h))
        else:
            return False
        members.add(h)
        return True

    def lowest(self) -> dict[str, np.ndarray]:
        return {word: np.array(sorted(members), np.uint64) for word, members in self.members.items()}


def _merge_lowest(lowest: dict[str, np.ndarray], task: dict[str, np.ndarray], n: int) -> None:
    """Fold one task's lowest hashes into the running `n` lowest of each class."""
    for word, hashes in task.items():
        merged = np.unique(np.concatenate([lowest.get(word, hashes[:0]), hashes]))
        lowest[word] = merged[:n]


def _thresholds(lowest: dict[str, np.ndarray], n: int) -> dict[str, int] | None:
    """Per class, the highest hash in its sample (every hash when it has `n` drawings or fewer)."""
    if not n:
        return None
    return {word: int(h[n - 1]) if len(h) >= n else _U64 for word, h in lowest.items()}


def _sample(table: pa.Table, thresholds: dict[str, int] | None, seed: int) -> tuple[pa.Table, int]:
    """Rows of the per-class sample (unlabelled rows are never sampled out); and how many were left out."""
    if thresholds is None or table.num_rows == 0:
        return table, 0
    words = list(thresholds)
    at = pc.index_in(table.column("word"), value_set=pa.array(words, pa.string())).fill_null(len(words)).to_numpy()
    limits = np.array([thresholds[w] for w in words] + [_U64], np.uint64)  # the last: rows of no class
    keep = splitmix64(table.column("key_id").to_numpy(), SAMPLE_SALT + seed) <= limits[at]
    return table.filter(pa.array(keep)), int((~keep).sum())


# -- map stage ------------------------------------------------------------------------------------


def _pool(workers: int):
    # spawn, not fork: worker processes must not inherit the parent's threads (tqdm, numba).
    return mp.get_context("spawn").Pool(workers)


def _run_map(tasks, work: Path, n_buckets: int, segment_bytes: int, cfg: PrepareConfig, workers: int):
    from tqdm import tqdm

    args = [(t, str(work / "_tmp"), n_buckets, segment_bytes, cfg) for t in tasks]
    # Largest first, so a big file does not start last and leave the other cores idle.
    args.sort(key=lambda a: -a[0].size)
    results: list[_TaskResult] = [None] * len(tasks)  # type: ignore[list-item]
    bucket_bytes = np.zeros(n_buckets, np.int64)
    lowest: dict[str, np.ndarray] = {}
    bar = tqdm(total=sum(t.size for t in tasks), unit="B", unit_scale=True, desc="read",
               disable=not cfg.progress)
    with _maybe_pool(workers) as pool:
        for result in (pool.imap_unordered(_map_task, args) if pool else map(_map_task, args)):
            bucket_bytes += result.bucket_bytes
            result.bucket_bytes = None  # only the totals are needed: tasks x buckets would grow with input
            _merge_lowest(lowest, result.lowest, cfg.per_class)
            result.lowest = {}
            results[result.index] = result
            bar.update(tasks[result.index].size)
    bar.close()
    return results, bucket_bytes, _thresholds(lowest, cfg.per_class)


@contextmanager
def _maybe_pool(workers: int) -> Iterator:
    """A pool of `workers` processes, or None to work in this process when there is one worker."""
    if workers == 1:
        yield None
        return
    with _pool(workers) as pool:
        yield pool


def _task_position(stats, fmt: str) -> int:
    """Where the record just read sits: its line (text formats) or record index (others)."""
    from doodle.data.formats import SPLITTABLE_FORMATS

    return stats.lines if fmt in SPLITTABLE_FORMATS else stats.records - 1


def _normalise_word(word: str, classes: set[str] | None) -> str | None:
    if classes is None or word in classes:
        return word
    spaced = word.replace("_", " ")
    return spaced if spaced in classes else None


def _map_task(args) -> _TaskResult:
    task, tmp, n_buckets, segment_bytes, cfg = args
    result = _TaskResult(task.index)
    classes = set(cfg.classes) if cfg.classes else None
    writer = _SegmentWriter(Path(tmp) / f"map-{task.index:06d}.arrow", n_buckets, cfg.seed, task.index, segment_bytes)
    sampler = _Sampler(cfg.per_class, cfg.seed) if cfg.per_class else None
    with open(Path(tmp) / f"rejects-{task.index:06d}.ndjson", "wb") as rejects:
        for part in task.parts:
            result.parts.append(_map_part(part, writer, rejects, result, classes, cfg, sampler))
        writer.flush()
    writer.close()
    result.segments = writer.segments
    result.bucket_bytes = writer.bucket_bytes
    result.lowest = sampler.lowest() if sampler else {}
    return result


def _map_part(part: _Part, writer: _SegmentWriter, rejects, result: _TaskResult, classes: set[str] | None,
              cfg: PrepareConfig, sampler: _Sampler | None = None) -> _PartResult:
    """Read one file or byte range: good drawings to the segment writer, bad records to `rejects`."""
    from doodle.data.formats import ReadStats

    stats = ReadStats()
    counts = _PartResult()
    for record in _records(part, cfg.limits, stats, cfg.word):
        counts.inputs += 1
        if isinstance(record, Drawing) and record.word is not None:
            record = _check_class(record, part, stats, classes)
        if isinstance(record, Reject):
            counts.rejected += 1
            result.rejected[_reason_kind(record.reason)] += 1
            rejects.write(orjson.dumps(record.to_json_dict()) + b"\n")
            continue
        if record.word is not None:  # unlabelled (Kaggle test rows) is no class: None cannot sort with names
            result.words[record.word] += 1
            if sampler is not None and not sampler.offer(record.word, record.key_id):
                result.sampled_out += 1
                continue
        result.accepted += 1
        writer.add(record, part.path)
    counts.lines = stats.lines
    return counts


def _check_class(drawing: Drawing, part: _Part, stats, classes: set[str] | None) -> Drawing | Reject:
    word = _normalise_word(drawing.word, classes)
    if word is None:
        reason = f"unknown class {drawing.word!r} (not in the class list)"
        return Reject(part.path, _task_position(stats, part.fmt), reason, orjson.dumps(drawing.to_json_dict()).decode())
    drawing.word = word
    return drawing


def _records(part: _Part, limits: Limits, stats, word: str | None = None) -> Iterator[Drawing | Reject]:
    from doodle.data.formats import iter_records

    if part.fmt != STORE_SHARD:
        # `word` names only formats that have none: a Kaggle test row stays unlabelled, whatever it says.
        word = word if part.fmt in WORDLESS_FORMATS else None
        try:
            yield from iter_records(part.path, part.fmt, limits=limits, word=word, start=part.start, end=part.end,
                                    stats=stats)
        except _READ_FAILURES as err:  # the file changed or broke under the reader: one reject, not a dead run
            yield _failure_reject(part, stats, err)
        return
    for drawing in _iter_shard(part.path):
        stats.records += 1
        yield drawing


_READ_FAILURES = (OSError, EOFError, DoodleError)
"""What reading a file can raise past the readers' own checks (it vanished, it changed since it was
detected): the records read so far count, and the failure is one reject."""


def _failure_reject(part: _Part, stats, err: Exception) -> Reject:
    from doodle.data.formats import SPLITTABLE_FORMATS

    position = stats.lines + 1 if part.fmt in SPLITTABLE_FORMATS else stats.records
    stats.lines += part.fmt in SPLITTABLE_FORMATS
    stats.records += 1
    stats.rejects += 1
    return Reject(part.path, position, f"reading stopped by an error: {type(err).__name__}: {err}")


def _reason_kind(reason: str) -> str:
    """The reason without its specifics (numbers, quoted values), for manifest totals."""
    head = reason.split(":")[0]
    return " ".join("N" if w.strip(",()").isdigit() else w for w in head.split())[:80]


class _SegmentWriter:
    """One Arrow IPC file per map task: segments of `n_buckets` batches, batch b = bucket b.

    Drawings are buffered until about `segment_bytes`, then written as one segment, so a worker's
    memory is bounded whatever the size of its files.
    """

    def __init__(self, path: Path, n_buckets: int, seed: int, task_index: int, segment_bytes: int = 64 << 20):
        self.n_buckets, self.seed, self.task_index = n_buckets, seed, task_index
        self.segment_bytes = segment_bytes
        self.schema = _map_schema()
        self.sink = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_file(self.sink, self.schema, options=pa.ipc.IpcWriteOptions(compression="lz4"))
        self.segments = 0
        self.rows = 0
        self.bucket_bytes = np.zeros(n_buckets, np.int64)
        self.buffer: list[Drawing] = []
        self.sources: list[str] = []
        self.buffered_bytes = 0

    def add(self, drawing: Drawing, source: str) -> None:
        self.buffer.append(drawing)
        self.sources.append(source)
        # about 24 bytes per point in Arrow (x, y, t as float64), a bitmap is 784
        self.buffered_bytes += 24 * drawing.n_points + (784 if drawing.bitmap is not None else 0) + 100
        if self.buffered_bytes >= self.segment_bytes:
            self.flush()

    def flush(self) -> None:
        """Write the buffer as one segment (always at least one segment per file)."""
        if not self.buffer and self.segments:
            return
        table = drawings_to_table(self.buffer, source=self.sources)
        self.buffer, self.sources, self.buffered_bytes = [], [], 0
        keys = table.column("key_id").to_numpy()
        # Map-side order keys: which duplicate survives depends on input order, never on timing.
        table = table.append_column("task", pa.array(np.full(len(keys), self.task_index, np.int32)))
        table = table.append_column("row", pa.array(np.arange(self.rows, self.rows + len(keys), dtype=np.int64)))
        self.rows += len(keys)
        buckets = bucket_of(keys, self.n_buckets, self.seed)
        order = np.argsort(buckets, kind="stable")
        table = table.take(pa.array(order)).cast(self.schema)
        bounds = np.searchsorted(buckets[order], np.arange(self.n_buckets + 1))
        for b in range(self.n_buckets):
            # Exactly one batch per bucket, even an empty one: the reduce stage finds bucket b of
            # segment s at batch index s * n_buckets + b.
            part = table.slice(bounds[b], bounds[b + 1] - bounds[b]).combine_chunks()
            self.bucket_bytes[b] += part.nbytes
            batches = part.to_batches()
            self.writer.write_batch(batches[0] if batches else _empty_batch(self.schema))
        self.segments += 1
        del table, part, batches
        _release_memory()

    def close(self) -> None:
        self.writer.close()
        self.sink.close()


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.record_batch([pa.array([], type=f.type) for f in schema], schema=schema)


def _map_schema() -> pa.Schema:
    base = [f for f in SCHEMA if f.name not in ("label", "split")]
    return pa.schema(base + [pa.field("task", pa.int32()), pa.field("row", pa.int64())])


# -- between the stages -------------------------------------------------------------------------


def _resolve_classes(given: list[str] | None, results: list[_TaskResult]) -> tuple[list[str], list[str]]:
    """Classes in label order (given, or the sorted words seen) and given classes never seen."""
    seen: Counter = Counter()
    for r in results:
        seen.update(r.words)
    if given:
        return list(given), [c for c in given if c not in seen]
    return sorted(seen), []


# -- reduce stage ---------------------------------------------------------------------------------


def _run_reduce(work: Path, n_buckets: int, passes: list[tuple[int, int, int]], results, classes, cfg,
                workers: int, thresholds: dict[str, int] | None = None) -> dict:
    from tqdm import tqdm

    segments = {r.index: r.segments for r in results}
    args = [(b, j, k, str(work), n_buckets, segments, classes, cfg, thresholds) for b, j, k in passes]
    totals = {"duplicates": 0, "sampled_out": sum(r.sampled_out for r in results), "per_split": Counter(),
              "per_class": {s: Counter() for s in SPLITS}}
    bar = tqdm(total=len(passes), unit="shard", desc="shuffle", disable=not cfg.progress)
    with _maybe_pool(min(workers, len(passes))) as pool:
        _collect(pool.imap_unordered(_reduce_pass, args) if pool else map(_reduce_pass, args), totals, bar)
    bar.close()
    return totals


def _collect(iterator, totals: dict, bar) -> None:
    for dups, sampled_out, rows, per_class in iterator:
        totals["duplicates"] += dups
        totals["sampled_out"] += sampled_out
        totals["per_split"].update(rows)
        for split, counter in per_class.items():
            totals["per_class"][split].update(counter)
        bar.update(1)


def _read_bucket(tmp: Path, bucket: int, n_buckets: int, segments: dict[int, int],
                 keep: tuple[int, int, int] = (0, 1, 0)) -> pa.Table:
    """Bucket `bucket` of every map file; with `keep` = (j, k, seed) > 1 pass, only pass j's rows."""
    j, k, seed = keep
    parts = []
    for task_index, n_segments in sorted(segments.items()):
        with pa.memory_map(str(tmp / f"map-{task_index:06d}.arrow")) as source:
            reader = pa.ipc.open_file(source)
            for s in range(n_segments):
                batch = reader.get_batch(s * n_buckets + bucket)
                if k > 1 and batch.num_rows:  # filter batch by batch: the rest of the bucket is never held
                    batch = batch.filter(pa.array(pass_of(batch.column("key_id").to_numpy(), k, seed) == j))
                if batch.num_rows:
                    parts.append(batch)
    if not parts:
        return _map_schema().empty_table()
    # Copy out of the memory maps before they close.
    return pa.Table.from_batches(parts).combine_chunks()


def _deduplicate(table: pa.Table) -> tuple[pa.Table, int]:
    """Keep one row per key_id: timed over untimed (raw data is richer), then input order."""
    if table.num_rows == 0:
        return table, 0
    keys = table.column("key_id").to_numpy()
    untimed = table.column("t").is_null().to_numpy(zero_copy_only=False)
    order = np.lexsort((table.column("row").to_numpy(), table.column("task").to_numpy(), untimed, keys))
    sorted_keys = keys[order]
    first = np.ones(len(order), bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    keep = np.sort(order[first])
    return table.take(pa.array(keep)), int(len(keys) - len(keep))


def _label(table: pa.Table, classes: list[str], cfg: PrepareConfig) -> pa.Table:
    """Append label (-1 without a word) and split ("test" without a label, else val/train by key_id)."""
    value_set = pa.array(classes, pa.string())
    labels = pc.index_in(table.column("word"), value_set=value_set).fill_null(-1).to_numpy().astype(np.int32)
    val = is_val(table.column("key_id").to_numpy(), cfg.val_fraction, cfg.seed)
    split = np.where(labels < 0, "test", np.where(val, "val", "train"))
    table = table.append_column("label", pa.array(labels)).append_column("split", pa.array(split))
    return table.select(SCHEMA.names).cast(SCHEMA)


def _reduce_pass(args) -> tuple[int, int, dict[str, int], dict[str, Counter]]:
    """One pass over one bucket: sample, deduplicate, label, split, shuffle, write a shard per split."""
    bucket, j, k, work, n_buckets, segments, classes, cfg, thresholds = args
    table = _read_bucket(Path(work) / "_tmp", bucket, n_buckets, segments, (j, k, cfg.seed))
    table, sampled_out = _sample(table, thresholds, cfg.seed)
    table, dups = _deduplicate(table)
    table = _label(table.drop_columns(["task", "row"]), classes, cfg)
    if cfg.simplify:
        table = with_simplified(table)
    rng = np.random.default_rng([cfg.seed, bucket] if k == 1 else [cfg.seed, bucket, j])
    table = table.take(pa.array(rng.permutation(table.num_rows)))
    name = f"part-{bucket:05d}.parquet" if k == 1 else f"part-{bucket:05d}-{j:03d}.parquet"
    written = _write_splits(table, Path(work), name, cfg.row_group_size)
    del table
    _release_memory()
    return (dups, sampled_out, *written)


def _release_memory() -> None:
    # Arrow's allocator keeps freed blocks for reuse: handing them back after each segment and pass
    # keeps a worker's resident memory at what it holds now, which is what the budget counts.
    pa.default_memory_pool().release_unused()


def _write_splits(table: pa.Table, work: Path, name: str, row_group_size: int) -> tuple[dict, dict]:
    """Each split's rows as `work/SPLIT/name`; returns rows and words counted per split."""
    rows: dict[str, int] = {}
    per_class: dict[str, Counter] = {}
    for split in SPLITS:
        part = table.filter(pc.equal(table.column("split"), split))
        if part.num_rows:
            rows[split] = part.num_rows
            per_class[split] = _word_counts(part.column("word"))
            write_shard(part, work / split / name, row_group_size)
    return rows, per_class


def _word_counts(words: pa.ChunkedArray) -> Counter:
    counts = pc.value_counts(words)
    return Counter(dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)))


def write_shard(table: pa.Table, path: Path, row_group_size: int) -> None:
    """Write one store shard (atomically): the encodings every shard of a store uses."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    # BYTE_STREAM_SPLIT groups the bytes of the floats by position: float64 points then compress
    # smaller than float32 ones did without it, and decode faster.
    pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size,
                   use_dictionary=["word", "split", "countrycode", "source"],
                   use_byte_stream_split=[f"{name}.list.element" for name in POINT_COLUMNS])
    tmp.rename(path)


# -- rejects and manifest -------------------------------------------------------------------------


def _merge_rejects(work: Path, tasks: list[_Task], results: list[_TaskResult]) -> int:
    """One `_rejects.ndjson` in input order, with line numbers made absolute across file chunks."""
    from doodle.data.formats import SPLITTABLE_FORMATS

    # Only byte-range chunks of a big file (tasks of one part) count lines from their own start.
    line_base: dict[int, int] = {}
    lines_so_far: dict[str, int] = {}
    chunks = [t for t in tasks if t.parts[0].end is not None and t.parts[0].fmt in SPLITTABLE_FORMATS]
    for task in sorted(chunks, key=lambda t: (t.parts[0].path, t.parts[0].start)):
        path = task.parts[0].path
        line_base[task.index] = lines_so_far.get(path, 0)
        lines_so_far[path] = line_base[task.index] + results[task.index].parts[0].lines
    count = 0
    with open(work / REJECTS, "wb") as out:
        for task in tasks:
            shift = line_base.get(task.index, 0)
            with open(work / "_tmp" / f"rejects-{task.index:06d}.ndjson", "rb") as handle:
                for line in handle:
                    if shift:
                        record = orjson.loads(line)
                        record["line"] += shift
                        line = orjson.dumps(record) + b"\n"
                    out.write(line)
                    count += 1
    return count


def _manifest(cfg, files, skipped, tasks, results, classes, counts, rejected, layout, seconds,
              unknown) -> dict:
    inputs = sum(r.inputs for r in results)
    accepted_rows = sum(counts["per_split"].values())
    reasons: Counter = Counter()
    for r in results:
        reasons.update(r.rejected)
    per_file: dict[str, dict] = {}
    for t in tasks:
        for part, seen in zip(t.parts, results[t.index].parts, strict=True):
            entry = per_file.setdefault(part.path, {"format": part.fmt, "input": 0, "rejected": 0})
            entry["input"] += seen.inputs
            entry["rejected"] += seen.rejected
    config = asdict(cfg)
    config.pop("progress")
    return {
        "format": "doodle-store/1",
        "code_version": code_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "classes": classes,
        "n_classes": len(classes),
        "input": inputs,
        "accepted": accepted_rows,
        "duplicates": counts["duplicates"],
        "sampled_out": counts["sampled_out"],
        "rejected": rejected,
        "rejected_by_reason": dict(reasons.most_common()),
        "splits": {s: counts["per_split"].get(s, 0) for s in SPLITS},
        "per_class": {s: {c: counts["per_class"][s].get(c, 0) for c in classes} for s in ("train", "val")},
        "unlabelled": counts["per_split"].get("test", 0),
        "classes_never_seen": unknown,
        "shards": layout[0],
        "passes": layout[1],
        "files": per_file,
        "skipped_files": {str(p): reason for p, reason in skipped},
        "config": config,
        "seconds": round(seconds, 2),
        "schema": {f.name: str(f.type) for f in (SCHEMA_SIMPLIFIED if cfg.simplify else SCHEMA)},
    }


def describe(manifest: dict, max_classes: int = 20) -> str:
    """A human summary of a store's manifest: totals, splits, rejects, the largest classes."""
    lines = [
        f"doodle store ({manifest['code_version']}, {_describe_shards(manifest)}, built in {manifest['seconds']} s)",
        _describe_counts(manifest),
        "  splits: " + ", ".join(f"{s} {n:,}" for s, n in manifest["splits"].items()),
        _describe_classes(manifest),
    ]
    if manifest["rejected_by_reason"]:
        lines.append(f"  rejects by reason (details in {REJECTS}):")
        lines += [f"    {n:>9,}  {reason}" for reason, n in list(manifest["rejected_by_reason"].items())[:10]]
    train, val = manifest["per_class"]["train"], manifest["per_class"]["val"]
    ranked = sorted(manifest["classes"], key=lambda c: -(train.get(c, 0) + val.get(c, 0)))
    shown = ranked[:max_classes]
    if shown:
        width = max(len(c) for c in shown)
        lines.append(f"  {'class':<{width}}  {'train':>8}  {'val':>7}")
        lines += [f"  {c:<{width}}  {train.get(c, 0):>8,}  {val.get(c, 0):>7,}" for c in shown]
        if len(ranked) > len(shown):
            lines.append(f"  ... and {len(ranked) - len(shown)} more classes (doodle info --all)")
    lines += _describe_skipped(manifest["skipped_files"])
    return "\n".join(lines)


def _describe_counts(manifest: dict) -> str:
    """The accounting line; "sampled out" appears for stores built with a per-class sample."""
    per_class = manifest.get("config", {}).get("per_class", 0)
    sampled = ""
    if per_class:
        sampled = f" + sampled out {manifest.get('sampled_out', 0):,} (at most {per_class:,} per class)"
    return (f"  input {manifest['input']:,} = accepted {manifest['accepted']:,} + duplicates "
            f"{manifest['duplicates']:,}{sampled} + rejected {manifest['rejected']:,}")


def _describe_shards(manifest: dict) -> str:
    passes = manifest.get("passes", manifest["shards"])  # stores written before passes had one per shard
    extra = f" reduced in {passes:,} passes" if passes > manifest["shards"] else ""
    return f"{manifest['shards']} shards{extra}"


def _describe_classes(manifest: dict) -> str:
    if not manifest["classes"]:  # only unlabelled drawings (e.g. Kaggle's test CSV alone)
        return f"  classes: none (no drawing has a word: all {manifest['splits']['test']:,} are in test)"
    never = manifest["classes_never_seen"]
    return f"  classes: {manifest['n_classes']}" + (f" ({len(never)} listed but never seen)" if never else "")


SHOWN_SKIPPED = 50


def _describe_skipped(skipped: dict[str, str]) -> list[str]:
    """Each skipped file with its reason (the first `SHOWN_SKIPPED`; all are in the manifest)."""
    if not skipped:
        return []
    lines = [f"  skipped {len(skipped):,} files (not read, not counted in input):"]
    for path, reason in list(skipped.items())[:SHOWN_SKIPPED]:
        lines.append(f"    {path}: {reason.removeprefix(f'{path}: ')}")
    if len(skipped) > SHOWN_SKIPPED:
        lines.append(f"    ... and {len(skipped) - SHOWN_SKIPPED:,} more (listed in {MANIFEST})")
    return lines
