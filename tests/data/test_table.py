import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from store_helpers import awkward_drawings

from doodle.data.drawing import Drawing
from doodle.data.table import SCHEMA, drawings_to_table, table_to_drawings


def assert_same(a: Drawing, b: Drawing) -> None:
    assert (a.key_id, a.word, a.countrycode, a.recognized, a.timestamp) == (
        b.key_id, b.word, b.countrycode, b.recognized, b.timestamp)
    assert len(a.strokes) == len(b.strokes)
    for sa, sb in zip(a.strokes, b.strokes, strict=True):
        assert sa.shape == sb.shape and sb.dtype == np.float64
        assert np.array_equal(sa, sb)  # exactly: a store gives back what it was given


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


def test_every_value_comes_back_exactly():
    drawings = awkward_drawings()
    assert any(not np.array_equal(s.astype(np.float32), s) for d in drawings for s in d.strokes)
    table = drawings_to_table(drawings, source="gen")
    for name in ("x", "y", "t"):
        assert table.schema.field(name).type == SCHEMA.field(name).type == pa.list_(pa.float64())
    for a, b in zip(drawings, table_to_drawings(table), strict=True):
        assert_same(a, b)


def test_float32_rows_of_older_stores_still_read():
    # Stores written before float64 coordinates hold list<float32>: they read back as float64 arrays.
    drawings = awkward_drawings(6)
    table = drawings_to_table(drawings)
    f32 = pa.list_(pa.float32())
    old = table.set_column(table.schema.get_field_index("x"), "x", pc.cast(table.column("x"), f32))
    old = old.set_column(old.schema.get_field_index("y"), "y", pc.cast(old.column("y"), f32))
    old = old.set_column(old.schema.get_field_index("t"), "t", pc.cast(old.column("t"), f32))
    for a, b in zip(drawings, table_to_drawings(old), strict=True):
        assert [s.dtype for s in b.strokes] == [np.float64] * len(a.strokes)
        for sa, sb in zip(a.strokes, b.strokes, strict=True):
            assert np.array_equal(sa.astype(np.float32), sb)


def test_bitmap_and_empty():
    image = np.arange(784, dtype=np.uint8).reshape(28, 28)
    d = Drawing(key_id=2**64 - 1, strokes=[], word="cat", bitmap=image)
    (back,) = table_to_drawings(drawings_to_table([d]))
    assert back.key_id == 2**64 - 1 and back.strokes == [] and np.array_equal(back.bitmap, image)
    assert table_to_drawings(drawings_to_table([])) == []
