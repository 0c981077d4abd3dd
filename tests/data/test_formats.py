"""Readers, writers and detection for every format, checked against real files: the committed sample
(tests/fixtures/quickdraw) and, in the breadth tier, every file of ../shared/quickdraw."""

from __future__ import annotations

import csv
import gzip
import logging
import random
import shutil
import struct
import sys
import types
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from doodle.data.drawing import Drawing, Reject
from doodle.data.formats import (
    SPLITTABLE_FORMATS,
    ReadStats,
    detect_format,
    expand_sources,
    infer_word,
    iter_records,
    read,
    synthetic_key_id,
    write_binary,
    write_kaggle_csv,
    write_ndjson,
)
from doodle.errors import DoodleError, UnknownFormatError

# -- helpers ---------------------------------------------------------------------------------------


def split(items):
    drawings = [i for i in items if isinstance(i, Drawing)]
    rejects = [i for i in items if isinstance(i, Reject)]
    return drawings, rejects


def assert_same_drawing(a: Drawing, b: Drawing, *, seconds_only: bool = False) -> None:
    assert a.key_id == b.key_id and type(a.key_id) is int
    assert a.word == b.word
    assert a.countrycode == b.countrycode
    assert a.recognized == b.recognized
    if seconds_only:
        assert int(a.timestamp.timestamp()) == int(b.timestamp.timestamp())
    else:
        assert a.timestamp == b.timestamp
    assert len(a.strokes) == len(b.strokes)
    for sa, sb in zip(a.strokes, b.strokes, strict=True):
        assert sa.shape == sb.shape
        np.testing.assert_array_equal(sa, sb)


def manifest_counts(quickdraw: Path) -> dict[str, int]:
    with open(quickdraw / "manifest.csv", newline="") as handle:
        rows = csv.DictReader(handle)
        return {row["file"]: int(row["n_drawings"]) for row in rows if row["n_drawings"].isdigit()}


def read_text_files(quickdraw: Path) -> dict[str, tuple[str, list[Drawing], list[Reject]]]:
    """Every raw/ and simplified/ file, read once: relative name -> (format, drawings, rejects)."""
    out = {}
    for folder in ("raw", "simplified"):
        for path in sorted((quickdraw / folder).iterdir()):
            fmt = detect_format(path)
            drawings, rejects = split(list(iter_records(path)))
            out[f"{folder}/{path.name}"] = (fmt, drawings, rejects)
    return out


@pytest.fixture(scope="module")
def real_text_files(quickdraw: Path) -> dict[str, tuple[str, list[Drawing], list[Reject]]]:
    """Every raw/ and simplified/ file of the sample."""
    return read_text_files(quickdraw)


# -- real files --------------------------------------------------------------------------------------


def check_text_files(quickdraw: Path, files: dict, raw_total: int, simplified_total: int) -> None:
    """Every raw/ and simplified/ file reads without a reject, as many drawings as manifest.csv says
    (and the manifest lists every file there); raw ones timed, simplified ones 0..255 integers."""
    counts = manifest_counts(quickdraw)
    assert set(files) == {name for name in counts if name.startswith(("raw/", "simplified/"))}
    raw = simplified = 0
    for name, (fmt, drawings, rejects) in files.items():
        assert rejects == [], name
        assert len(drawings) == counts[name], name
        if name.startswith("raw/"):
            raw += len(drawings)
            assert all(d.has_time for d in drawings), name
            if drawings:
                assert fmt == "raw-ndjson", name
        else:
            simplified += len(drawings)
            assert fmt == "simplified-ndjson"
            assert not any(d.has_time for d in drawings), name
            pts = np.concatenate([d.to_flat()[0] for d in drawings])
            assert pts.min() >= 0 and pts.max() <= 255 and np.array_equal(pts, np.round(pts))
    assert (raw, simplified) == (raw_total, simplified_total)
    # raw coordinates are real floats somewhere (not silently rounded)
    _, cats, _ = files["raw/cat.ndjson"]
    assert any(not np.array_equal(s, np.round(s)) for d in cats for s in d.strokes)
    assert all(d.word == "cat" and isinstance(d.key_id, int) for d in cats)


def test_real_raw_and_simplified_files_read_without_rejects(quickdraw, real_text_files):
    # the sample's README: 296 raw drawings in 11 files plus the one-object JSON file; 3,220 simplified
    check_text_files(quickdraw, real_text_files, 296 + 1, 3_220)


