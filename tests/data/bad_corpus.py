"""A corpus of bad input: one small file per kind of defect, in every format, with its exact accounting.

    python tests/data/bad_corpus.py OUT_DIR

writes the files under OUT_DIR and the expected accounting to OUT_DIR/.expected.json (a dot file,
which a folder walk does not look at). `write_corpus(out)` does the same and returns the accounting:
{relative path: Expect}. Each drawing file mixes good records with bad ones; the accounting says how
many valid drawings it yields, and for each reject its line (text formats: 1-based physical line,
a CSV header is line 1; others: 0-based record index) and a pattern its reason matches. Files that
are no drawing file are expected to be skipped, with a pattern for the reason. Everything is
deterministic (no randomness, gzip without a timestamp) and small (about 160 kB in all).

The kinds (`KINDS`) cover the defects readers have always rejected (bad JSON, ragged x/y, NaN,
absurd coordinates, wrong types, missing fields, empty strokes, too many strokes, bad timestamps,
duplicate key_ids across files) and those that once lost a whole file or ran code: a damaged gzip,
a NUL byte, a byte-order mark, old-Mac line ends, a CSV field over the csv module's default limit,
a binary file whose first record has no strokes, damaged .npz members, a pickle that calls a
function, symbolic-link loops.
"""

from __future__ import annotations

import functools
import gzip
import io
import math
import os
import signal
import struct
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson

KEY_BASE = 5_000_000_000_000_000_000
"""Key ids above 2**53 (a float would lose them) and below 2**64."""
GOOD = "good"
BLANK = "blank"
BOM = b"\xef\xbb\xbf"
TIME = "2017-03-01 12:00:00.5 UTC"
KAGGLE_HEADER = b"countrycode,drawing,key_id,recognized,timestamp,word"
KAGGLE_TEST_HEADER = b"key_id,countrycode,drawing"
MARKER = Path(tempfile.gettempdir()) / "doodle-bad-corpus-code-ran"
"""The file a malicious pickle in the corpus would create if it were ever run (a fixed path, so that
the corpus's bytes do not depend on where it is written)."""


@dataclass
class Expect:
    """What reading one corpus file must give."""

    format: str | None = None
    """The detected format; None when the file is skipped."""
    drawings: int = 0
    """Valid drawings read (before any deduplication)."""
    rejects: list[tuple[int, str]] = field(default_factory=list)
    """(line or record index, pattern the reason matches), in file order."""
    skipped: str | None = None
    """Pattern the skip reason matches, for a file that is no drawing file."""
    key_ids: list[int] = field(default_factory=list)
    """The explicit key_ids of the valid drawings (formats without one get unique synthetic ids)."""
    bitmaps: int = 0
    """How many of the drawings are bitmap-only (no strokes)."""

    @property
    def input(self) -> int:
        return self.drawings + len(self.rejects)


# -- records ---------------------------------------------------------------------------------------


def strokes(i: int, timed: bool = False) -> list:
    """A small drawing that varies with `i`: two strokes, integer 0..255 (raw: floats and t)."""
    a, b = 10 + i % 60, 5 + i % 40
    if not timed:
        return [[[0, a, 2 * a], [0, b, 3]], [[5, 25 + i % 30], [60, 80]]]
    return [[[0.5, a + 0.25, 2 * a], [0, b, 3.75], [0, 17, 33]], [[5, 25 + i % 30], [60, 80.5], [120, 150]]]


def record(key: int, word: str = "cat", i: int = 0, timed: bool = False, **changes) -> dict:
    rec = {"word": word, "countrycode": "US", "timestamp": TIME, "recognized": True, "key_id": str(key),
           "drawing": strokes(i, timed)}
    rec.update(changes)
    return {k: v for k, v in rec.items() if v is not DROP}


DROP = object()
"""`record(..., field=DROP)` leaves the field out."""


def line(rec: dict) -> bytes:
    return orjson.dumps(rec)


def csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def kaggle_row(key: int, i: int = 0, timed: bool = False, word: str = "cat", test: bool = False) -> bytes:
    drawing = csv_field(orjson.dumps(strokes(i, timed)).decode())
    if test:
        return f"{key},US,{drawing}".encode()
    return f"US,{drawing},{key},True,2017-03-01 12:00:00.5,{word}".encode()


# -- text files: entries of (content, kind) ---------------------------------------------------------


