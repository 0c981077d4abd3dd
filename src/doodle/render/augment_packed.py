"""Vector augmentation of a whole packed batch in one compiled pass: the training path's
`augment_batch`.

`augment_packed(packed, config, rng)` applies the augmentations of `doodle.render.augment` to
every drawing of a `PackedDrawings` (float64 x, y, t; t NaN when untimed) without a Python object
or loop per drawing. It draws the batch's randomness with `draw_augment`, exactly as the readable
per-drawing reference `augment_batch` does, and applies the same steps with the same formulas, so
both give the same strokes up to float rounding (tests/render/test_augment_packed.py checks every
option on real drawings). The steps, per drawing:

1. truncate (keep the first ceil(fraction * n) strokes) and stroke dropout choose strokes;
2. the kept strokes' points are copied out (t carried untouched);
3. flip, affine about the bbox centre, jitter and fit-into-frame move x and y, each step using the
   bounding box as the previous step left it, as the reference does.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from doodle.data.drawing import PackedDrawings
from doodle.render.augment import FRAME, AugmentConfig, draw_augment

__all__ = ["augment_packed"]

_TRUNC, _FRAC, _FLIP, _AFFINE, _SCALE, _ROT, _SX, _SY, _KEEP = range(9)  # the columns of COINS


@njit(cache=True, nogil=True)
def _bbox(pts, lo, hi):  # pragma: no cover - compiled
    if hi <= lo:
        return 0.0, 0.0, 0.0, 0.0
    x0 = x1 = pts[lo, 0]
    y0 = y1 = pts[lo, 1]
    for i in range(lo + 1, hi):
        x0, x1 = min(x0, pts[i, 0]), max(x1, pts[i, 0])
        y0, y1 = min(y0, pts[i, 1]), max(y1, pts[i, 1])
    return x0, y0, x1, y1


@njit(cache=True, nogil=True)
def _choose_strokes(stroke_offsets, drawing_offsets, coins, stroke_u, trunc_p, trunc_min, drop_p):  # pragma: no cover
    """bool [S]: the input strokes kept by truncation and dropout."""
    keep = np.zeros(len(stroke_offsets) - 1, np.bool_)
    for d in range(len(drawing_offsets) - 1):
        a, n = drawing_offsets[d], drawing_offsets[d + 1] - drawing_offsets[d]
        kept = n
        if trunc_p > 0 and coins[d, _TRUNC] < trunc_p:
            frac = trunc_min + (1.0 - trunc_min) * coins[d, _FRAC]
            kept = min(max(1, min(math.ceil(frac * n - 1e-9), n)), n)
        any_kept = False
        for j in range(kept):
            keep[a + j] = not (drop_p > 0 and kept > 1) or stroke_u[a + j] >= drop_p
            any_kept |= keep[a + j]
        if kept > 0 and not any_kept:
            keep[a + int(coins[d, _KEEP] * kept)] = True
    return keep


@njit(cache=True, nogil=True)
def _gather(points, stroke_offsets, drawing_offsets, keep):  # pragma: no cover - compiled
    """The kept strokes' points, new stroke and drawing offsets, and each output point's input row."""
    n_pts = 0
    for s in range(len(keep)):
        if keep[s]:
            n_pts += stroke_offsets[s + 1] - stroke_offsets[s]
    out = np.empty((n_pts, 3), np.float64)
    rows = np.empty(n_pts, np.int64)
    s_off = np.zeros(keep.sum() + 1, np.int64)
    d_off = np.zeros(len(drawing_offsets), np.int64)
    k = p = 0
    for d in range(len(drawing_offsets) - 1):
        for s in range(drawing_offsets[d], drawing_offsets[d + 1]):
            if keep[s]:
                for i in range(stroke_offsets[s], stroke_offsets[s + 1]):
                    out[p, 0], out[p, 1], out[p, 2] = points[i, 0], points[i, 1], points[i, 2]
                    rows[p] = i
                    p += 1
                k += 1
                s_off[k] = p
        d_off[d + 1] = k
    return out, s_off, d_off, rows


@njit(cache=True, nogil=True)
def _affine(pts, lo, hi, scale, degrees, shift_x, shift_y):  # pragma: no cover - compiled
    x0, y0, x1, y1 = _bbox(pts, lo, hi)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    side = max(x1 - x0, y1 - y0, 1e-9)
    theta = math.radians(degrees)
    c, sn = math.cos(theta) * scale, math.sin(theta) * scale
    e = cx + shift_x * side - (c * cx - sn * cy)
    f = cy + shift_y * side - (sn * cx + c * cy)
    for i in range(lo, hi):
        x, y = pts[i, 0], pts[i, 1]
        pts[i, 0] = x * c - y * sn + e
        pts[i, 1] = x * sn + y * c + f


@njit(cache=True, nogil=True)
def _fit_into(pts, lo, hi, f_lo, f_hi):  # pragma: no cover - compiled
    x0, y0, x1, y1 = _bbox(pts, lo, hi)
    if x0 >= f_lo and y0 >= f_lo and x1 <= f_hi and y1 <= f_hi:
        return
    side = max(x1 - x0, y1 - y0)
    k = min(1.0, (f_hi - f_lo) / side) if side > 0 else 1.0
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    half_w, half_h = (x1 - x0) * k / 2.0, (y1 - y0) * k / 2.0
    ncx = min(max(cx, f_lo + half_w), f_hi - half_w)
    ncy = min(max(cy, f_lo + half_h), f_hi - half_h)
    for i in range(lo, hi):
        pts[i, 0] = min(max((pts[i, 0] - cx) * k + ncx, f_lo), f_hi)
        pts[i, 1] = min(max((pts[i, 1] - cy) * k + ncy, f_lo), f_hi)


@njit(cache=True, nogil=True)
def _move(pts, point_offsets, in_frame, coins, noise, rows, flip_p, affine_p, scale_lo, scale_hi, rotate, shift,
          sigma, keep_in_frame, f_lo, f_hi):  # pragma: no cover - compiled
    """Flip, affine, jitter and fit-into-frame of every drawing, in place."""
    for d in range(len(point_offsets) - 1):
        lo, hi = point_offsets[d], point_offsets[d + 1]
        if flip_p > 0 and coins[d, _FLIP] < flip_p:
            x0, _, x1, _ = _bbox(pts, lo, hi)
            for i in range(lo, hi):
                pts[i, 0] = x0 + x1 - pts[i, 0]
        if affine_p > 0 and coins[d, _AFFINE] < affine_p:
            _affine(pts, lo, hi, scale_lo + (scale_hi - scale_lo) * coins[d, _SCALE],
                    rotate * (2.0 * coins[d, _ROT] - 1.0), shift * (2.0 * coins[d, _SX] - 1.0),
                    shift * (2.0 * coins[d, _SY] - 1.0))
        if sigma > 0:
            x0, y0, x1, y1 = _bbox(pts, lo, hi)
            std = sigma * max(x1 - x0, y1 - y0, 1e-9)
            for i in range(lo, hi):
                pts[i, 0] += std * noise[rows[i], 0]
                pts[i, 1] += std * noise[rows[i], 1]
        if keep_in_frame and in_frame[d]:
            _fit_into(pts, lo, hi, f_lo, f_hi)


@njit(cache=True, nogil=True)
def _in_frame(points, point_offsets, f_lo, f_hi):  # pragma: no cover - compiled
    out = np.empty(len(point_offsets) - 1, np.bool_)
    for d in range(len(out)):
        x0, y0, x1, y1 = _bbox(points, point_offsets[d], point_offsets[d + 1])
        out[d] = x0 >= f_lo and y0 >= f_lo and x1 <= f_hi and y1 <= f_hi
    return out


def augment_packed(packed: PackedDrawings, config: AugmentConfig | None = None,
                   rng: np.random.Generator | None = None) -> PackedDrawings:
    """A new `PackedDrawings` (float64 points) with every drawing augmented; the input is left as
    it is. Same draws and strokes as `augment_batch(drawings, config, rng)` on the same drawings."""
    cfg = config or AugmentConfig()
    gen = rng if rng is not None else np.random.default_rng()
    points = np.ascontiguousarray(packed.points, dtype=np.float64)
    s_off = np.ascontiguousarray(packed.stroke_offsets, dtype=np.int64)
    d_off = np.ascontiguousarray(packed.drawing_offsets, dtype=np.int64)
    draws = draw_augment(cfg, gen, len(d_off) - 1, len(s_off) - 1, len(points))
    in_frame = _in_frame(points, s_off[d_off], *FRAME)
    keep = _choose_strokes(s_off, d_off, draws.coins, draws.strokes, cfg.truncate, cfg.truncate_min, cfg.dropout)
    out, new_s, new_d, rows = _gather(points, s_off, d_off, keep)
    _move(out, new_s[new_d], in_frame, draws.coins, draws.noise, rows, cfg.flip, cfg.affine, float(cfg.scale[0]),
          float(cfg.scale[1]), cfg.rotate, cfg.shift, cfg.jitter, cfg.keep_in_frame, *FRAME)
    return PackedDrawings(out, new_s, new_d)
