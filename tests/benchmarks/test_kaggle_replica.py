"""benchmarks/kaggle_replica.py: Kaggle's file layout and row bytes, exact counts, unique key_ids,
determinism, and copies that differ from their real sources yet stay valid drawings.

Runs on a small fake quickdraw folder built here (real-looking drawings of four classes), so it
needs nothing from ../shared.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
from conftest import load_benchmark

import doodle
from doodle.data.drawing import drawing_from_record
from doodle.data.simplify import simplify

CLASSES = ["The Eiffel Tower", "cat", "paint can", "zigzag"]
"""zigzag gets no simplified drawings: its simplified rows must come from its raw ones."""
COUNTS = {"The Eiffel Tower": 300_000, "cat": 100_000, "paint can": 150_000, "zigzag": 120_000, "knife": 99}
FLOAT_CLASS = "paint can"
"""Its raw drawings have float coordinates (touch input), the others integers (mouse)."""

# airplane 5152802093400064, from Google's simplified/airplane.ndjson (CC BY 4.0): the drawing of the
# one public Kaggle train_simplified row found, which reads
# US,"[[[167, 109, 80, 69,..246, 182, 165], [140, 194, .. 121, 127, 120]], [[207, 207, 210, 221, 238],
# [74, 103, 114, 128, 135]]]",5152802093400064,True,2017-03-08 21:12:07.266040,airplane
AIRPLANE = (
    '{"word":"airplane","countrycode":"US","timestamp":"2017-03-08 21:12:07.26604 UTC","recognized":true,'
    '"key_id":"5152802093400064","drawing":[[[167,109,80,69,58,31,57,117,99,52,30,6,1,2,66,98,253,254,246,182,165],'
    "[140,194,227,232,229,229,206,124,123,149,157,159,153,110,82,77,74,109,121,127,120]],"
    "[[207,207,210,221,238],[74,103,114,128,135]],[[119,107,76,70,49,39,60,93],[72,41,3,0,1,5,38,70]]]}"
)
AIRPLANE_ROW = (
    'US,"[[[167, 109, 80, 69, 58, 31, 57, 117, 99, 52, 30, 6, 1, 2, 66, 98, 253, 254, 246, 182, 165], '
    "[140, 194, 227, 232, 229, 229, 206, 124, 123, 149, 157, 159, 153, 110, 82, 77, 74, 109, 121, 127, 120]], "
    "[[207, 207, 210, 221, 238], [74, 103, 114, 128, 135]], "
    '[[119, 107, 76, 70, 49, 39, 60, 93], [72, 41, 3, 0, 1, 5, 38, 70]]]",'
    "5152802093400064,True,2017-03-08 21:12:07.266040,airplane\n"
)


@pytest.fixture(scope="module")
def replica():
    return load_benchmark("kaggle_replica")


# -- a fake quickdraw folder ----------------------------------------------------------------------


def fake_raw(rng: np.random.Generator, floats: bool) -> list:
    """A raw drawing: 2-4 strokes in screen pixels with timing (ms from the first point)."""
    strokes, t = [], 0
    for _ in range(int(rng.integers(2, 5))):
        n = int(rng.integers(4, 25))
        xy = np.cumsum(rng.normal(0, 12, (n, 2)), 0) + rng.uniform(100, 700, 2)
        xy = xy.astype(np.float32).astype(np.float64) if floats else np.rint(xy)
        times = t + np.cumsum(rng.integers(8, 30, n)) - 8
        t = int(times[-1]) + int(rng.integers(100, 600))
        number = float if floats else int
        strokes.append([[number(v) for v in xy[:, 0]], [number(v) for v in xy[:, 1]], [int(v) for v in times]])
    return strokes


def fake_simplified(rng: np.random.Generator) -> list:
    """A simplified drawing: integer strokes aligned to 0 with the larger side spanning 255."""
    raw = fake_raw(rng, floats=False)
    drawing = drawing_from_record({"key_id": "1", "word": "x", "drawing": raw})
    return [[[int(v) for v in s[:, 0]], [int(v) for v in s[:, 1]]] for s in simplify(drawing).strokes]


def record(word: str, key: int, drawing: list, i: int) -> bytes:
    return orjson.dumps({"word": word, "countrycode": ["US", "GB", "DE"][i % 3],
                         "timestamp": f"2017-03-{10 + i % 9:02d} 14:05:{i % 60:02d}.{80194 + i} UTC",
                         "recognized": i % 7 != 0, "key_id": str(key), "drawing": drawing})


def make_quickdraw(root: Path) -> Path:
    rng = np.random.default_rng(7)
    (root / "raw").mkdir(parents=True)
    (root / "simplified").mkdir()
    (root / "meta").mkdir()
    (root / "meta" / "kaggle_340_classes.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "meta" / "category-count-dict.json").write_text(json.dumps(COUNTS))
    key = 5_000_000_000_000_000
    for word in [*CLASSES, "knife"]:  # knife: not a class, must be left out
        lines = []
        for i in range(6):
            key += 1
            lines.append(record(word, key, fake_raw(rng, floats=word == FLOAT_CLASS), i))
        lines.append(lines[0])  # a repeated key_id, kept once
        (root / "raw" / f"{word}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
        if word != "zigzag":
            simple = [record(word, key + 100 + i, fake_simplified(rng), i) for i in range(5)]
            (root / "simplified" / f"{word}.ndjson").write_bytes(b"\n".join(simple) + b"\n")
    return root


@pytest.fixture(scope="module")
def quickdraw(tmp_path_factory) -> Path:
    return make_quickdraw(tmp_path_factory.mktemp("quickdraw"))


ROWS, RAW_ROWS, TEST_ROWS = 401, 97, 43


def write(replica, quickdraw: Path, out: Path, seed: int = 0, rows: int = ROWS, raw_rows: int | None = RAW_ROWS,
          test_rows: int = TEST_ROWS, overwrite: bool = False) -> Path:
    argv = ["--out", str(out), "--rows", str(rows), "--test-rows", str(test_rows), "--seed", str(seed),
            "--quickdraw", str(quickdraw), "--no-progress", *(["--overwrite"] if overwrite else [])]
    if raw_rows is not None:
        argv += ["--raw-rows", str(raw_rows)]
    assert replica.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def written(replica, quickdraw, tmp_path_factory) -> Path:
    return write(replica, quickdraw, tmp_path_factory.mktemp("replica") / "kaggle")


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def source_drawings(quickdraw: Path, kind: str, word: str) -> list[list]:
    path = quickdraw / kind / f"{word}.ndjson"
    if not path.exists():
        return []
    return [orjson.loads(line)["drawing"] for line in path.read_bytes().splitlines() if line.strip()]


# -- layout and bytes -----------------------------------------------------------------------------


def test_layout_file_names_and_headers(written: Path) -> None:
    for folder in ("train_simplified", "train_raw"):
        names = sorted(p.name for p in (written / folder).iterdir())
        assert names == sorted(f"{c}.csv" for c in CLASSES)  # spaces kept, as Kaggle's `The Eiffel Tower.csv`
        for path in (written / folder).iterdir():
            assert path.read_bytes().startswith(b"countrycode,drawing,key_id,recognized,timestamp,word\n")
    for name in ("test_simplified.csv", "test_raw.csv"):
        assert (written / name).read_bytes().startswith(b"key_id,countrycode,drawing\n")
    assert sorted(p.name for p in written.iterdir()) == ["test_raw.csv", "test_simplified.csv", "train_raw",
                                                          "train_simplified"]


def test_train_row_known_answer(replica) -> None:
    """The airplane row, byte for byte as the public Kaggle sample shows it."""
    src = replica.to_source(drawing_from_record(orjson.loads(AIRPLANE)))
    text = replica.drawing_json(src.points, src.bounds, True)
    row = replica.train_row(src, text, 5152802093400064, "airplane")
    assert row == AIRPLANE_ROW


def test_train_row_is_what_pandas_writes(replica) -> None:
    """Kaggle's files were pandas output: the same values through DataFrame.to_csv give the same bytes."""
    src = replica.to_source(drawing_from_record(orjson.loads(AIRPLANE)))
    strokes = [[src.points[a:b, 0].astype(int).tolist(), src.points[a:b, 1].astype(int).tolist()]
               for a, b in src.bounds]
    frame = pd.DataFrame({"countrycode": ["US"], "drawing": [str(strokes)], "key_id": [5152802093400064],
                          "recognized": [True], "timestamp": pd.to_datetime(["2017-03-08 21:12:07.26604"]),
                          "word": ["airplane"]})
    expected = frame.to_csv(index=False, lineterminator="\n")
    assert replica.TRAIN_HEADER + replica.train_row(src, replica.drawing_json(src.points, src.bounds, True),
                                                    5152802093400064, "airplane") == expected


