"""Numba kernels: placement and rasterisation of a whole batch of packed drawings in one call.

Conventions (shared with cv2): pixel (row y, column x) has its centre at coordinates (x, y);
the image spans -0.5..size-0.5. A segment covers the pixels whose centre lies within
`half_width` of it (a capsule: round caps and joints). With anti-aliasing the coverage falls
linearly from 1 to 0 over the pixel between `half_width - 0.5` and `half_width + 0.5` from
the segment; without, coverage is 1 inside the capsule and 0 outside. Everything is clipped to
the image. Kernels are compiled once (`cache=True`), run without the GIL (`nogil=True`) and
never allocate per drawing or per stroke.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def drawing_bounds(points, point_offsets):  # pragma: no cover - compiled
    """(B, 4) float64 min_x, min_y, max_x, max_y per drawing, and (B,) bool "has timing".

    An empty drawing gets a zero box and no timing.
    """
    n = len(point_offsets) - 1
    box = np.zeros((n, 4), np.float64)
    timed = np.zeros(n, np.bool_)
    for b in range(n):
        p0 = point_offsets[b]
        p1 = point_offsets[b + 1]
        if p1 <= p0:
            continue
        x0 = x1 = points[p0, 0]
        y0 = y1 = points[p0, 1]
        for i in range(p0 + 1, p1):
            x = points[i, 0]
            y = points[i, 1]
            if x < x0:
                x0 = x
            elif x > x1:
                x1 = x
            if y < y0:
                y0 = y
            elif y > y1:
                y1 = y
        box[b, 0] = x0
        box[b, 1] = y0
        box[b, 2] = x1
        box[b, 3] = y1
        timed[b] = not math.isnan(points[p0, 2])
    return box, timed


def frame_transform(points: np.ndarray, point_offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per drawing (scale, origin_x, origin_y) of Google's alignment: (x - origin) * scale puts the
    minimum at 0 and the larger side at 255 (scale 1 for a drawing that is a single point)."""
    box, _ = drawing_bounds(points, point_offsets)
    ext = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
    scale = np.where(ext > 0, 255.0 / np.where(ext > 0, ext, 1.0), 1.0)
    return scale, box[:, 0], box[:, 1]


