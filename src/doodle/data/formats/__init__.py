"""Readers and writers for every Quick, Draw! format (see FORMATS.md), behind one small API.

* `detect_format(path)`: the format name, from content and name;
* `iter_records(path)`: one file, streaming, one `Drawing` or `Reject` per physical record (never
  raises on a bad record), optionally a byte range of a line format, for splitting a big file
  across processes;
* `read(paths)`: files, folders (recursive) or prepared stores, yielding only drawings; rejects go
  to a callback or the log;
* `expand_sources(paths)`: the (file, format) list `read` would go through;
* writers: `write_ndjson`, `write_binary`, `write_kaggle_csv`.

Formats without a key_id (npz, bitmaps) get a deterministic 63-bit one from `synthetic_key_id`;
formats without a word (binary, npz, bitmaps) take `word=` or a guess from the file name
(`infer_word`: `cats1000.bin` gives "cat"; pass `word=` where a name is not the category).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from doodle.data.drawing import DEFAULT_LIMITS, Drawing, Limits, Reject
from doodle.data.formats.binary import encode_drawing, iter_binary, write_binary
from doodle.data.formats.bitmap import iter_bitmaps
from doodle.data.formats.common import ReadStats, infer_word, synthetic_key_id
from doodle.data.formats.detect import detect_format
from doodle.data.formats.kaggle_csv import iter_kaggle_csv, write_kaggle_csv
from doodle.data.formats.ndjson import iter_ndjson, write_ndjson
from doodle.data.formats.npz import iter_npz
from doodle.errors import DoodleError, UnknownFormatError

__all__ = [
    "DATA_SUFFIXES",
    "FORMATS",
    "SPLITTABLE_FORMATS",
    "ReadStats",
    "detect_format",
    "encode_drawing",
    "expand_sources",
    "infer_word",
    "iter_records",
    "read",
    "synthetic_key_id",
    "write_binary",
    "write_kaggle_csv",
    "write_ndjson",
]

log = logging.getLogger(__name__)

FORMATS = ("raw-ndjson", "simplified-ndjson", "kaggle-csv", "binary", "npz", "bitmap-npy", "bitmap-bin")
SPLITTABLE_FORMATS = frozenset({"raw-ndjson", "simplified-ndjson", "kaggle-csv"})
"""Line formats: `iter_records` accepts a byte range for them (uncompressed files only)."""
STORE = "store"
STORE_SPLIT = "store-split"  # one split folder of a store (STORE/val): that split only
"""The pseudo-format `expand_sources` gives a prepared store folder (one holding `_manifest.json`,
or `manifest.json` for a store written before: `doodle.data.store.is_store`)."""
DATA_SUFFIXES = (".ndjson", ".jsonl", ".json", ".csv", ".bin", ".npz", ".npy")
GZ_SUFFIXES = (".ndjson.gz", ".jsonl.gz", ".json.gz", ".csv.gz")

PathLike = str | os.PathLike[str]


def iter_records(
    path: PathLike,
    fmt: str | None = None,
    *,
    limits: Limits = DEFAULT_LIMITS,
    word: str | None = None,
    start: int = 0,
    end: int | None = None,
    stats: ReadStats | None = None,
) -> Iterator[Drawing | Reject]:
    """Every physical record of one file as a `Drawing` or a `Reject`, in file order, streaming.

    `fmt` (one of `FORMATS`) skips detection. `word` fills in the category where the format or the
    record has none (binary, npz, bitmaps, Kaggle test rows); for binary/npz/bitmaps it defaults to
    `infer_word(path)`. A reject's `line` is the 1-based physical line for text formats (a CSV's header
    is line 1), the 0-based record index for binary/npz/bitmaps; in a whole-JSON document, the
    1-based record number. Blank lines are skipped but counted.

    `[start, end)` is a byte range for the formats in `SPLITTABLE_FORMATS`: exactly the records whose
    line starts inside it are yielded, so consecutive ranges cover a file once. Line numbers then
    count from 1 at the range's first line; `stats` (a `ReadStats`) learns how many physical lines the
    range held, to turn them into absolute numbers. A range on another format raises ValueError.
    Detection problems raise at the call (`UnknownFormatError`), bad records never do.
    """
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if (start != 0 or end is not None) and fmt not in SPLITTABLE_FORMATS:
        raise ValueError(f"{path}: {fmt} files cannot be read by byte range (only {sorted(SPLITTABLE_FORMATS)})")
    options = {"limits": limits, "word": word, "start": start, "end": end, "stats": stats}
    if fmt in ("raw-ndjson", "simplified-ndjson"):
        return iter_ndjson(path, **options)  # type: ignore[arg-type]
    if fmt == "kaggle-csv":
        return iter_kaggle_csv(path, **options)  # type: ignore[arg-type]
    if fmt == "binary":
        return iter_binary(path, **options)  # type: ignore[arg-type]
    if fmt == "npz":
        return iter_npz(path, **options)  # type: ignore[arg-type]
    return iter_bitmaps(path, fmt, **options)  # type: ignore[arg-type]


def _as_list(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    if isinstance(paths, str | os.PathLike):
        return [Path(paths)]
    return [Path(p) for p in paths]


def is_data_file(path: Path) -> bool:
    """Whether a folder walk looks at this file (by its name only)."""
    name = path.name.lower()
    return not name.startswith(".") and name.endswith(DATA_SUFFIXES + GZ_SUFFIXES)


def expand_sources(
    paths: PathLike | Iterable[PathLike],
) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(file, format) pairs that files and folders expand to, and (file, reason) pairs skipped.

    Folders are walked recursively in sorted order, looking only at data extensions
    (`DATA_SUFFIXES`, and `.gz` of the text ones); a file there that fails detection is skipped,
    with its reason. Each real file and folder is visited once, however many symbolic links lead
    to it (a link to a folder above it would otherwise be walked without end); a link to a file
    already listed is skipped with a reason. A folder holding a manifest is a prepared store: it
    appears as (folder, "store") and is not walked; a split folder of a store (STORE/val) appears as
    (folder, "store-split") and reads that split only. An explicitly named file that fails detection
    raises `UnknownFormatError`; missing paths raise `DoodleError` naming them all.
    """
    items = _as_list(paths)
    missing = [str(p) for p in items if not p.exists()]
    if missing:
        raise DoodleError(f"no such file or folder: {', '.join(missing)}")
    walk = _Walk()
    for item in items:
        if item.is_dir():
            walk.folder(item)
        elif walk.first_visit(item):
            walk.sources.append((item, detect_format(item)))
        else:
            walk.skipped.append((item, f"the same file as {walk.seen[item.resolve()]}, which is read once"))
    return walk.sources, walk.skipped