class TextFile:
    """The lines of a text file, each good, bad (with a reason pattern) or blank, with its accounting."""

    def __init__(self, fmt: str, header: bytes | None = None) -> None:
        self.entries: list[tuple[bytes, str]] = []
        self.expect = Expect(format=fmt)
        self.header = header
        self.keys: list[int | None] = []

    def good(self, content: bytes, key: int | None) -> TextFile:
        self.entries.append((content, GOOD))
        self.keys.append(key)
        return self

    def bad(self, content: bytes, pattern: str) -> TextFile:
        self.entries.append((content, pattern))
        self.keys.append(None)
        return self

    def blank(self, content: bytes = b"") -> TextFile:
        self.entries.append((content, BLANK))
        self.keys.append(None)
        return self

    def render(self, newline: bytes = b"\n", last_newline: bool = True) -> bytes:
        """The file's bytes; fills in the accounting (line numbers count the header and blanks)."""
        lines = ([self.header] if self.header is not None else []) + [c for c, _ in self.entries]
        first = 2 if self.header is not None else 1
        for number, ((_, kind), key) in enumerate(zip(self.entries, self.keys, strict=True), first):
            if kind == GOOD:
                self.expect.drawings += 1
                if key is not None:
                    self.expect.key_ids.append(key)
            elif kind != BLANK:
                self.expect.rejects.append((number, kind))
        data = newline.join(lines)
        return data + newline if last_newline else data


def keys(file_no: int) -> Callable[[int], int]:
    return lambda i: KEY_BASE + 1000 * file_no + i


def good_lines(f: TextFile, key: Callable[[int], int], n: int, start: int = 0, timed: bool = False) -> TextFile:
    for i in range(start, start + n):
        f.good(line(record(key(i), i=i, timed=timed)), key(i))
    return f


def good_rows(f: TextFile, key: Callable[[int], int], n: int, start: int = 0, timed: bool = False,
              test: bool = False) -> TextFile:
    for i in range(start, start + n):
        f.good(kaggle_row(key(i), i, timed, test=test), key(i))
    return f


# -- gzip damage -------------------------------------------------------------------------------------


