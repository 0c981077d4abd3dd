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

Work limits. Resampling makes one point per scaled pixel of arc length, so a stroke that zigzags
across the whole frame makes millions of points from a few thousand, and RDP is quadratic in the
worst case (a zigzag of 5 million resampled points takes about a minute). A server bounds both with
`max_points` (points resampling may produce; `resampled_size` computes the figure in O(n) before
any work) and `max_work` (points RDP may measure, all strokes together); over either the pipeline
raises `SimplifyLimitError` instead of working on. Both default to no limit, so library callers get
Google's pipeline unchanged; the limits never change the output of a drawing they let through.
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
    "SimplifyLimitError",
    "align_and_scale",
    "rdp",
    "rdp_mask",
    "resample",
    "resampled_size",
    "round_points",
    "simplify",
    "simplify_flat",
    "simplify_strokes",
]


NO_LIMIT = -1
"""The kernels' value for "no limit" on points or work."""
_OK, _TOO_MANY_POINTS, _TOO_MUCH_WORK = 0, 1, 2
"""Status codes of `_simplify_flat_kernel`."""


class SimplifyLimitError(ValueError):
    """A drawing whose simplification would exceed `max_points` or `max_work`."""


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
    return _rdp_mask_limited(pts, epsilon, NO_LIMIT)[0]


@njit(cache=True, nogil=True)
def _rdp_mask_limited(pts: np.ndarray, epsilon: float, max_work: int) -> tuple[np.ndarray, int]:
    """`_rdp_mask` and the work it took (points measured against a chord), giving up before the
    scan that would take the work over `max_work` (NO_LIMIT: never); work > max_work says it gave up."""
    n = pts.shape[0]
    keep = np.zeros(n, np.bool_)
    if n == 0:
        return keep, 0
    keep[0] = True
    keep[n - 1] = True
    if n < 3:
        return keep, 0
    stack = np.empty((n, 2), np.int64)
    stack[0, 0] = 0
    stack[0, 1] = n - 1
    top = 1
    work = 0
    while top > 0:
        top -= 1
        a = stack[top, 0]
        b = stack[top, 1]
        if b - a < 2:
            continue
        work += b - a - 1
        if max_work != NO_LIMIT and work > max_work:
            return keep, work  # the scan is not done: a count over the limit, not the total
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
    return keep, work


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
def _resampled_count(scaled: np.ndarray, offsets: np.ndarray, spacing: float) -> tuple[int, int]:
    """(points resampling makes of every stroke together, rows of the longest stroke's buffer)."""
    total = 0
    longest = 0
    for s in range(len(offsets) - 1):
        a = offsets[s]
        b = offsets[s + 1]
        if b > a:
            rows = _n_samples(_stroke_length(scaled[a:b, 0], scaled[a:b, 1]), spacing) + 1
            longest = max(longest, rows + 1)
            total += rows
    return total, longest


@njit(cache=True, nogil=True)
def _resampled_size_kernel(points: np.ndarray, offsets: np.ndarray, size: float, spacing: float) -> int:
    return _resampled_count(_align_scale_kernel(points, size), offsets, spacing)[0]