def _is_store(folder: Path) -> bool:
    from doodle.data.store import is_store

    return is_store(folder)


def _is_store_split(folder: Path) -> bool:
    if not _is_store(folder.parent):
        return False
    from doodle.data.store import SPLITS

    return folder.name in SPLITS


class _Walk:
    """What a walk over files and folders found, and the real paths it has been to."""

    def __init__(self) -> None:
        self.sources: list[tuple[Path, str]] = []
        self.skipped: list[tuple[Path, str]] = []
        self.seen: dict[Path, Path] = {}  # real path -> the path it was first reached by

    def first_visit(self, path: Path) -> bool:
        real = path.resolve()
        if real in self.seen:
            return False
        self.seen[real] = path
        return True

    def folder(self, folder: Path) -> None:
        if not self.first_visit(folder):  # a link back to a folder being (or already) walked
            return
        if _is_store(folder):
            self.sources.append((folder, STORE))
        elif _is_store_split(folder):
            self.sources.append((folder, STORE_SPLIT))
        else:
            for entry in sorted(folder.iterdir()):
                if not entry.name.startswith("."):
                    self.entry(entry)

    def entry(self, entry: Path) -> None:
        if entry.is_dir():
            self.folder(entry)
        elif not is_data_file(entry):
            return
        elif not entry.exists():
            self.skipped.append((entry, "a symbolic link to nothing (its target is missing)"))
        elif not self.first_visit(entry):
            first = self.seen[entry.resolve()]
            self.skipped.append((entry, f"the same file as {first}, which is read once"))
        elif entry.is_file():
            self.file(entry)

    def file(self, entry: Path) -> None:
        try:
            self.sources.append((entry, detect_format(entry)))
        except (UnknownFormatError, OSError) as err:
            self.skipped.append((entry, str(err)))


def read(
    paths: PathLike | Iterable[PathLike],
    *,
    limits: Limits = DEFAULT_LIMITS,
    word: str | None = None,
    on_reject: Callable[[Reject], object] | None = None,
    on_skip: Callable[[Path, str], object] | None = None,
) -> Iterator[Drawing]:
    """Every valid drawing of files, folders (recursive) and prepared stores, in order.

    Sources are expanded (and checked) at the call, see `expand_sources`. Each folder file that is
    skipped goes to `on_skip(path, reason)` when given, else to this module's logger as a warning;
    each reject goes to `on_reject(reject)` when given, else to the logger as a warning (source,
    line, reason).
    """
    sources, skipped = expand_sources(paths)
    for path, reason in skipped:
        if on_skip is not None:
            on_skip(path, reason)
        else:
            log.warning("skipped %s: %s", path, reason)
    return _read_sources(sources, limits, word, on_reject)


def _read_sources(
    sources: list[tuple[Path, str]],
    limits: Limits,
    word: str | None,
    on_reject: Callable[[Reject], object] | None,
) -> Iterator[Drawing]:
    for path, fmt in sources:
        if fmt == STORE:
            from doodle.data.store import iter_store

            yield from iter_store(path)
            continue
        if fmt == STORE_SPLIT:
            from doodle.data.store import iter_store

            yield from iter_store(path.parent, path.name)
            continue
        for item in iter_records(path, fmt, limits=limits, word=word):
            if isinstance(item, Drawing):
                yield item
            elif on_reject is not None:
                on_reject(item)
            else:
                log.warning("%s:%d: rejected: %s", item.source, item.line, item.reason)
