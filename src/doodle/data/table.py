"""Drawings <-> Arrow tables: the store's schema, in one place.

Strokes are stored flat so that any Arrow tool (DuckDB, Polars, Spark) can read them and a loader
can hand them to the batch renderer without a Python loop per point:

* `stroke_len`: points per stroke (list<int32>);
* `x`, `y`: all points of the drawing, stroke after stroke (list<float64>: a store gives back
  exactly the coordinates it was given, whatever their digits; written with Parquet's
  BYTE_STREAM_SPLIT encoding, float64 compresses smaller than float32 did without it);
* `t`: milliseconds since the first point, null when the source had no timing (list<float64>).

Stores written before float64 hold list<float32> coordinates; `table_to_drawings` reads both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from doodle.data.drawing import Drawing, PackedDrawings
from doodle.errors import DoodleError

SCHEMA = pa.schema(
    [
        pa.field("key_id", pa.uint64(), nullable=False),
        pa.field("word", pa.string()),
        pa.field("label", pa.int32(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("countrycode", pa.string()),
        pa.field("recognized", pa.bool_()),
        pa.field("timestamp", pa.timestamp("us", tz="UTC")),
        pa.field("n_strokes", pa.int32(), nullable=False),
        pa.field("n_points", pa.int32(), nullable=False),
        pa.field("stroke_len", pa.list_(pa.int32())),
        pa.field("x", pa.list_(pa.float64())),
        pa.field("y", pa.list_(pa.float64())),
        pa.field("t", pa.list_(pa.float64())),
        pa.field("bitmap", pa.binary()),
        pa.field("source", pa.string()),
    ]
)
"""One row per drawing. `label` is -1 and `split` is "test" for drawings without a word."""

SIMPLIFIED_FIELDS = [
    pa.field("simple_stroke_len", pa.list_(pa.int32())),
    pa.field("simple_x", pa.list_(pa.uint8())),
    pa.field("simple_y", pa.list_(pa.uint8())),
]
"""Optional columns (`doodle prepare --simplify`): every drawing's strokes in Google's simplified
form, `doodle.simplify` of raw drawings and the strokes themselves of drawings already simplified
(whole numbers 0..255, hence uint8); null only where the drawing has no strokes. A loader with
`input.simplify` reads these instead of x, y, t and simplifies nothing."""
SIMPLIFIED_COLUMNS = [f.name for f in SIMPLIFIED_FIELDS]
SCHEMA_SIMPLIFIED = pa.schema([*SCHEMA, *SIMPLIFIED_FIELDS])
"""The schema of a store prepared with `simplify`."""
_SIMPLIFY_ROWS = 16384  # rows simplified at a time (bounds the packed copy of a bucket)

POINT_COLUMNS = ("x", "y", "t")
"""The float columns of points (Parquet leaf paths `x.list.element` etc. for column options)."""

# Columns produced before labels and splits exist (the map stage of `prepare`).
RAW_COLUMNS = [f.name for f in SCHEMA if f.name not in ("label", "split")]


def _list_array(offsets: np.ndarray, values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    mask = None if valid is None or valid.all() else pa.array(~valid)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values), mask=mask)


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def drawings_to_table(drawings: Iterable[Drawing], source: str | Sequence[str] | None = None) -> pa.Table:
    """The store columns (all but label and split) for a batch of drawings.

    `source` names the file of every drawing (one string for all, or one per drawing).
    """
    drawings = list(drawings)
    n = len(drawings)
    sources = [source] * n if source is None or isinstance(source, str) else list(source)
    points = _batch_points(drawings)
    if points is None:
        points = _points_per_drawing(drawings)
    stroke_counts, point_counts, stroke_len, xs, ys, ts, has_time = points
    point_offsets = np.zeros(n + 1, np.int64)
    np.cumsum(point_counts, out=point_offsets[1:])
    stroke_offsets = np.zeros(n + 1, np.int64)
    np.cumsum(stroke_counts, out=stroke_offsets[1:])
    bitmaps = [None if d.bitmap is None else np.asarray(d.bitmap, np.uint8).tobytes() for d in drawings]
    columns = {
        "key_id": pa.array([d.key_id for d in drawings], pa.uint64()),
        "word": pa.array([d.word for d in drawings], pa.string()),
        "countrycode": pa.array([d.countrycode for d in drawings], pa.string()),
        "recognized": pa.array([d.recognized for d in drawings], pa.bool_()),
        "timestamp": pa.array([d.timestamp for d in drawings], pa.timestamp("us", tz="UTC")),
        "n_strokes": pa.array(stroke_counts.astype(np.int32)),
        "n_points": pa.array(point_counts.astype(np.int32)),
        "stroke_len": _list_array(stroke_offsets, stroke_len),
        "x": _list_array(point_offsets, xs),
        "y": _list_array(point_offsets, ys),
        "t": _list_array(point_offsets, ts, has_time),
        "bitmap": pa.array(bitmaps, pa.binary()),
        "source": pa.array(sources, pa.string()),
    }
    return pa.table(columns)


_Points = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Per drawing: stroke counts, point counts; per stroke: int32 lengths; per point: float64 x, y, t
(0 where untimed); per drawing: whether timed."""