@pytest.mark.breadth
def test_every_shared_raw_and_simplified_file_reads_without_rejects(shared_quickdraw):
    # SOURCES.md's totals, plus the one-object JSON file
    check_text_files(shared_quickdraw, read_text_files(shared_quickdraw), 10_129 + 1, 17_252)


def test_pretty_printed_json_object(quickdraw):
    path = quickdraw / "raw" / "googlecreativelab_cat.json"
    assert detect_format(path) == "raw-ndjson"
    (drawing,) = list(iter_records(path))
    assert isinstance(drawing, Drawing)
    assert drawing.key_id == 5321656484495360 and drawing.word == "cat" and drawing.countrycode == "US"
    assert drawing.has_time and drawing.strokes[0][:3, 0].tolist() == [562, 553, 545]
    assert drawing.timestamp == datetime(2017, 3, 3, 17, 58, 50, 535290, tzinfo=UTC)


def test_json_array_of_objects(tmp_path, simplified_cats):
    path = tmp_path / "cats.json"
    import orjson

    path.write_bytes(orjson.dumps([d.to_json_dict() for d in simplified_cats[:5]], option=orjson.OPT_INDENT_2))
    assert detect_format(path) == "simplified-ndjson"
    drawings, rejects = split(list(iter_records(path)))
    assert rejects == []
    for a, b in zip(drawings, simplified_cats[:5], strict=True):
        assert_same_drawing(a, b)


def test_dog_bin_49_drawings_then_the_cut_record(quickdraw):
    path = quickdraw / "bin" / "dog.bin"
    assert detect_format(path) == "binary"
    items = list(iter_records(path))
    assert len(items) == 50
    drawings, rejects = split(items)
    assert len(drawings) == 49 and items[-1] is rejects[0]
    reject = rejects[0]
    assert reject.line == 49 and reject.source == str(path) and "truncated" in reject.reason
    data = path.read_bytes()
    assert data.endswith(bytes.fromhex(reject.raw))  # the 31 cut bytes, as hex
    # key_ids exact as Python ints: the first one straight from the file's first 8 bytes
    assert drawings[0].key_id == struct.unpack_from("<Q", data)[0] == 6718004173733888
    assert all(type(d.key_id) is int for d in drawings)
    assert len({d.key_id for d in drawings}) == 49
    assert all(d.word == "dog" and len(d.countrycode) == 2 for d in drawings)


def test_dog_bin_matches_the_simplified_ndjson(quickdraw):
    """Google's binary file and simplified ndjson hold the same first drawings: an independent check."""
    binary = [d for d in iter_records(quickdraw / "bin" / "dog.bin") if isinstance(d, Drawing)]
    simplified = list(iter_records(quickdraw / "simplified" / "dog.ndjson"))
    assert len(simplified) == 25
    for a, b in zip(binary[:25], simplified, strict=True):
        assert_same_drawing(a, b, seconds_only=True)


def check_bitmap_npy(path: Path, name: str, n: int) -> None:
    assert detect_format(path) == "bitmap-npy"
    items = list(iter_records(path))
    expected = np.load(path).reshape(-1, 28, 28)
    assert len(items) == len(expected) == n
    assert all(isinstance(d, Drawing) and d.strokes == [] for d in items)
    for i in (0, 1, n - 1):
        assert items[i].bitmap.shape == (28, 28) and items[i].bitmap.dtype == np.uint8
        np.testing.assert_array_equal(items[i].bitmap, expected[i])
    assert items[0].word == name
    assert len({d.key_id for d in items}) == n


def check_bitmap_bin(path: Path, name: str, n: int) -> None:
    assert detect_format(path) == "bitmap-bin"
    items = list(iter_records(path, word="x"))
    expected = np.fromfile(path, np.uint8).reshape(-1, 28, 28)
    assert len(items) == n
    np.testing.assert_array_equal(np.stack([d.bitmap for d in items]), expected)
    assert {d.word for d in items} == {"x"}
    assert next(iter(iter_records(path))).word == name.removesuffix("s1000")  # the category, singular


@pytest.mark.parametrize("name", ["apple", "cat"])
def test_bitmap_npy(quickdraw, name):
    check_bitmap_npy(quickdraw / "bitmap" / f"{name}.npy", name, 50)  # the sample: the first 50 of 3,000


