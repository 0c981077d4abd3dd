"""Fused fast paths give exactly what their plain definitions give."""

from __future__ import annotations

import numpy as np

from doodle.data.drawing import pack
from doodle.render.encodings import order_speed_accel, order_speed_accel_reference
from doodle.render.registry import StrokeBatch


def test_order_speed_accel_fused_equals_reference(raw_cats, simplified_cats):
    for drawings in (raw_cats[:50], simplified_cats[:50], raw_cats[:5] + simplified_cats[:5]):
        p = pack(drawings)
        fused = order_speed_accel(StrokeBatch(p.points, p.stroke_offsets, p.drawing_offsets)).values
        ref = order_speed_accel_reference(StrokeBatch(p.points, p.stroke_offsets, p.drawing_offsets)).values
        assert fused.dtype == np.float32 and fused.shape == ref.shape
        assert np.array_equal(fused, ref)
