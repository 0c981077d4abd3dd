"""Exact pixel values of the rasteriser and of each encoding on small hand-made drawings.

Hand-made drawings use placement="frame" (coordinates already in 0..255, so no alignment):
frame value v lands on pixel margin + v * (size - 1 - 2 margin) / 255 (`frame_px`).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from doodle.data.drawing import Drawing
from doodle.render import render
from doodle.render.renderer import pixel_margin


def drawing(*strokes, timed: bool = False) -> Drawing:
    arrs = []
    t = 0.0
    for s in strokes:
        a = np.asarray(s, dtype=np.float64)
        if timed and a.shape[1] == 2:
            ts = t + 10.0 * np.arange(len(a))
            t = ts[-1] + 100.0
            a = np.column_stack([a, ts])
        arrs.append(a)
    return Drawing(key_id=1, strokes=arrs, word="test")


def frame_px(v: float, size: int, line_width: float, padding: float = 0.0) -> float:
    m = pixel_margin(line_width, padding, size)
    return m + v * (size - 1 - 2 * m) / 255.0


# Horizontal line at frame y = 127.5 from x = 0 to 255, size 256, width 3 px, antialias off:
# margin = 1.5 px, so the line runs at pixel y = 1.5 + 127.5 * 252/255 = 127.5 along x 1.5..253.5;
# pixels with centre within 1.5 px: rows 126..129, columns 0..255 clipped to the capsule.
def test_horizontal_line_exact_pixels_without_antialias():
    d = drawing([[0, 127.5], [255, 127.5]])
    img = render([d], "grey", 256, line_width=3, padding=0, antialias=False, placement="frame")[0, 0]
    y = frame_px(127.5, 256, 3)
    assert y == pytest.approx(127.5)
    expected = np.zeros((256, 256), np.uint8)
    for r in range(256):
        for c in range(256):
            # distance from pixel centre (c, r) to the segment (1.5, 127.5)-(253.5, 127.5)
            cx = min(max(c, 1.5), 253.5)
            if (c - cx) ** 2 + (r - y) ** 2 <= 1.5**2:
                expected[r, c] = 255
    assert np.array_equal(img, expected)
    assert set(np.flatnonzero(img.any(axis=1))) == {126, 127, 128, 129}


def test_antialias_fades_edges_and_keeps_core():
    d = drawing([[0, 100], [255, 100]])
    hard = render([d], "grey", 128, line_width=8, antialias=False, placement="frame")[0, 0]
    soft = render([d], "grey", 128, line_width=8, antialias=True, placement="frame")[0, 0]
    assert set(np.unique(hard)) == {0, 255}
    assert len(set(np.unique(soft)) - {0, 255}) > 0  # intermediate values on the edges
    core = hard == 255
    assert (soft[core] >= 128).all()


def test_order_values_on_three_strokes():
    # three separate horizontal strokes: values 255 - 245*i/3 = 255, 173.3, 91.7 -> 255, 173, 92
    d = drawing([[0, 20], [255, 20]], [[0, 120], [255, 120]], [[0, 220], [255, 220]])
    img = render([d], "order", 256, line_width=3, padding=0, antialias=False, placement="frame")[0, 0]
    for frame_y, value in ((20, 255), (120, 173), (220, 92)):
        row = int(round(frame_px(frame_y, 256, 3)))
        assert img[row, 128] == value
    assert set(np.unique(img)) == {0, 255, 173, 92}


def test_order_later_strokes_overwrite_and_reverse_puts_first_on_top():
    # a horizontal then a vertical stroke crossing at the centre
    d = drawing([[0, 128], [255, 128]], [[128, 0], [128, 255]])
    kw = dict(line_width=5, padding=0, antialias=False, placement="frame")
    c = int(round(frame_px(128, 128, 5)))
    order = render([d], "order", 128, **kw)[0, 0]
    rev = render([d], "reverse", 128, **kw)[0, 0]
    first, second = 255, int(255 - 245 / 2 + 0.5)  # values round half up: 132.5 -> 133
    assert order[c, c] == second  # the later (darker) stroke is on top
    assert rev[c, c] == first  # drawn last to first: the first stroke is on top
    assert order[c, 5] == first and rev[c, 5] == first
    assert order[5, c] == second and rev[5, c] == second


def test_thirds_channels_hold_exactly_the_right_strokes():
    # 4 strokes: ceil(4/3)=2, ceil(8/3)=3, 4 -> channels {0,1}, {0,1,2}, {0,1,2,3}
    ys = [30, 90, 150, 210]
    d = drawing(*[[[0, y], [255, y]] for y in ys])
    img = render([d], "thirds", 128, line_width=4, padding=0, antialias=False, placement="frame")[0]
    rows = [int(round(frame_px(y, 128, 4))) for y in ys]
    inked = [[bool(img[ch, r, 64]) for r in rows] for ch in range(3)]
    assert inked == [[True, True, False, False], [True, True, True, False], [True, True, True, True]]
    assert set(np.unique(img)) == {0, 255}


def test_order_speed_accel_values_per_segment():
    # one stroke: a 40-unit segment right, then 40 units down (inertia point error = 40*sqrt(2))
    d = drawing([[0, 0], [40, 0], [40, 40], [255, 255]])
    img = render([d], "order-speed-accel", 256, line_width=1, padding=0, antialias=False, placement="frame")[0]
    y0 = int(round(frame_px(0, 256, 1)))
    xm = int(round(frame_px(20, 256, 1)))
    assert img[0, y0, xm] == 255  # order of the only stroke
    assert img[1, y0, xm] == int(255 * 40 / 64 + 0.5)  # speed of the first segment
    assert img[2, y0, xm] == 0  # no acceleration on a stroke's first segment
    x40 = int(round(frame_px(40, 256, 1)))
    ym = int(round(frame_px(20, 256, 1)))
    assert img[1, ym, x40] == int(255 * 40 / 64 + 0.5)
    assert img[2, ym, x40] == int(255 * 40 * 2**0.5 / 64 + 0.5)  # |(40,40) - (80,0)| = 56.6 -> 225


def test_palette_gradients_index_points_delay_values():
    d = drawing([[0, 30], [255, 30]], [[0, 130], [255, 130]], [[0, 230], [255, 230]], timed=True)
    kw = dict(line_width=3, padding=0, antialias=False, placement="frame", align=False)
    rows = [int(round(frame_px(y, 256, 3))) for y in (30, 130, 230)]
    pal = render([d], "palette", 256, **kw)[0]
    assert pal[:, rows[0], 128].tolist() == [255, 224, 32]  # first colour
    assert pal[:, rows[2], 128].tolist() == [32, 64, 255]  # last colour
    assert pal[:, rows[1], 128].tolist() == [144, 144, 144]  # halfway: 143.5, 144, 143.5 round up
    grad = render([d], "gradients", 256, **kw)[0]
    start = int(round(frame_px(0, 256, 3)))
    end = int(round(frame_px(255, 256, 3)))
    assert grad[0, rows[0], 128] == 255
    assert grad[1, rows[0], start] == 32 and grad[1, rows[0], end] == 255
    assert abs(int(grad[1, rows[0], 128]) - 143) <= 2  # halfway along: 32 + 223/2
    assert [grad[2, r, 128] for r in rows] == [32, 144, 255]  # 32 + 223*i/2 rounded
    ip = render([d], "index-points", 256, **kw)[0]
    assert [ip[0, r, 128] for r in rows] == [10, 133, 255]  # 255 - 245*(2-i)/2, 132.5 rounds up
    assert [ip[1, r, 128] for r in rows] == [16, 16, 16]  # 2 points: 255*2/32 = 15.9
    assert [ip[2, r, 128] for r in rows] == [255, 255, 255]
    # timing: each stroke lasts 10 ms, pauses of 100 ms between strokes
    dtc = render([d], "delay-time-count", 256, **kw)[0]
    assert [dtc[0, r, 128] for r in rows] == [0, 13, 13]  # 255*100/2000 = 12.75
    assert [dtc[1, r, 128] for r in rows] == [1, 1, 1]  # 255*10/4000 = 0.64
    assert [dtc[2, r, 128] for r in rows] == [38, 38, 38]  # 255*3/20 = 38.25


def test_timed_encodings_zero_time_channels_on_untimed_drawings():
    timed = drawing([[0, 30], [255, 30]], [[0, 130], [255, 130]], timed=True)
    plain = timed.replace(strokes=[s[:, :2] for s in timed.strokes])
    kw = dict(line_width=3, padding=0, antialias=False, placement="frame", align=False)
    a = render([timed, plain], "delay-time-count", 128, **kw)
    assert a[1, 0].max() == 0 and a[1, 1].max() == 0  # delay and duration zeroed
    assert np.array_equal(a[0, 2], a[1, 2])  # count unchanged
    b = render([timed, plain], "order-speed-accel-time", 128, **kw)
    assert b[1, 1].max() == 0  # speed and circles zeroed
    assert b[0, 1].max() > 0
    assert np.array_equal(b[0, 0], b[1, 0]) and np.array_equal(b[0, 2], b[1, 2])


def test_time_circles_on_speed_channel():
    # two strokes, pause 1000 ms: a circle of 255*1000/2000 = 128 at the second stroke's start;
    # total time 3000 ms: a circle of 255*3000/20000 = 38 at the last point
    s1 = np.array([[0, 50, 0], [100, 50, 1000]], float)
    s2 = np.array([[200, 200, 2000], [255, 200, 3000]], float)
    d = Drawing(key_id=2, strokes=[s1, s2], word="t")
    img = render([d], "order-speed-accel-time", 256, line_width=2, antialias=False, placement="frame", align=False)[0]
    sx, sy = (int(round(frame_px(v, 256, 2, 4))) for v in (200, 200))
    assert img[1, sy - 5, sx - 5] == 128  # inside the circle (radius 8 px), off the line
    ex, ey = (int(round(frame_px(v, 256, 2, 4))) for v in (255, 200))
    assert img[1, ey + 5, ex - 3] == 38
    assert img[0, sy - 5, sx - 5] == 0 and img[2, sy - 5, sx - 5] == 0  # circles only on channel 1


def test_single_point_stroke_is_a_dot_and_empty_batch():
    d = drawing([[128, 128]])
    img = render([d], "grey", 64, line_width=16, antialias=False)[0, 0]
    assert img.sum() > 0 and img[31:33, 31:33].all()
    assert render([], "grey", 32).shape == (0, 1, 32, 32)


@pytest.mark.parametrize(("size", "thickness"), [(64, 2), (64, 4), (128, 2), (128, 4)])
def test_agrees_with_cv2_reference(size, thickness, simplified_cats):
    """IoU of the inked masks >= 0.9 (each drawing) against cv2.polylines at the target size.

    Same point mapping; cv2's `thickness` t fills about t + 1 pixels across (its capsule keeps the
    boundary pixels; measured: equal ink counts within 3 %), so it is compared with our width t + 1.
    """
    drawings = simplified_cats[:20]
    lw = (thickness + 1) * 256 / size
    ours = render(drawings, "grey", size, line_width=lw, antialias=False, placement="frame")[:, 0]
    ious = []
    for d, img in zip(drawings, ours, strict=True):
        ref = np.zeros((size, size), np.uint8)
        shift = 4  # cv2 sub-pixel coordinates
        pts = [
            np.round(np.column_stack([frame_px(s[:, 0], size, lw, 4), frame_px(s[:, 1], size, lw, 4)]) * 2**shift)
            .astype(np.int32)
            .reshape(-1, 1, 2)
            for s in d.strokes
        ]
        cv2.polylines(ref, pts, False, 255, thickness, cv2.LINE_8, shift)
        a, b = img > 0, ref > 0
        ious.append((a & b).sum() / max((a | b).sum(), 1))
    assert min(ious) >= 0.9, ious