def test_bitmap_bin(quickdraw):
    check_bitmap_bin(quickdraw / "bitmap" / "cats1000.bin", "cats1000", 50)  # the sample: the first 50 of 1,000


@pytest.mark.breadth
@pytest.mark.parametrize("name", ["apple", "bicycle", "cat", "diamond", "eye", "fish"])
def test_every_shared_bitmap_npy(shared_quickdraw, name):
    check_bitmap_npy(shared_quickdraw / "bitmap" / f"{name}.npy", name, 3000)


@pytest.mark.breadth
@pytest.mark.parametrize("name", ["cats1000", "rainbows1000", "trains1000"])
def test_every_shared_bitmap_bin(shared_quickdraw, name):
    check_bitmap_bin(shared_quickdraw / "bitmap" / f"{name}.bin", name, 1000)


def test_infer_word_and_synthetic_key_ids():
    assert infer_word("full_numpy_bitmap_The_Eiffel_Tower.npy") == "The Eiffel Tower"
    assert infer_word("/x/cat.full.npz") == "cat"
    assert infer_word("paint can.npz") == "paint can"
    assert infer_word("cats1000.bin") == "cat"  # Google's categories are singular
    assert infer_word("rainbows1000.bin") == "rainbow" and infer_word("buses.npy") == "bus"
    assert infer_word("the_eiffel_tower.npz") == "The Eiffel Tower"  # the category's own spelling
    assert infer_word("grass.npy") == "grass" and infer_word("scissors.bin") == "scissors"  # whole names first
    assert infer_word("my_doodles7.bin") == "my doodles"  # not a category: kept as written
    assert infer_word("dog.bin") == "dog"
    a = synthetic_key_id("npz", "/a/cat.npz", "train", 3)
    assert a == synthetic_key_id("npz", "/elsewhere/cat.npz", "train", 3)
    assert a != synthetic_key_id("npz", "/a/cat.npz", "valid", 3)
    assert 0 <= a < 2**63


# -- binary writer -------------------------------------------------------------------------------------


def test_binary_round_trip_on_real_simplified(tmp_path, real_text_files):
    drawings = [d for name, (_, ds, _) in real_text_files.items() if name.startswith("simplified/") for d in ds[:3]]
    path = tmp_path / "all.bin"
    assert write_binary(drawings, path) == len(drawings)
    assert detect_format(path) == "binary"
    back, rejects = split(list(iter_records(path, word="w")))
    assert rejects == [] and len(back) == len(drawings)
    for a, b in zip(back, drawings, strict=True):
        assert_same_drawing(a, b.replace(word="w"), seconds_only=True)


def test_binary_writer_reproduces_dog_bin_bytes(quickdraw, tmp_path):
    source = quickdraw / "bin" / "dog.bin"
    drawings = [d for d in iter_records(source) if isinstance(d, Drawing)]
    out = tmp_path / "dog.bin"
    write_binary(drawings, out)
    written = out.read_bytes()
    assert len(written) == 8192 - 31
    assert written == source.read_bytes()[: len(written)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.replace(strokes=[d.strokes[0] + 0.5]), "integers in 0..255"),
        (lambda d: d.replace(strokes=[d.strokes[0] + 300]), "integers in 0..255"),
        (lambda d: d.replace(strokes=[np.zeros((70_000, 2))]), "65535"),
        (lambda d: d.replace(strokes=[np.zeros((3, 3))]), "timing"),
        (lambda d: d.replace(recognized=None), "recognized"),
        (lambda d: d.replace(countrycode="USA"), "countrycode"),
        (lambda d: d.replace(strokes=[]), "no strokes"),
    ],
)
def test_binary_writer_refuses_what_it_cannot_represent(tmp_path, simplified_cats, change, message):
    bad = change(simplified_cats[1])
    path = tmp_path / "out.bin"
    with pytest.raises(DoodleError, match=message) as err:
        write_binary([simplified_cats[0], bad], path)
    assert str(bad.key_id) in str(err.value)
    assert not path.exists() and list(tmp_path.iterdir()) == []  # nothing half-written left


