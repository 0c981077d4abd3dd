"""Every registered encoding, generated from the registry, and every real file in every encoding."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_ndjson, tier_folder

from doodle.data.drawing import Drawing, pack
from doodle.render import (
    Channels,
    UnknownEncodingError,
    get_encoding,
    list_encodings,
    register_encoding,
    render,
)
from doodle.render.registry import _REGISTRY

NAMES = [e.name for e in list_encodings()]
REQUIRED = {
    "grey", "order", "order-speed-accel", "order-speed-accel-time", "palette", "gradients",
    "delay-time-count", "thirds", "index-points", "reverse",
}  # fmt: skip


def test_all_required_encodings_registered_and_described():
    assert set(NAMES) >= REQUIRED
    for enc in list_encodings():
        line = enc.describe()
        assert enc.name in line and "\n" not in line
        assert len(enc.channel_names) == enc.channels
        if enc.needs_time:
            assert enc.untimed and "simplified data" in line


@pytest.fixture(scope="module")
def sample(raw_cats, simplified_cats) -> list[Drawing]:
    return raw_cats[:6] + simplified_cats[:6]


@pytest.mark.parametrize("name", NAMES)
def test_encoding_contract(name, sample):
    enc = get_encoding(name)
    for size in (32, 256):
        for placement in ("fit", "frame"):
            a = render(sample, name, size, placement=placement)
            assert a.dtype == np.uint8 and a.shape == (len(sample), enc.channels, size, size)
            assert (a.reshape(len(sample), -1).max(axis=1) > 0).all()  # every drawing has ink
            b = render(sample, name, size, placement=placement)
            assert np.array_equal(a, b)  # deterministic
    # drawings render the same alone as in a batch, from Drawing lists or packed arrays
    batch = render(sample, name, 64)
    alone = np.concatenate([render([d], name, 64) for d in sample])
    assert np.array_equal(batch, alone)
    assert np.array_equal(batch, render(pack(sample), name, 64))
    out = np.full((len(sample), enc.channels, 64, 64), 7, np.uint8)
    assert render(sample, name, 64, out=out) is out and np.array_equal(out, batch)


def test_fit_keeps_padding_blank(sample):
    img = render(sample, "grey", 64, line_width=6, padding=16)  # 16/256*64 = 4 px border
    assert img[:, :, :4, :].max() == 0 and img[:, :, -4:, :].max() == 0
    assert img[:, :, :, :4].max() == 0 and img[:, :, :, -4:].max() == 0


def test_frame_placement_aligns_raw_drawings(raw_cats):
    d = raw_cats[0]
    framed = render([d], "grey", 64, placement="frame")  # auto-aligned: raw has timing
    assert framed.any()
    mn = np.concatenate(d.strokes)[:, :2].min(axis=0)
    shifted = d.replace(strokes=[s + np.r_[1000.0, 500.0, 0.0] - np.r_[mn, 0.0] for s in d.strokes])
    assert np.array_equal(framed, render([shifted], "grey", 64, placement="frame"))
    # without alignment the raw screen coordinates mostly fall outside the frame
    assert render([shifted], "grey", 64, placement="frame", align=False).sum() < framed.sum()


def test_errors_and_custom_registration():
    with pytest.raises(UnknownEncodingError, match="known: "):
        render([], "no-such-encoding")
    with pytest.raises(ValueError):
        render([], "grey", size=4)
    with pytest.raises(ValueError):
        register_encoding("x-timed", channels=1, needs_time=True, doc="no untimed rule")

    @register_encoding("test-two", channels=2, doc="test only: 255 and 100.")
    def two(batch):
        vals = np.empty((batch.n_points, 2), np.float32)
        vals[:, 0], vals[:, 1] = 255, 100
        return Channels(vals)

    try:
        d = Drawing(key_id=1, strokes=[np.array([[0.0, 0.0], [255.0, 255.0]])])
        img = render([d], "test-two", 32, antialias=False)
        assert img.shape == (1, 2, 32, 32) and set(np.unique(img[0, 1])) == {0, 100}
    finally:
        _REGISTRY.pop("test-two")


@pytest.mark.parametrize(("tier", "n"), [("sample", 296 + 3_220), pytest.param("shared", 10_129 + 17_252,
                                                                            marks=pytest.mark.breadth)])
def test_every_real_file_in_every_encoding(request, tier: str, n: int):
    """Every drawing of every raw and simplified ndjson file (of the sample; of ../shared, breadth) has ink."""
    quickdraw = tier_folder(request, tier)
    drawings = []
    for path in sorted((quickdraw / "raw").glob("*.ndjson")) + sorted((quickdraw / "simplified").glob("*.ndjson")):
        drawings.extend(load_ndjson(path))
    assert len(drawings) == n
    packed = pack(drawings)
    for enc in list_encodings():
        out = np.empty((len(drawings), enc.channels, 32, 32), np.uint8)
        render(packed, enc.name, 32, out=out)
        ink = out.reshape(len(drawings), -1).max(axis=1)
        assert (ink > 0).all(), (enc.name, np.flatnonzero(ink == 0)[:5])