def test_test_row_and_raw_numbers(replica) -> None:
    """Test rows: key_id first; raw floats keep Google's float32 digits, whole ones print as integers."""
    record = {"key_id": "9000003627287624", "countrycode": "DE", "word": "cat",
              "drawing": [[[16, 33.507999420166016, 44.75], [2, 7.5, 9], [0, 17, 33]]]}
    src = replica.to_source(drawing_from_record(record))
    row = replica.testset_row(src, replica.drawing_json(src.points, src.bounds, src.integer), 9000003627287624)
    assert row == '9000003627287624,DE,"[[[16, 33.507999420166016, 44.75], [2, 7.5, 9], [0, 17, 33]]]"\n'


def test_timestamp_as_pandas_prints_it(replica) -> None:
    stamp = drawing_from_record({"key_id": "1", "drawing": [[[0], [0]]], "timestamp": "2017-03-11 14:05:31 UTC"})
    assert replica.kaggle_timestamp(stamp.timestamp) == "2017-03-11 14:05:31.000000"
    assert replica.kaggle_bool(False) == "False" and replica.kaggle_bool(None) == ""


def test_every_row_reads_back_without_rejects(written: Path) -> None:
    rejects = []
    drawings = list(doodle.read(written, on_reject=rejects.append))
    assert rejects == []
    assert len(drawings) == ROWS + RAW_ROWS + 2 * TEST_ROWS


