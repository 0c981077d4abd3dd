"""The compiled batch augmentation gives the per-drawing reference's strokes, for every option."""

from __future__ import annotations

import numpy as np
import pytest

from doodle.data.drawing import Drawing, pack
from doodle.render import AugmentConfig, augment_batch
from doodle.render.augment_packed import augment_packed

OPTIONS = {
    "none": dict(flip=0.0, affine=0.0, keep_in_frame=False),
    "flip": dict(flip=1.0, affine=0.0),
    "affine": dict(flip=0.0, affine=1.0, scale=(0.6, 1.5), rotate=40.0, shift=0.3),
    "dropout": dict(flip=0.0, affine=0.0, dropout=0.6),
    "jitter": dict(flip=0.0, affine=0.0, jitter=0.02),
    "truncate": dict(flip=0.0, affine=0.0, truncate=1.0, truncate_min=0.1),
    "fit-into-frame": dict(flip=0.0, affine=1.0, scale=(1.5, 2.0), rotate=0.0, shift=0.5),
    "everything": dict(flip=0.5, affine=0.7, scale=(0.7, 1.4), rotate=30.0, shift=0.2, dropout=0.3, jitter=0.01,
                       truncate=0.5, truncate_min=0.3),
    "default": {},
}


def float64_pack(drawings: list[Drawing]):
    return pack(drawings, np.float64)


def assert_same_strokes(reference: list[Drawing], packed) -> None:
    assert len(packed) == len(reference)
    s_off, d_off, pts = packed.stroke_offsets, packed.drawing_offsets, packed.points
    for i, d in enumerate(reference):
        strokes = [pts[s_off[s]:s_off[s + 1]] for s in range(d_off[i], d_off[i + 1])]
        assert len(strokes) == len(d.strokes), f"drawing {i}: stroke count"
        for got, want in zip(strokes, d.strokes, strict=True):
            np.testing.assert_allclose(got[:, :2], want[:, :2], rtol=1e-9, atol=1e-9)
            if want.shape[1] == 3:
                np.testing.assert_array_equal(got[:, 2], want[:, 2])  # timing carried untouched
            else:
                assert np.isnan(got[:, 2]).all()


@pytest.mark.parametrize("option", list(OPTIONS))
def test_packed_equals_reference_on_real_drawings(option, simplified_cats, raw_cats):
    cfg = AugmentConfig(**OPTIONS[option])
    drawings = simplified_cats[:40] + raw_cats[:40]
    drawings = [drawings[i] for i in np.random.default_rng(0).permutation(len(drawings))]  # mixed batch
    for seed in (0, 1, 2):
        reference = augment_batch(drawings, cfg, np.random.default_rng(seed))
        assert_same_strokes(reference, augment_packed(float64_pack(drawings), cfg, np.random.default_rng(seed)))


def test_seed_rule_one_generator_per_batch(simplified_cats):
    """Both paths consume the generator alike: after a batch, it is in the same state."""
    cfg = AugmentConfig(dropout=0.2, jitter=0.01, truncate=0.3)
    g1, g2 = np.random.default_rng(7), np.random.default_rng(7)
    augment_batch(simplified_cats[:16], cfg, g1)
    augment_packed(float64_pack(simplified_cats[:16]), cfg, g2)
    assert g1.random() == g2.random()


def test_edge_drawings_empty_and_single_stroke():
    cfg = AugmentConfig(flip=0.5, affine=1.0, dropout=0.9, jitter=0.01, truncate=1.0)
    drawings = [Drawing(key_id=1, strokes=[]),
                Drawing(key_id=2, strokes=[np.array([[5.0, 5.0]])]),
                Drawing(key_id=3, strokes=[np.array([[0.0, 0.0], [255.0, 255.0]]), np.array([[9.0, 9.0]])])]
    for seed in range(20):
        reference = augment_batch(drawings, cfg, np.random.default_rng(seed))
        assert_same_strokes(reference, augment_packed(float64_pack(drawings), cfg, np.random.default_rng(seed)))


def test_input_left_alone(raw_cats):
    packed = float64_pack(raw_cats[:8])
    before = packed.points.copy()
    out = augment_packed(packed, AugmentConfig(jitter=0.01), np.random.default_rng(0))
    np.testing.assert_array_equal(packed.points, before)
    assert not np.allclose(out.points[:, :2], before[:, :2])