def _batch_points(drawings: list[Drawing]) -> _Points | None:
    """The point columns of the whole batch from one concatenation of all its strokes, with no
    numpy call per drawing; None where the strokes are not all (n, 2) or all (n, 3) real numbers
    (a batch of raw and simplified drawings): then `_points_per_drawing`, which copes with any."""
    per_drawing = [d.strokes for d in drawings]
    strokes = [s for group in per_drawing for s in group]
    if not strokes:
        return None
    try:
        flat = np.concatenate(strokes)  # raises on strokes of different widths or dimensions
    except (ValueError, TypeError):  # the general way then raises its own error, if any
        return None
    if flat.ndim != 2 or flat.shape[1] not in (2, 3) or flat.dtype.kind not in "fiu":
        return None
    width = flat.shape[1]
    # one copy into a (width, N) block: x, y (and t) each contiguous, as the Arrow columns take them
    columns = np.ascontiguousarray(flat.T, dtype=np.float64)
    stroke_counts = np.fromiter(map(len, per_drawing), np.int64, len(per_drawing))
    stroke_len = np.fromiter(map(len, strokes), np.int64, len(strokes))
    ends = np.zeros(len(strokes) + 1, np.int64)
    np.cumsum(stroke_len, out=ends[1:])
    stroke_offsets = np.zeros(len(drawings) + 1, np.int64)
    np.cumsum(stroke_counts, out=stroke_offsets[1:])
    point_counts = np.diff(ends[stroke_offsets])
    # every drawing with strokes has this width; one without (a bitmap) has no timing
    has_time = stroke_counts > 0 if width == 3 else np.zeros(len(drawings), bool)
    ts = columns[2] if width == 3 else np.zeros(len(flat), np.float64)
    return stroke_counts, point_counts, stroke_len.astype(np.int32), columns[0], columns[1], ts, has_time


def _points_per_drawing(drawings: list[Drawing]) -> _Points:
    n = len(drawings)
    stroke_counts = np.zeros(n, np.int64)
    point_counts = np.zeros(n, np.int64)
    flats, lens = [], []
    has_time = np.zeros(n, bool)
    for i, d in enumerate(drawings):
        pts, offsets = d.to_flat(np.float64)
        flats.append(pts)
        lens.append(np.diff(offsets))
        stroke_counts[i] = len(offsets) - 1
        point_counts[i] = len(pts)
        has_time[i] = pts.shape[1] == 3
    xs = _concat([p[:, 0] for p in flats], np.float64)
    ys = _concat([p[:, 1] for p in flats], np.float64)
    ts = _concat([p[:, 2] if p.shape[1] == 3 else np.zeros(len(p), np.float64) for p in flats], np.float64)
    stroke_len = _concat(lens, np.int32).astype(np.int32)
    return stroke_counts, point_counts, stroke_len, xs, ys, ts, has_time


def table_to_drawings(table: pa.Table | pa.RecordBatch) -> list[Drawing]:
    """Drawings from store rows (any subset of columns that includes key_id and the strokes)."""
    n = table.num_rows
    names = set(table.schema.names)
    key_ids = table.column("key_id").to_pylist()

    def col(name: str, default: object = None) -> list:
        return table.column(name).to_pylist() if name in names else [default] * n

    words, countries, recognized = col("word"), col("countrycode", ""), col("recognized")
    stamps, bitmaps = col("timestamp"), col("bitmap")
    out = []
    if "x" in names:
        x_col, y_col, t_col = table.column("x"), table.column("y"), table.column("t")
        len_col = table.column("stroke_len")
        x_off, t_off = _offsets(x_col), _offsets(t_col)  # null t lists may hold no values at all
        xv, yv = _values(x_col), _values(y_col)
        tv, t_valid = _values(t_col), np.asarray(_combine(t_col).is_valid())
        s_off, sv = _offsets(len_col), _values(len_col)
    for i in range(n):
        strokes: list[np.ndarray] = []
        if "x" in names and x_off[i + 1] > x_off[i]:
            lo, hi = x_off[i], x_off[i + 1]
            cols = [xv[lo:hi], yv[lo:hi]] + ([tv[t_off[i] : t_off[i + 1]]] if t_valid[i] else [])
            pts = np.stack(cols, axis=1).astype(np.float64, copy=False)  # float32 in older stores
            ends = np.cumsum(sv[s_off[i] : s_off[i + 1]])
            strokes = np.split(pts, ends[:-1])
        bitmap = None
        if bitmaps[i] is not None:
            bitmap = np.frombuffer(bitmaps[i], np.uint8).reshape(28, 28)
        stamp = stamps[i]
        if isinstance(stamp, datetime) and stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        out.append(
            Drawing(
                key_id=key_ids[i],
                strokes=strokes,
                word=words[i],
                countrycode=countries[i] or "",
                recognized=recognized[i],
                timestamp=stamp,
                bitmap=bitmap,
            )
        )
    return out