@njit(cache=True, nogil=True)
def _simplify_flat_kernel(
    points: np.ndarray, offsets: np.ndarray, size: float, spacing: float, epsilon: float,
    max_points: int, max_work: int,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(points, offsets, status, figure): status _OK, or _TOO_MANY_POINTS with the points resampling
    would make (nothing resampled), or _TOO_MUCH_WORK with the RDP work when it gave up."""
    scaled = _align_scale_kernel(points, size)
    n_strokes = len(offsets) - 1
    out_offsets = np.zeros(n_strokes + 1, np.int64)
    # one buffer for the longest resampled stroke; the output is at most the sum of them all
    total, longest = _resampled_count(scaled, offsets, spacing)
    if max_points != NO_LIMIT and total > max_points:
        return np.empty((0, 2)), out_offsets, _TOO_MANY_POINTS, total
    buffer = np.empty((longest, 2))
    out = np.empty((total, 2))
    k = 0
    work = 0
    for s in range(n_strokes):
        a = offsets[s]
        b = offsets[s + 1]
        end = _resample_into(scaled[a:b, 0], scaled[a:b, 1], spacing, buffer, 0)
        left = NO_LIMIT if max_work == NO_LIMIT else max_work - work
        keep, done = _rdp_mask_limited(buffer[:end], epsilon, left)
        work += done
        if max_work != NO_LIMIT and work > max_work:
            return np.empty((0, 2)), out_offsets, _TOO_MUCH_WORK, work
        for i in range(end):
            if keep[i]:
                out[k, 0] = np.rint(buffer[i, 0])
                out[k, 1] = np.rint(buffer[i, 1])
                k += 1
        out_offsets[s + 1] = k
    out = out[:k].copy()
    return out, out_offsets, _OK, work


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


def _flat(strokes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Strokes as one (N, 2) float array and offsets (`Drawing.to_flat` layout, x and y only)."""
    xy = [_xy(s) for s in strokes]
    lengths = np.fromiter((len(s) for s in xy), np.int64, len(xy))
    offsets = np.zeros(len(xy) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.concatenate(xy), offsets


def _limit(value: int | None, name: str) -> int:
    """A limit for the kernels: None is NO_LIMIT; a negative one is a mistake."""
    if value is None:
        return NO_LIMIT
    if value < 0:
        raise ValueError(f"{name} must be >= 0 or None, got {value}")
    return int(value)


def _run_kernel(points: np.ndarray, offsets: np.ndarray, size: float, spacing: float, epsilon: float,
                max_points: int | None, max_work: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The fused kernel, its give-up statuses raised as SimplifyLimitError naming the figures."""
    out, out_offsets, status, figure = _simplify_flat_kernel(
        points, offsets, float(size), float(spacing), float(epsilon),
        _limit(max_points, "max_points"), _limit(max_work, "max_work"))
    if status == _TOO_MANY_POINTS:
        raise SimplifyLimitError(f"the drawing would resample to {figure:,} points, the limit is {max_points:,}")
    if status == _TOO_MUCH_WORK:
        raise SimplifyLimitError(f"the drawing is too complex to simplify: RDP needs more than {max_work:,} "
                                 f"point-to-chord distances (the limit)")
    return out, out_offsets


def resampled_size(strokes: Sequence[np.ndarray], *, size: float = SIZE, spacing: float = SPACING) -> int:
    """How many points resampling (step 3) makes of the aligned and scaled drawing, all strokes
    together, computed in O(n) without resampling: what `max_points` is compared with."""
    if spacing <= 0:
        raise ValueError(f"spacing must be positive, got {spacing}")
    if len(strokes) == 0:
        return 0
    points, offsets = _flat(strokes)
    return int(_resampled_size_kernel(points, offsets, float(size), float(spacing)))


def simplify_flat(
    points: np.ndarray,
    offsets: np.ndarray,
    *,
    size: float = SIZE,
    spacing: float = SPACING,
    epsilon: float = EPSILON,
    max_points: int | None = None,
    max_work: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The pipeline on a flat drawing (`Drawing.to_flat` layout): (points (M, 2), offsets).

    `max_points`, `max_work`: see the module docstring (None: no limit; SimplifyLimitError beyond).
    """
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float64)[:, :2])
    offs = np.ascontiguousarray(offsets, dtype=np.int64)
    if len(offs) == 0 or offs[0] != 0 or offs[-1] != len(pts) or np.any(np.diff(offs) < 0):
        raise ValueError("offsets must rise from 0 to the number of points")
    return _run_kernel(pts, offs, size, spacing, epsilon, max_points, max_work)


def simplify_strokes(
    strokes: Sequence[np.ndarray],
    *,
    size: float = SIZE,
    spacing: float = SPACING,
    epsilon: float = EPSILON,
    max_points: int | None = None,
    max_work: int | None = None,
) -> list[np.ndarray]:
    """Raw strokes -> Google-simplified strokes: float64 (n, 2) arrays of whole numbers 0..size.

    Equal to ``[round_points(rdp(resample(s))) for s in align_and_scale(strokes)]`` (the steps
    above), run as one compiled kernel. Every input stroke gives one output stroke (at least two
    points, empty only for an empty input stroke). `max_points`, `max_work`: see the module
    docstring (None: no limit; SimplifyLimitError beyond).
    """
    if len(strokes) == 0:
        return []
    points, offsets = _flat(strokes)
    out, out_offsets = _run_kernel(points, offsets, size, spacing, epsilon, max_points, max_work)
    return [out[out_offsets[i] : out_offsets[i + 1]] for i in range(len(strokes))]


def simplify(drawing: Drawing, *, max_points: int | None = None, max_work: int | None = None) -> Drawing:
    """A copy of a raw drawing simplified as Google's simplified files are (metadata unchanged);
    `max_points`, `max_work`: see the module docstring (None, the default: no limit)."""
    return drawing.replace(strokes=simplify_strokes(drawing.strokes, max_points=max_points, max_work=max_work))