def gz(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as handle:
        handle.write(data)
    return out.getvalue()


def gz_truncated(data: bytes, keep: float = 0.6) -> tuple[bytes, bytes]:
    """(gzip of `data` cut at `keep` of its length, the text that still decompresses from it)."""
    blob = gz(data)
    cut = blob[: int(len(blob) * keep)]
    return cut, zlib.decompressobj(31).decompress(cut)


def gz_flipped(before: bytes, after: bytes) -> bytes:
    """A gzip of `before` + `after` whose deflate block after `before` has an invalid type.

    A full flush ends `before` on a byte boundary, so the next byte is a block header: 0xFF makes it
    the reserved block type, which zlib refuses at once (every byte of `before` decompresses).
    """
    co = zlib.compressobj(6, zlib.DEFLATED, 31)
    head = co.compress(before) + co.flush(zlib.Z_FULL_FLUSH)
    blob = bytearray(head + co.compress(after) + co.flush())
    blob[len(head)] = 0xFF
    return bytes(blob)


def gz_bad_crc(data: bytes) -> bytes:
    """A gzip of `data` whose CRC-32 trailer is wrong (every byte of `data` decompresses)."""
    blob = bytearray(gz(data))
    blob[-8] ^= 0xFF
    return bytes(blob)


# -- binary records ------------------------------------------------------------------------------------

HEADER = struct.Struct("<Q2sbIH")
STAMP = 1488369600  # 2017-03-01 12:00:00 UTC


def bin_record(key: int, stroke_points: list[int], country: bytes = b"US", recognized: int = 1,
               stamp: int = STAMP) -> bytes:
    """One binary record with strokes of the given point counts (coordinates vary with the key)."""
    parts = [HEADER.pack(key, country, recognized, stamp, len(stroke_points))]
    for s, n in enumerate(stroke_points):
        xs = bytes((key + s + 7 * j) % 256 for j in range(n))
        ys = bytes((key * 3 + s + 11 * j) % 256 for j in range(n))
        parts += [struct.pack("<H", n), xs, ys]
    return b"".join(parts)


# -- npz -----------------------------------------------------------------------------------------------


def stroke3(i: int) -> np.ndarray:
    """A stroke-3 int16 drawing that varies with `i` (two strokes)."""
    rows = [[0, 0, 0], [10 + i % 50, 3, 0], [5, 9 + i % 20, 1], [-20, -4, 0], [7, 7, 1]]
    return np.array(rows, np.int16)


def object_array(items: list) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    for j, item in enumerate(items):
        arr[j] = item
    return arr


def npy_bytes(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, arr, allow_pickle=True)
    return out.getvalue()


def write_npz(path: Path, members: dict[str, bytes], compress: bool = False) -> None:
    """An .npz from ready-made member bytes (np.savez cannot write a damaged member)."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(2017, 3, 1, 12, 0, 0))
            info.compress_type = method
            archive.writestr(info, data)


class Payload:
    """An object whose unpickling calls `function(*args)`: what a crafted .npz would run."""

    def __init__(self, function: Callable, *args: object) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def malicious_array(marker: Path, via: str, good_before: int = 0) -> np.ndarray:
    """An object array of `good_before` real drawings, then an object that creates `marker`."""
    payload = Payload(os.system, f"touch '{marker}'") if via == "system" else Payload(open, str(marker), "w")
    return object_array([stroke3(i) for i in range(good_before)] + [payload])


def flip_crc_protected_byte(data: bytes, needle: bytes) -> bytes:
    """`data` with one byte inside `needle` (array data, not pickle structure) changed."""
    at = data.index(needle) + 2
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


# -- the corpus ------------------------------------------------------------------------------------------


class Corpus:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.expect: dict[str, Expect] = {}
        self.file_no = 0

    def keys(self) -> Callable[[int], int]:
        self.file_no += 1
        return keys(self.file_no)

    def write(self, rel: str, data: bytes, expect: Expect) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.expect[rel] = expect

    def text(self, rel: str, f: TextFile, newline: bytes = b"\n", last_newline: bool = True,
             wrap: Callable[[bytes], bytes] | None = None, prefix: bytes = b"") -> None:
        data = prefix + f.render(newline, last_newline)
        self.write(rel, wrap(data) if wrap else data, f.expect)

    def skip(self, rel: str, data: bytes, pattern: str) -> None:
        self.write(rel, data, Expect(skipped=pattern))


BAD_JSON = r"^bad JSON: "
NOT_NUMBER = r"^a coordinate is not a number"
KEY_RANGE = r"^key_id \S+ outside the unsigned 64-bit range$"


def ndjson_kinds(c: Corpus) -> None:
    k = c.keys()
    f = TextFile("simplified-ndjson")
    f.bad(b"{not json", BAD_JSON)
    good_lines(f, k, 2)
    f.bad(b'{"key_id": "1", "drawing": [[[1, 2], [3, 4]]]', BAD_JSON)  # cut short
    f.bad(b"[1, 2, 3]", r"^record must be a JSON object, got list")
    f.bad(b'"just a string"', r"^record must be a JSON object, got str")
    good_lines(f, k, 1, 2)
    c.text("ndjson/bad_json.ndjson", f)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 2)
    f.bad(line(record(k(90), drawing=[[[1, 2, 3], [4, 5]]])), r"different lengths \(3 and 2\)")
    f.bad(line(record(k(91), drawing=[[[1], [2]], [[1, 2], [3]]])), r"^stroke 1 has x/y/t lists of different")
    good_lines(f, k, 1, 2)
    c.text("ndjson/ragged_xy.ndjson", f)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 1)
    f.bad(b'{"key_id": "7", "drawing": [[[NaN, 1], [1, 2]]]}', BAD_JSON)
    f.bad(b'{"key_id": "7", "drawing": [[[1e400, 1], [1, 2]]]}', BAD_JSON + "number is infinity")
    f.bad(line(record(k(90), drawing=[[["NaN", 1], [1, 2]]])), NOT_NUMBER + r" \(found str\)")
    good_lines(f, k, 2, 1)
    c.text("ndjson/nan_inf.ndjson", f)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 2)
    f.bad(line(record(k(90), drawing=[[[0, 2e7], [0, 1]]])), r"^a coordinate exceeds 1e\+06 in magnitude")
    f.bad(line(record(k(91), drawing=[[[-3e6, 0], [0, 1]]])), r"^a coordinate exceeds 1e\+06")
    f.bad(line(record(k(92), drawing=[[[1e300], [1]]])), r"^a coordinate exceeds")
    good_lines(f, k, 1, 2)
    c.text("ndjson/absurd_coordinates.ndjson", f)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 1)
    f.bad(line(record(k(90), drawing=[[[True, 1], [1, 2]]])), NOT_NUMBER + r" \(found bool\)")
    f.bad(line(record(k(91), drawing=[[["12", 1], [1, 2]]])), NOT_NUMBER + r" \(found str\)")
    f.bad(line(record(k(92), drawing={"x": [1]})), r"^drawing must be a list of strokes, got dict")
    f.bad(line(record(k(93), drawing="[[[1], [2]]]x")), r"^drawing is not valid JSON")
    f.bad(line(record(k(94), word=5)), r"^word must be a non-empty string, got 5")
    f.bad(line(record(k(95), countrycode="UNITED KINGDOM")), r"^countrycode must be a short string")
    f.bad(line(record(k(96), drawing=[5])), r"^stroke 0 must be \[\[x\.\.\.\], \[y\.\.\.\]\]")
    good_lines(f, k, 2, 1)
    c.text("ndjson/wrong_types.ndjson", f)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 1)
    f.bad(line(record(k(90), key_id=DROP)), r"^record has no key_id$")
    f.bad(line(record(k(91), drawing=DROP)), r"^record has no drawing$")
    f.bad(b'{"word": "cat"}', r"^record has no key_id$")
    good_lines(f, k, 1, 1)
    c.text("ndjson/missing_fields.ndjson", f)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 1)
    f.bad(line(record(k(90), drawing=[])), r"^drawing has no strokes$")
    f.bad(line(record(k(91), drawing=[[[], []]])), r"^stroke 0 has no points$")
    f.bad(line(record(k(92), drawing=[[[1], [2]], [[], []]])), r"^stroke 1 has no points$")
    good_lines(f, k, 2, 1)
    c.text("ndjson/empty_strokes.ndjson", f)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 1)
    f.bad(line(record(k(90), drawing=[[[0], [0]]] * 1025)), r"^drawing has 1025 strokes \(limit 1024\)$")
    good_lines(f, k, 1, 1)
    c.text("ndjson/too_many_strokes.ndjson", f)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 1)
    f.bad(line(record(k(90), timestamp="yesterday")), r"^unreadable timestamp 'yesterday'")
    f.bad(line(record(k(91), timestamp=1e12)), r"^timestamp 1000000000000\.0 is not a plausible Unix time")
    f.bad(line(record(k(92), timestamp=True)), r"^timestamp must be a string or a number, got a boolean")
    f.bad(line(record(k(93), recognized="maybe")), r"^recognized must be true or false, got 'maybe'")
    f.bad(line(record(k(94), recognized=3)), r"^recognized must be a boolean, got 3")
    good_lines(f, k, 1, 1)
    c.text("ndjson/bad_timestamps_and_flags.ndjson", f)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 1)
    f.bad(b'{"key_id": 99999999999999999999999, "drawing": [[[1], [2]]]}',
          r"^key_id 99999999999999999999999 outside the unsigned 64-bit range$")
    f.bad(b'{"key_id": "18446744073709551616", "drawing": [[[1], [2]]]}',
          r"^key_id 18446744073709551616 outside the unsigned 64-bit range$")
    f.bad(b'{"key_id": -4, "drawing": [[[1], [2]]]}', r"^key_id -4 outside the unsigned 64-bit range$")
    f.bad(b'{"key_id": 5.2e15, "drawing": [[[1], [2]]]}', r"^key_id must be an unsigned integer")
    f.bad(b'{"key_id": true, "drawing": [[[1], [2]]]}', r"^key_id must be an integer, got a boolean")
    f.bad(b'{"key_id": "abc", "drawing": [[[1], [2]]]}', r"^key_id must be an unsigned integer")
    f.good(b'{"key_id": 18446744073709551615, "word": "cat", "drawing": [[[1], [2]]]}', 2**64 - 1)
    c.text("ndjson/bad_key_ids.ndjson", f)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 2)
    latin1 = b'{"key_id": "1", "word": "caf\xe9", "drawing": [[[1], [2]]]}'
    f.bad(latin1, rf"^line is not valid UTF-8 at byte {latin1.index(0xE9) + 1}$")
    f.bad(b"\xff\xfe\xfd", r"^line is not valid UTF-8 at byte 1$")
    good_lines(f, k, 1, 2)
    c.text("ndjson/invalid_utf8.ndjson", f)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 2)
    f.bad(line(record(k(90)))[:30] + b"\0" + line(record(k(90)))[30:], BAD_JSON)
    good_lines(f, k, 3, 2)
    c.text("ndjson/nul_byte.ndjson", f)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 3)
    f.bad(b"{broken", BAD_JSON)
    good_lines(f, k, 1, 3)
    c.text("ndjson/byte_order_mark.ndjson", f, prefix=BOM)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 2)
    f.blank()
    f.bad(line(record(k(90), drawing=[])), r"^drawing has no strokes$")
    good_lines(f, k, 3, 2)
    c.text("ndjson/old_mac_line_ends.ndjson", f, newline=b"\r")

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 1).blank(b"   ").blank()
    f.bad(b"{oops", BAD_JSON).blank(b"\t")
    good_lines(f, k, 2, 1)
    c.text("ndjson/crlf_and_blank_lines.jsonl", f, newline=b"\r\n")

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 3)
    f.bad(line(record(k(3)))[:40], BAD_JSON)  # a download cut mid-record, no final newline
    c.text("ndjson/cut_last_line.ndjson", f, last_newline=False)

    k = c.keys()
    f = good_lines(TextFile("raw-ndjson"), k, 2, timed=True)
    f.bad(line(record(k(90), drawing=[[[1, 2], [3, 4], [0, 5]], [[1], [2]]])),
          r"^stroke 1 has 2 coordinate lists, stroke 0 has 3$")
    f.bad(line(record(k(91), drawing=[[[1, 2], [3, 4], [0]]])), r"different lengths \(2 and 1\)")
    f.bad(line(record(k(92), drawing=[[[1, 2], [3, 4], [0, 5e12]]])), r"^a time exceeds 1e\+09 ms in magnitude")
    good_lines(f, k, 2, 2)  # untimed drawings in a raw file are fine
    c.text("ndjson/raw_timing_defects.ndjson", f)


def document_kinds(c: Corpus) -> None:
    k = c.keys()
    items = [record(k(0)), record(k(90), key_id=DROP), record(k(1), i=1), record(k(91), drawing=[]),
             record(k(2), i=2)]
    data = orjson.dumps(items, option=orjson.OPT_INDENT_2)
    c.write("json/array_document.json", data, Expect(
        "simplified-ndjson", 3, [(2, r"^record has no key_id$"), (4, r"^drawing has no strokes$")],
        key_ids=[k(0), k(1), k(2)]))

    k = c.keys()
    items = [record(k(0), timed=True), record(k(90), timed=True, recognized="maybe"), record(k(1), i=1)]
    data = BOM + orjson.dumps(items, option=orjson.OPT_INDENT_2)
    c.write("json/array_document_with_bom.json", data, Expect(
        "raw-ndjson", 2, [(2, r"^recognized must be true or false")], key_ids=[k(0), k(1)]))

    k = c.keys()
    items = [record(k(0), i=5), record(k(90), drawing=[[[1, 2], [3]]]), record(k(1), i=6)]
    data = gz(orjson.dumps(items, option=orjson.OPT_INDENT_2))
    c.write("json/array_document.json.gz", data, Expect(
        "simplified-ndjson", 2, [(2, r"different lengths")], key_ids=[k(0), k(1)]))


def kaggle_kinds(c: Corpus) -> None:
    k = c.keys()
    f = good_rows(TextFile("kaggle-csv", KAGGLE_HEADER), k, 2)
    f.bad(b'US,"[[[1,2],[3,4]]]",123', r"^row has 3 fields, the header has 6$")
    f.bad(b'US,"[[[1],[2]]]",123,True,2017-03-08 21:12:07,cat,extra', r"^row has 7 fields, the header has 6$")
    f.bad(b'US,"[[[1,2],[3,4]],123,True,2017-03-08 21:12:07,cat', r"^broken CSV row: ")
    f.bad(b'US,"[[[1],[2]]]"x,12,True,,cat', r"^broken CSV row: ")
    f.bad(b'US,"[[[1,2],[3,4]]",123,True,,cat', r"^drawing is not valid JSON")
    f.bad(b'US,"[[[1],[2]]]",,True,,cat', r"^record has no key_id$")
    f.bad(b'US,"[[[1],[2]]]",12,maybe,,cat', r"^recognized must be true or false")
    f.bad(b'US,"[[[1],[2]]]",12,True,not a time,cat', r"^unreadable timestamp")
    f.bad(b'US,"[]",12,True,,cat', r"^drawing has no strokes$")
    f.bad(b'US,"[[[""NaN""],[1]]]",12,True,,cat', NOT_NUMBER)
    f.bad(b'US,"[[[1e400],[1]]]",12,True,,cat', r"^drawing is not valid JSON")
    f.bad(b"US,,12,True,,cat", r"^record has no drawing$")
    f.bad(b"just some text", r"^row has 1 fields, the header has 6$")
    good_rows(f, k, 1, 2)
    c.text("kaggle/train_simplified.csv", f)

    k = c.keys()
    f = good_rows(TextFile("kaggle-csv", KAGGLE_HEADER), k, 2, timed=True)
    row = kaggle_row(k(90), 0, timed=True).replace(b"[0,17,33]", b"[0,17]")
    f.bad(row, r"different lengths \(3 and 2\)")
    f.bad(b'US,"[[[1],[2],[3e12]]]",12,True,,cat', r"^a time exceeds")
    good_rows(f, k, 1, 2, timed=True)
    c.text("kaggle/train_raw.csv", f)

    k = c.keys()
    f = good_rows(TextFile("kaggle-csv", KAGGLE_TEST_HEADER), k, 2, test=True)
    f.bad(b'12,US,"[[[1,2],[3]]]"', r"different lengths")
    f.bad(b'-12,US,"[[[1],[2]]]"', r"^key_id must be an unsigned integer")
    f.bad(b'99999999999999999999999,US,"[[[1],[2]]]"', r"^key_id 99999999999999999999999 outside the unsigned")
    good_rows(f, k, 1, 2, test=True)
    c.text("kaggle/test_simplified.csv", f)

    k = c.keys()
    f = good_rows(TextFile("kaggle-csv", KAGGLE_HEADER), k, 2)
    latin1 = b'US,"[[[1],[2]]]",12,True,,caf\xe9'
    f.bad(latin1, rf"^row is not valid UTF-8 at byte {latin1.index(0xE9) + 1}$")
    good_rows(f, k, 1, 2)
    c.text("kaggle/invalid_utf8.csv", f)

    k = c.keys()
    f = good_rows(TextFile("kaggle-csv", KAGGLE_HEADER), k, 2)
    # before Python 3.11 the csv module refused NUL in a line; since, the field holding it is wrong
    f.bad(b'US,"[[[1],[2]]]",12,True\0,,cat', r"^broken CSV row: line contains NUL|^recognized must be true or false")
    good_rows(f, k, 2, 2)
    c.text("kaggle/nul_byte.csv", f)

    k = c.keys()
    f = good_rows(TextFile("kaggle-csv", KAGGLE_HEADER), k, 3)
    f.bad(b'US,"[[[1],[2]]]",,True,,cat', r"^record has no key_id$")
    c.text("kaggle/byte_order_mark.csv", f, prefix=BOM)

    k = c.keys()
    f = good_rows(TextFile("kaggle-csv", KAGGLE_HEADER), k, 2)
    f.bad(b'US,"[]",12,True,,cat', r"^drawing has no strokes$")
    good_rows(f, k, 2, 2)
    c.text("kaggle/old_mac_line_ends.csv", f, newline=b"\r")

    k = c.keys()
    n = 13_000  # raw points: a drawing field of about 160,000 characters (the csv default limit: 131,072)
    xs = [float(100 + j % 50) for j in range(n)]
    long = [[xs, [float(j % 70) for j in range(n)], [float(j) for j in range(n)]]]
    field_text = csv_field(orjson.dumps(long).decode())
    assert len(field_text) > 131_072
    f = good_rows(TextFile("kaggle-csv", KAGGLE_HEADER), k, 1, timed=True)
    f.good(f"US,{field_text},{k(1)},True,2017-03-01 12:00:00.5,cat".encode(), k(1))
    f.bad(f"US,{field_text[:-1]}x\",{k(2)},True,,cat".encode(), r"^drawing is not valid JSON")
    c.text("kaggle/field_over_csv_limit.csv.gz", f, wrap=gz)


def gzip_kinds(c: Corpus) -> None:
    k = c.keys()
    f = good_lines(TextFile("raw-ndjson"), k, 3, timed=True)
    f.bad(b'{"key_id": "1", "drawing": "x"}', r"^drawing is not valid JSON")
    good_lines(f, k, 2, 3, timed=True)
    c.text("gz/raw.ndjson.gz", f, wrap=gz)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 2)
    f.bad(b"[]", r"^record must be a JSON object")
    good_lines(f, k, 2, 2)
    c.text("gz/simplified.ndjson.gz", f, wrap=gz)

    k = c.keys()
    f = good_rows(TextFile("kaggle-csv", KAGGLE_HEADER), k, 3)
    f.bad(b'US,"[[[1],[2]]]",12,True,,cat,x', r"^row has 7 fields")
    good_rows(f, k, 1, 3)
    c.text("gz/train.csv.gz", f, wrap=gz)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 1)
    long_bad = b'{"key_id": "1", "word": "' + b"x" * 70_000 + b'", "drawing": [}'
    f.bad(long_bad, BAD_JSON)  # longer than a reject's raw text: raw_length is the line's
    good_lines(f, k, 1, 1)
    c.text("gz/long_reject.ndjson.gz", f, wrap=gz)

    for name, fmt, rows in (("truncated.ndjson.gz", "simplified-ndjson", False),
                            ("truncated_test.csv.gz", "kaggle-csv", True)):
        k = c.keys()
        f = TextFile(fmt, KAGGLE_TEST_HEADER if rows else None)
        fill = functools.partial(good_rows, test=True) if rows else good_lines
        fill(f, k, 2)
        f.bad(b"{bad", r"^row has 1 fields" if rows else BAD_JSON)
        fill(f, k, 40, 2)
        data = f.render()
        cut, readable = gz_truncated(data)
        c.write(f"gz/{name}", cut, _cut_expect(f, readable, r"^gzip stream truncated after \d+ decompressed bytes"))

    k = c.keys()
    before = good_lines(TextFile("simplified-ndjson"), k, 6)
    before.bad(b"{nope", BAD_JSON)
    head = before.render()
    after = good_lines(TextFile("simplified-ndjson"), k, 4, 6).render()
    expect = before.expect
    expect.rejects.append((8, r"^gzip stream damaged at compressed byte \d+, after \d+ decompressed bytes: "
                              r"invalid block type$"))
    c.write("gz/flipped_bytes.ndjson.gz", gz_flipped(head, after), expect)

    k = c.keys()
    f = good_lines(TextFile("simplified-ndjson"), k, 5)
    f.bad(b'{"key_id": "1"}', r"^record has no drawing$")
    data = f.render()
    f.expect.rejects.append((7, r"^gzip stream damaged at compressed byte \d+, .*: CRC-32 check failed$"))
    c.write("gz/bad_crc.ndjson.gz", gz_bad_crc(data), f.expect)


def _cut_expect(f: TextFile, readable: bytes, pattern: str) -> Expect:
    """The accounting of `f` as far as its whole lines in `readable` go, plus the damage reject."""
    whole = readable.count(b"\n")
    expect = Expect(format=f.expect.format)
    first = 2 if f.header is not None else 1
    for number, ((_, kind), key) in enumerate(zip(f.entries, f.keys, strict=True), first):
        if number > whole:
            break
        if kind == GOOD:
            expect.drawings += 1
            expect.key_ids.append(key)
        elif kind != BLANK:
            expect.rejects.append((number, kind))
    expect.rejects.append((whole + 1, pattern))
    return expect


def binary_kinds(c: Corpus) -> None:
    k = c.keys()
    records = [
        (bin_record(k(0), [3, 2]), None),
        (bin_record(k(90), []), r"^drawing has no strokes$"),
        (bin_record(k(1), [4]), None),
        (bin_record(k(91), [2, 0]), r"^stroke 1 has no points$"),
        (bin_record(k(92), [2], recognized=7), r"^recognized must be 0 or 1, got 7$"),
        (bin_record(k(93), [1] * 1025), r"^drawing has 1025 strokes \(limit 1024\)$"),
        (bin_record(k(94), [2], country=b"\xe9\xe9"), r"^countrycode is not ASCII"),
        (bin_record(k(2), [5, 5, 1]), None),
    ]
    cut = bin_record(k(95), [30, 30])[:50]
    data = b"".join(r for r, _ in records) + cut
    rejects = [(i, why) for i, (_, why) in enumerate(records) if why]
    rejects.append((len(records), r"^truncated record at end of file \(cut in a record of 2 strokes"))
    c.write("binary/mixed.bin", data, Expect("binary", 3, rejects, key_ids=[k(0), k(1), k(2)]))

    # The first record has no strokes and the file is exactly 2 x 784 bytes: a bitmap file's size.
    k = c.keys()
    first = bin_record(k(90), [])
    body = [bin_record(k(i), [3, 4]) for i in range(2)]  # records have odd sizes: an even count of them
    rest = 2 * 784 - len(first) - sum(map(len, body)) - HEADER.size - 2
    body.append(bin_record(k(2), [rest // 2]))
    data = first + b"".join(body)
    assert len(data) == 2 * 784, len(data)
    c.write("binary/first_record_without_strokes.bin", data,
            Expect("binary", 3, [(0, r"^drawing has no strokes$")], key_ids=[k(i) for i in range(3)]))

    k = c.keys()
    data = bin_record(k(0), [2]) + bin_record(k(1), [3]) + bin_record(k(2), [1])[:9]
    c.write("binary/cut_in_header.bin", data, Expect(
        "binary", 2, [(2, r"^truncated record at end of file \(cut in 9-byte header")], key_ids=[k(0), k(1)]))


def npz_kinds(c: Corpus) -> None:
    good = [stroke3(i) for i in range(6)]
    bad = [
        (np.zeros((3, 2), np.int16), r"is not an \(n, 3\) numeric stroke-3 array"),
        (np.zeros((0, 3), np.int16), r"has no points$"),
        (np.array([[1.0, np.nan, 1.0]]), r"^a coordinate is NaN or infinite$"),
        (np.array([["a", "b", "c"]]), r"is not an \(n, 3\) numeric stroke-3 array"),
        ([[1, 2, 1]], r"^train\[\d+\] is a list, not a stroke-3 array$"),
    ]
    items = [good[0], bad[0][0], good[1], bad[1][0], bad[2][0], good[2], bad[3][0], bad[4][0], good[3]]
    patterns = [None, bad[0][1], None, bad[1][1], bad[2][1], None, bad[3][1], bad[4][1], None]
    buf = io.BytesIO()
    np.savez(buf, train=object_array(items), valid=object_array(good[4:]))
    rejects = [(i, p) for i, p in enumerate(patterns) if p]
    c.write("npz/mixed.npz", buf.getvalue(), Expect("npz", 6, rejects))

    train = npy_bytes(object_array(good[:3]))
    valid = npy_bytes(object_array(good[3:]))
    test = npy_bytes(object_array([stroke3(40), stroke3(41)]))
    path = c.root / "npz/crc_damaged.npz"
    write_npz(path, {"train": train, "valid": valid, "test": test})
    path.write_bytes(flip_crc_protected_byte(path.read_bytes(), stroke3(4).tobytes()))  # after the CRC-32
    c.expect["npz/crc_damaged.npz"] = Expect("npz", 5, [(3, r"^npz member valid\.npy cannot be read: Bad CRC-32")])

    cut = valid[: len(valid) - 40]
    write_npz(c.root / "npz/truncated_member.npz", {"train": train, "valid": cut, "test": test}, compress=True)
    c.expect["npz/truncated_member.npz"] = Expect("npz", 5, [(3, r"^npz member valid\.npy cannot be read: ")])

    header_only = npy_bytes(np.zeros((4, 6, 3), np.int16))[:200]
    write_npz(c.root / "npz/truncated_plain_member.npz", {"train": header_only, "valid": valid})
    c.expect["npz/truncated_plain_member.npz"] = Expect(
        "npz", 3, [(0, r"^npz member train\.npy cannot be read: truncated array data")])

    marker = MARKER
    for via in ("system", "open"):
        buf = io.BytesIO()
        np.savez(buf, train=malicious_array(marker, via, good_before=2), valid=object_array(good[:2]))
        c.skip(f"npz/malicious_{via}.npz", buf.getvalue(),
               r"refused to read member train\.npy: its pickle would call (posix|nt|os|builtins|io)\.(system|open)")
    # The call comes after more pickle than detection looks at: the reader refuses the member instead.
    deep = npy_bytes(malicious_array(marker, "system", good_before=9000))
    assert len(deep) > 2 * (1 << 18)  # twice what detection unpickles (safe_npy.SNIFF_PICKLE_BYTES)
    write_npz(c.root / "npz/malicious_deep.npz", {"train": deep, "valid": valid}, compress=True)
    refused = r"^npz member train\.npy refused: its pickle would call"
    c.expect["npz/malicious_deep.npz"] = Expect("npz", 3, [(0, refused)])


def bitmap_kinds(c: Corpus) -> None:
    images = np.zeros((5, 784), np.uint8)
    for i in range(5):
        images[i, 100 + 50 * i : 160 + 50 * i] = 255
    buf = io.BytesIO()
    np.save(buf, images)
    c.write("bitmap/full_numpy_bitmap_cat.npy", buf.getvalue(), Expect("bitmap-npy", 5, bitmaps=5))
    c.write("bitmap/cats.bin", images[:3].tobytes(), Expect("bitmap-bin", 3, bitmaps=3))


def skipped_kinds(c: Corpus) -> None:
    c.skip("other/counts.json", b'{"cat": 3, "dog": 4}\n', r"JSON objects without a 'drawing' field")
    c.skip("other/notes.json", b"[1, 2, 3]\n", r"a JSON array that does not hold drawing objects")
    c.skip("other/spreadsheet.csv", b"name,size\na,1\n", r"is not a Kaggle Quick, Draw! header")
    c.skip("other/empty.csv", b"", r"the file is empty")
    c.skip("other/random.bin", bytes(range(256)) * 3, r"neither drawing records .* nor 784-byte bitmaps")
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 784)))
    c.skip("other/floats.npy", buf.getvalue(), r"an \.npy of dtype float64, bitmaps are uint8")
    buf = io.BytesIO()
    np.savez(buf, weights=np.zeros(3))
    c.skip("other/weights.npz", buf.getvalue(), r"an \.npz without train/valid/test arrays")
    c.skip("other/unreadable.ndjson.gz", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\xff\xff",
           r"unreadable gzip \(gzip stream damaged at compressed byte")
    c.skip("other/binary_data.csv.gz", gz(bytes(range(256)) * 8), r"a gzip of binary data")
    (c.root / "other/README.md").write_text("Not a data file name: never looked at, never listed.\n")


def duplicate_kinds(c: Corpus) -> None:
    """Two files sharing key_ids (raw and simplified copies, as Google's dataset has)."""
    k = c.keys()
    raw = good_lines(TextFile("raw-ndjson"), k, 4, timed=True)
    raw.bad(b"{", BAD_JSON)
    c.text("duplicates/raw_copy.ndjson", raw)
    simple = good_lines(TextFile("simplified-ndjson"), k, 3)  # key_ids 0..2 again
    simple.bad(line(record(k(3), drawing=[[[1], [2, 3]]])), r"different lengths")  # key_id 3: rejected, no copy
    good_lines(simple, k, 1, 10)
    c.text("duplicates/simplified_copy.ndjson", simple)


def link_kinds(c: Corpus) -> None:
    """A link to a file already read, a link to nothing, and two links that loop back."""
    os.symlink(os.path.join("ndjson", "bad_json.ndjson"), c.root / "zz_link_to_bad_json.ndjson")
    c.expect["zz_link_to_bad_json.ndjson"] = Expect(skipped=r"the same file as .*bad_json\.ndjson, which is read once")
    os.symlink("nowhere.ndjson", c.root / "zz_dangling.ndjson")
    c.expect["zz_dangling.ndjson"] = Expect(skipped=r"^a symbolic link to nothing")
    os.symlink(".", c.root / "ndjson" / "loop")
    os.symlink("..", c.root / "ndjson" / "up")


KINDS: list[Callable[[Corpus], None]] = [
    ndjson_kinds, document_kinds, kaggle_kinds, gzip_kinds, binary_kinds, npz_kinds, bitmap_kinds,
    skipped_kinds, duplicate_kinds, link_kinds,
]


def write_corpus(out: Path | str) -> dict[str, Expect]:
    """Write the corpus under `out` (which must not exist or be empty) and its accounting."""
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise SystemExit(f"{root} is not empty")
    corpus = Corpus(root)
    for kind in KINDS:
        kind(corpus)
    expect = dict(sorted(corpus.expect.items()))
    (root / ".expected.json").write_bytes(orjson.dumps({k: asdict(v) for k, v in expect.items()},
                                                       option=orjson.OPT_INDENT_2))
    return expect


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail with TimeoutError instead of hanging (a folder walk that follows link loops never ends)."""

    def expired(*_: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def totals(expect: dict[str, Expect]) -> dict[str, int]:
    """Corpus-wide input, drawings, rejects and duplicates (key_ids read more than once)."""
    read = [e for e in expect.values() if e.skipped is None]
    key_ids = [key for e in read for key in e.key_ids]
    return {
        "input": sum(e.input for e in read),
        "drawings": sum(e.drawings for e in read),
        "rejected": sum(len(e.rejects) for e in read),
        "duplicates": len(key_ids) - len(set(key_ids)),
        "bitmaps": sum(e.bitmaps for e in read),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python tests/data/bad_corpus.py OUT_DIR", file=sys.stderr)
        return 2
    expect = write_corpus(argv[0])
    size = sum(p.stat().st_size for p in Path(argv[0]).rglob("*") if p.is_file() and not p.is_symlink())
    print(f"wrote {len(expect)} files ({math.ceil(size / 1024)} kB) to {argv[0]}: {totals(expect)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
