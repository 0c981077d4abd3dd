"""Google's binary drawing format (FORMATS.md section 3): reader, writer and a plausibility sniff.

Little-endian records, no header, no word field (the category is the file's name):
`key_id` uint64 | `countrycode` 2 bytes | `recognized` int8 | `timestamp` uint32 |
`n_strokes` uint16 | per stroke: `n_points` uint16, n uint8 x, n uint8 y.

The reader scans records in a 1 MiB buffer (one `struct.unpack_from` per stroke), gathers all x and
all y bytes of a drawing by slicing and converts them with one `numpy.frombuffer` each (no Python
loop over points). A record that breaks a
rule is still walked to its end, so the next one stays aligned; a record cut by the end of the file
(a partial download, like quickdraw/bin/dog.bin) becomes the last reject.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from doodle.data.drawing import (
    DEFAULT_LIMITS,
    MAX_KEY_ID,
    BadRecord,
    Drawing,
    Limits,
    Reject,
    check_points,
)
from doodle.data.formats.common import (
    RAW_HEX_BYTES,
    ReadStats,
    atomic_output,
    check_range,
    hex_reject,
    infer_word,
)
from doodle.errors import DoodleError

HEADER = struct.Struct("<Q2sbIH")
U16 = struct.Struct("<H")
MAX_U16 = 0xFFFF
CHUNK_BYTES = 1 << 20
MAX_RECORD_BYTES = 64 << 20
"""Far above any real record (a drawing within the default Limits takes at most ~135 kB)."""
# Timestamps a real record can have (the game ran from 2016); used only to recognise the format.
PLAUSIBLE_TIMES = (int(datetime(2010, 1, 1, tzinfo=UTC).timestamp()), int(datetime(2030, 1, 1, tzinfo=UTC).timestamp()))


def iter_binary(
    path: Path,
    *,
    limits: Limits = DEFAULT_LIMITS,
    word: str | None = None,
    start: int = 0,
    end: int | None = None,
    stats: ReadStats | None = None,
) -> Iterator[Drawing | Reject]:
    """Every record of a `.bin` drawing file; `line` of a reject is the 0-based record index.

    `word` defaults to the category inferred from the file name (`formats.infer_word`). The file is
    read in 1 MiB chunks; a record larger than `MAX_RECORD_BYTES` (only a corrupt file has one) is
    rejected and ends the reading, since nothing after it can be trusted to be aligned.
    """
    check_range(path, start, end)
    if start != 0 or end is not None:
        raise ValueError(f"{path}: the binary format has no record boundaries to split at; read it whole")
    word = word or infer_word(path)
    with open(path, "rb", buffering=0) as handle:
        buf = b""
        pos = 0
        index = 0
        while True:
            scanned = _scan(buf, pos)
            if scanned is None:  # the record continues past the buffer: read more
                more = handle.read(max(CHUNK_BYTES, len(buf) - pos))
                if not more:
                    if pos < len(buf):
                        item = _cut_record(path, index, buf[pos:])
                        _count(stats, item)
                        yield item
                    return
                buf = buf[pos:] + more
                pos = 0
                if len(buf) > MAX_RECORD_BYTES:
                    reason = f"record larger than {MAX_RECORD_BYTES} bytes: corrupt file, reading stopped"
                    item = hex_reject(path, index, reason, buf, len(buf))
                    _count(stats, item)
                    yield item
                    return
                continue
            stop, starts, lengths = scanned
            item = _decode(path, index, buf, pos, stop, starts, lengths, limits, word)
            _count(stats, item)
            yield item
            pos = stop
            index += 1


def _count(stats: ReadStats | None, item: Drawing | Reject) -> None:
    if stats is not None:
        stats.lines += 1
        stats.records += 1
        stats.rejects += isinstance(item, Reject)


def _scan(buf: bytes, pos: int) -> tuple[int, list[int], list[int]] | None:
    """(end offset, x offsets, point counts) of the record at `pos`, or None if `buf` ends first."""
    size = len(buf)
    if pos + HEADER.size > size:
        return None
    (n_strokes,) = U16.unpack_from(buf, pos + HEADER.size - 2)
    p = pos + HEADER.size
    starts: list[int] = []
    lengths: list[int] = []
    unpack = U16.unpack_from
    for _ in range(n_strokes):
        if p + 2 > size:
            return None
        (n,) = unpack(buf, p)
        starts.append(p + 2)
        lengths.append(n)
        p += 2 + 2 * n
    if p > size:
        return None
    return p, starts, lengths


def _decode(
    path: Path,
    index: int,
    buf: bytes,
    pos: int,
    stop: int,
    starts: list[int],
    lengths: list[int],
    limits: Limits,
    word: str | None,
) -> Drawing | Reject:
    key_id, country, recognized, stamp, n_strokes = HEADER.unpack_from(buf, pos)
    total = sum(lengths)
    problem = None
    if n_strokes == 0:
        problem = "drawing has no strokes"
    elif n_strokes > limits.max_strokes:
        problem = f"drawing has {n_strokes} strokes (limit {limits.max_strokes})"
    elif 0 in lengths:
        problem = f"stroke {lengths.index(0)} has no points"
    elif total > limits.max_points:
        problem = f"drawing has more than {limits.max_points} points"
    elif recognized not in (0, 1):
        problem = f"recognized must be 0 or 1, got {recognized}"
    code = ""
    if problem is None:
        try:
            code = country.rstrip(b"\0").decode("ascii")
        except UnicodeDecodeError:
            problem = f"countrycode is not ASCII: {country!r}"
    if problem is not None:
        return hex_reject(path, index, problem, buf[pos : min(stop, pos + RAW_HEX_BYTES)], stop - pos)
    # x and y bytes of every stroke, gathered by C-level slicing, converted by numpy in one go
    points = np.empty((total, 2), np.float64)
    points[:, 0] = np.frombuffer(b"".join([buf[a : a + n] for a, n in zip(starts, lengths, strict=True)]), np.uint8)
    points[:, 1] = np.frombuffer(
        b"".join([buf[a + n : a + 2 * n] for a, n in zip(starts, lengths, strict=True)]), np.uint8
    )
    if limits.max_abs_coord < 255:  # uint8 values are finite and at most 255: only a tight limit can fail
        try:
            check_points(points, limits)
        except BadRecord as err:
            return hex_reject(path, index, str(err), buf[pos : min(stop, pos + RAW_HEX_BYTES)], stop - pos)
    strokes = []
    a = 0
    for n in lengths:
        strokes.append(points[a : a + n])
        a += n
    return Drawing(
        key_id=key_id,
        strokes=strokes,
        word=word,
        countrycode=code,
        recognized=bool(recognized),
        timestamp=datetime.fromtimestamp(stamp, UTC),  # any uint32 is a valid Unix time
    )


def _cut_record(path: Path, index: int, rest: bytes) -> Reject:
    if len(rest) < HEADER.size:
        where = f"{len(rest)}-byte header"
    else:
        (n_strokes,) = U16.unpack_from(rest, HEADER.size - 2)
        where = f"a record of {n_strokes} strokes"
    reason = f"truncated record at end of file (cut in {where}, {len(rest)} bytes left)"
    return hex_reject(path, index, reason, rest[:RAW_HEX_BYTES], len(rest))


SNIFF_RECORDS = 64
"""Records `binary_plausibility` walks at most."""


def binary_plausibility(head: bytes) -> str | None:
    """None when `head` (the first bytes of a file) starts like a file of drawing records, else why not.

    Records are walked as far as `head` reaches (up to `SNIFF_RECORDS`); the file is one of drawing
    records when most of them have a plausible header: a 2-letter ASCII countrycode or two NULs,
    recognized 0/1, a timestamp in 2010..2030, at most 1024 strokes. So one bad record (no strokes,
    an empty stroke) does not hide a good file, while a 28x28 bitmap file (mostly zero bytes: its
    "timestamps" are 0) or text fails at once. The reason given is the first record's problem.
    """
    if len(head) < HEADER.size:
        return f"too short for a drawing record ({len(head)} bytes)"
    pos, walked, plausible, first = 0, 0, 0, None
    while pos + HEADER.size <= len(head) and walked < SNIFF_RECORDS:
        problem, pos = _sniff_record(head, pos)
        walked += 1
        plausible += problem is None
        if first is None:
            first = problem
    return None if 2 * plausible > walked else first


def _sniff_record(head: bytes, pos: int) -> tuple[str | None, int]:
    """(why the record at `pos` does not look like one or None, where the next record starts)."""
    _key, country, recognized, stamp, n_strokes = HEADER.unpack_from(head, pos)
    end = pos + HEADER.size
    for _ in range(n_strokes):
        if end + 2 > len(head):
            break
        end += 2 + 2 * U16.unpack_from(head, end)[0]
    if not (country == b"\0\0" or (country.isalpha() and country.isascii())):
        return f"countrycode bytes {country!r} are not 2 ASCII letters", end
    if recognized not in (0, 1):
        return f"recognized byte is {recognized}, not 0 or 1", end
    if not PLAUSIBLE_TIMES[0] <= stamp < PLAUSIBLE_TIMES[1]:
        return f"timestamp {stamp} is not in 2010..2030", end
    if n_strokes > DEFAULT_LIMITS.max_strokes:
        return f"{n_strokes} strokes", end
    return None, end


def encode_drawing(drawing: Drawing) -> bytes:
    """One drawing as a binary record; `DoodleError` naming the key_id if it cannot be one."""

    def fail(why: str) -> DoodleError:
        return DoodleError(f"drawing {drawing.key_id} cannot be written in the binary format: {why}")

    if not 0 <= drawing.key_id <= MAX_KEY_ID:
        raise fail("key_id is outside the unsigned 64-bit range")
    if not drawing.strokes:
        raise fail("it has no strokes")
    if len(drawing.strokes) > MAX_U16:
        raise fail(f"{len(drawing.strokes)} strokes (at most {MAX_U16})")
    if drawing.has_time:
        raise fail("it has timing (t), which binary records cannot hold; drop it first")
    try:
        country = (drawing.countrycode or "").encode("ascii")
    except UnicodeEncodeError:
        raise fail(f"countrycode {drawing.countrycode!r} is not ASCII") from None
    if len(country) > 2:
        raise fail(f"countrycode {drawing.countrycode!r} is longer than 2 characters")
    if drawing.recognized is None:
        raise fail("recognized is unknown")
    if drawing.timestamp is None:
        raise fail("timestamp is unknown")
    stamp = int(drawing.timestamp.timestamp() // 1)  # whole seconds, as Google's files have
    if not 0 <= stamp <= 0xFFFFFFFF:
        raise fail(f"timestamp {drawing.timestamp} does not fit 32-bit Unix seconds")
    points, offsets = drawing.to_flat()
    if len(points) and (not np.array_equal(points, np.round(points)) or points.min() < 0 or points.max() > 255):
        raise fail("coordinates must be integers in 0..255 (simplify the drawing first)")
    lengths = np.diff(offsets)
    if lengths.max() > MAX_U16:
        raise fail(f"a stroke has {int(lengths.max())} points (at most {MAX_U16})")
    xy = np.ascontiguousarray(points.astype(np.uint8).T)
    parts = [
        HEADER.pack(drawing.key_id, country.ljust(2, b"\0"), int(bool(drawing.recognized)), stamp, len(drawing.strokes))
    ]
    for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
        parts.append(U16.pack(b - a))
        parts.append(xy[0, a:b].tobytes())
        parts.append(xy[1, a:b].tobytes())
    return b"".join(parts)


def write_binary(drawings: Iterable[Drawing], path: Path | str) -> int:
    """Write drawings as Google's binary format (`encode_drawing`); returns the count.

    Raises `DoodleError` naming the key_id of the first drawing that cannot be represented
    (timing, coordinates not integers in 0..255, over 65535 points in a stroke, unknown
    recognized/timestamp); nothing is left at `path` then.
    """
    count = 0
    with atomic_output(path) as out:
        for drawing in drawings:
            out.write(encode_drawing(drawing))
            count += 1
    return count