def table_to_packed(table: pa.Table | pa.RecordBatch, simplified: bool = False) -> PackedDrawings:
    """The strokes of store rows as one float64 `PackedDrawings` (t NaN where untimed), straight
    from the Arrow list columns: no object or Python loop per drawing. `simplified`: from the
    `SIMPLIFIED_COLUMNS` (no timing) instead of x, y, t."""
    names = ["simple_stroke_len", "simple_x", "simple_y"] if simplified else ["stroke_len", "x", "y", "t"]
    missing = [n for n in names if n not in table.schema.names]
    if missing:
        raise DoodleError(f"the rows have no column {missing[0]!r} (columns: {', '.join(table.schema.names)})")
    columns = [table.column(n) for n in names]
    x_off = _offsets(columns[1])
    lo, hi = int(x_off[0]), int(x_off[-1])
    points = np.empty((hi - lo, 3), np.float64)
    points[:, 0] = _values(columns[1])[lo:hi]
    points[:, 1] = _values(columns[2])[lo:hi]
    points[:, 2] = np.nan
    if not simplified:
        t_col = columns[3]
        _fill_t(points, x_off, _offsets(t_col), _values(t_col), np.asarray(_combine(t_col).is_valid()))
    s_off = _offsets(columns[0])
    stroke_len = _values(columns[0])[s_off[0]:s_off[-1]]
    stroke_offsets = np.zeros(len(stroke_len) + 1, np.int64)
    np.cumsum(stroke_len, out=stroke_offsets[1:])
    drawing_offsets = (s_off - s_off[0]).astype(np.int64)
    if not np.array_equal(stroke_offsets[drawing_offsets], x_off - lo):
        bad = int(np.flatnonzero(stroke_offsets[drawing_offsets] != x_off - lo)[0]) - 1
        raise DoodleError(f"row {max(bad, 0)}: stroke lengths do not add up to its points")
    return PackedDrawings(points, stroke_offsets, drawing_offsets)


def with_simplified(table: pa.Table) -> pa.Table:
    """`table` with the `SIMPLIFIED_COLUMNS` appended: each drawing's strokes as the loader with
    `input.simplify` would make them (`doodle.packed.simplify_packed`), null without strokes."""
    from doodle.packed import simplify_packed

    parts: list[list[pa.Array]] = [[], [], []]
    for lo in range(0, table.num_rows, _SIMPLIFY_ROWS):
        simple = simplify_packed(table_to_packed(table.slice(lo, _SIMPLIFY_ROWS)))
        xy = simple.points[:, :2]
        if len(xy) and not (np.all((xy >= 0) & (xy <= 255)) and np.array_equal(xy, np.floor(xy))):
            raise DoodleError("simplified strokes must be whole numbers in 0..255")  # cannot happen: say so
        valid = np.diff(simple.drawing_offsets) > 0
        point_offsets = simple.stroke_offsets[simple.drawing_offsets]
        lengths = np.diff(simple.stroke_offsets).astype(np.int32)
        parts[0].append(_list_array(simple.drawing_offsets, lengths, valid))
        parts[1].append(_list_array(point_offsets, xy[:, 0].astype(np.uint8), valid))
        parts[2].append(_list_array(point_offsets, xy[:, 1].astype(np.uint8), valid))
    for field, chunks in zip(SIMPLIFIED_FIELDS, parts, strict=True):
        table = table.append_column(field, pa.chunked_array(chunks, field.type))
    return table


def _fill_t(points: np.ndarray, x_off: np.ndarray, t_off: np.ndarray, tv: np.ndarray, valid: np.ndarray) -> None:
    """Timing into points[:, 2], for the rows whose t list is valid and as long as their points."""
    n_x, n_t = np.diff(x_off), np.diff(t_off)
    rows = np.flatnonzero(valid & (n_t == n_x) & (n_x > 0))
    if len(rows) == len(valid) and len(rows) and t_off[-1] - t_off[0] == len(points):
        points[:, 2] = tv[t_off[0]:t_off[-1]]  # every row timed: one copy
        return
    counts = n_x[rows]
    dst = np.repeat(x_off[rows] - x_off[0], counts) + _ramp(counts)
    src = np.repeat(t_off[rows], counts) + _ramp(counts)
    points[dst, 2] = tv[src]


def _ramp(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for each count c, concatenated."""
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(int(counts.sum()), dtype=np.int64) - starts


def _combine(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _offsets(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    arr = _combine(column)
    return np.asarray(arr.offsets)


def _values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    arr = _combine(column)
    # .values ignores a slice's offset, which is what the absolute offsets above index into.
    return np.asarray(arr.values)
