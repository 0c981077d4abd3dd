"""Vector augmentations: deterministic, pure, in frame, and each doing what it says."""

from __future__ import annotations

import numpy as np
import pytest

from doodle.data.drawing import Drawing
from doodle.render import AugmentConfig, augment, augment_batch, render
from doodle.render.augment import fit_into, hflip, jitter, random_affine, stroke_dropout, truncate


def same(a: Drawing, b: Drawing) -> bool:
    return len(a.strokes) == len(b.strokes) and all(
        np.array_equal(x, y) for x, y in zip(a.strokes, b.strokes, strict=True)
    )


STRONG = AugmentConfig(flip=0.5, scale=(0.7, 1.4), rotate=30, shift=0.2, dropout=0.3, jitter=0.01, truncate=0.5)


def test_deterministic_under_seed_and_pure(simplified_cats, raw_cats):
    ds = simplified_cats[:10] + raw_cats[:10]
    before = [[s.copy() for s in d.strokes] for d in ds]
    a = augment_batch(ds, STRONG, seed=5)
    b = augment_batch(ds, STRONG, seed=5)
    c = augment_batch(ds, STRONG, seed=6)
    assert all(same(x, y) for x, y in zip(a, b, strict=True))
    assert not all(same(x, y) for x, y in zip(a, c, strict=True))
    assert all(
        np.array_equal(s, t) for d, old in zip(ds, before, strict=True) for s, t in zip(d.strokes, old, strict=True)
    )
    g1, g2 = np.random.default_rng(1), np.random.default_rng(1)
    assert same(augment(ds[0], STRONG, g1), augment(ds[0], STRONG, g2))


def test_augmented_simplified_drawings_stay_in_frame_and_render(simplified_cats, raw_cats):
    ds = augment_batch(simplified_cats, STRONG, seed=0)
    for d in ds:
        pts = np.concatenate(d.strokes)
        assert pts[:, :2].min() >= 0 and pts[:, :2].max() <= 255
    img = render(ds, "order-speed-accel", 64, placement="frame", padding=0)
    assert (img.reshape(len(ds), -1).max(axis=1) > 0).all()
    raw = augment_batch(raw_cats, STRONG, seed=0)
    assert all(d.has_time for d in raw)  # timing survives
    assert render(raw, "order-speed-accel-time", 64).reshape(len(raw), -1).max(axis=1).min() > 0


def test_hflip_mirrors_in_bbox():
    d = Drawing(key_id=1, strokes=[np.array([[10.0, 5.0], [30.0, 7.0]]), np.array([[20.0, 9.0]])])
    f = hflip(d)
    assert f.strokes[0].tolist() == [[30.0, 5.0], [10.0, 7.0]] and f.strokes[1].tolist() == [[20.0, 9.0]]
    assert same(hflip(f), d)
    img = render([d], "grey", 64)[0, 0]
    assert np.array_equal(render([f], "grey", 64)[0, 0], img[:, ::-1])


def test_affine_keeps_shape_and_timing(raw_cats):
    d = raw_cats[0]
    a = random_affine(d, np.random.default_rng(0), scale=(2.0, 2.0), rotate=0.0, shift=0.0)
    pts, new = np.concatenate(d.strokes), np.concatenate(a.strokes)
    assert np.allclose(new[:, 2], pts[:, 2])
    assert np.ptp(new[:, 0]) == pytest.approx(2 * np.ptp(pts[:, 0]))
    assert new[:, :2].mean(0) == pytest.approx(
        pts[:, :2].mean(0) + (pts[:, :2].mean(0) - (pts[:, :2].min(0) + pts[:, :2].max(0)) / 2)
    )


def test_dropout_never_empties():
    d = Drawing(key_id=1, strokes=[np.array([[float(i), 0.0], [i + 1.0, 1.0]]) for i in range(5)])
    rng = np.random.default_rng(0)
    for _ in range(200):
        out = stroke_dropout(d, rng, p=0.99)
        assert 1 <= len(out.strokes) <= 5
    kept = stroke_dropout(d, np.random.default_rng(3), p=0.5)
    firsts = [s[0, 0] for s in kept.strokes]
    assert firsts == sorted(firsts)  # order kept
    assert len(stroke_dropout(d, rng, p=0.0).strokes) == 5


def test_truncate_keeps_first_strokes():
    d = Drawing(key_id=1, strokes=[np.array([[float(i), 0.0]]) for i in range(6)])
    assert [s[0, 0] for s in truncate(d, k=2).strokes] == [0.0, 1.0]
    assert len(truncate(d, fraction=0.5).strokes) == 3
    assert len(truncate(d, fraction=0.01).strokes) == 1
    assert len(truncate(d, k=0).strokes) == 1 and len(truncate(d, k=99).strokes) == 6
    with pytest.raises(ValueError):
        truncate(d)


def test_jitter_and_fit_into():
    d = Drawing(key_id=1, strokes=[np.array([[0.0, 0.0], [100.0, 50.0]])])
    j = jitter(d, np.random.default_rng(0), sigma=0.01)
    assert 0 < np.abs(j.strokes[0] - d.strokes[0]).max() < 5
    big = Drawing(key_id=1, strokes=[np.array([[-100.0, 10.0], [400.0, 20.0]])])
    f = fit_into(big)
    assert f.strokes[0][:, :2].min() >= 0 and f.strokes[0][:, :2].max() <= 255
    assert fit_into(d) is d