# -- ndjson writer -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.ndjson", "out.ndjson.gz"])
def test_ndjson_round_trip_raw_floats(tmp_path, raw_cats, name):
    path = tmp_path / name
    assert write_ndjson(raw_cats, path) == len(raw_cats)
    assert detect_format(path) == "raw-ndjson"
    back = list(iter_records(path))
    for a, b in zip(back, raw_cats, strict=True):
        assert_same_drawing(a, b)


# -- Kaggle CSV --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["raw", "simplified"])
def test_kaggle_csv_train_round_trip(tmp_path, raw_cats, simplified_cats, kind):
    drawings = raw_cats if kind == "raw" else simplified_cats
    path = tmp_path / "cat.csv"
    write_kaggle_csv(drawings, path)
    lines = path.read_text().splitlines()
    assert lines[0] == "countrycode,drawing,key_id,recognized,timestamp,word"
    first = drawings[0]
    assert lines[1].startswith(f'{first.countrycode},"[[[')
    assert f'",{first.key_id},{first.recognized},2017-' in lines[1] and lines[1].endswith(",cat")
    assert detect_format(path) == "kaggle-csv"
    back, rejects = split(list(iter_records(path)))
    assert rejects == []
    for a, b in zip(back, drawings, strict=True):
        assert_same_drawing(a, b)


def test_kaggle_csv_test_layout(tmp_path, simplified_cats):
    path = tmp_path / "test_simplified.csv.gz"
    write_kaggle_csv(simplified_cats, path, test=True)
    with gzip.open(path, "rt") as handle:
        assert handle.readline() == "key_id,countrycode,drawing\n"
    assert detect_format(path) == "kaggle-csv"
    back = list(iter_records(path))
    assert all(d.word is None and d.recognized is None and d.timestamp is None for d in back)
    assert [d.key_id for d in back] == [d.key_id for d in simplified_cats]
    for a, b in zip(back, simplified_cats, strict=True):
        assert_same_drawing(a, b.replace(word=None, recognized=None, timestamp=None))
    assert {d.word for d in iter_records(path, word="cat")} == {"cat"}


def test_kaggle_csv_written_by_hand_like_kaggle(tmp_path):
    # Kaggle's own layout: Python-style JSON with spaces, True/False, no " UTC", quoted drawing
    train = tmp_path / "The Eiffel Tower.csv"
    train.write_text(
        "countrycode,drawing,key_id,recognized,timestamp,word\n"
        'US,"[[[17, 18, 20], [81, 80, 79]], [[0, 255], [3, 4]]]",5152802093400064,True,'
        "2017-03-08 21:12:07.26604,The Eiffel Tower\n"
        ',"[[[1.5, 2], [3, 4.25], [0, 17]]]",18446744073709551615,False,2017-03-08 21:12:07,"a, b"\n'
    )
    a, b = list(iter_records(train))
    assert a.key_id == 5152802093400064 and a.word == "The Eiffel Tower" and a.recognized is True
    assert a.countrycode == "US" and a.timestamp == datetime(2017, 3, 8, 21, 12, 7, 266040, tzinfo=UTC)
    assert [s.tolist() for s in a.strokes] == [[[17, 81], [18, 80], [20, 79]], [[0, 3], [255, 4]]]
    assert b.key_id == 2**64 - 1 and b.countrycode == "" and b.recognized is False and b.word == "a, b"
    assert b.has_time and b.strokes[0].tolist() == [[1.5, 3, 0], [2, 4.25, 17]]
    test = tmp_path / "test_raw.csv"
    test.write_text('key_id,countrycode,drawing\n9000003627287624,DE,"[[[17, 18], [81, 80], [0, 40]]]"\n')
    (c,) = list(iter_records(test))
    assert c.key_id == 9000003627287624 and c.countrycode == "DE" and c.word is None and c.has_time


# -- npz ------------------------------------------------------------------------------------------------------


