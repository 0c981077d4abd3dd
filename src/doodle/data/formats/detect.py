"""Which format a file is in, from its content (magic bytes, first record) and its name.

Content decides; the name only breaks ties (an empty file) and shapes the error message, because
real files are often misnamed (bitmaps saved as `.bin`, ndjson saved as `.json` or `.txt`). A file
that is no drawing file raises `UnknownFormatError` with one sentence naming the file and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from doodle.data.formats.binary import binary_plausibility
from doodle.data.formats.bitmap import ROW, npy_problem
from doodle.data.formats.common import GZIP_MAGIC, SNIFF_LINE_BYTES, open_bytes, stream_damage
from doodle.data.formats.kaggle_csv import parse_header
from doodle.data.formats.ndjson import load_document
from doodle.data.formats.npz import npz_subsets
from doodle.errors import DoodleError, UnknownFormatError

SNIFF_BYTES = 1 << 16
SNIFF_LINES = 20
"""Non-blank ndjson lines tried before giving up (a few bad first lines do not hide a good file)."""
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
TEXT_FORMATS = ("raw-ndjson", "simplified-ndjson", "kaggle-csv")


def detect_format(path: Path | str) -> str:
    """The format name of a Quick, Draw! file (see `formats.FORMATS`), or `UnknownFormatError`.

    gzip is transparent: `cat.ndjson.gz` is "simplified-ndjson" (only text formats may be gzipped).
    ndjson is "raw-ndjson" when its first record has timing, else "simplified-ndjson". A `.bin` is
    the drawing binary when its first records are mostly plausible ones (`binary_plausibility`), else
    a headerless bitmap file when its size is a multiple of 784. An .npz whose pickles name a function
    other than numpy's array constructors is refused (`npz_subsets`); no such function is ever called.
    """
    path = Path(path)
    if path.is_dir():
        raise UnknownFormatError(f"{path}: is a folder, not a file")
    if not path.exists():
        raise DoodleError(f"{path}: no such file")
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head:
        return _detect_empty(path)
    if head.startswith(GZIP_MAGIC):
        return _detect_gzip(path)
    if head.startswith(NPY_MAGIC):
        problem = npy_problem(path)
        if problem:
            raise UnknownFormatError(f"{path}: not a Quick, Draw! bitmap file: {problem}")
        return "bitmap-npy"
    if head.startswith(ZIP_MAGIC):
        subsets = npz_subsets(path)
        if isinstance(subsets, str):
            raise UnknownFormatError(f"{path}: not a Sketch-RNN file: {subsets}")
        return "npz"
    if _looks_like_text(head):
        fmt, why = _sniff_text(path, head)
        if fmt:
            return fmt
        raise UnknownFormatError(f"{path}: not a Quick, Draw! drawing file: {why}")
    why = binary_plausibility(head)
    if why is None:
        return "binary"
    size = path.stat().st_size
    if size % ROW == 0:
        return "bitmap-bin"
    raise UnknownFormatError(
        f"{path}: not a Quick, Draw! drawing file: binary data that is neither drawing records ({why}) "
        f"nor 784-byte bitmaps ({size} bytes is not a multiple of {ROW})"
    )


def _detect_empty(path: Path) -> str:
    """An empty file holds no record, so only its name can tell (Google's lists have empty files)."""
    name = path.name.lower()
    if name.endswith((".ndjson", ".jsonl")):
        return "simplified-ndjson"  # no timing present: zero records
    if name.endswith(".bin"):
        return "binary"
    raise UnknownFormatError(f"{path}: not a Quick, Draw! drawing file: the file is empty")


def _detect_gzip(path: Path) -> str:
    """The format of a gzip's content; a damaged gzip is told by the part before the damage."""
    with open_bytes(path) as handle:
        head = handle.read(SNIFF_BYTES)
    damage = stream_damage(handle)
    if not head and damage is not None:
        raise UnknownFormatError(f"{path}: not a Quick, Draw! drawing file: unreadable gzip ({damage.reason})")
    if not head:
        if path.name.lower().endswith((".ndjson.gz", ".jsonl.gz")):
            return "simplified-ndjson"
        raise UnknownFormatError(f"{path}: not a Quick, Draw! drawing file: the gzip holds an empty file")
    if not _looks_like_text(head):
        raise UnknownFormatError(
            f"{path}: not a Quick, Draw! drawing file: a gzip of binary data (only ndjson and CSV may be gzipped)"
        )
    fmt, why = _sniff_text(path, head)
    if fmt:
        return fmt
    raise UnknownFormatError(f"{path}: not a Quick, Draw! drawing file: {why}")


def _looks_like_text(head: bytes) -> bool:
    """Few NUL bytes (bitmaps and binary records are full of zeros) and UTF-8 but for a few bad bytes.

    A few NULs or undecodable bytes are a bad record in a text file (a reject), not a binary file:
    one damaged line must not decide the fate of the file's other lines.
    """
    nuls = head.count(b"\0")
    if nuls > len(head) // 10:
        return False
    text = head.replace(b"\0", b"") if nuls else head
    bad = len(text) - len(text.decode("utf-8", "ignore").encode())
    return bad <= max(4, len(text) // 100)  # a character cut at the end of `head` costs up to 3


NDJSON_SUFFIXES = (".ndjson", ".jsonl")


def _sniff_text(path: Path, head: bytes) -> tuple[str | None, str]:
    """(format, "") for ndjson / JSON documents / Kaggle CSVs, else (None, why not)."""
    fmt, why = _sniff_text_content(path, head)
    if fmt is None and path.name.lower().removesuffix(".gz").endswith(NDJSON_SUFFIXES):
        # The name says ndjson and the content is text: read it, so that every bad line becomes a
        # counted reject with its reason instead of the whole file vanishing as "not a drawing file".
        return "simplified-ndjson", ""
    return fmt, why


def _sniff_text_content(path: Path, head: bytes) -> tuple[str | None, str]:
    text = head.decode("utf-8", "ignore").lstrip("\ufeff \t\r\n")
    if text[:1] in ("{", "["):
        return _sniff_json(path)
    first = (text.splitlines() or [""])[0].encode()  # any line end: old-Mac files end lines with a lone CR
    header = parse_header(first)
    if isinstance(header, list):
        return "kaggle-csv", ""
    if path.name.lower().removesuffix(".gz").endswith(".csv"):
        return None, header
    return None, "text that is neither ndjson, a JSON drawing document nor a Kaggle CSV"


def _sniff_json(path: Path) -> tuple[str | None, str]:
    tried = 0
    first_object: Any = None
    with open_bytes(path) as handle:
        while tried < SNIFF_LINES:
            line = handle.readline(SNIFF_LINE_BYTES)
            if not line:
                break
            if line.isspace():
                continue
            tried += 1
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:  # a bad record, or one line of a pretty-printed document
                continue
            if first_object is None:
                first_object = obj
            if isinstance(obj, dict) and "drawing" in obj:
                return _ndjson_kind(obj), ""
    doc = load_document(path)
    if isinstance(doc, dict) and "drawing" in doc:
        return _ndjson_kind(doc), ""
    if isinstance(doc, list) and doc and isinstance(doc[0], dict) and "drawing" in doc[0]:
        return _ndjson_kind(doc[0]), ""
    sample = doc if doc is not None else first_object
    if isinstance(sample, dict):
        keys = ", ".join(list(map(str, sample))[:6])
        return None, f"JSON objects without a 'drawing' field (keys: {keys}{', ...' if len(sample) > 6 else ''})"
    if isinstance(sample, list):
        return None, "a JSON array that does not hold drawing objects"
    return None, f"none of its first {max(tried, 1)} lines is a JSON drawing record"


def _ndjson_kind(record: dict[str, Any]) -> str:
    """Timing in the first stroke (three lists) means raw; anything else reads as simplified."""
    drawing = record.get("drawing")
    if isinstance(drawing, str):  # tolerate drawing-as-JSON-text
        try:
            drawing = orjson.loads(drawing)
        except orjson.JSONDecodeError:
            drawing = None
    if isinstance(drawing, list) and drawing and isinstance(drawing[0], list) and len(drawing[0]) == 3:
        return "raw-ndjson"
    return "simplified-ndjson"
