"""The preprocessing path's per-drawing steps, on a whole `PackedDrawings` batch at once.

The training loader makes batches at tens of thousands of drawings per second per core, which a
Python object or loop per drawing would not allow. Each function here is the batch form of a
readable per-drawing reference in `doodle.preprocess` (tests/test_packed.py checks that they agree
on real drawings):

* `simplified_mask` <- `is_simplified`;
* `simplify_packed` <- `simplify(d) if needs_simplification(d) else d`;
* `sequence_features_packed` <- `sequence_features`;
* `time_features_packed` <- `time_features`.

Points are float64 (N, 3) x, y, t with t NaN where a drawing has no timing.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from doodle.data.drawing import PackedDrawings
from doodle.data.simplify import EPSILON, NO_LIMIT, SIZE, SPACING, _simplify_flat_kernel

__all__ = ["concat_packed", "simplified_mask", "simplify_packed", "sequence_features_packed", "take_packed",
           "time_features_packed"]


@njit(cache=True, nogil=True)
def _take(points, stroke_offsets, drawing_offsets, rows):  # pragma: no cover - compiled
    d_off = np.zeros(len(rows) + 1, np.int64)
    n_pts = 0
    for k in range(len(rows)):
        d = rows[k]
        d_off[k + 1] = d_off[k] + drawing_offsets[d + 1] - drawing_offsets[d]
        n_pts += stroke_offsets[drawing_offsets[d + 1]] - stroke_offsets[drawing_offsets[d]]
    s_off = np.zeros(d_off[-1] + 1, np.int64)
    out = np.empty((n_pts, 3), points.dtype)
    s = p = 0
    for k in range(len(rows)):
        d = rows[k]
        for j in range(drawing_offsets[d], drawing_offsets[d + 1]):
            lo, hi = stroke_offsets[j], stroke_offsets[j + 1]
            out[p:p + hi - lo] = points[lo:hi]
            p += hi - lo
            s += 1
            s_off[s] = p
    return out, s_off, d_off


def take_packed(packed: PackedDrawings, rows: np.ndarray) -> PackedDrawings:
    """The drawings `rows` (indices, in that order) of a packed batch, as a new packed batch."""
    points, s_off, d_off = _take(np.ascontiguousarray(packed.points), np.ascontiguousarray(packed.stroke_offsets),
                                 np.ascontiguousarray(packed.drawing_offsets), np.asarray(rows, np.int64))
    return PackedDrawings(points, s_off, d_off)


def concat_packed(parts: list[PackedDrawings]) -> PackedDrawings:
    """Packed batches one after the other, as one (float64 points)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return PackedDrawings(np.zeros((0, 3)), np.zeros(1, np.int64), np.zeros(1, np.int64))
    points = np.concatenate([p.points for p in parts]).astype(np.float64, copy=False)
    point_base = np.cumsum([0] + [len(p.points) for p in parts[:-1]])
    stroke_base = np.cumsum([0] + [len(p.stroke_offsets) - 1 for p in parts[:-1]])
    s_off = np.concatenate([[0]] + [p.stroke_offsets[1:] + b for p, b in zip(parts, point_base, strict=True)])
    d_off = np.concatenate([[0]] + [p.drawing_offsets[1:] + b for p, b in zip(parts, stroke_base, strict=True)])
    return PackedDrawings(points, s_off.astype(np.int64), d_off.astype(np.int64))


@njit(cache=True, nogil=True)
def _simplified_mask(points, point_offsets, side, touch, other, reach):  # pragma: no cover - compiled
    out = np.empty(len(point_offsets) - 1, np.bool_)
    for d in range(len(out)):
        lo, hi = point_offsets[d], point_offsets[d + 1]
        if hi == lo:
            out[d] = True  # nothing to simplify
            continue
        if not np.isnan(points[lo, 2]):
            out[d] = False  # timed drawings are raw
            continue
        x0 = y0 = np.inf
        top = -np.inf
        whole = True
        for i in range(lo, hi):
            x, y = points[i, 0], points[i, 1]
            x0, y0, top = min(x0, x), min(y0, y), max(top, max(x, y))
            whole &= x == math.floor(x) and y == math.floor(y)
        out[d] = 0.0 <= min(x0, y0) <= touch and max(x0, y0) <= other and reach <= top <= side and whole
    return out