def test_npz_sketch_rnn_round_trip(tmp_path, simplified_cats):
    subsets = {"train": simplified_cats[:15], "valid": simplified_cats[15:20], "test": simplified_cats[20:]}
    arrays = {}
    for name, drawings in subsets.items():
        arr = np.empty(len(drawings), dtype=object)
        for i, d in enumerate(drawings):
            s3 = d.to_stroke3().astype(np.int16)
            s3[0, :2] += 37  # a first offset away from the origin: read as stored, not re-aligned
            arr[i] = s3
        arrays[name] = arr
    path = tmp_path / "cat.full.npz"
    np.savez(path, **arrays)
    assert detect_format(path) == "npz"
    items = list(iter_records(path))
    assert len(items) == 25 and all(isinstance(d, Drawing) for d in items)
    for got, want in zip(items, simplified_cats, strict=True):
        assert got.word == "cat" and not got.has_time
        want_pts, want_off = want.to_flat()
        got_pts, got_off = got.to_flat()
        np.testing.assert_array_equal(got_off, want_off)
        np.testing.assert_array_equal(got_pts, want_pts + 37)
    for got, stored in zip(items, [a for name in ("train", "valid", "test") for a in arrays[name]], strict=True):
        np.testing.assert_array_equal(got.to_stroke3(), stored)  # the file's rows, exactly
    assert items[15].key_id == synthetic_key_id("npz", path, "valid", 0)
    assert len({d.key_id for d in items}) == 25


# -- detection ----------------------------------------------------------------------------------------------


def test_detection_from_content_with_misleading_names(quickdraw, tmp_path, simplified_cats):
    copies = {
        "raw/cat.ndjson": ("cat.txt", "raw-ndjson"),
        "simplified/cat.ndjson": ("cat.csv", "simplified-ndjson"),
        "raw/googlecreativelab_cat.json": ("cat", "raw-ndjson"),
        "bin/dog.bin": ("dog.npy", "binary"),
        "bitmap/cat.npy": ("cat.bin", "bitmap-npy"),
        "bitmap/cats1000.bin": ("cats.dat", "bitmap-bin"),
    }
    for source, (name, fmt) in copies.items():
        shutil.copy(quickdraw / source, tmp_path / name)
        assert detect_format(tmp_path / name) == fmt, source
    gz = tmp_path / "data.gz"
    gz.write_bytes(gzip.compress((quickdraw / "raw" / "cat.ndjson").read_bytes()))
    assert detect_format(gz) == "raw-ndjson"
    assert len(list(iter_records(gz))) == 25
    csv_path = tmp_path / "x.csv"
    write_kaggle_csv(simplified_cats[:2], csv_path)
    shutil.copy(csv_path, tmp_path / "kaggle.ndjson")
    assert detect_format(tmp_path / "kaggle.ndjson") == "kaggle-csv"
    strokes = np.empty(2, dtype=object)
    strokes[0], strokes[1] = np.array([[1, 2, 1]], np.int16), np.array([[0, 0, 0], [4, 4, 1]], np.int16)
    with open(tmp_path / "s.bin", "wb") as handle:  # np.savez would append ".npz" to a path
        np.savez(handle, train=strokes)
    assert detect_format(tmp_path / "s.bin") == "npz"
    assert [d.n_points for d in iter_records(tmp_path / "s.bin")] == [1, 2]


@pytest.mark.parametrize(
    ("name", "content", "why"),
    [
        ("meta/category-count-dict.json", None, "'drawing'"),
        ("manifest.csv", None, "header"),
        ("kaggle/README.md", None, "neither"),
        ("notes.json", b"[1, 2, 3]\n", "array"),
        ("odd.bin", bytes(range(256)) * 3, "784"),
        ("other.npz", "npz", "train/valid/test"),
        ("floats.npy", "npy", "uint8"),
        ("empty.csv", b"", "empty"),
    ],
)
def test_non_drawing_files_raise_unknown_format(quickdraw, tmp_path, name, content, why):
    if content is None:
        path = quickdraw / name
    else:
        path = tmp_path / name
        if content == "npz":
            np.savez(path, weights=np.zeros(3))
        elif content == "npy":
            np.save(path, np.zeros((2, 784)))
        else:
            path.write_bytes(content)
    with pytest.raises(UnknownFormatError) as err:
        detect_format(path)
    message = str(err.value)
    assert path.name in message and why in message
    assert "\n" not in message
    with pytest.raises(UnknownFormatError):
        list(read(path))  # an explicitly named file raises too


def test_empty_ndjson_is_a_file_with_no_records(tmp_path):
    (tmp_path / "empty.ndjson").write_bytes(b"")
    assert list(iter_records(tmp_path / "empty.ndjson")) == []


# -- read / expand_sources ------------------------------------------------------------------------------------


