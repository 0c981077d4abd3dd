"""Pieces every reader shares: read statistics, byte-range line iteration, gzip, names and ids."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from doodle.data.drawing import Drawing, Limits, Reject, drawing_from_record

GZIP_MAGIC = b"\x1f\x8b"
BUFFER_SIZE = 1 << 20
"""Read buffer: large enough that per-line Python overhead, not I/O calls, dominates."""
# What a malformed record may raise inside the shared validators: always turned into a Reject.
RECORD_ERRORS = (ValueError, TypeError, OverflowError, KeyError, IndexError, AttributeError)
RAW_HEX_BYTES = 256
"""How many bytes of a bad binary record a `Reject` keeps (as hex)."""


@dataclass(slots=True)
class ReadStats:
    """Counters a reader updates as it goes, so a caller splitting a file knows what a range held.

    `lines` counts every physical line of the range (blank lines and a CSV header included), so a
    reject's absolute line number is the sum of `lines` over the preceding ranges plus its `line`.
    For binary formats `lines` counts records, like `records`.
    """

    lines: int = 0
    records: int = 0
    """Items yielded: drawings plus rejects."""
    rejects: int = 0


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


def open_bytes(path: Path) -> IO[bytes]:
    """A buffered binary handle, transparently decompressing gzip (detected by magic, not name)."""
    if is_gzip(path):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=BUFFER_SIZE)


def check_range(path: Path, start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"bad byte range [{start}, {end}) for {path}")


def iter_lines(path: Path, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """Physical lines (with their line ending) whose first byte lies at an offset in [start, end).

    Consecutive ranges therefore cover every line exactly once: a range that starts in the middle of
    a line skips to the next line start, and the line straddling `end` belongs to this range.
    Byte ranges need a seekable plain file; gzip files only support the whole file.
    """
    check_range(path, start, end)
    whole = start == 0 and end is None
    if is_gzip(path):
        if not whole:
            raise ValueError(f"{path}: a gzip file cannot be split by byte range; read it whole")
        with gzip.open(path, "rb") as gz:
            yield from gz
        return
    with open(path, "rb", buffering=BUFFER_SIZE) as handle:
        if whole:
            yield from handle
            return
        pos = start
        if start > 0:
            handle.seek(start - 1)
            if handle.read(1) != b"\n":  # in the middle of a line: it belongs to an earlier range
                pos += len(handle.readline())
        limit = end if end is not None else float("inf")
        while pos < limit:
            line = handle.readline()
            if not line:
                return
            pos += len(line)
            yield line


def first_line(path: Path, max_bytes: int = 1 << 24) -> bytes:
    """The file's first physical line (decompressed if gzip), without reading further."""
    with open_bytes(path) as handle:
        return handle.readline(max_bytes)


def record_to_item(
    path: Path, line_no: int, obj: Any, raw: bytes, limits: Limits, word: str | None
) -> Drawing | Reject:
    """A parsed JSON object (ndjson line, CSV row) -> a Drawing, or a Reject carrying `raw`.

    `word` fills in the category of records that carry none (Kaggle's test files).
    """
    try:
        drawing = drawing_from_record(obj, limits)
    except RECORD_ERRORS as err:
        return text_reject(path, line_no, str(err), raw)
    if drawing.word is None and word:
        drawing.word = word
    return drawing


def text_reject(path: Path, line_no: int, reason: str, raw: bytes) -> Reject:
    text = raw[: Reject.RAW_LIMIT * 4].decode("utf-8", "replace").rstrip("\r\n")
    return Reject(source=str(path), line=line_no, reason=reason, raw=text[: Reject.RAW_LIMIT])


def hex_reject(path: Path, index: int, reason: str, raw: bytes, size: int | None = None) -> Reject:
    """A reject whose `raw` is the record's first bytes as hex, "... (N bytes)" added when cut."""
    size = len(raw) if size is None else size
    text = raw[:RAW_HEX_BYTES].hex()
    if size > RAW_HEX_BYTES:
        text += f"... ({size} bytes)"
    return Reject(source=str(path), line=index, reason=reason, raw=text)


_SUFFIXES = (".full.npz", ".npz", ".npy", ".bin")
_PREFIXES = ("full_numpy_bitmap_", "full_binary_")


def infer_word(path: Path | str) -> str | None:
    """The category a file holds, guessed from its name (formats without a word field).

    Strips `.full.npz`/`.npz`/`.npy`/`.bin`, a `full_numpy_bitmap_` (or `full_binary_`) prefix and
    trailing digits, and turns underscores into spaces: `full_numpy_bitmap_The_Eiffel_Tower.npy` ->
    "The Eiffel Tower", `dog.bin` -> "dog". It is only a guess: `cats1000.bin` gives "cats", so pass
    `word=` for files named otherwise than by their category.
    """
    name = Path(path).name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    name = re.sub(r"\d+$", "", name).replace("_", " ").strip()
    return " ".join(name.split()) or None


def synthetic_key_id(fmt: str, path: Path | str, subset: str, index: int) -> int:
    """A deterministic 63-bit key_id for formats that carry none (npz, bitmaps).

    blake2b (8-byte digest) of "format|file name|subset|index", top bit cleared: the same record of
    the same file always gets the same id, on any machine (only the file's name is used, not its
    folder), and ids stay positive in a signed int64 column.
    """
    text = f"{fmt}|{Path(path).name}|{subset}|{index}".encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@contextmanager
def atomic_output(path: Path | str) -> Iterator[IO[bytes]]:
    """A binary handle on a temporary file beside `path`, renamed over it only on success.

    A writer that stops half-way (a drawing it cannot represent, Ctrl-C) leaves no truncated file
    that a later run would mistake for a complete one. A `.gz` name gets gzip compression.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb", buffering=BUFFER_SIZE) as raw:
            if path.name.lower().endswith(".gz"):
                with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
                    yield gz  # type: ignore[misc]
            else:
                yield raw
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
