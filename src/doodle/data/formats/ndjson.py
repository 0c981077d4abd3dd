"""Raw and simplified ndjson (FORMATS.md sections 1 and 2), plus whole-JSON documents.

One JSON object per line. The same reader serves both layouts: whether strokes carry a t list is a
per-drawing fact (`Drawing.has_time`), the format name only says what the file's first record had.
A file that is a single JSON document instead (one pretty-printed object, like Google's API test
file, or an array of objects) is read whole: such files are small by nature, and their records are
numbered 1, 2, ... in document order since they have no line of their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from doodle.data.drawing import DEFAULT_LIMITS, Drawing, Limits, Reject
from doodle.data.formats.common import (
    ReadStats,
    atomic_output,
    check_range,
    iter_text_records,
    open_bytes,
    record_to_item,
    text_reject,
    utf8_problem,
)
from doodle.errors import DoodleError

MAX_DOCUMENT_BYTES = 256 << 20
"""Largest whole-JSON document read into memory (ndjson is streamed, whatever its size)."""


def parse_line(path: Path, line_no: int, raw: bytes, limits: Limits, word: str | None) -> Drawing | Reject:
    """One ndjson line (not blank) -> a Drawing or a Reject; never raises on bad data."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        bad_text = "UTF-8" in str(err) and utf8_problem(raw)  # orjson says "surrogates not allowed"
        return text_reject(path, line_no, f"line is {bad_text}" if bad_text else f"bad JSON: {err}", raw)
    return record_to_item(path, line_no, obj, raw, limits, word)


def load_document(path: Path) -> Any | None:
    """The file parsed as one JSON document when it is one (object or array of objects), else None.

    Decided from the first non-blank line: an ndjson file's first line is a complete object; a
    document starts with `[` or with a `{` that does not close on its line. A file whose first line
    is a broken record (not a document either) is read as ndjson, so that line becomes a reject.
    """
    with open_bytes(path) as handle:
        first = b""
        for line in handle:
            if not line.isspace():
                first = line.strip()
                break
        if not first or first[:1] not in (b"{", b"["):
            return None
        if first[:1] == b"{":
            try:
                orjson.loads(first)
                return None  # a whole object on its first line: ndjson
            except orjson.JSONDecodeError:
                pass
    with open_bytes(path) as handle:
        data = handle.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        return None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, list) and doc and all(isinstance(item, dict) for item in doc):
        return doc
    # anything else ("[1, 2]", a bare string) is one bad line of ndjson: one reject, not several
    return doc if isinstance(doc, dict) else None


def iter_ndjson(
    path: Path,
    *,
    limits: Limits = DEFAULT_LIMITS,
    word: str | None = None,
    start: int = 0,
    end: int | None = None,
    stats: ReadStats | None = None,
) -> Iterator[Drawing | Reject]:
    """Every record of an ndjson file (or JSON document), streaming; see `formats.iter_records`."""
    check_range(path, start, end)
    doc = load_document(path)
    if doc is not None:
        if start != 0 or end is not None:
            raise ValueError(f"{path} is a single JSON document, which cannot be split by byte range")
        yield from _iter_document(path, doc, limits, word, stats)
        return
    yield from iter_text_records(path, start, end, stats, lambda n, raw: parse_line(path, n, raw, limits, word))


def _iter_document(
    path: Path, doc: Any, limits: Limits, word: str | None, stats: ReadStats | None
) -> Iterator[Drawing | Reject]:
    records = doc if isinstance(doc, list) else [doc]
    for number, obj in enumerate(records, 1):
        item = record_to_item(path, number, obj, orjson.dumps(obj), limits, word)
        if stats is not None:
            stats.lines += 1
            stats.records += 1
            stats.rejects += isinstance(item, Reject)
        yield item


def write_ndjson(drawings: Iterable[Drawing], path: Path | str) -> int:
    """Write drawings as Quick, Draw! ndjson (raw layout when timed); `.gz` compresses. Returns the count."""
    count = 0
    with atomic_output(path) as out:
        for drawing in drawings:
            if not drawing.strokes:
                raise DoodleError(f"{path}: drawing {drawing.key_id} has no strokes (a bitmap?): not ndjson")
            out.write(orjson.dumps(drawing.to_json_dict(), option=orjson.OPT_APPEND_NEWLINE))
            count += 1
    return count
