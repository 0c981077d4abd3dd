"""The one-pass parser of drawing JSON text (doodle.data.stroke_json) and the flat paths around it.

The parser must give exactly what the general path (orjson.loads, then strokes_from_json) gives on
every text it handles, and hand every other text to that path, so that reject reasons and accepted
values are the general path's own. Most checks here compare the two on the same text.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import orjson
import pytest

from doodle.data import table as table_module
from doodle.data.drawing import (
    DEFAULT_LIMITS,
    BadRecord,
    Drawing,
    Limits,
    drawing_from_record,
    strokes_from_json,
    strokes_from_text,
)
from doodle.data.formats.kaggle_csv import _csv_row, _simple_row
from doodle.data.simplify import simplify
from doodle.data.stroke_json import MAX_DIGITS, parse_drawing_text, parse_flat
from doodle.data.synth import SHAPES, make_drawing
from doodle.data.table import drawings_to_table

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "quickdraw"


def general(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> list[np.ndarray]:
    """The general path, as drawing_from_record took it before the one-pass parser."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise BadRecord(f"drawing is not valid JSON: {err}") from None
    return strokes_from_json(parsed, limits)


def outcome(parse, text, limits: Limits = DEFAULT_LIMITS) -> list[np.ndarray] | str:
    try:
        return parse(text, limits)
    except BadRecord as err:
        return f"BadRecord: {err}"