def simplified_mask(packed: PackedDrawings) -> np.ndarray:
    """bool [B]: `doodle.preprocess.is_simplified` of each drawing."""
    from doodle.preprocess import SIMPLIFIED_EDGES, SIMPLIFIED_SIDE

    points = np.ascontiguousarray(packed.points, dtype=np.float64)
    point_offsets = np.ascontiguousarray(packed.stroke_offsets[packed.drawing_offsets], dtype=np.int64)
    return _simplified_mask(points, point_offsets, SIMPLIFIED_SIDE, *SIMPLIFIED_EDGES)


def simplify_packed(packed: PackedDrawings, done: np.ndarray | None = None) -> PackedDrawings:
    """Every drawing not already in simplified form (`simplified_mask`), and not marked in `done`
    (bool [B]: simplified when the store was prepared), simplified as `doodle.simplify` does
    (timing dropped); the others as they are. A batch needing nothing is returned as it is."""
    need = ~simplified_mask(packed)
    if done is not None:
        need &= ~np.asarray(done, bool)
    if not need.any():
        return packed
    pts, s_off, d_off = packed.points, packed.stroke_offsets, packed.drawing_offsets
    lengths = np.diff(s_off)  # simplification keeps every stroke: only stroke lengths change
    simplified = []
    for d in np.flatnonzero(need):
        lo, hi = s_off[d_off[d]], s_off[d_off[d + 1]]
        xy, offsets, _, _ = _simplify_flat_kernel(np.ascontiguousarray(pts[lo:hi, :2], dtype=np.float64),
                                                  s_off[d_off[d]:d_off[d + 1] + 1] - lo, SIZE, SPACING, EPSILON,
                                                  NO_LIMIT, NO_LIMIT)
        simplified.append(xy)
        lengths[d_off[d]:d_off[d + 1]] = np.diff(offsets)
    stroke_offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=stroke_offsets[1:])
    points = _splice(pts, s_off[d_off], stroke_offsets[d_off], need, np.concatenate(simplified))
    return PackedDrawings(points, stroke_offsets, d_off.copy())


@njit(cache=True, nogil=True)
def _splice(points, old_offsets, new_offsets, need, simplified):  # pragma: no cover - compiled
    """Points of every drawing: the simplified x, y (in order, t NaN) where `need`, else the old."""
    out = np.empty((new_offsets[-1], 3), np.float64)
    k = 0
    for d in range(len(need)):
        lo = new_offsets[d]
        if need[d]:
            for i in range(new_offsets[d + 1] - lo):
                out[lo + i, 0], out[lo + i, 1], out[lo + i, 2] = simplified[k, 0], simplified[k, 1], np.nan
                k += 1
        else:
            out[lo:new_offsets[d + 1]] = points[old_offsets[d]:old_offsets[d + 1]]
    return out