def placement(
    points: np.ndarray,
    point_offsets: np.ndarray,
    size: int,
    margin: float,
    mode: str,
    align: bool | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per drawing (a, bx, by): pixel x = x * a + bx, pixel y = y * a + by.

    mode "fit": the bounding box, aspect kept, centred in [margin, size - 1 - margin].
    mode "frame": 0..255 mapped to [margin, size - 1 - margin]; drawings are first aligned the way
    Google simplified them (min to 0, larger side to 255) when `align` is True, or, when it is
    None, if they carry timing or have a coordinate outside 0..255 (raw screen coordinates).
    """
    box, timed = drawing_bounds(points, point_offsets)
    avail = max(float(size - 1) - 2.0 * margin, 1.0)
    w = box[:, 2] - box[:, 0]
    h = box[:, 3] - box[:, 1]
    ext = np.maximum(w, h)
    safe_ext = np.where(ext > 0, ext, 1.0)
    if mode == "fit":
        a = np.where(ext > 0, avail / safe_ext, 1.0)
        bx = margin + (avail - w * a) / 2.0 - box[:, 0] * a
        by = margin + (avail - h * a) / 2.0 - box[:, 1] * a
        return a, bx, by
    if mode != "frame":
        raise ValueError(f"placement must be 'fit' or 'frame', got {mode!r}")
    if align is None:
        outside = (box[:, 0] < 0) | (box[:, 1] < 0) | (box[:, 2] > 255) | (box[:, 3] > 255)
        do_align = timed | outside
    else:
        do_align = np.full(len(box), bool(align))
    unit = avail / 255.0
    a_al = np.where(ext > 0, avail / safe_ext, unit)
    a = np.where(do_align, a_al, unit)
    bx = np.where(do_align, margin - box[:, 0] * a_al, margin)
    by = np.where(do_align, margin - box[:, 1] * a_al, margin)
    return a, bx, by


@njit(cache=True, nogil=True, inline="always")
def _blend(out, b, c, y, x, v, cov, comp_max):  # pragma: no cover - compiled
    if cov >= np.float32(1.0) and not comp_max:
        out[b, c, y, x] = np.uint8(v + np.float32(0.5))
        return
    old = np.float32(out[b, c, y, x])
    if comp_max:
        new = v * cov
        if new > old:
            out[b, c, y, x] = np.uint8(new + np.float32(0.5))
    else:
        out[b, c, y, x] = np.uint8(old + (v - old) * cov + np.float32(0.5))


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _segment(out, b, ax, ay, bx_, by_, vals, j0, j1, c0, c1, c2, d0, d1, d2, reach, aa, comp_max):  # pragma: no cover
    """Composite the capsule ax,ay -> bx_,by_ into out[b].

    Channel c gets colour vals[j0, c] + t * (vals[j1, c] - vals[j0, c]) at segment parameter t;
    channels 0..2 arrive precomputed as scalars (c, d) so the common case stays in registers.
    """
    n_ch = out.shape[1]
    h = out.shape[2]
    w = out.shape[3]
    dx = bx_ - ax
    dy = by_ - ay
    len2 = dx * dx + dy * dy
    inv_len2 = np.float32(1.0) / len2 if len2 > 1e-12 else np.float32(0.0)
    reach2 = reach * reach
    xlo = max(int(math.ceil(min(ax, bx_) - reach)), 0)
    xhi = min(int(math.floor(max(ax, bx_) + reach)), w - 1)
    ylo = max(int(math.ceil(min(ay, by_) - reach)), 0)
    yhi = min(int(math.floor(max(ay, by_) + reach)), h - 1)
    # For a slanted segment, the pixels of row y within `reach` of the infinite line form an
    # interval around the centreline: only those are tested.
    slanted = abs(dy) > 1e-6 and len2 > 1e-12
    x_per_y = dx / dy if slanted else np.float32(0.0)
    half_span = reach * math.sqrt(len2) / abs(dy) if slanted else np.float32(0.0)
    inv_len = np.float32(math.sqrt(inv_len2))
    # Body pixels (0 <= t <= 1) are at distance |cross| / len from the segment: no square root;
    # comparisons stay squared so that pixels exactly on the edge are decided exactly.
    reach2_len2 = reach2 * len2
    for y in range(ylo, yhi + 1):
        rx0 = xlo
        rx1 = xhi
        if slanted:
            xc = ax + (y - ay) * x_per_y
            lo = int(math.ceil(xc - half_span))
            hi = int(math.floor(xc + half_span))
            if lo > rx0:
                rx0 = lo
            if hi < rx1:
                rx1 = hi
        py = np.float32(y) - ay
        for x in range(rx0, rx1 + 1):
            px = np.float32(x) - ax
            t = (px * dx + py * dy) * inv_len2
            if t >= np.float32(0.0) and t <= np.float32(1.0) and len2 > 1e-12:
                cross = px * dy - py * dx
                cr2 = cross * cross
                if cr2 > reach2_len2:
                    continue
                if aa:
                    cov = reach - abs(cross) * inv_len
                    if cov <= np.float32(0.0):
                        continue
                    if cov > np.float32(1.0):
                        cov = np.float32(1.0)
                else:
                    cov = np.float32(1.0)
            else:
                t = min(max(t, np.float32(0.0)), np.float32(1.0))
                ex = px - t * dx
                ey = py - t * dy
                dd = ex * ex + ey * ey
                if dd > reach2:
                    continue
                cov = min(reach - math.sqrt(dd), np.float32(1.0)) if aa else np.float32(1.0)
                if cov <= 0.0:
                    continue
            _blend(out, b, 0, y, x, c0 + t * d0, cov, comp_max)
            if n_ch > 1:
                _blend(out, b, 1, y, x, c1 + t * d1, cov, comp_max)
                if n_ch > 2:
                    _blend(out, b, 2, y, x, c2 + t * d2, cov, comp_max)
                    for c in range(3, n_ch):
                        v = vals[j0, c] + t * (vals[j1, c] - vals[j0, c])
                        _blend(out, b, c, y, x, v, cov, comp_max)


@njit(cache=True, nogil=True, fastmath=True)
def rasterize(
    points, stroke_offsets, drawing_offsets, a, bx, by, vals, interp, reverse, comp_max, half_w, aa, out
):  # pragma: no cover - compiled
    """Draw every stroke of every drawing into out (B, C, H, W) uint8 (each image is cleared first,
    just before it is drawn, so it is still in cache while drawn).

    points (N, >=2) float32 in input coordinates, placed per drawing by (a, bx, by); vals (N, C)
    float32 0..255 (segment colours, or per-point colours when `interp`); strokes drawn last to
    first when `reverse`; `comp_max` selects max- instead of over-compositing. A single-point
    stroke is drawn as a dot of the line's width.
    """
    reach = np.float32(half_w + 0.5 if aa else half_w)
    n_ch = out.shape[1]
    zero = np.float32(0.0)
    for b in range(len(drawing_offsets) - 1):
        s_first = drawing_offsets[b]
        n_str = drawing_offsets[b + 1] - s_first
        sa = np.float32(a[b])
        sx = np.float32(bx[b])
        sy = np.float32(by[b])
        out[b] = 0
        for k in range(n_str):
            s = s_first + (n_str - 1 - k if reverse else k)
            p0 = stroke_offsets[s]
            p1 = stroke_offsets[s + 1]
            if p1 <= p0:
                continue
            x0 = points[p0, 0] * sa + sx
            y0 = points[p0, 1] * sa + sy
            # segments j -> j + 1; a single point is the zero-length segment p0 -> p0
            for j in range(p0, max(p1 - 1, p0 + 1)):
                jn = min(j + 1, p1 - 1)
                x1 = points[jn, 0] * sa + sx
                y1 = points[jn, 1] * sa + sy
                j1 = jn if interp else j
                c0 = vals[j, 0]
                d0 = vals[j1, 0] - c0
                c1 = d1 = c2 = d2 = zero
                if n_ch > 1:
                    c1 = vals[j, 1]
                    d1 = vals[j1, 1] - c1
                    if n_ch > 2:
                        c2 = vals[j, 2]
                        d2 = vals[j1, 2] - c2
                _segment(out, b, x0, y0, x1, y1, vals, j, j1, c0, c1, c2, d0, d1, d2, reach, aa, comp_max)
                x0 = x1
                y0 = y1


@njit(cache=True, nogil=True)
def draw_dots(dot_drawing, dot_xy, dot_vals, channel_mask, a, bx, by, radius, aa, out):  # pragma: no cover
    """Max-composite filled discs (radius in output pixels) onto the masked channels of out."""
    reach = radius + 0.5 if aa else radius
    reach2 = reach * reach
    h = out.shape[2]
    w = out.shape[3]
    for i in range(len(dot_drawing)):
        b = dot_drawing[i]
        cx = dot_xy[i, 0] * a[b] + bx[b]
        cy = dot_xy[i, 1] * a[b] + by[b]
        xlo = max(int(math.ceil(cx - reach)), 0)
        xhi = min(int(math.floor(cx + reach)), w - 1)
        ylo = max(int(math.ceil(cy - reach)), 0)
        yhi = min(int(math.floor(cy + reach)), h - 1)
        for y in range(ylo, yhi + 1):
            for x in range(xlo, xhi + 1):
                d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy)
                if d2 > reach2:
                    continue
                cov = 1.0
                if aa:
                    cov = min(reach - math.sqrt(d2), 1.0)
                for c in range(out.shape[1]):
                    if not channel_mask[c]:
                        continue
                    new = dot_vals[i, c] * cov
                    if new > out[b, c, y, x]:
                        out[b, c, y, x] = np.uint8(new + 0.5)


@njit(cache=True, nogil=True)
def batch_geometry(points, stroke_offsets, drawing_offsets):  # pragma: no cover - compiled
    """One pass over a packed batch: index maps and frame geometry (see `StrokeBatch`).

    Returns stroke_drawing (S,), stroke_rank (S,), point_stroke (N,), point_rank (N,),
    xy (N, 2) float32 in Google's 0..255 frame, segment_length (N,) and inertia_distance (N,)
    (float32, frame units, stored on the segment's start point; 0 where undefined).
    """
    n_pts = points.shape[0]
    n_str = len(stroke_offsets) - 1
    stroke_drawing = np.empty(n_str, np.int64)
    stroke_rank = np.empty(n_str, np.int64)
    point_stroke = np.empty(n_pts, np.int64)
    point_rank = np.empty(n_pts, np.int64)
    xy = np.empty((n_pts, 2), np.float32)
    seg = np.zeros(n_pts, np.float32)
    acc = np.zeros(n_pts, np.float32)
    for b in range(len(drawing_offsets) - 1):
        s0 = drawing_offsets[b]
        s1 = drawing_offsets[b + 1]
        if s1 <= s0:
            continue
        p0 = stroke_offsets[s0]
        p1 = stroke_offsets[s1]
        if p1 > p0:
            x0 = x1 = points[p0, 0]
            y0 = y1 = points[p0, 1]
            for i in range(p0 + 1, p1):
                x0 = min(x0, points[i, 0])
                x1 = max(x1, points[i, 0])
                y0 = min(y0, points[i, 1])
                y1 = max(y1, points[i, 1])
            ext = max(x1 - x0, y1 - y0)
            scale = 255.0 / ext if ext > 0 else 1.0
            for i in range(p0, p1):
                xy[i, 0] = (points[i, 0] - x0) * scale
                xy[i, 1] = (points[i, 1] - y0) * scale
        for s in range(s0, s1):
            stroke_drawing[s] = b
            stroke_rank[s] = s - s0
            q0 = stroke_offsets[s]
            q1 = stroke_offsets[s + 1]
            for i in range(q0, q1):
                point_stroke[i] = s
                point_rank[i] = i - q0
                if i + 1 < q1:
                    dx = xy[i + 1, 0] - xy[i, 0]
                    dy = xy[i + 1, 1] - xy[i, 1]
                    seg[i] = math.sqrt(dx * dx + dy * dy)
                    if i > q0:
                        ax = xy[i + 1, 0] - 2.0 * xy[i, 0] + xy[i - 1, 0]
                        ay = xy[i + 1, 1] - 2.0 * xy[i, 1] + xy[i - 1, 1]
                        acc[i] = math.sqrt(ax * ax + ay * ay)
    return stroke_drawing, stroke_rank, point_stroke, point_rank, xy, seg, acc