# -- counts ---------------------------------------------------------------------------------------


def test_row_counts_exact_and_proportional(replica, written: Path) -> None:
    for folder, total in (("train_simplified", ROWS), ("train_raw", RAW_ROWS)):
        counts = {c: len(rows_of(written / folder / f"{c}.csv")) for c in CLASSES}
        assert sum(counts.values()) == total
        weights = [COUNTS[c] for c in CLASSES]
        for c in CLASSES:  # within one row of the exact share
            assert abs(counts[c] - total * COUNTS[c] / sum(weights)) < 1
        assert counts["The Eiffel Tower"] > 2.5 * counts["cat"]  # skewed like Kaggle's
    for name in ("test_simplified.csv", "test_raw.csv"):
        assert len(rows_of(written / name)) == TEST_ROWS


def test_test_set_is_class_balanced(written: Path) -> None:
    # the test rows carry no word: recover each one's class by the source it was made from
    per_class = {c: 0 for c in CLASSES}
    for drawing, row in zip(doodle.read(written / "test_raw.csv", word="?"), rows_of(written / "test_raw.csv"),
                            strict=True):
        assert drawing.key_id == int(row["key_id"])
        per_class[source_class(drawing)] += 1
    assert sum(per_class.values()) == TEST_ROWS
    assert max(per_class.values()) - min(per_class.values()) <= 1


