"""The packed batch steps agree with their per-drawing references, on real drawings."""

from __future__ import annotations

import numpy as np
import pytest

from doodle.data.drawing import Drawing, pack
from doodle.data.simplify import simplify
from doodle.data.table import drawings_to_table, table_to_packed
from doodle.packed import sequence_features_packed, simplified_mask, simplify_packed, time_features_packed
from doodle.preprocess import (
    InputConfig,
    Preprocessor,
    is_simplified,
    needs_simplification,
    sequence_features,
    time_features,
)
from doodle.render import AugmentConfig


@pytest.fixture(scope="module")
def mixed(raw_cats, simplified_cats) -> list[Drawing]:
    """Raw (timed), simplified, untimed raw-looking and degenerate drawings, shuffled."""
    untimed = [d.replace(strokes=[s[:, :2] for s in d.strokes]) for d in raw_cats[:15]]
    odd = [Drawing(key_id=1, strokes=[]), Drawing(key_id=2, strokes=[np.array([[3.0, 4.0]])]),
           Drawing(key_id=3, strokes=[np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 10.0]]), np.array([[5.0, 5.0, 9.0]])])]
    drawings = raw_cats[:40] + simplified_cats[:40] + untimed + odd
    return [drawings[i] for i in np.random.default_rng(0).permutation(len(drawings))]


def test_simplified_mask_is_is_simplified(mixed):
    assert simplified_mask(pack(mixed, np.float64)).tolist() == [is_simplified(d) for d in mixed]


def test_simplify_packed_is_simplify(mixed):
    got = simplify_packed(pack(mixed, np.float64))
    want = pack([simplify(d) if needs_simplification(d) else d for d in mixed], np.float64)
    np.testing.assert_array_equal(got.stroke_offsets, want.stroke_offsets)
    np.testing.assert_array_equal(got.drawing_offsets, want.drawing_offsets)
    np.testing.assert_array_equal(got.points, want.points)  # NaN where untimed, on both sides
    done = np.ones(len(mixed), bool)
    assert simplify_packed(pack(mixed, np.float64), done) is not None
    same = pack(mixed, np.float64)
    assert simplify_packed(same, done) is same  # marked as simplified already: left alone


@pytest.mark.parametrize("max_points", [1, 2, 17, 64, 256])
def test_sequence_features_packed(mixed, max_points):
    got = sequence_features_packed(pack(mixed, np.float64), max_points)
    want = sequence_features(mixed, max_points)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-6)


def test_time_features_packed(mixed):
    want = np.stack([time_features(d) for d in mixed])
    np.testing.assert_allclose(time_features_packed(pack(mixed, np.float64)), want, rtol=1e-6, atol=1e-7)


def test_table_to_packed_reads_the_columns(mixed):
    table = drawings_to_table(mixed, source="mix")
    got, want = table_to_packed(table), pack(mixed, np.float64)
    for name in ("points", "stroke_offsets", "drawing_offsets"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    order = np.random.default_rng(1).permutation(len(mixed))[:30]
    taken = table_to_packed(table.take(order).slice(3, 20))
    np.testing.assert_array_equal(taken.points, pack([mixed[i] for i in order[3:23]], np.float64).points)


CONFIGS = {
    "image": (InputConfig(size=32), "image"),
    "image-simplified": (InputConfig(size=48, simplify=True, encoding="order-speed-accel"), "image"),
    "image-timed": (InputConfig(size=40, encoding="order-speed-accel-time", country=True, time_features=True),
                    "image"),
    "sequence": (InputConfig(max_points=96, time_features=True), "sequence"),
    "sequence-simplified": (InputConfig(max_points=64, simplify=True), "sequence"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_preprocessor_packed_path_equals_reference(name, mixed):
    config, kind = CONFIGS[name]
    pre = Preprocessor(config, kind)
    aug = AugmentConfig(dropout=0.2, jitter=0.005, truncate=0.3)
    got = pre(mixed, augment=aug, rng=np.random.default_rng(3))
    want = pre.reference(mixed, augment=aug, rng=np.random.default_rng(3))
    assert got.keys() == want.keys()
    for key in got:
        if key == "image":  # float rounding of the augmented points may move a pixel's coverage by one
            diff = np.abs(got[key].astype(int) - want[key].astype(int))
            assert diff.max() <= 2 and (diff > 0).mean() < 1e-3, key
        else:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_take_and_concat_packed(mixed):
    from doodle.packed import concat_packed, take_packed

    packed = pack(mixed, np.float64)
    rows = np.array([5, 0, 0, len(mixed) - 1, 17])
    want = pack([mixed[i] for i in rows], np.float64)
    got = take_packed(packed, rows)
    for name in ("points", "stroke_offsets", "drawing_offsets"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    both = concat_packed([got, take_packed(packed, np.array([3])), take_packed(packed, np.zeros(0, np.int64))])
    want = pack([mixed[i] for i in [*rows, 3]], np.float64)
    for name in ("points", "stroke_offsets", "drawing_offsets"):
        np.testing.assert_array_equal(getattr(both, name), getattr(want, name))