def test_read_folder_skips_non_drawing_files_with_a_warning(quickdraw, tmp_path, caplog):
    sub = tmp_path / "b_sub"
    sub.mkdir()
    shutil.copy(quickdraw / "simplified" / "cat.ndjson", tmp_path / "a.ndjson")
    shutil.copy(quickdraw / "bin" / "dog.bin", sub / "dog.bin")
    shutil.copy(quickdraw / "meta" / "category-count-dict.json", tmp_path / "counts.json")
    (tmp_path / "README.md").write_text("not data, not even looked at")
    sources, skipped = expand_sources(tmp_path)
    assert sources == [(tmp_path / "a.ndjson", "simplified-ndjson"), (sub / "dog.bin", "binary")]
    assert [p for p, _ in skipped] == [tmp_path / "counts.json"]
    with caplog.at_level(logging.WARNING, logger="doodle.data.formats"):
        drawings = list(read(tmp_path))
    assert len(drawings) == 25 + 49
    assert [d.word for d in drawings[24:26]] == ["cat", "dog"]
    text = caplog.text
    assert "counts.json" in text and "dog.bin:49" in text and "truncated" in text
    rejects: list[Reject] = []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="doodle.data.formats"):
        assert len(list(read([tmp_path / "a.ndjson", sub], on_reject=rejects.append))) == 74
    assert [r.line for r in rejects] == [49] and "dog.bin:49" not in caplog.text


def test_missing_paths_raise_naming_them(tmp_path):
    with pytest.raises(DoodleError, match="nope.ndjson.*gone"):
        expand_sources([tmp_path / "nope.ndjson", tmp_path / "gone"])


def test_store_folders_are_delegated(tmp_path, monkeypatch, simplified_cats):
    store = tmp_path / "store"
    store.mkdir()
    (store / "manifest.json").write_text("{}")
    calls = []

    def iter_store(path):
        calls.append(path)
        yield from simplified_cats[:2]

    from doodle.data.store import is_store

    fake = types.SimpleNamespace(iter_store=iter_store, is_store=is_store)
    monkeypatch.setitem(sys.modules, "doodle.data.store", fake)
    assert expand_sources(tmp_path) == ([(store, "store")], [])
    assert [d.key_id for d in read(store)] == [d.key_id for d in simplified_cats[:2]]
    assert calls == [store]


# -- byte ranges ----------------------------------------------------------------------------------------------


def _messy_copy(quickdraw: Path, tmp_path: Path, kind: str) -> Path:
    """A real file with blank lines and bad records mixed in, as ndjson or CSV."""
    if kind == "ndjson":
        lines = (quickdraw / "simplified" / "cat.ndjson").read_bytes().splitlines(keepends=True)
        lines += (quickdraw / "raw" / "cat.ndjson").read_bytes().splitlines(keepends=True)[:10]
        header = []
        bad = b'{"key_id": "1", "drawing": []}\n'
    else:
        drawings = list(iter_records(quickdraw / "simplified" / "cat.ndjson"))
        write_kaggle_csv(drawings, tmp_path / "tmp.csv")
        header, *lines = (tmp_path / "tmp.csv").read_bytes().splitlines(keepends=True)
        header = [header]
        bad = b'US,"[[[1]]]",1,True,,cat\n'
    rng = random.Random(7)
    for extra in [b"\n", b"  \r\n", bad, b"{not json\n", bad, b"\n", b"\xff\xfe\n"]:
        lines.insert(rng.randrange(len(lines)), extra)
    lines.insert(0, b"{not json either\n")
    path = tmp_path / f"messy.{kind}"
    path.write_bytes(b"".join(header + lines).rstrip(b"\n"))  # last line without a newline
    return path


