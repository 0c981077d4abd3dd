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

import functools
import math

import numpy as np
from numba import njit

from doodle.render.simd import composite_quads


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
        for i in range(p0 + 1, p1):  # branch-free (data-dependent branches mispredict)
            x = points[i, 0]
            y = points[i, 1]
            x0 = min(x0, x)
            x1 = max(x1, x)
            y0 = min(y0, y)
            y1 = max(y1, y)
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
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per drawing (a, bx, by): pixel x = x * a + bx, pixel y = y * a + by.

    mode "fit": the bounding box, aspect kept, centred in [margin, size - 1 - margin].
    mode "frame": 0..255 mapped to [margin, size - 1 - margin]; drawings are first aligned the way
    Google simplified them (min to 0, larger side to 255) when `align` is True, or, when it is
    None, if they carry timing or have a coordinate outside 0..255 (raw screen coordinates).
    `bounds`: `drawing_bounds(points, point_offsets)` when already computed.
    """
    box, timed = drawing_bounds(points, point_offsets) if bounds is None else bounds
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


FIX = 4294967296.0
"""32.32 fixed point: a row's window start is an integer add and a shift from the row before's."""


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _composite(flat, oa, ob, plane, n_ch, lanes, geo, col, vals, j0, j1, aa, comp_max, interp):  # pragma: no cover
    """`composite_quads` on every channel (planes `plane` apart) of two quads of one segment;
    col = (c0, c1, c2, d0, d1, d2) for the first three channels, vals[j0/j1] for the rest.
    The geometry is the same for every channel, so LLVM computes it once."""
    c0, c1, c2, d0, d1, d2 = col
    composite_quads(flat, oa, ob, lanes, geo, c0, d0, aa, comp_max, interp)
    if n_ch > 1:
        oa += plane
        ob += plane
        composite_quads(flat, oa, ob, lanes, geo, c1, d1, aa, comp_max, interp)
        if n_ch > 2:
            oa += plane
            ob += plane
            composite_quads(flat, oa, ob, lanes, geo, c2, d2, aa, comp_max, interp)
            for c in range(3, n_ch):
                oa += plane
                ob += plane
                cc = vals[j0, c]
                dc = vals[j1, c] - cc if interp else np.float32(0.0)
                composite_quads(flat, oa, ob, lanes, geo, cc, dc, aa, comp_max, interp)


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _segment(flat, img0, plane, n_ch, w, h, ax, ay, bx_, by_, vals, j0, j1, col, reach, aa, comp_max, interp):  # noqa: E501  # pragma: no cover
    """Composite the capsule ax,ay -> bx_,by_ into the image whose first channel starts at flat[img0].

    Every row the capsule touches gets a window of K 4-pixel quads (K from the widest row) that
    starts at the row's first candidate pixel: for a slanted segment the pixels within `reach` of
    the infinite line (a band whose left edge moves by dx/dy per row), clipped to the capsule's
    bounding box. Quads are composited two at a time: rows y and y + 1 when K == 1 (steep
    lines), else 8 consecutive pixels of one row. No pixel is composited twice by one segment.
    """
    one = np.float32(1.0)
    dx = bx_ - ax
    dy = by_ - ay
    len2 = dx * dx + dy * dy
    solid = len2 > 1e-12
    inv_len2 = one / len2 if solid else np.float32(0.0)
    inv_len = one / np.float32(math.sqrt(len2)) if solid else np.float32(0.0)
    reach2 = reach * reach
    xlo = max(int(math.ceil(np.float64(min(ax, bx_) - reach))), 0)
    xhi = min(int(math.floor(np.float64(max(ax, bx_) + reach))), w - 1)
    ylo = max(int(math.ceil(np.float64(min(ay, by_) - reach))), 0)
    yhi = min(int(math.floor(np.float64(max(ay, by_) + reach))), h - 1)
    width = xhi - xlo + 1
    if width <= 0 or yhi < ylo:
        return
    # window start of row ylo + r: ceil(a0 + (ylo + r) * xpy), the band's left edge (with a
    # little slack so float rounding never drops an edge pixel), at least xlo. Nearly
    # horizontal segments (|dx/dy| >= 1024, a band wider than any image) use the box.
    a0 = np.float64(xlo)
    xpy = 0.0
    if solid and abs(dx) < 1024.0 * abs(dy):
        xpy = np.float64(dx) / dy
        half_span = np.float64(reach) * math.sqrt(np.float64(len2)) / abs(dy) + 1e-3
        a0 = np.float64(ax) - np.float64(ay) * xpy - half_span
        width = min(width, int(2.0 * half_span) + 1)
    fix = np.int64((a0 + ylo * xpy) * FIX) + np.int64(FIX - 1)  # + (1 - ulp): ceil via the shift
    fix_step = np.int64(xpy * FIX)
    k = (width + 3) // 4
    rows = yhi - ylo + 1
    geo = (dx, dy, dx * inv_len2, dy * inv_len2, inv_len, reach, reach2, reach2 * len2, solid)
    x_last = np.float32(w - 1) - ax  # lane positions are relative to the segment's start
    if k <= 2:
        narrow = k == 1  # one quad per row: rows y, y + 1 per step; else one row per step
        steps = (rows + 1) >> 1 if narrow else rows
        r_step = 2 if narrow else 1
        r_next = 1 if narrow else 0
        col_b = 0 if narrow else 4
        for i in range(steps):
            ra = i * r_step
            rb = min(ra + r_next, rows - 1)  # an odd last row pairs with itself: same bytes
            sa = max((fix + ra * fix_step) >> 32, xlo)
            sb = max((fix + rb * fix_step) >> 32, xlo) + col_b
            ya = ylo + ra
            yb = ylo + rb
            lanes = (np.float32(sa) - ax, np.float32(sb) - ax, np.float32(ya) - ay, np.float32(yb) - ay, x_last)
            o_a = img0 + ya * w + sa
            o_b = img0 + yb * w + sb
            _composite(flat, o_a, o_b, plane, n_ch, lanes, geo, col, vals, j0, j1, aa, comp_max, interp)
        return
    for r in range(rows):
        s0 = max((fix + r * fix_step) >> 32, xlo)
        y = ylo + r
        py = np.float32(y) - ay
        o = img0 + y * w + s0
        for q in range(0, 4 * k, 8):
            lanes = (np.float32(s0 + q) - ax, np.float32(s0 + q + 4) - ax, py, py, x_last)
            _composite(flat, o + q, o + q + 4, plane, n_ch, lanes, geo, col, vals, j0, j1, aa, comp_max, interp)


@njit(cache=True, nogil=True, fastmath=True)
def _rasterize(points, stroke_offsets, drawing_offsets, a, bx, by, vals, reverse, half_w, out, aa, comp_max, interp):  # noqa: E501  # pragma: no cover
    """`rasterize` with aa, comp_max and interp as compile-time constants (see `_kernel`)."""
    reach = np.float32(half_w + 0.5 if aa else half_w)
    n_ch = out.shape[1]
    h = out.shape[2]
    w = out.shape[3]
    plane = h * w
    flat = out.reshape(out.size)  # C-contiguous: a view
    zero = np.float32(0.0)
    for b in range(len(drawing_offsets) - 1):
        s_first = drawing_offsets[b]
        n_str = drawing_offsets[b + 1] - s_first
        sa = np.float32(a[b])
        sx = np.float32(bx[b])
        sy = np.float32(by[b])
        out[b] = 0
        img0 = b * n_ch * plane
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
                col = (c0, c1, c2, d0, d1, d2)
                _segment(flat, img0, plane, n_ch, w, h, x0, y0, x1, y1, vals, j, j1, col, reach, aa, comp_max, interp)
                x0 = x1
                y0 = y1


@functools.cache
def _kernel(aa: bool, comp_max: bool, interp: bool):
    """The compiled `_rasterize` for one combination of flags (each its own straight-line SIMD
    code; numba caches all of them on disk)."""

    @njit(cache=True, nogil=True)
    def kernel(points, stroke_offsets, drawing_offsets, a, bx, by, vals, reverse, half_w, out):  # pragma: no cover
        _rasterize(points, stroke_offsets, drawing_offsets, a, bx, by, vals, reverse, half_w, out, aa, comp_max, interp)

    return kernel


def rasterize(
    points: np.ndarray,
    stroke_offsets: np.ndarray,
    drawing_offsets: np.ndarray,
    a: np.ndarray,
    bx: np.ndarray,
    by: np.ndarray,
    vals: np.ndarray,
    interp: bool,
    reverse: bool,
    comp_max: bool,
    half_w: float,
    aa: bool,
    out: np.ndarray,
) -> None:
    """Draw every stroke of every drawing into out (B, C, H, W) uint8 (each image is cleared first,
    just before it is drawn, so it is still in cache while drawn).

    points (N, >=2) float32 in input coordinates, placed per drawing by (a, bx, by); vals (N, C)
    float32 0..255 (segment colours, or per-point colours when `interp`); strokes drawn last to
    first when `reverse`; `comp_max` selects max- instead of over-compositing. A single-point
    stroke is drawn as a dot of the line's width. out must be C-contiguous and vals must have C
    columns.
    """
    if out.ndim != 4 or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError("rasterize needs a C-contiguous uint8 (B, C, H, W) image array")
    if vals.ndim != 2 or vals.shape[1] != out.shape[1]:
        raise ValueError("rasterize needs one vals column per channel")
    kernel = _kernel(bool(aa), bool(comp_max), bool(interp))
    kernel(points, stroke_offsets, drawing_offsets, a, bx, by, vals, bool(reverse), float(half_w), out)


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


@njit(cache=True, nogil=True)
def order_speed_accel_values(
    points, stroke_offsets, drawing_offsets, box, order_span, speed_scale, accel_scale
):  # pragma: no cover
    """(N, 3) float32 order, speed, accel values of the "order-speed-accel" encoding in one pass.

    Bit for bit what the numpy formulation on `StrokeBatch` gives (order 255 - span*i/n computed
    in float64; segment length and inertia distance measured on the float32 0..255 frame points
    exactly as `batch_geometry` computes them, then scaled in float32 and capped at 255), without
    the intermediate per-point arrays. `box` is `drawing_bounds`' (B, 4) box; speed_scale and
    accel_scale are float32 255/cap factors.
    """
    n_pts = points.shape[0]
    vals = np.zeros((n_pts, 3), np.float32)
    cap = np.float32(255.0)
    for b in range(len(drawing_offsets) - 1):
        s0 = drawing_offsets[b]
        s1 = drawing_offsets[b + 1]
        if s1 <= s0:
            continue
        x0 = np.float32(box[b, 0])
        y0 = np.float32(box[b, 1])
        ext = max(np.float32(box[b, 2]) - x0, np.float32(box[b, 3]) - y0)
        scale = 255.0 / ext if ext > 0 else 1.0
        n = max(s1 - s0, 1)
        for s in range(s0, s1):
            order = np.float32(255.0 - order_span * (s - s0) / n)
            q0 = stroke_offsets[s]
            q1 = stroke_offsets[s + 1]
            # frame points i - 1, i, i + 1 (as float32, like StrokeBatch.xy)
            xp = yp = np.float32(0.0)
            xc = yc = np.float32(0.0)
            if q1 > q0:
                xc = np.float32((points[q0, 0] - x0) * scale)
                yc = np.float32((points[q0, 1] - y0) * scale)
            for i in range(q0, q1):
                vals[i, 0] = order
                if i + 1 < q1:
                    xn = np.float32((points[i + 1, 0] - x0) * scale)
                    yn = np.float32((points[i + 1, 1] - y0) * scale)
                    dx = xn - xc
                    dy = yn - yc
                    seg = np.float32(math.sqrt(dx * dx + dy * dy))
                    vals[i, 1] = min(seg * speed_scale, cap)
                    if i > q0:
                        ax = xn - 2.0 * xc + xp
                        ay = yn - 2.0 * yc + yp
                        acc = np.float32(math.sqrt(ax * ax + ay * ay))
                        vals[i, 2] = min(acc * accel_scale, cap)
                    xp = xc
                    yp = yc
                    xc = xn
                    yc = yn
    return vals
