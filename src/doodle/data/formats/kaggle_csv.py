"""Kaggle "Doodle Recognition Challenge" CSVs (FORMATS.md section 4).

Train files: `countrycode,drawing,key_id,recognized,timestamp,word`; test files:
`key_id,countrycode,drawing`. Columns are matched by name, so either layout (and raw or simplified
drawings) reads with the same code. The drawing column is JSON text, parsed by the shared validator.
Every row is one physical line (drawing JSON holds no newline), which is what makes byte-range
splitting possible; each line is parsed on its own so a broken quote can never swallow the next row.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from doodle.data.drawing import DEFAULT_LIMITS, Drawing, Limits, Reject
from doodle.data.formats.common import (
    ReadStats,
    atomic_output,
    check_range,
    first_line,
    iter_text_records,
    record_to_item,
    text_reject,
    utf8_problem,
)
from doodle.errors import DoodleError, UnknownFormatError

TRAIN_COLUMNS = ("countrycode", "drawing", "key_id", "recognized", "timestamp", "word")
TEST_COLUMNS = ("key_id", "countrycode", "drawing")
KNOWN_COLUMNS = frozenset(TRAIN_COLUMNS)
REQUIRED_COLUMNS = frozenset({"key_id", "drawing"})


def parse_header(line: bytes) -> list[str] | str:
    """The column names of a Kaggle CSV header line, or a sentence saying why it is not one."""
    try:
        text = line.decode("utf-8-sig").strip()
        columns = next(csv.reader([text], strict=True)) if text else []
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return "its first line is not a CSV header"
    names = [c.strip() for c in columns]
    missing = REQUIRED_COLUMNS - set(names)
    unknown = [n for n in names if n not in KNOWN_COLUMNS]
    if missing or unknown or len(set(names)) != len(names):
        shown = ",".join(names)[:120]
        return (
            f"its header ({shown}) is not a Kaggle Quick, Draw! header "
            f"({','.join(TRAIN_COLUMNS)} or {','.join(TEST_COLUMNS)})"
        )
    return names


def iter_kaggle_csv(
    path: Path,
    *,
    limits: Limits = DEFAULT_LIMITS,
    word: str | None = None,
    start: int = 0,
    end: int | None = None,
    stats: ReadStats | None = None,
) -> Iterator[Drawing | Reject]:
    """Every row of a Kaggle CSV, streaming; see `formats.iter_records`.

    The header is always read from the top of the file; it is line 1 (and counted in `stats.lines`)
    only in the range that contains offset 0.
    """
    check_range(path, start, end)
    header = parse_header(first_line(path))
    if isinstance(header, str):
        raise UnknownFormatError(f"{path}: not a Kaggle CSV: {header}")
    n_columns = len(header)

    def parse(line_no: int, raw: bytes) -> Drawing | Reject:
        return _parse_row(path, line_no, raw, header, n_columns, limits, word)

    # the header is line 1 of the range that starts the file
    yield from iter_text_records(path, start, end, stats, parse, header_lines=1 if start == 0 else 0)


def _parse_row(
    path: Path, line_no: int, raw: bytes, header: list[str], n_columns: int, limits: Limits, word: str | None
) -> Drawing | Reject:
    try:
        row = _csv_row(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return text_reject(path, line_no, f"row is {utf8_problem(raw)}", raw)
    except (csv.Error, StopIteration) as err:
        return text_reject(path, line_no, f"broken CSV row: {err}", raw)
    if len(row) != n_columns:
        return text_reject(path, line_no, f"row has {len(row)} fields, the header has {n_columns}", raw)
    # An empty field is a missing value (Kaggle's test rows have no word, some no countrycode).
    obj = {name: value for name, value in zip(header, row, strict=True) if value != ""}
    return record_to_item(path, line_no, obj, raw, limits, word)


def _csv_row(text: str) -> list[str]:
    """The fields of one CSV line; a field over the csv module's size limit raises the limit.

    The limit (131,072 characters by default) guards against a runaway quote swallowing a file, but
    each row here is one line already in memory, and a valid raw drawing can be longer.
    """
    fields = _simple_row(text)
    if fields is not None:
        return fields
    try:
        return next(csv.reader([text], strict=True))
    except csv.Error:
        if len(text) <= csv.field_size_limit():
            raise
    csv.field_size_limit(len(text))
    return next(csv.reader([text], strict=True))


def _simple_row(text: str) -> list[str] | None:
    """The fields of a line shaped as Kaggle's rows are, split with str methods (the csv module
    costs a reader per line); None for any other line, which the csv module reads.

    The shape: "\\n" at most at the end, no "\\r" or NUL, and either no quote or one quoted field
    (opening at a field's start, closing at its end, no quote inside: the drawing's JSON). Such a
    line has no escaped quote and no other special character, so splitting at commas outside the
    quotes gives what `csv.reader` gives.
    """
    body = text[:-1] if text.endswith("\n") else text
    if not body or "\n" in body or "\r" in body or "\0" in body:
        return None
    opening = body.find('"')
    if opening < 0:
        return body.split(",")
    closing = body.find('"', opening + 1)
    if closing < 0 or body.find('"', closing + 1) >= 0:
        return None
    if (opening and body[opening - 1] != ",") or (closing + 1 < len(body) and body[closing + 1] != ","):
        return None
    before = body[:opening].split(",")[:-1]  # the last piece is the empty start of the quoted field
    after = body[closing + 1 :].split(",")[1:]  # the first is the empty end of it
    return [*before, body[opening + 1 : closing], *after]


def kaggle_timestamp(stamp: datetime | None) -> str:
    """A timestamp as Kaggle's files hold it (pandas writing a datetime64 column): six fraction
    digits, no time zone: "2017-03-08 21:12:07.266040"."""
    if stamp is None:
        return ""
    return f"{stamp:%Y-%m-%d %H:%M:%S}.{stamp.microsecond:06d}"


def kaggle_drawing(drawing: Drawing) -> str:
    """The drawing column as Kaggle's files hold it: nested lists with a space after every comma."""
    return json.dumps(drawing.to_json_dict()["drawing"])


def write_kaggle_csv(drawings: Iterable[Drawing], path: Path | str, test: bool = False) -> int:
    """Write drawings in Kaggle's CSV layout (train, or test with `test=True`). Returns the count.

    Byte for byte as Kaggle's files (which pandas wrote): fields quoted only when needed (the
    drawing, a word with a comma), the drawing's JSON with a space after every comma, `recognized`
    as True/False, the timestamp with six fraction digits and no " UTC", key_id as a plain integer,
    `\\n` line ends. `.gz` compresses.
    """
    columns = TEST_COLUMNS if test else TRAIN_COLUMNS
    count = 0
    with atomic_output(path) as out:
        text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
        writer = csv.writer(text, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(columns)
        for drawing in drawings:
            if not drawing.strokes:
                raise DoodleError(f"{path}: drawing {drawing.key_id} has no strokes (a bitmap?): not CSV")
            values = {
                "countrycode": drawing.countrycode,
                "drawing": kaggle_drawing(drawing),
                "key_id": str(drawing.key_id),
                "recognized": "" if drawing.recognized is None else str(bool(drawing.recognized)),
                "timestamp": kaggle_timestamp(drawing.timestamp),
                "word": drawing.word or "",
            }
            writer.writerow([values[c] for c in columns])
            count += 1
        text.flush()
        text.detach()  # leave the underlying handle to atomic_output
    return count
