"""The one in-memory type for a doodle, and the records a reader yields.

A `Drawing` holds its strokes as a list of numpy arrays, one per stroke, of shape (n, 2) for
x, y or (n, 3) for x, y, t (milliseconds since the drawing's first point) where the source had
timing. Everything downstream (simplification, rendering, the store, serving) works from this type,
so it is deliberately small: metadata plus strokes, and cheap conversions to the two other layouts
the rest of the package wants:

* stroke-3 (Sketch-RNN): rows (dx, dy, pen_lifted), pen_lifted = 1 on a stroke's last point;
* flat: one (N, D) point array plus stroke offsets, the layout a batch renderer and a columnar
  store want (one allocation per drawing instead of one per stroke).

Readers never raise on a bad record: they yield a `Reject` naming the source, the line (or record
index for binary formats) and the reason, and carry on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

import numpy as np

MAX_KEY_ID = 2**64 - 1


class BadRecord(ValueError):
    """A record that cannot become a valid `Drawing`; its message is the reject reason."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds beyond which a record is rejected as absurd rather than trusted."""

    max_strokes: int = 1024
    """Most strokes in one drawing (real drawings have at most a few dozen)."""
    max_points: int = 65_535
    """Most points in one drawing, all strokes together (real raw drawings stay under 2,000)."""
    max_abs_coord: float = 1e6
    """Largest allowed |x| or |y| (screen pixels; real raw drawings stay under 5,000)."""
    max_abs_time: float = 1e9
    """Largest allowed |t| in milliseconds (about 11 days)."""


DEFAULT_LIMITS = Limits()