SOURCE_TIMES: dict[tuple, str] = {}


def source_class(drawing) -> str:
    """The class of a raw copy: its timing is its source's, unchanged."""
    return SOURCE_TIMES[tuple(tuple(int(v) for v in s[:, 2]) for s in drawing.strokes)]


@pytest.fixture(scope="module", autouse=True)
def _source_times(quickdraw: Path) -> None:
    for word in CLASSES:
        for strokes in source_drawings(quickdraw, "raw", word):
            SOURCE_TIMES[tuple(tuple(s[2]) for s in strokes)] = word


def test_proportional_counts_sum_exactly(replica) -> None:
    rng = np.random.default_rng(1)
    for total in (0, 1, 339, 340, 112_199, 1_000_003, 49_707_579):
        weights = [int(w) for w in rng.integers(113_613, 340_029, 340)]
        counts = replica.proportional_counts(total, weights)
        assert sum(counts) == total
        share = np.array(weights) * total / sum(weights)
        assert np.all(np.abs(np.array(counts) - share) < 1)


def test_defaults_kaggle_test_size_and_raw_cap(replica) -> None:
    args = replica.parse_args(["--out", "x", "--rows", "5000000"])
    assert args.test_rows == 112_199 and args.raw_rows == 1_000_000
    assert replica.parse_args(["--out", "x", "--rows", "700"]).raw_rows == 700


def test_default_raw_rows_is_all_rows_when_small(replica, quickdraw, tmp_path, capsys) -> None:
    out = write(replica, quickdraw, tmp_path / "k", rows=30, raw_rows=None, test_rows=4)
    assert sum(len(rows_of(p)) for p in (out / "train_raw").iterdir()) == 30
    printed = capsys.readouterr().out
    written = sum(p.stat().st_size for p in out.rglob("*.csv"))
    assert "64 rows in " in printed and f"{written:,} bytes written" in printed
    assert "parts: train_simplified 30 rows in " in printed and "train_raw 30 rows" in printed
    assert "test 4 rows in " in printed


# -- key_ids --------------------------------------------------------------------------------------


def all_keys(root: Path) -> dict[str, list[int]]:
    out = {}
    for path in sorted(root.rglob("*.csv")):
        out[str(path.relative_to(root))] = [int(r["key_id"]) for r in rows_of(path)]
    return out


def test_key_ids_unique_across_the_replica(written: Path) -> None:
    keys = all_keys(written)
    test = keys.pop("test_simplified.csv")
    assert keys.pop("test_raw.csv") == test  # the same drawings, in the same order
    train = [k for values in keys.values() for k in values]
    assert len(set(train)) == len(train) == ROWS + RAW_ROWS
    assert len(set(test)) == len(test) == TEST_ROWS
    assert not set(train) & set(test)
    assert all(2**52 <= k < 2**52 + 2**51 for k in train)  # where real key_ids lie
    assert test == sorted(test) and test[0] > 9 * 10**15
    assert all(k < 2**64 for k in test)


def test_train_key_ids_are_a_bijection(replica) -> None:
    counters = np.arange(0, 300_000, dtype=np.uint64)
    keys = replica.train_key_ids(counters, seed=3)
    assert len(np.unique(keys)) == len(keys)
    assert not np.array_equal(keys, replica.train_key_ids(counters, seed=4))
    assert np.all(np.diff(keys.astype(np.int64)[:100]) != 1)  # not a plain counter


# -- determinism ----------------------------------------------------------------------------------


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.csv"))}


def test_same_seed_same_bytes_other_seed_differs(replica, quickdraw, written: Path, tmp_path) -> None:
    again = write(replica, quickdraw, tmp_path / "again")
    other = write(replica, quickdraw, tmp_path / "other", seed=1)
    first = file_bytes(written)
    assert file_bytes(again) == first
    changed = file_bytes(other)
    assert changed.keys() == first.keys()
    assert all(changed[name] != first[name] for name in first if len(first[name]) > 100)