@njit(cache=True, nogil=True)
def _sequence_features(points, stroke_offsets, drawing_offsets, out, lengths):  # pragma: no cover - compiled
    max_points = out.shape[1]
    for d in range(len(drawing_offsets) - 1):
        lo, hi = stroke_offsets[drawing_offsets[d]], stroke_offsets[drawing_offsets[d + 1]]
        n = hi - lo
        if n == 0:
            continue
        pen = np.zeros(n, np.float64)
        for s in range(drawing_offsets[d], drawing_offsets[d + 1]):
            pen[stroke_offsets[s + 1] - 1 - lo] = 1.0
        x0, y0 = points[lo, 0], points[lo, 1]
        for i in range(lo, hi):
            x0, y0 = min(x0, points[i, 0]), min(y0, points[i, 1])
        extent = 0.0
        for i in range(lo, hi):
            extent = max(extent, points[i, 0] - x0, points[i, 1] - y0)
        timed = not np.isnan(points[lo, 2])
        keep = np.arange(n)
        if n > max_points:  # np.linspace(0, n - 1, max_points).round(), as the reference
            keep = np.empty(max_points, np.int64)
            step = (n - 1) / (max_points - 1) if max_points > 1 else 0.0
            for k in range(max_points):
                keep[k] = int(np.rint(k * step))
            keep[max_points - 1] = n - 1 if max_points > 1 else 0
        m = len(keep)
        px = py = pt = 0.0
        for k in range(m):
            j = keep[k]
            x, y = points[lo + j, 0] - x0, points[lo + j, 1] - y0
            if extent > 0:
                x, y = x / extent, y / extent
            t = points[lo + j, 2] / 1000.0 if timed else 0.0
            end = keep[k + 1] if k + 1 < m else n
            lift = 0.0
            for i in range(j, end if n > max_points else j + 1):
                lift = max(lift, pen[i])
            out[d, k, 0], out[d, k, 1], out[d, k, 5] = x, y, lift
            if k > 0:
                out[d, k, 2], out[d, k, 3] = x - px, y - py
                out[d, k, 4] = min(max(t - pt, 0.0), 5.0)
            px, py, pt = x, y, t
        lengths[d] = m


def sequence_features_packed(packed: PackedDrawings, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """`doodle.preprocess.sequence_features` of a packed batch: float32 [B, max_points, 6] and
    int64 [B] lengths."""
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    from doodle.preprocess import POINT_FEATURES

    out = np.zeros((len(packed), max_points, len(POINT_FEATURES)), np.float32)
    lengths = np.zeros(len(packed), np.int64)
    _sequence_features(np.ascontiguousarray(packed.points, dtype=np.float64),
                       np.ascontiguousarray(packed.stroke_offsets, dtype=np.int64),
                       np.ascontiguousarray(packed.drawing_offsets, dtype=np.int64), out, lengths)
    return out, lengths


@njit(cache=True, nogil=True)
def _time_features(points, stroke_offsets, drawing_offsets, out):  # pragma: no cover - compiled
    for d in range(len(drawing_offsets) - 1):
        s0, s1 = drawing_offsets[d], drawing_offsets[d + 1]
        lo, hi = stroke_offsets[s0], stroke_offsets[s1]
        out[d, 2] = (s1 - s0) / 10.0
        out[d, 5] = math.log1p(hi - lo)
        if s1 == s0 or hi == lo or np.isnan(points[lo, 2]):
            continue
        top = -np.inf
        total = longest = 0.0
        for s in range(s0, s1):
            top = max(top, points[stroke_offsets[s + 1] - 1, 2])
            if s > s0:
                pause = max(points[stroke_offsets[s], 2] - points[stroke_offsets[s] - 1, 2], 0.0) / 1000.0
                total += pause
                longest = pause if s == s0 + 1 else max(longest, pause)
        pauses = max(s1 - s0 - 1, 1)
        out[d, 0] = 1.0
        out[d, 1] = math.log1p(max(top, 0.0) / 1000.0)
        out[d, 3] = math.log1p(total / pauses)
        out[d, 4] = math.log1p(longest)


def time_features_packed(packed: PackedDrawings) -> np.ndarray:
    """`doodle.preprocess.time_features` of every drawing of a packed batch: float32 [B, 6]."""
    from doodle.preprocess import TIME_FEATURES

    out = np.zeros((len(packed), len(TIME_FEATURES)), np.float32)
    _time_features(np.ascontiguousarray(packed.points, dtype=np.float64),
                   np.ascontiguousarray(packed.stroke_offsets, dtype=np.int64),
                   np.ascontiguousarray(packed.drawing_offsets, dtype=np.int64), out)
    return out
