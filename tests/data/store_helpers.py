"""Drawings for the store tests, generated so that no test needs ../shared."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from doodle.data.drawing import Drawing

# Values float32 cannot hold: more than 7 significant digits, fractions near the coordinate limit,
# times past 2**24 ms (4.6 hours), and arbitrary float64s.
AWKWARD = [0.1, 123.456789012, 1e6 - 0.001, -999_999.999, 1 / 3, 246.90000153, 2.0**-40, 5e-324]
AWKWARD_TIMES = [0.0, 16_777_217.0, 86_400_000.123, 999_999_999.5, 123_456_789.000001]


def awkward_drawings(n: int = 40, seed: int = 0) -> list[Drawing]:
    """Timed and untimed drawings whose every coordinate and time float32 would change."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        xs = np.array(AWKWARD + rng.uniform(-1e6, 1e6, 3).tolist())
        ys = np.array(AWKWARD[::-1] + rng.uniform(-1e3, 1e3, 3).tolist())
        points = np.stack([xs, ys], axis=1)
        if i % 2 == 0:
            times = np.array(AWKWARD_TIMES + rng.uniform(0, 1e9, len(xs) - len(AWKWARD_TIMES)).tolist())
            points = np.column_stack([points, np.sort(times)])
        strokes = [points[:4], points[4:]]
        out.append(Drawing(key_id=10**12 + i, strokes=strokes, word="cat", countrycode="NZ", recognized=bool(i % 3),
                           timestamp=datetime(2017, 3, 1, 12, 0, i % 60, 123456, tzinfo=UTC)))
    return out
