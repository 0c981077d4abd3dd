import numpy as np
import pyarrow as pa

from doodle.data.drawing import Drawing
from doodle.data.table import drawings_to_table, table_to_drawings


def assert_same(a: Drawing, b: Drawing) -> None:
    assert (a.key_id, a.word, a.countrycode, a.recognized, a.timestamp) == (
        b.key_id, b.word, b.countrycode, b.recognized, b.timestamp)
    assert len(a.strokes) == len(b.strokes)
    for sa, sb in zip(a.strokes, b.strokes, strict=True):
        assert sa.shape == sb.shape
        assert np.array_equal(sa.astype(np.float32), sb)


def test_roundtrip_real_raw_and_simplified(raw_cats, simplified_cats):
    drawings = raw_cats + simplified_cats
    table = drawings_to_table(drawings, source="mix")
    assert table.num_rows == len(drawings)
    assert table.column("t").null_count == len(simplified_cats)
    back = table_to_drawings(table)
    for a, b in zip(drawings, back, strict=True):
        assert_same(a, b)
    # slices index the shared child arrays correctly
    for a, b in zip(drawings[7:19], table_to_drawings(table.slice(7, 12)), strict=True):
        assert_same(a, b)


def test_rows_taken_in_any_order_keep_their_timing(raw_cats, simplified_cats):
    # After an Arrow take, null t lists may hold no values, so t must not be indexed by x's offsets.
    drawings = [d for pair in zip(simplified_cats[:20], raw_cats[:20], strict=True) for d in pair]
    table = drawings_to_table(drawings)
    order = np.random.default_rng(0).permutation(len(drawings))
    taken = table.take(pa.array(order))
    for i, d in zip(order, table_to_drawings(taken), strict=True):
        assert_same(drawings[i], d)


def test_raw_coordinates_survive_float32(raw_cats):
    # Nearly all of Google's raw coordinates are float32 values written as float64 text; the rest
    # (e.g. 246.90000153) lose only digits far below a pixel.
    strokes = [s for d in raw_cats for s in d.strokes]
    exact = [np.array_equal(s.astype(np.float32).astype(np.float64), s) for s in strokes]
    assert np.mean(exact) > 0.9
    assert max(np.abs(s.astype(np.float32) - s).max() for s in strokes) < 1e-4


def test_bitmap_and_empty():
    image = np.arange(784, dtype=np.uint8).reshape(28, 28)
    d = Drawing(key_id=2**64 - 1, strokes=[], word="cat", bitmap=image)
    (back,) = table_to_drawings(drawings_to_table([d]))
    assert back.key_id == 2**64 - 1 and back.strokes == [] and np.array_equal(back.bitmap, image)
    assert table_to_drawings(drawings_to_table([])) == []