def test_refuses_to_write_over_a_folder_without_overwrite(replica, quickdraw, tmp_path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(SystemExit, match="--overwrite"):
        write(replica, quickdraw, out)
    assert list(out.iterdir()) == [out / "keep.txt"]
    (out / "keep.txt").unlink()
    write(replica, quickdraw, out, rows=50, raw_rows=5, test_rows=2)  # an earlier replica there...
    (out / "keep.txt").write_text("x")
    with pytest.raises(SystemExit, match="--overwrite"):
        write(replica, quickdraw, out, rows=10, raw_rows=5, test_rows=2)
    write(replica, quickdraw, out, rows=10, raw_rows=5, test_rows=2, overwrite=True)  # ...is replaced
    assert sum(len(rows_of(p)) for p in (out / "train_simplified").iterdir()) == 10
    assert (out / "keep.txt").read_text() == "x"  # and nothing else is touched


# -- the copies -----------------------------------------------------------------------------------


def drawings_of(path: Path) -> list[list]:
    return [json.loads(r["drawing"]) for r in rows_of(path)]


def test_simplified_copies_differ_and_stay_in_google_frame(quickdraw: Path, written: Path) -> None:
    for word in CLASSES:
        copies = drawings_of(written / "train_simplified" / f"{word}.csv")
        sources = source_drawings(quickdraw, "simplified", word)
        for strokes in copies:
            assert strokes not in sources
            values = [v for s in strokes for axis in s[:2] for v in axis]
            assert all(isinstance(v, int) and 0 <= v <= 255 for v in values)
            assert len(strokes[0]) == 2  # no timing
            xs = [v for s in strokes for v in s[0]]
            ys = [v for s in strokes for v in s[1]]
            assert min(xs) <= 3 and min(ys) <= 3 and max(max(xs), max(ys)) >= 252  # aligned and scaled as Google's
        assert len({json.dumps(s) for s in copies}) == len(copies)  # no two copies alike


def test_class_without_simplified_drawings_uses_google_simplification(quickdraw: Path, written: Path) -> None:
    assert not (quickdraw / "simplified" / "zigzag.ndjson").exists()
    copies = drawings_of(written / "train_simplified" / "zigzag.csv")
    assert copies
    assert all(0 <= v <= 255 and isinstance(v, int) for d in copies for s in d for axis in s for v in axis)


def test_raw_copies_keep_timing_and_change_points(quickdraw: Path, written: Path) -> None:
    for word in CLASSES:
        sources = source_drawings(quickdraw, "raw", word)
        by_time = {tuple(tuple(s[2]) for s in d): d for d in sources}
        for strokes in drawings_of(written / "train_raw" / f"{word}.csv"):
            source = by_time[tuple(tuple(s[2]) for s in strokes)]  # timing kept exactly
            assert strokes != source
            moved = np.concatenate([np.array(s[:2]).T for s in strokes]) - np.concatenate(
                [np.array(s[:2]).T for s in source])
            assert np.abs(moved).max() < 0.2 * 800  # a small change, not another drawing
            integer = all(isinstance(v, int) for s in strokes for axis in s[:2] for v in axis)
            assert integer == (word != FLOAT_CLASS)


def test_test_files_hold_one_drawing_in_two_versions(written: Path) -> None:
    raw = list(doodle.read(written / "test_raw.csv", word="?"))
    simple = list(doodle.read(written / "test_simplified.csv", word="?"))
    assert [d.key_id for d in raw] == [d.key_id for d in simple]
    for r, s in zip(raw, simple, strict=True):
        assert r.has_time and not s.has_time
        google = simplify(r)
        assert len(google.strokes) == len(s.strokes)
        for a, b in zip(google.strokes, s.strokes, strict=True):
            np.testing.assert_array_equal(a, b)