def assert_same_strokes(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype == np.float64
        assert a.shape == b.shape
        assert np.array_equal(a, b)
        assert np.array_equal(np.signbit(a), np.signbit(b))  # -0 reads as 0 on both paths


def assert_fast_equals_general(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    """The fast path handles `text` and gives the general path's arrays exactly."""
    fast = parse_drawing_text(text, limits)
    assert fast is not None, f"not handled: {text!r:.200}"
    assert_same_strokes(fast, general(text, limits))
    assert_same_strokes(strokes_from_text(text, limits), fast)


def assert_agrees(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    """Whichever path takes `text`, strokes_from_text gives what the general path gives."""
    want, got = outcome(general, text, limits), outcome(strokes_from_text, text, limits)
    if isinstance(want, str):
        assert got == want, text
    else:
        assert_same_strokes(got, want)


def assert_falls_back(text: str | bytes, limits: Limits = DEFAULT_LIMITS) -> None:
    """The fast path declines `text`, and strokes_from_text gives what the general path gives."""
    assert parse_drawing_text(text, limits) is None, f"handled: {text!r:.200}"
    assert_agrees(text, limits)


# -- known answers -------------------------------------------------------------------------------------


def test_a_hand_written_drawing():
    text = "[[[17,18,20],[81,79,77]],[[5],[6]],[[0,255],[255,0]]]"
    points, offsets = parse_flat(text, DEFAULT_LIMITS)
    assert points.dtype == np.float64 and points.flags.c_contiguous
    assert points.tolist() == [[17, 81], [18, 79], [20, 77], [5, 6], [0, 255], [255, 0]]
    assert offsets.dtype == np.int64 and offsets.tolist() == [0, 3, 4, 6]
    strokes = parse_drawing_text(text, DEFAULT_LIMITS)
    assert [s.tolist() for s in strokes] == [[[17, 81], [18, 79], [20, 77]], [[5, 6]], [[0, 255], [255, 0]]]
    base = strokes[0].base  # views into one flat array, as strokes_from_json's are
    assert base.shape == (6, 2) and all(s.base is base for s in strokes)
    assert_fast_equals_general(text)


def test_timed_strokes_have_three_columns():
    text = "[[[10, 11], [20, 21], [0, 16]], [[12], [22], [250]]]"
    points, offsets = parse_flat(text, DEFAULT_LIMITS)
    assert points.tolist() == [[10, 20, 0], [11, 21, 16], [12, 22, 250]]
    assert offsets.tolist() == [0, 2, 3]
    assert_fast_equals_general(text)


def test_negative_integers_and_zero():
    text = "[[[-5, 0, -0, 7], [-999999, 1000000, -1000000, -1]]]"
    points, _ = parse_flat(text, DEFAULT_LIMITS)
    assert points.tolist() == [[-5, -999999], [0, 1000000], [0, -1000000], [7, -1]]
    assert not np.signbit(points[2, 0])  # -0 is the integer 0 on the general path too
    assert_fast_equals_general(text)


@pytest.mark.parametrize("text", [
    "[[[1,2],[3,4]]]",
    "[[[1, 2], [3, 4]]]",  # Kaggle's spacing
    " \t\r\n[ [ [ 1 , 2 ] , [ 3 , 4 ] ] ] \n",
    "[\n  [\n    [1,\t2],\r\n    [3,4]\n  ]\n]",
])
def test_json_whitespace_anywhere(text):
    assert parse_flat(text, DEFAULT_LIMITS)[0].tolist() == [[1, 3], [2, 4]]
    assert_fast_equals_general(text)


def test_bytes_and_str_give_the_same():
    text = "[[[1, 2, 3], [4, 5, 6]], [[7], [8]]]"
    assert_fast_equals_general(text.encode())
    a, b = parse_flat(text, DEFAULT_LIMITS), parse_flat(text.encode(), DEFAULT_LIMITS)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_the_longest_integer_handled():
    big = 10**MAX_DIGITS - 1  # 15 nines: below 2**53, exact in float64
    limits = Limits(max_abs_coord=1e300, max_abs_time=1e300)
    text = f"[[[{big}, -{big}], [1, 2]]]"
    assert parse_flat(text, limits)[0][:, 0].tolist() == [float(big), float(-big)]
    assert_fast_equals_general(text, limits)
    assert_falls_back(f"[[[{big}0], [1]]]", limits)  # one digit more: the general path's value


def test_limits_at_their_bounds_are_kept():
    limits = Limits(max_strokes=2, max_points=3, max_abs_coord=10, max_abs_time=100)
    assert_fast_equals_general("[[[10, -10], [0, 1], [100, -100]], [[1], [2], [3]]]", limits)


# -- what the fast path does not handle: the general path decides -------------------------------------------

NOT_HANDLED = [
    # numbers it does not read
    "[[[1.5, 2], [3, 4]]]", "[[[1.0, 2], [3, 4]]]", "[[[1e2, 2], [3, 4]]]", "[[[1E2, 2], [3, 4]]]",
    "[[[1, 2], [3, -4.25]]]", "[[[01, 2], [3, 4]]]", "[[[-01], [3]]]", "[[[-, 2], [3, 4]]]", "[[[- 1], [3]]]",
    "[[[+1], [3]]]", "[[[NaN], [3]]]", "[[[Infinity], [3]]]", "[[[0x10], [3]]]",
    "[[[1234567890123456], [1]]]", "[[[18446744073709551616], [1]]]", "[[[-9223372036854775809], [1]]]",
    # values of other types
    '[[["1", 2], [3, 4]]]', "[[[null], [1]]]", "[[[true], [1]]]", "[[[false], [1]]]", '[[[1], [2]], "x"]',
    "[[[{}], [1]]]", '{"a": 1}', "1", '"[[[1],[2]]]"', "null", "true",
    # structure
    "[]", "[[]]", "[[[]]]", "[[[], []]]", "[[[1], []]]", "[[[], [1]]]", "[[[1, 2], [3]]]", "[[[1], [2, 3]]]",
    "[[[1], [2], [3, 4]]]", "[[[1]]]", "[[[1], [2], [3], [4]]]", "[[[1], [2]], [[1], [2], [3]]]",
    "[[[1], [2], [3]], [[1], [2]]]", "[[[[1]], [[2]]]]", "[[1, 2]]", "[1, 2]", "[[[1], [2]], 3]",
    "[[[1], [2]], []]", "[[[1], [2]],]", "[[[1,], [2]]]", "[[[1], [2],]]", "[,[[1], [2]]]", "[[[1] [2]]]",
    "[[[1 2], [3 4]]]", "[[[1], [2]]] [[[1], [2]]]", "[[[1], [2]]]]", "[[[1], [2]]]x", "[[[1], [2]]] 0",
    "[[[1], [2]]]\x00", "[[[1], [2]]]\x0b", "\x0c[[[1], [2]]]", "[[(1), (2)]]",
    # text that is not JSON, or not ASCII
    "", " ", "\n", "[[[1], [2]]", "[[[1], [2]", "[[[1], [", "[[[1", "[", "\ufeff[[[1], [2]]]", "[[[1], [2]]]\u00a0",
    "[[[\u0661], [2]]]", "[[[1], [2]]]\u2028",
]


@pytest.mark.parametrize("text", NOT_HANDLED)
def test_not_handled_falls_back_to_the_general_path(text):
    assert_falls_back(text)
    assert_falls_back(text.encode("utf-8"))


@pytest.mark.parametrize("raw", [b"[[[1], [2]]]\xff", b"[[[\xc3\xa9], [2]]]", b"\xef\xbb\xbf[[[1], [2]]]"])
def test_bytes_that_are_not_ascii_fall_back(raw):
    assert_falls_back(raw)


BOUNDS = Limits(max_strokes=2, max_points=4, max_abs_coord=100, max_abs_time=1000)


@pytest.mark.parametrize("text", [
    "[[[1], [2]], [[1], [2]], [[1], [2]]]",  # 3 strokes
    "[[[1, 2, 3], [1, 2, 3]], [[1, 2], [1, 2]]]",  # 5 points
    "[[[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]]]",  # 5 points in one stroke
    "[[[101], [2]]]", "[[[-101], [2]]]", "[[[1], [101]]]", "[[[1], [-101]]]",  # coordinates
    "[[[1], [2], [1001]]]", "[[[1], [2], [-1001]]]",  # times
    "[[[1], [2]], [[1], [2]], [[1], [2]], []]",  # too many strokes, and bad ones after
])
def test_a_bound_exceeded_falls_back(text):
    assert_falls_back(text, BOUNDS)


def test_the_default_bounds():
    assert_falls_back("[[[1000001], [0]]]")
    assert_fast_equals_general("[[[1000000], [0]]]")
    assert_falls_back("[[[0], [0], [1000000001]]]")
    assert_fast_equals_general("[[[0], [0], [-1000000000]]]")
    strokes = "[" + ", ".join(["[[1], [2]]"] * (DEFAULT_LIMITS.max_strokes + 1)) + "]"
    assert_falls_back(strokes)
    n = DEFAULT_LIMITS.max_points + 1
    assert_falls_back(f"[[{[0] * n}, {[1] * n}]]")


def test_limits_that_are_no_numbers_leave_it_to_the_general_path():
    for limits in (Limits(max_strokes=None), Limits(max_points=[1]), Limits(max_abs_coord="big")):  # type: ignore[arg-type]
        assert parse_drawing_text("[[[1], [2]]]", limits) is None


def test_other_limits_are_the_parser_bounds_too():
    limits = Limits(max_strokes=1, max_points=2, max_abs_coord=5.5, max_abs_time=7)
    assert_fast_equals_general("[[[5, -5], [-5, 5], [7, -7]]]", limits)
    assert_falls_back("[[[6], [0], [0]]]", limits)
    assert_falls_back("[[[0], [0], [8]]]", limits)
    assert_fast_equals_general("[[[6], [0], [0]]]", Limits(max_abs_coord=float("nan")))  # nothing exceeds NaN


def test_subclasses_of_str_and_bytes_keep_the_general_paths_reason():
    class Text(str):
        pass

    class Data(bytes):
        pass

    for text in (Text("[[[1, 2], [3, 4]]]"), Data(b"[[[1, 2], [3, 4]]]")):
        assert_falls_back(text)
        with pytest.raises(BadRecord, match="drawing is not valid JSON: Input must be"):  # orjson refuses them
            strokes_from_text(text)
    assert parse_flat(bytearray(b"[[[1], [2]]]"), DEFAULT_LIMITS) is None


def test_every_prefix_of_a_drawing_falls_back():
    text = "[[[17, 18], [81, 79], [0, 30]], [[-1], [2], [45]]]"
    for k in range(len(text)):
        assert_falls_back(text[:k])
        assert_agrees(text[:k] + "]")  # the first stroke closed early is a drawing
    assert_fast_equals_general(text)


def test_drawing_from_record_takes_either_path_with_the_same_reasons():
    good = drawing_from_record({"key_id": "7", "drawing": "[[[1, 2], [3, 4]]]", "word": "cat"})
    assert [s.tolist() for s in good.strokes] == [[[1, 3], [2, 4]]]
    floats = drawing_from_record({"key_id": "7", "drawing": "[[[1.5, 2], [3, 4]]]"})
    assert [s.tolist() for s in floats.strokes] == [[[1.5, 3], [2, 4]]]
    for text, reason in [("[]", "drawing has no strokes"), ("[[[1], [2, 3]]]", "different lengths"),
                         ("[[[1], [2]]", "drawing is not valid JSON"), ('[[["1"], [2]]]', "not a number")]:
        with pytest.raises(BadRecord, match=reason):
            drawing_from_record({"key_id": "7", "drawing": text})


# -- the property: the fast path equals the general path, array for array ----------------------------------


def kaggle_text(strokes: list) -> str:
    return json.dumps(strokes)  # a space after every comma, as Kaggle's files have


def compact_text(strokes: list) -> str:
    return orjson.dumps(strokes).decode()


def spaced_text(value: list | int, rng: random.Random, top: bool = True) -> str:
    """JSON with random whitespace around every token."""
    def space() -> str:
        return rng.choice(["", " ", "  ", "\n", "\t", "\r\n"])

    if not isinstance(value, list):
        return str(value)
    inner = ("," + space()).join(spaced_text(v, rng, False) + space() for v in value)
    text = "[" + space() + inner + "]"
    return space() + text + space() if top else text


def random_drawing(rng: random.Random) -> list:
    width = rng.choice([2, 3])
    out = []
    for _ in range(rng.randint(1, 12)):
        n = rng.randint(1, 40)
        lo, hi = rng.choice([(0, 255), (-5000, 5000), (-1_000_000, 1_000_000)])
        stroke = [[rng.randint(lo, hi) for _ in range(n)] for _ in range(2)]
        if width == 3:
            stroke.append(sorted(rng.randint(-1000, 10**9) for _ in range(n)))
        out.append(stroke)
    return out


def integer_drawings() -> list[list]:
    """Drawings whose JSON has integers only: the fast path must handle each."""
    out = []
    for word in list(SHAPES)[:8]:
        for index in range(4):
            d = make_drawing(word, index)
            simple = simplify(d)  # Google's simplification: integers in 0..255
            out.append(simple.to_json_dict()["drawing"])
            rounded = d.replace(strokes=[np.round(s) for s in d.strokes])  # raw, with timing
            out.append(rounded.to_json_dict()["drawing"])
    rng = random.Random(5)
    out += [random_drawing(rng) for _ in range(150)]
    return out


def sample_drawings() -> list[list]:
    """Every drawing of the committed sample of real data, where the sample is there."""
    out = []
    for folder in ("raw", "simplified"):
        for path in sorted((SAMPLE / folder).glob("*.ndjson")):
            out += [orjson.loads(line)["drawing"] for line in path.read_bytes().splitlines() if line.strip()]
    return out


def test_integer_drawings_parse_exactly_as_the_general_path():
    rng = random.Random(11)
    for strokes in integer_drawings():
        for text in (kaggle_text(strokes), compact_text(strokes), spaced_text(strokes, rng)):
            assert_fast_equals_general(text)
            assert_fast_equals_general(text.encode())


def test_real_drawings_parse_exactly_as_the_general_path():
    drawings = sample_drawings()
    handled = 0
    for strokes in drawings:
        for text in (kaggle_text(strokes), compact_text(strokes)):
            fast = parse_drawing_text(text, DEFAULT_LIMITS)
            if fast is None:  # real raw drawings may hold floats (touch screens): the general path's
                assert_falls_back(text)
            else:
                assert_same_strokes(fast, general(text))
                handled += 1
    if SAMPLE.is_dir():
        assert handled > len(drawings)  # the simplified ones (integers) at least, in both spellings


def test_synthetic_float_drawings_fall_back_with_their_values():
    for word in list(SHAPES)[:4]:
        strokes = make_drawing(word, 1).to_json_dict()["drawing"]  # raw synthetic: one decimal place
        assert_falls_back(kaggle_text(strokes))


def test_random_edits_of_a_drawing_agree_with_the_general_path():
    """Whatever one edit makes of a valid text, both paths agree (mostly by the fast one declining)."""
    rng = random.Random(3)
    base = kaggle_text([[[17, 18, 20], [81, 79, 77]], [[1, -2], [3, 4]]])
    alphabet = "[],- 0123456789.e\"nt\n"
    for _ in range(3000):
        k = rng.randrange(len(base) + 1)
        edit = rng.choice(["insert", "delete", "replace"])
        c = rng.choice(alphabet)
        text = {"insert": base[:k] + c + base[k:], "delete": base[:k] + base[k + 1 :],
                "replace": base[:k] + c + base[k + 1 :]}[edit]
        assert_agrees(text)


# -- the flat points of a table batch -------------------------------------------------------------------------


def drawing(strokes: list[np.ndarray], key: int = 1, **meta) -> Drawing:
    return Drawing(key_id=key, strokes=strokes, word="cat", **meta)


def per_drawing_table(drawings: list[Drawing], monkeypatch) -> object:
    with monkeypatch.context() as patch:
        patch.setattr(table_module, "_batch_points", lambda batch: None)
        return drawings_to_table(drawings, source="f")


def parsed(text: str, key: int = 1) -> Drawing:
    return drawing(strokes_from_text(text), key)


BATCHES = {
    "simplified": lambda: [parsed("[[[1, 2], [3, 4]], [[5], [6]]]"), parsed("[[[7, 8, 9], [1, 2, 3]]]", 2)],
    "raw": lambda: [parsed("[[[1, 2], [3, 4], [0, 5]]]"), parsed("[[[7], [1], [9]], [[2], [3], [40]]]", 2)],
    "mixed widths": lambda: [parsed("[[[1, 2], [3, 4]]]"), parsed("[[[7], [1], [9]]]", 2)],
    "built, modified, reordered": lambda: [
        drawing([np.array([[1.5, 2.0]]), np.array([[3.0, 4.0], [5.0, 6.0]])]),
        drawing(list(reversed(strokes_from_text("[[[1, 2], [3, 4]], [[5], [6]]]"))), 2),
        drawing([s * 2 for s in strokes_from_text("[[[1, 2], [3, 4]]]")], 3),
    ],
    "other dtypes": lambda: [drawing([np.array([[1, 2]], np.int64)]), drawing([np.array([[0.1, 2]], np.float32)], 2),
                             drawing([np.array([[3, 4]], np.uint8)], 3)],
    "with bitmaps": lambda: [parsed("[[[1], [2], [3]]]"),
                             Drawing(key_id=2, strokes=[], bitmap=np.ones((28, 28), np.uint8)),
                             parsed("[[[4, 5], [6, 7], [8, 9]]]", 3)],
    "only bitmaps": lambda: [Drawing(key_id=2, strokes=[], bitmap=np.zeros((28, 28), np.uint8))],
    "empty": lambda: [],
    "one-column strokes": lambda: [drawing([np.array([[1.0], [2.0]])])],
}


@pytest.mark.parametrize("name", BATCHES)
def test_the_batch_table_equals_the_per_drawing_table(name, monkeypatch):
    batch = BATCHES[name]()
    try:
        want = per_drawing_table(batch, monkeypatch)
    except (ValueError, IndexError) as err:  # no valid drawing (one column): the same error either way
        with pytest.raises(type(err)):
            drawings_to_table(batch, source="f")
        return
    got = drawings_to_table(batch, source="f")
    assert got.schema == want.schema
    assert got.equals(want)
    assert got.to_pylist() == want.to_pylist()


def test_a_stroke_modified_in_place_shows_in_the_table():
    d = parsed("[[[1, 2], [3, 4]], [[5], [6]]]")
    d.strokes[1] += 10  # a view into the parser's flat array: the array changes with it
    d.strokes[0][0, 0] = -1
    row = drawings_to_table([d]).to_pylist()[0]
    assert row["x"] == [-1, 2, 15] and row["y"] == [3, 4, 16] and row["stroke_len"] == [2, 1]


def test_to_flat_still_copies():
    d = parsed("[[[1, 2], [3, 4]], [[5], [6]]]")
    points, offsets = d.to_flat()
    points[:] = 0
    assert d.strokes[0].tolist() == [[1, 3], [2, 4]]
    assert offsets.tolist() == [0, 2, 3]
    assert d.n_points == 3 and Drawing(key_id=1, strokes=[]).n_points == 0


# -- Kaggle rows split without the csv module ------------------------------------------------------------------


def test_a_kaggle_row_splits_as_the_csv_module_splits_it():
    row = ('US,"[[[167, 109], [140, 194]], [[207], [74]]]",5152802093400064,True,2017-03-08 21:12:07.266040,'
           "airplane\n")
    assert _simple_row(row) == next(csv.reader([row], strict=True))
    assert _csv_row(row) == ["US", "[[[167, 109], [140, 194]], [[207], [74]]]", "5152802093400064", "True",
                             "2017-03-08 21:12:07.266040", "airplane"]


def test_random_lines_split_as_the_csv_module_splits_them():
    rng = random.Random(1)
    alphabet = ["a", ",", '"', " ", "\n", "\r", "\0", "é", "[1, 2]", '""']
    handled = 0
    for _ in range(40_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9)))
        got = _simple_row(text)
        if got is None:
            continue
        handled += 1
        assert got == next(csv.reader([text], strict=True)), repr(text)
    assert handled > 1000