@pytest.mark.parametrize("kind", ["ndjson", "csv"])
def test_byte_ranges_cover_every_record_once(quickdraw, tmp_path, kind):
    path = _messy_copy(quickdraw, tmp_path, kind)
    whole = list(iter_records(path))
    assert any(isinstance(i, Reject) for i in whole)
    size = path.stat().st_size
    data = path.read_bytes()
    line_starts = [0] + [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    rng = random.Random(1)
    for trial in range(12):
        n_cuts = rng.randrange(1, 8)
        cuts = rng.sample(range(1, size), n_cuts)
        if trial % 3 == 0:  # cuts exactly on line starts and just around them
            cuts = [rng.choice(line_starts[1:]) + rng.choice((-1, 0, 1)) for _ in range(n_cuts)]
        bounds = sorted({0, *(c for c in cuts if 0 < c < size)})
        got: list[Drawing | Reject] = []
        absolute: list[int] = []
        lines_before = 0
        for i, start in enumerate(bounds):
            end = bounds[i + 1] if i + 1 < len(bounds) else None
            stats = ReadStats()
            part = list(iter_records(path, start=start, end=end, stats=stats))
            got += part
            absolute += [lines_before + r.line for r in part if isinstance(r, Reject)]
            assert stats.records == len(part)
            lines_before += stats.lines
        assert lines_before == len(data.splitlines())
        assert [_key(i) for i in got] == [_key(i) for i in whole]
        assert absolute == [r.line for r in whole if isinstance(r, Reject)]
    # an end past the file and a range holding no line start both work
    assert [_key(i) for i in iter_records(path, start=0, end=size * 2)] == [_key(i) for i in whole]
    assert list(iter_records(path, start=size - 1, end=size)) == []


def _key(item: Drawing | Reject):
    if isinstance(item, Reject):
        return ("reject", item.raw, item.reason)
    return ("drawing", item.key_id, item.n_points)


def test_ranges_refused_where_a_file_cannot_be_split(quickdraw, tmp_path):
    assert {"raw-ndjson", "simplified-ndjson", "kaggle-csv"} == set(SPLITTABLE_FORMATS)
    with pytest.raises(ValueError):
        iter_records(quickdraw / "bin" / "dog.bin", start=10)
    with pytest.raises(ValueError):
        iter_records(quickdraw / "bitmap" / "cat.npy", end=100)
    with pytest.raises(ValueError):
        list(iter_records(quickdraw / "raw" / "googlecreativelab_cat.json", start=0, end=10))
    gz = tmp_path / "cat.ndjson.gz"
    gz.write_bytes(gzip.compress((quickdraw / "simplified" / "cat.ndjson").read_bytes()))
    with pytest.raises(ValueError, match="gzip"):
        list(iter_records(gz, start=0, end=100))


# -- CLI ---------------------------------------------------------------------------------------------------------


def test_cli_convert(quickdraw, tmp_path, capsys):
    from doodle.cli import main

    out = tmp_path / "dog.csv"
    assert main(["convert", str(quickdraw / "bin" / "dog.bin"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wrote 49 drawings" in printed and "1 records rejected" in printed and "truncated" in printed
    assert len(list(iter_records(out))) == 49
    back = tmp_path / "dog.bin"
    assert main(["convert", str(out), "--out", str(back), "--rejects", str(tmp_path / "r.ndjson")]) == 0
    assert back.read_bytes() == (quickdraw / "bin" / "dog.bin").read_bytes()[: back.stat().st_size]
    assert main(["convert", str(quickdraw / "raw" / "cat.ndjson"), "--out", str(tmp_path / "c.bin")]) == 2
    assert "cannot be written in the binary format" in capsys.readouterr().err
    assert not (tmp_path / "c.bin").exists()


def test_kaggle_csv_bytes_are_kaggles(tmp_path):
    """Known answer: a row as Kaggle's train_simplified files hold it (pandas wrote them: a space
    after every comma of the drawing, True/False, six fraction digits of the timestamp, no UTC)."""
    from datetime import UTC, datetime

    drawing = Drawing(key_id=5152802093400064, word="airplane", countrycode="US", recognized=True,
                      timestamp=datetime(2017, 3, 8, 21, 12, 7, 266040, tzinfo=UTC),
                      strokes=[np.array([[167.0, 140.0], [109.0, 194.0]]), np.array([[207.0, 74.0], [207.0, 103.0]])])
    write_kaggle_csv([drawing], tmp_path / "airplane.csv")
    assert (tmp_path / "airplane.csv").read_bytes() == (
        b"countrycode,drawing,key_id,recognized,timestamp,word\n"
        b'US,"[[[167, 109], [140, 194]], [[207, 207], [74, 103]]]",5152802093400064,True,'
        b"2017-03-08 21:12:07.266040,airplane\n")
    (back,) = iter_records(tmp_path / "airplane.csv")
    assert back.timestamp == drawing.timestamp and back.recognized is True