@dataclass(slots=True)
class Drawing:
    """One doodle: metadata plus strokes.

    `strokes[i]` is a float64 array of shape (n_i, 2) (x, y) or (n_i, 3) (x, y, t); all strokes of a
    drawing have the same width. `bitmap` is set instead of strokes only for the numpy-bitmap
    format (28x28 uint8, strokes gone).
    """

    key_id: int
    strokes: list[np.ndarray]
    word: str | None = None
    countrycode: str = ""
    recognized: bool | None = None
    timestamp: datetime | None = None
    bitmap: np.ndarray | None = field(default=None, repr=False)

    # -- basic facts ---------------------------------------------------------------------
    @property
    def has_time(self) -> bool:
        """True when the strokes carry a t column (raw data)."""
        return bool(self.strokes) and self.strokes[0].shape[1] == 3

    @property
    def n_points(self) -> int:
        return sum(map(len, self.strokes))

    def bbox(self) -> tuple[float, float, float, float]:
        """(min_x, min_y, max_x, max_y) over all points."""
        pts, _ = self.to_flat()
        return (float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max()))

    def replace(self, **changes: Any) -> Drawing:
        """A copy with some fields changed (strokes are shared unless replaced)."""
        values = {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
        values.update(changes)
        return Drawing(**values)

    # -- flat layout -----------------------------------------------------------------------
    def to_flat(self, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
        """All points as one (N, D) array, plus int64 offsets of length n_strokes + 1.

        Stroke i is `points[offsets[i]:offsets[i + 1]]`.
        """
        strokes = self.strokes
        if not strokes:
            return np.zeros((0, 2), dtype), np.zeros(1, np.int64)
        offsets = np.zeros(len(strokes) + 1, np.int64)
        np.cumsum(np.fromiter(map(len, strokes), np.int64, len(strokes)), out=offsets[1:])
        return np.concatenate(strokes).astype(dtype, copy=False), offsets

    @classmethod
    def from_flat(cls, points: np.ndarray, offsets: np.ndarray, **meta: Any) -> Drawing:
        """Inverse of `to_flat`: strokes become views into `points`."""
        points = np.asarray(points, dtype=np.float64)
        strokes = [points[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
        return cls(strokes=strokes, **meta)

    # -- stroke-3 (Sketch-RNN) ---------------------------------------------------------------
    def to_stroke3(self) -> np.ndarray:
        """(N, 3) float64 rows (dx, dy, pen_lifted); the first row is the first point itself.

        Timing is dropped (stroke-3 has none). `from_stroke3(d.to_stroke3())` restores x, y exactly.
        """
        pts, offsets = self.to_flat()
        out = np.zeros((len(pts), 3), np.float64)
        if len(pts) == 0:
            return out
        out[0, :2] = pts[0, :2]
        out[1:, :2] = np.diff(pts[:, :2], axis=0)
        out[offsets[1:] - 1, 2] = 1.0
        return out

    @classmethod
    def from_stroke3(cls, s3: np.ndarray, **meta: Any) -> Drawing:
        """Drawing from stroke-3 rows; absolute positions are the running sum from (0, 0)."""
        s3 = np.asarray(s3, dtype=np.float64)
        if s3.ndim != 2 or s3.shape[1] != 3:
            raise BadRecord(f"stroke-3 array must have shape (n, 3), got {s3.shape}")
        xy = np.cumsum(s3[:, :2], axis=0)
        ends = np.flatnonzero(s3[:, 2] > 0) + 1
        if len(ends) == 0 or ends[-1] != len(s3):
            ends = np.append(ends, len(s3))
        offsets = np.concatenate([[0], ends]).astype(np.int64)
        return cls.from_flat(xy, offsets, **meta)

    # -- JSON ------------------------------------------------------------------------------
    def to_json_dict(self) -> dict[str, Any]:
        """The Quick, Draw! ndjson object (raw layout when timed, simplified layout otherwise).

        Coordinates that are whole numbers are written as ints, as Google's simplified files do.
        """
        strokes = []
        for s in self.strokes:
            strokes.append([_json_numbers(s[:, j]) for j in range(s.shape[1])])
        out: dict[str, Any] = {
            "word": self.word,
            "countrycode": self.countrycode,
            "timestamp": format_timestamp(self.timestamp) if self.timestamp else None,
            "recognized": self.recognized,
            "key_id": str(self.key_id),
            "drawing": strokes,
        }
        return out


def _json_numbers(values: np.ndarray) -> list[int] | list[float]:
    if np.all(values == np.round(values)) and np.all(np.abs(values) < 2**53):
        return values.astype(np.int64).tolist()
    return values.tolist()


@dataclass(slots=True)
class Reject:
    """A record a reader could not turn into a `Drawing`: nothing is lost, it is reported."""

    source: str
    """The file it came from."""
    line: int
    """1-based line number for text formats; 0-based record index for binary/npz/bitmap formats."""
    reason: str
    """Why it was rejected, e.g. "bad JSON: unexpected character"."""
    raw: str | None = None
    """The offending text (a line, or hex bytes for binary), cut to `RAW_LIMIT` characters."""
    raw_length: int | None = None
    """The record's own length in bytes (line ending excluded), which `raw` may show only the start of;
    None: `len(raw)`."""

    RAW_LIMIT = 65_536

    def to_json_dict(self) -> dict[str, Any]:
        raw = self.raw
        out: dict[str, Any] = {"source": self.source, "line": self.line, "reason": self.reason}
        if raw is not None:
            out["raw_length"] = len(raw) if self.raw_length is None else self.raw_length
            out["raw"] = raw[: self.RAW_LIMIT]
        return out


# -- validation shared by every reader -------------------------------------------------------


def _is_ascii_digits(text: str | bytes) -> bool:
    # str.isdigit() accepts "²" and other digits int() refuses.
    return len(text) > 0 and text.isascii() and text.isdigit()


def _shown(text: str | bytes) -> str:
    shown = text.decode("ascii") if isinstance(text, bytes) else text
    return shown if len(shown) <= 40 else f"{shown[:40]}... ({len(shown)} characters)"


class KeyIdRangeError(BadRecord):
    """A key_id that is a number, but outside the unsigned 64-bit range.

    A reader that has the record's source text passes the number's own spelling to `with_text`:
    a JSON parser hands an integer literal past 2**64 over as an inexact float.
    """

    def __init__(self, text: str) -> None:
        super().__init__(f"key_id {text} outside the unsigned 64-bit range")

    @staticmethod
    def with_text(text: str | bytes) -> str:
        return str(KeyIdRangeError(_shown(text)))


def parse_key_id(value: Any) -> int:
    """An exact unsigned 64-bit key_id from a str or int (never via float)."""
    if isinstance(value, str):  # the common case first (a str is no bool or int)
        text = value.strip()
        if not _is_ascii_digits(text):
            raise BadRecord(f"key_id must be an unsigned integer or a string of digits, got {value!r:.40}")
        return _key_from_digits(text)
    if isinstance(value, bool):
        raise BadRecord("key_id must be an integer, got a boolean")
    if isinstance(value, int):
        key = value
    elif isinstance(value, bytes) and _is_ascii_digits(text := value.strip()):
        return _key_from_digits(text)
    elif isinstance(value, float) and (value < 0 or value > MAX_KEY_ID):
        raise KeyIdRangeError(f"{value:g}")  # an integer literal too large (or negative) for 64 bits
    else:
        raise BadRecord(f"key_id must be an unsigned integer or a string of digits, got {value!r:.40}")
    if not 0 <= key <= MAX_KEY_ID:
        raise KeyIdRangeError(str(key))
    return key


def _key_from_digits(text: str | bytes) -> int:
    digits = text.lstrip(b"0" if isinstance(text, bytes) else "0")
    if len(digits) > 20:  # past 2**64 already (and int() of a huge string is slow)
        raise KeyIdRangeError(_shown(text))
    key = int(text)
    if key > MAX_KEY_ID:
        raise KeyIdRangeError(str(key))
    return key


def parse_timestamp(value: Any) -> datetime | None:
    """Quick, Draw!'s "2017-03-11 14:05:31.80194 UTC" (or ISO 8601, or Unix seconds) as aware UTC."""
    if isinstance(value, str):  # the common case first (a str is no bool or number)
        if not value:
            return None
        text = value.strip()
        if text.endswith(" UTC"):
            text = text[:-4] + "+00:00"
        try:
            stamp = datetime.fromisoformat(text)
        except ValueError:
            raise BadRecord(f"unreadable timestamp {value!r:.60}") from None
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=UTC)
        return stamp.astimezone(UTC)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadRecord("timestamp must be a string or a number, got a boolean")
    if isinstance(value, int | float):
        if not np.isfinite(value) or not 0 <= value < 2**32:
            raise BadRecord(f"timestamp {value!r} is not a plausible Unix time")
        return datetime.fromtimestamp(value, tz=UTC)
    raise BadRecord(f"timestamp must be a string, got {type(value).__name__}")


def format_timestamp(stamp: datetime) -> str:
    """Quick, Draw!'s own timestamp layout: "2017-03-11 14:05:31.80194 UTC"."""
    text = stamp.strftime("%Y-%m-%d %H:%M:%S")
    if stamp.microsecond:
        text += f".{stamp.microsecond:06d}".rstrip("0")
    return text + " UTC"


_NUMBER_TYPES = {int, float}


def strokes_from_json(drawing: Any, limits: Limits = DEFAULT_LIMITS) -> list[np.ndarray]:
    """Validate Quick, Draw!'s `[[x...], [y...], ([t...])]`-per-stroke lists into stroke arrays.

    Raises `BadRecord` naming the first problem: not a list, no strokes, ragged x/y/t, mixed timed
    and untimed strokes, non-numbers, NaN/inf, too many strokes or points, absurd values.
    """
    if not isinstance(drawing, list):
        raise BadRecord(f"drawing must be a list of strokes, got {type(drawing).__name__}")
    if not drawing:
        raise BadRecord("drawing has no strokes")
    if len(drawing) > limits.max_strokes:
        raise BadRecord(f"drawing has {len(drawing)} strokes (limit {limits.max_strokes})")
    width = None
    columns: list[list[Any]] = []
    lengths: list[int] = []
    for i, stroke in enumerate(drawing):
        if not isinstance(stroke, list) or len(stroke) not in (2, 3):
            raise BadRecord(f"stroke {i} must be [[x...], [y...]] or [[x...], [y...], [t...]]")
        if width is None:
            width = len(stroke)
            columns = [[] for _ in range(width)]
        elif len(stroke) != width:
            raise BadRecord(f"stroke {i} has {len(stroke)} coordinate lists, stroke 0 has {width}")
        n = None
        for j, values in enumerate(stroke):
            if not isinstance(values, list):
                raise BadRecord(f"stroke {i} coordinate list {j} is not a list")
            if n is None:
                n = len(values)
            elif len(values) != n:
                raise BadRecord(f"stroke {i} has x/y/t lists of different lengths ({n} and {len(values)})")
            columns[j].extend(values)
        if not n:
            raise BadRecord(f"stroke {i} has no points")
        lengths.append(n)
        if sum(lengths) > limits.max_points:
            raise BadRecord(f"drawing has more than {limits.max_points} points")
    # numpy would quietly turn "12" or true into numbers; a set of types is a C-speed check.
    for col in columns:
        kinds = set(map(type, col))
        if not kinds <= _NUMBER_TYPES:
            bad = sorted(k.__name__ for k in kinds - _NUMBER_TYPES)
            raise BadRecord(f"a coordinate is not a number (found {', '.join(bad)})")
    try:
        points = np.array(columns, dtype=np.float64).T
    except OverflowError:
        raise BadRecord("a coordinate is too large to be a number") from None
    check_points(points, limits)
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return [points[offsets[i] : offsets[i + 1]] for i in range(len(lengths))]


def strokes_from_text(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> list[np.ndarray]:
    """`strokes_from_json` of a drawing's JSON text: the one-pass parser (`stroke_json`) where it
    handles the text, else `orjson.loads` and `strokes_from_json`, whose errors are the reasons."""
    strokes = _text_parser()(text, limits)
    if strokes is not None:
        return strokes
    import orjson

    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise BadRecord(f"drawing is not valid JSON: {err}") from None
    return strokes_from_json(parsed, limits)


@cache
def _text_parser() -> Callable[[str | bytes, Limits], list[np.ndarray] | None]:
    # Imported on first use: numba costs a fraction of a second to import, which only readers of
    # drawing text (Kaggle CSVs) should pay.
    from doodle.data.stroke_json import parse_drawing_text

    return parse_drawing_text


def check_points(points: np.ndarray, limits: Limits = DEFAULT_LIMITS) -> None:
    """Reject NaN/inf and absurd magnitudes in an (N, 2|3) point array."""
    if not np.isfinite(points).all():
        raise BadRecord("a coordinate is NaN or infinite")
    if len(points) and np.abs(points[:, :2]).max() > limits.max_abs_coord:
        raise BadRecord(f"a coordinate exceeds {limits.max_abs_coord:g} in magnitude")
    if points.shape[1] == 3 and len(points) and np.abs(points[:, 2]).max() > limits.max_abs_time:
        raise BadRecord(f"a time exceeds {limits.max_abs_time:g} ms in magnitude")


def drawing_from_record(obj: Any, limits: Limits = DEFAULT_LIMITS, require_word: bool = False) -> Drawing:
    """A `Drawing` from one parsed Quick, Draw! JSON object (ndjson line or Kaggle CSV row).

    `drawing` may be the parsed list or its JSON text (as in Kaggle CSVs).
    """
    if not isinstance(obj, dict):
        raise BadRecord(f"record must be a JSON object, got {type(obj).__name__}")
    if "key_id" not in obj:
        raise BadRecord("record has no key_id")
    if "drawing" not in obj:
        raise BadRecord("record has no drawing")
    key_id = parse_key_id(obj["key_id"])
    raw_drawing = obj["drawing"]
    if isinstance(raw_drawing, str | bytes):
        strokes = strokes_from_text(raw_drawing, limits)
    else:
        strokes = strokes_from_json(raw_drawing, limits)
    word = obj.get("word")
    if word is not None and (not isinstance(word, str) or not word.strip()):
        raise BadRecord(f"word must be a non-empty string, got {word!r:.40}")
    if require_word and word is None:
        raise BadRecord("record has no word")
    country = obj.get("countrycode") or ""
    if not isinstance(country, str) or len(country) > 8:
        raise BadRecord(f"countrycode must be a short string, got {country!r:.40}")
    recognized = obj.get("recognized")
    if isinstance(recognized, str):
        lowered = recognized.strip().lower()
        if lowered not in ("true", "false"):
            raise BadRecord(f"recognized must be true or false, got {recognized!r:.40}")
        recognized = lowered == "true"
    elif recognized is not None and not isinstance(recognized, bool):
        raise BadRecord(f"recognized must be a boolean, got {recognized!r:.40}")
    return Drawing(
        key_id=key_id,
        strokes=strokes,
        word=word.strip() if word else None,
        countrycode=country,
        recognized=recognized,
        timestamp=parse_timestamp(obj.get("timestamp")),
    )


# -- batches -----------------------------------------------------------------------------------


@dataclass(slots=True)
class PackedDrawings:
    """Many drawings in three flat arrays: what a batch renderer or model loader consumes.

    points: (N, 3) float32 x, y, t (t = NaN where the drawing has no timing);
    stroke_offsets: (S + 1,) int64 into points; drawing_offsets: (B + 1,) int64 into strokes.
    """

    points: np.ndarray
    stroke_offsets: np.ndarray
    drawing_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.drawing_offsets) - 1


def pack(drawings: Sequence[Drawing], dtype: Any = np.float32) -> PackedDrawings:
    """Concatenate drawings into a `PackedDrawings`: one concatenation for the whole batch, no
    Python loop per point (untimed strokes get t = NaN). `dtype`: of the points (float32 for the
    renderer; float64 keeps a store's coordinates exactly, for the training path)."""
    strokes = [s for d in drawings for s in d.strokes]
    drawing_offsets = np.zeros(len(drawings) + 1, np.int64)
    np.cumsum(np.fromiter((len(d.strokes) for d in drawings), np.int64, len(drawings)), out=drawing_offsets[1:])
    stroke_offsets = np.zeros(len(strokes) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, strokes), np.int64, len(strokes)), out=stroke_offsets[1:])
    points = np.empty((int(stroke_offsets[-1]), 3), dtype)
    if not strokes:
        return PackedDrawings(points, stroke_offsets, drawing_offsets)
    widths = {s.shape[1] for s in strokes}
    if widths == {3}:
        np.concatenate(strokes, out=points, casting="same_kind")
    elif widths == {2}:
        np.concatenate(strokes, out=points[:, :2], casting="same_kind")
        points[:, 2] = np.nan
    else:  # a mix of timed and untimed drawings
        np.concatenate([s[:, :2] for s in strokes], out=points[:, :2], casting="same_kind")
        points[:, 2] = np.nan
        for k, s in enumerate(strokes):
            if s.shape[1] >= 3:
                points[stroke_offsets[k] : stroke_offsets[k + 1], 2] = s[:, 2]
    return PackedDrawings(points, stroke_offsets, drawing_offsets)
