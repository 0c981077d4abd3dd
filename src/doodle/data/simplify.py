"""Google's raw -> simplified Quick, Draw! pipeline, reproduced bit for bit.

Google describes the simplified dataset as: align the drawing to the top-left corner, scale it
uniformly so the larger side spans 0..255, resample every stroke with 1-pixel spacing, simplify
every stroke with Ramer-Douglas-Peucker (epsilon 2.0). The exact arithmetic is not published; the
details below were found by pairing about 8,000 real drawings present in both raw and simplified
form (same key_id) and keeping the variant that reproduces Google's output exactly
(`benchmarks/simplify_match.py`; 8,031 of 8,033 drawings identical). Float rounding decides which of
several equally distant points RDP keeps, so each detail matters:

1. align + scale: ``x' = (x - min_x) * 255 / extent`` evaluated in that order (multiply, then
   divide: ``255 / extent`` computed first matches fewer drawings), ``extent = max(width, height)``
   over all strokes; one shared factor keeps the aspect ratio. Timing is dropped.
2. resample, per stroke: segment lengths ``sqrt(dx*dx + dy*dy)``, arc length by a running sum;
   samples at arc lengths ``0, 1, 2, ... < L`` (``L`` itself excluded), each a linear blend
   ``(1 - t) * a + t * b`` of the segment it falls in (the last segment that starts at or before it,
   so zero-length segments are skipped), then the stroke's exact last point is appended. Original
   vertices are *not* kept. A one-point or zero-length stroke becomes two equal points, as in
   Google's files.
3. RDP, per stroke, on the float points: distance to the infinite line through the chord,
   ``|dx * (y - y0) - dy * (x - x0)| / sqrt(dx*dx + dy*dy)`` (distance to the start point when the
   chord has length 0, i.e. a closed stroke); the first point with the largest distance wins ties;
   split when that distance is strictly greater than epsilon.
4. round the kept points half to even (numpy's / Python 3's rounding: 229.5 -> 230, 12.5 -> 12).

Repeated points survive (Google keeps ``[[132, 132], [255, 255]]`` for a one-point stroke). A
drawing whose points are all identical has extent 0: it is only aligned (everything lands on 0),
never divided by zero.

The hot loops are numba kernels over flat point arrays; `simplify_strokes` runs the whole pipeline
in one kernel call per drawing, `simplify_flat` does the same for an already flat drawing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit

from doodle.data.drawing import Drawing

SIZE = 255.0
"""The larger side of a simplified drawing spans 0..SIZE."""
SPACING = 1.0
"""Resampling step along each stroke, in (scaled) pixels."""
EPSILON = 2.0
"""Ramer-Douglas-Peucker tolerance, in (scaled) pixels."""

__all__ = [
    "EPSILON",
    "SIZE",
    "SPACING",
    "align_and_scale",
    "rdp",
    "rdp_mask",
    "resample",
    "round_points",
    "simplify",
    "simplify_flat",
    "simplify_strokes",
]


# -- numba kernels ------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _n_samples(length: float, spacing: float) -> int:
    """len(np.arange(0, length, spacing)), at least 1 (the first point)."""
    n = int(math.ceil(length / spacing))
    return n if n > 1 else 1


@njit(cache=True, nogil=True)
def _stroke_length(xs: np.ndarray, ys: np.ndarray) -> float:
    total = 0.0
    for i in range(len(xs) - 1):
        dx = xs[i + 1] - xs[i]
        dy = ys[i + 1] - ys[i]
        total += math.sqrt(dx * dx + dy * dy)
    return total


@njit(cache=True, nogil=True)
def _resample_into(xs: np.ndarray, ys: np.ndarray, spacing: float, out: np.ndarray, start: int) -> int:
    """Write the resampled stroke (xs, ys) into out[start:]; return the index after the last row.

    Needs room for `_n_samples(length) + 1` rows.
    """
    m = len(xs)
    k = start
    if m == 0:
        return k
    if m == 1:
        out[k, 0] = xs[0]
        out[k, 1] = ys[0]
        out[k + 1, 0] = xs[0]
        out[k + 1, 1] = ys[0]
        return k + 2
    seg = np.empty(m - 1)
    cum = np.empty(m)
    cum[0] = 0.0
    for i in range(m - 1):
        dx = xs[i + 1] - xs[i]
        dy = ys[i + 1] - ys[i]
        seg[i] = math.sqrt(dx * dx + dy * dy)
        cum[i + 1] = cum[i] + seg[i]
    n = _n_samples(cum[m - 1], spacing)
    j = 0
    for i in range(n):
        s = i * spacing
        # the last segment starting at or before s (np.searchsorted(cum, s, "right") - 1)
        while j < m - 2 and cum[j + 1] <= s:
            j += 1
        t = (s - cum[j]) / seg[j] if seg[j] > 0.0 else 0.0
        out[k, 0] = (1.0 - t) * xs[j] + t * xs[j + 1]
        out[k, 1] = (1.0 - t) * ys[j] + t * ys[j + 1]
        k += 1
    out[k, 0] = xs[m - 1]
    out[k, 1] = ys[m - 1]
    return k + 1


@njit(cache=True, nogil=True)
def _rdp_mask(pts: np.ndarray, epsilon: float) -> np.ndarray:
    """Which rows of pts (n, 2) Ramer-Douglas-Peucker keeps (first of equal maxima, strict > eps)."""
    n = pts.shape[0]
    keep = np.zeros(n, np.bool_)
    if n == 0:
        return keep
    keep[0] = True
    keep[n - 1] = True
    if n < 3:
        return keep
    stack = np.empty((n, 2), np.int64)
    stack[0, 0] = 0
    stack[0, 1] = n - 1
    top = 1
    while top > 0:
        top -= 1
        a = stack[top, 0]
        b = stack[top, 1]
        if b - a < 2:
            continue
        x0 = pts[a, 0]
        y0 = pts[a, 1]
        dx = pts[b, 0] - x0
        dy = pts[b, 1] - y0
        norm = math.sqrt(dx * dx + dy * dy)
        best = -1.0
        index = a
        if norm == 0.0:
            for i in range(a + 1, b):
                ex = pts[i, 0] - x0
                ey = pts[i, 1] - y0
                d = math.sqrt(ex * ex + ey * ey)
                if d > best:
                    best = d
                    index = i
        else:
            for i in range(a + 1, b):
                d = abs(dx * (pts[i, 1] - y0) - dy * (pts[i, 0] - x0)) / norm
                if d > best:
                    best = d
                    index = i
        if best > epsilon:
            keep[index] = True
            stack[top, 0] = a
            stack[top, 1] = index
            stack[top + 1, 0] = index
            stack[top + 1, 1] = b
            top += 2
    return keep


@njit(cache=True, nogil=True)
def _align_scale_kernel(points: np.ndarray, size: float) -> np.ndarray:
    """x, y columns of points aligned to 0 and scaled so the larger side spans 0..size."""
    n = points.shape[0]
    out = np.empty((n, 2))
    if n == 0:
        return out
    min_x = points[0, 0]
    max_x = min_x
    min_y = points[0, 1]
    max_y = min_y
    for i in range(1, n):
        x = points[i, 0]
        y = points[i, 1]
        min_x = min(min_x, x)
        max_x = max(max_x, x)
        min_y = min(min_y, y)
        max_y = max(max_y, y)
    extent = max(max_x - min_x, max_y - min_y)
    if extent > 0.0:
        for i in range(n):
            out[i, 0] = (points[i, 0] - min_x) * size / extent
            out[i, 1] = (points[i, 1] - min_y) * size / extent
    else:
        for i in range(n):
            out[i, 0] = points[i, 0] - min_x
            out[i, 1] = points[i, 1] - min_y
    return out


@njit(cache=True, nogil=True)
def _simplify_flat_kernel(
    points: np.ndarray, offsets: np.ndarray, size: float, spacing: float, epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    scaled = _align_scale_kernel(points, size)
    n_strokes = len(offsets) - 1
    # one buffer for the longest resampled stroke; the output is at most the sum of them all
    longest = 0
    total = 0
    for s in range(n_strokes):
        a = offsets[s]
        b = offsets[s + 1]
        if b > a:
            room = _n_samples(_stroke_length(scaled[a:b, 0], scaled[a:b, 1]), spacing) + 2
            longest = max(longest, room)
            total += room
    buffer = np.empty((longest, 2))
    out = np.empty((total, 2))
    out_offsets = np.zeros(n_strokes + 1, np.int64)
    k = 0
    for s in range(n_strokes):
        a = offsets[s]
        b = offsets[s + 1]
        end = _resample_into(scaled[a:b, 0], scaled[a:b, 1], spacing, buffer, 0)
        keep = _rdp_mask(buffer[:end], epsilon)
        for i in range(end):
            if keep[i]:
                out[k, 0] = np.rint(buffer[i, 0])
                out[k, 1] = np.rint(buffer[i, 1])
                k += 1
        out_offsets[s + 1] = k
    out = out[:k].copy()
    return out, out_offsets


# -- the steps, each on its own ------------------------------------------------------------------


def _xy(stroke: np.ndarray) -> np.ndarray:
    arr = np.asarray(stroke, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"a stroke must have shape (n, 2) or (n, 3), got {arr.shape}")
    return np.ascontiguousarray(arr[:, :2])


def align_and_scale(strokes: Sequence[np.ndarray], size: float = SIZE) -> list[np.ndarray]:
    """Steps 1-2: move the drawing's minimum x and y to 0 and scale uniformly (larger side 0..size).

    Returns new float (n, 2) arrays (timing dropped). The factor is shared by both axes, so the
    aspect ratio is kept; a zero-width or zero-height drawing is scaled by its other side, and a
    drawing whose points are all identical (extent 0) is only moved to the origin.
    """
    xy = [_xy(s) for s in strokes]
    if not xy:
        return []
    lengths = [len(s) for s in xy]
    scaled = _align_scale_kernel(np.concatenate(xy), float(size))
    return np.split(scaled, np.cumsum(lengths)[:-1])


def resample(stroke: np.ndarray, spacing: float = SPACING) -> np.ndarray:
    """Step 3: points every `spacing` along the stroke's length, plus its exact last point.

    Samples sit at arc lengths 0, spacing, 2*spacing, ... strictly below the length L, then the last
    point is appended; original vertices are not kept. One point (or a stroke of repeated points)
    gives two equal points; an empty stroke gives an empty array.
    """
    if spacing <= 0:
        raise ValueError(f"spacing must be positive, got {spacing}")
    pts = _xy(stroke)
    if len(pts) == 0:
        return np.zeros((0, 2))
    xs = np.ascontiguousarray(pts[:, 0])
    ys = np.ascontiguousarray(pts[:, 1])
    n = _n_samples(_stroke_length(xs, ys), float(spacing)) + 2
    out = np.empty((n, 2))
    end = _resample_into(xs, ys, float(spacing), out, 0)
    return out[:end]


def rdp_mask(stroke: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    """Step 4 as a boolean mask: the points Ramer-Douglas-Peucker keeps (ends always kept)."""
    return _rdp_mask(_xy(stroke), float(epsilon))


def rdp(stroke: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    """Step 4: Ramer-Douglas-Peucker simplification of one stroke (x, y columns kept)."""
    pts = _xy(stroke)
    return pts[_rdp_mask(pts, float(epsilon))]


def round_points(stroke: np.ndarray) -> np.ndarray:
    """Step 5: round to whole numbers, half to even (229.5 -> 230, 12.5 -> 12), still float64."""
    return np.rint(np.asarray(stroke, dtype=np.float64))


# -- the whole pipeline ----------------------------------------------------------------------------


def simplify_flat(
    points: np.ndarray,
    offsets: np.ndarray,
    *,
    size: float = SIZE,
    spacing: float = SPACING,
    epsilon: float = EPSILON,
) -> tuple[np.ndarray, np.ndarray]:
    """The pipeline on a flat drawing (`Drawing.to_flat` layout): (points (M, 2), offsets)."""
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float64)[:, :2])
    offs = np.ascontiguousarray(offsets, dtype=np.int64)
    if len(offs) == 0 or offs[0] != 0 or offs[-1] != len(pts) or np.any(np.diff(offs) < 0):
        raise ValueError("offsets must rise from 0 to the number of points")
    return _simplify_flat_kernel(pts, offs, float(size), float(spacing), float(epsilon))


def simplify_strokes(
    strokes: Sequence[np.ndarray],
    *,
    size: float = SIZE,
    spacing: float = SPACING,
    epsilon: float = EPSILON,
) -> list[np.ndarray]:
    """Raw strokes -> Google-simplified strokes: float64 (n, 2) arrays of whole numbers 0..size.

    Equal to ``[round_points(rdp(resample(s))) for s in align_and_scale(strokes)]`` (the steps
    above), run as one compiled kernel. Every input stroke gives one output stroke (at least two
    points, empty only for an empty input stroke).
    """
    if len(strokes) == 0:
        return []
    xy = [_xy(s) for s in strokes]
    lengths = np.fromiter((len(s) for s in xy), np.int64, len(xy))
    offsets = np.zeros(len(xy) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out, out_offsets = _simplify_flat_kernel(np.concatenate(xy), offsets, float(size), float(spacing), float(epsilon))
    return [out[out_offsets[i] : out_offsets[i + 1]] for i in range(len(xy))]


def simplify(drawing: Drawing) -> Drawing:
    """A copy of a raw drawing simplified as Google's simplified files are (metadata unchanged)."""
    return drawing.replace(strokes=simplify_strokes(drawing.strokes))
