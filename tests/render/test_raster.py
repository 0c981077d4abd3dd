"""The SIMD rasteriser against a plain numpy statement of its rules (raster's module docstring),
on real drawings, for every combination of its compile-time flags."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from doodle.data.drawing import pack
from doodle.render.raster import placement, rasterize


def reference(points, stroke_offsets, drawing_offsets, a, bx, by, vals, interp, reverse, comp_max, half_w, aa, out):
    """Per segment, every pixel's distance to the capsule on the whole grid (float64), then the
    compositing rule; also returns, per image, the pixels whose centre is within 1e-3 px of a
    hard edge (where float rounding may decide either way)."""
    n_img, n_ch, h, w = out.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    edge = np.zeros((n_img, h, w), bool)
    for b in range(n_img):
        img = np.zeros((n_ch, h, w))
        strokes = list(range(drawing_offsets[b], drawing_offsets[b + 1]))
        for s in reversed(strokes) if reverse else strokes:
            p0, p1 = stroke_offsets[s], stroke_offsets[s + 1]
            for j in range(p0, max(p1 - 1, p0 + 1)):
                jn = min(j + 1, p1 - 1)
                ax, ay = points[j, :2].astype(np.float64) * a[b] + [bx[b], by[b]]
                ex, ey = points[jn, :2].astype(np.float64) * a[b] + [bx[b], by[b]]
                dx, dy = ex - ax, ey - ay
                len2 = dx * dx + dy * dy
                t = ((xs - ax) * dx + (ys - ay) * dy) / len2 if len2 > 1e-12 else np.zeros_like(xs)
                t = np.clip(t, 0.0, 1.0)
                dist = np.hypot(xs - ax - t * dx, ys - ay - t * dy)
                if aa:
                    cov = np.clip(half_w + 0.5 - dist, 0.0, 1.0)
                else:
                    cov = (dist <= half_w).astype(np.float64)
                    edge[b] |= np.abs(dist - half_w) < 1e-3
                j1 = jn if interp else j
                for c in range(n_ch):
                    v = vals[j, c] + (t * (vals[j1, c] - vals[j, c]) if interp else 0.0)
                    if comp_max:
                        img[c] = np.where(v * cov > img[c], np.floor(v * cov + 0.5), img[c])
                    else:
                        new = np.where(cov >= 1.0, v, img[c] + (v - img[c]) * cov)
                        img[c] = np.where(cov > 0, np.floor(new + 0.5), img[c])
        out[b] = img.astype(np.uint8)
    return edge


@pytest.fixture(scope="module")
def batch(raw_cats, simplified_cats):
    drawings = simplified_cats[:6] + raw_cats[:3]
    p = pack(drawings)
    rng = np.random.default_rng(0)
    vals = rng.uniform(0, 255, (len(p.points), 5)).astype(np.float32)
    return p, vals


@pytest.mark.parametrize(("aa", "comp_max", "interp"), list(itertools.product([True, False], repeat=3)))
@pytest.mark.parametrize(
    ("size", "line_width", "margin", "reverse"),
    # a negative margin pushes the ink past every edge of the image (clipping); 29 px rows end
    # in the middle of a quad
    [(32, 6.0, 2.0, False), (64, 6.0, 2.0, True), (96, 20.0, 4.0, False), (29, 3.0, -3.0, True)],
)
def test_rasterize_matches_reference(batch, aa, comp_max, interp, size, line_width, margin, reverse):
    p, vals = batch
    n_ch = 5 if interp else 3  # channels past the third take the generic path
    vals = np.ascontiguousarray(vals[:, :n_ch])
    half_w = max(line_width * size / 256, 1.0) / 2
    a, bx, by = placement(p.points, p.stroke_offsets[p.drawing_offsets], size, margin, "fit", None)
    args = (p.points, p.stroke_offsets, p.drawing_offsets, a, bx, by, vals, interp, reverse, comp_max, half_w, aa)
    ours = np.full((len(p), n_ch, size, size), 77, np.uint8)  # not cleared by the caller: rasterize clears it
    rasterize(*args, ours)
    ref = np.zeros_like(ours)
    edge = reference(*args, ref)
    diff = np.abs(ours.astype(int) - ref)
    if aa:
        assert diff.max() <= 1  # float32 vs float64 rounding of the coverage
        assert (diff > 0).mean() < 0.01
    else:  # exact off the edges, but for float32 rounding of interpolated colours
        assert diff[~np.broadcast_to(edge[:, None], diff.shape)].max() <= (1 if interp else 0)
    assert ours.any(axis=(1, 2, 3)).all()  # every drawing drew something


def test_rasterize_rejects_bad_arrays(batch):
    p, vals = batch
    a = np.ones(len(p))
    z = np.zeros(len(p))
    with pytest.raises(ValueError, match="one vals column per channel"):
        rasterize(p.points, p.stroke_offsets, p.drawing_offsets, a, z, z, vals, False, False, False, 1.0, True,
                  np.zeros((len(p), 3, 16, 16), np.uint8))  # fmt: skip
    with pytest.raises(ValueError, match="C-contiguous uint8"):
        rasterize(p.points, p.stroke_offsets, p.drawing_offsets, a, z, z, vals[:, :3], False, False, False, 1.0, True,
                  np.zeros((len(p), 3, 16, 16), np.float32))  # fmt: skip
