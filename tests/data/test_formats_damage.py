"""Damaged and hostile files: readers keep every good record, refuse to run code, and say what is wrong.

All files are generated here (see bad_corpus.py for the record helpers); none needs ../shared.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import pickle
import random
import struct
import zipfile
from pathlib import Path

import bad_corpus as bc
import numpy as np
import orjson
import pytest

from doodle.data.drawing import Drawing, Reject
from doodle.data.formats import ReadStats, detect_format, expand_sources, iter_records, read
from doodle.errors import UnknownFormatError

# -- helpers -------------------------------------------------------------------------------------------


def split(items):
    return [i for i in items if isinstance(i, Drawing)], [i for i in items if isinstance(i, Reject)]


def ndjson_lines(n: int, start: int = 0, timed: bool = False) -> list[bytes]:
    return [bc.line(bc.record(bc.KEY_BASE + i, i=i, timed=timed)) for i in range(start, start + n)]


def prepare_folder(folder: Path, store: Path, workers: int = 1) -> dict:
    from doodle.cli import main

    assert main(["prepare", str(folder), "--out", str(store), "--workers", str(workers), "--no-progress"]) == 0
    return orjson.loads((store / "_manifest.json").read_bytes())


# -- 1. Sketch-RNN files never run code ------------------------------------------------------------------


def bare_payload_npz(path: Path, marker: Path) -> None:
    """An .npz whose train member's pickle is the payload itself, not an array."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    payload = pickle.dumps(bc.Payload(os.system, f"touch '{marker}'"), protocol=2)
    bc.write_npz(path, {"train": header.getvalue() + payload, "valid": bc.npy_bytes(bc.object_array([bc.stroke3(1)]))})


def malicious_npz(path: Path, marker: Path, via: str) -> None:
    if via == "bare":
        bare_payload_npz(path, marker)
    else:
        np.savez(path, train=bc.malicious_array(marker, via, good_before=2), valid=bc.object_array([bc.stroke3(1)]))


@pytest.mark.parametrize("via", ["system", "open", "bare"])
def test_a_crafted_npz_is_refused_and_runs_nothing(tmp_path, via, caplog):
    marker = tmp_path / "code-ran"
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "cat.npz"
    malicious_npz(path, marker, via)
    (folder / "good.ndjson").write_bytes(b"\n".join(ndjson_lines(3)) + b"\n")

    with pytest.raises(UnknownFormatError, match=r"cat\.npz: .*refused to read member train\.npy: .*would call"):
        detect_format(path)
    assert not marker.exists()
    with pytest.raises(UnknownFormatError, match="refused"):
        iter_records(path)
    items = list(iter_records(path, "npz"))  # forced: the reader refuses the member itself
    assert not marker.exists()
    drawings, rejects = split(items)
    assert len(drawings) == 1 and len(rejects) == 1 and "npz member train.npy refused" in rejects[0].reason
    with pytest.raises(UnknownFormatError, match="refused") as err:
        list(read(path))
    assert "\n" not in str(err.value)
    skipped: list[tuple[Path, str]] = []
    assert len(list(read(folder, on_skip=lambda p, why: skipped.append((p, why))))) == 3
    assert [p for p, _ in skipped] == [path] and "refused" in skipped[0][1]
    manifest = prepare_folder(folder, tmp_path / "store")
    assert list(manifest["skipped_files"]) == [str(path)] and manifest["input"] == 3
    assert not marker.exists()


def test_a_call_deep_in_the_pickle_is_refused_by_the_reader(tmp_path):
    marker = tmp_path / "code-ran"
    deep = bc.npy_bytes(bc.malicious_array(marker, "system", good_before=9000))
    path = tmp_path / "cat.npz"
    bc.write_npz(path, {"train": deep, "valid": bc.npy_bytes(bc.object_array([bc.stroke3(1), bc.stroke3(2)]))},
                 compress=True)
    assert detect_format(path) == "npz"  # past what detection unpickles
    drawings, rejects = split(list(iter_records(path)))
    assert len(drawings) == 2
    assert [(r.line, r.reason.split(":")[0]) for r in rejects] == [(0, "npz member train.npy refused")]
    assert not marker.exists()


class Python2Pickler(pickle._Pickler):
    """Pickles bytes as Python 2 did, as `str` (Python 3's protocol 2 calls _codecs.encode instead)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def python2_style(arr: np.ndarray) -> bytes:
    """An .npy of `arr` as Sketch-RNN's files were written: Python 2 pickles of numpy.core.multiarray."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": arr.shape})
    out = io.BytesIO()
    Python2Pickler(out, 2).dump(arr)
    data = out.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in data and b"_codecs" not in data
    return header.getvalue() + data


@pytest.mark.parametrize("style", ["savez", "savez_compressed", "python2"])
def test_genuine_sketch_rnn_files_still_read(tmp_path, style):
    subsets = {"train": [bc.stroke3(i) for i in range(5)], "valid": [bc.stroke3(7)], "test": [bc.stroke3(9)]}
    path = tmp_path / "cat.npz"
    arrays = {name: bc.object_array(items) for name, items in subsets.items()}
    if style == "python2":
        bc.write_npz(path, {name: python2_style(arr) for name, arr in arrays.items()})
    else:
        getattr(np, style)(path, **arrays)
    assert detect_format(path) == "npz"
    drawings, rejects = split(list(iter_records(path)))
    assert not rejects and len(drawings) == 7
    for drawing, s3 in zip(drawings, [a for items in subsets.values() for a in items], strict=True):
        want = Drawing.from_stroke3(s3, key_id=0).to_flat()[0]
        np.testing.assert_array_equal(drawing.to_flat()[0], want)


def damaged_npz(path: Path, damage: str) -> None:
    train = bc.npy_bytes(bc.object_array([bc.stroke3(i) for i in range(3)]))
    valid = bc.npy_bytes(bc.object_array([bc.stroke3(i) for i in range(3, 6)]))
    test = bc.npy_bytes(bc.object_array([bc.stroke3(40)]))
    if damage == "crc":
        bc.write_npz(path, {"train": train, "valid": valid, "test": test})
        path.write_bytes(bc.flip_crc_protected_byte(path.read_bytes(), bc.stroke3(4).tobytes()))
    elif damage == "truncated pickle":
        bc.write_npz(path, {"train": train, "valid": valid[:-40], "test": test}, compress=True)
    elif damage == "truncated array":
        plain = bc.npy_bytes(np.zeros((4, 6, 3), np.int16))
        bc.write_npz(path, {"train": train, "valid": plain[: len(plain) - 50], "test": test})
    else:  # not an .npy at all
        bc.write_npz(path, {"train": train, "valid": b"not an npy header" * 4, "test": test})


@pytest.mark.parametrize(("damage", "why"), [("crc", "Bad CRC-32"), ("truncated pickle", "truncated"),
                                             ("truncated array", "truncated array data"), ("header", "")])
def test_a_damaged_npz_member_is_one_reject(tmp_path, damage, why):
    path = tmp_path / "cat.npz"
    damaged_npz(path, damage)
    drawings, rejects = split(list(iter_records(path)))
    assert len(drawings) == 4  # train and test: no record made up from the damaged member
    (reject,) = rejects
    assert reject.line == 3 and reject.reason.startswith("npz member valid.npy cannot be read: ")
    assert why in reject.reason


def test_npz_elements_that_are_not_arrays_are_rejected(tmp_path):
    path = tmp_path / "cat.npz"
    np.savez(path, train=bc.object_array([bc.stroke3(0), [[1, 2, 1], [3, 4, 1]], "text", bc.stroke3(1)]))
    items = list(iter_records(path))
    assert [type(i).__name__ for i in items] == ["Drawing", "Reject", "Reject", "Drawing"]
    assert "is a list, not a stroke-3 array" in items[1].reason and "is a str" in items[2].reason


# -- 2. a damaged gzip ------------------------------------------------------------------------------------

DAMAGE = {
    "truncated": r"^gzip stream truncated after \d+ decompressed bytes: the file ends at compressed byte \d+",
    "flipped": r"^gzip stream damaged at compressed byte \d+, after \d+ decompressed bytes: invalid block type$",
    "crc": r"^gzip stream damaged at compressed byte \d+, after \d+ decompressed bytes: CRC-32 check failed$",
}


def damaged_gz(lines: list[bytes], damage: str, header: bytes | None = None) -> tuple[bytes, int]:
    """(a gzip of header + lines with that damage, how many of `lines` are still whole in it)."""
    top = [header] if header else []
    data = b"".join(x + b"\n" for x in top + lines)
    if damage == "truncated":
        blob, readable = bc.gz_truncated(data, 0.5)
        return blob, readable.count(b"\n") - len(top)
    if damage == "flipped":
        head = b"".join(x + b"\n" for x in top + lines[:7])
        return bc.gz_flipped(head, data[len(head) :]), 7
    return bc.gz_bad_crc(data), len(lines)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("kind", ["ndjson", "csv"])
def test_a_damaged_gzip_keeps_the_records_before_the_damage(tmp_path, damage, kind):
    if kind == "ndjson":
        lines, header, name = ndjson_lines(60), None, "cat.ndjson.gz"
    else:
        lines = [bc.kaggle_row(bc.KEY_BASE + i, i) for i in range(60)]
        header, name = bc.KAGGLE_HEADER, "train.csv.gz"
    blob, whole = damaged_gz(lines, damage, header)
    path = tmp_path / name
    path.write_bytes(blob)
    assert 0 < whole <= 60
    stats = ReadStats()
    drawings, rejects = split(list(iter_records(path, stats=stats)))
    assert [d.key_id for d in drawings] == [bc.KEY_BASE + i for i in range(whole)]
    (reject,) = rejects
    assert reject.line == whole + 1 + (header is not None)
    assert re_search(DAMAGE[damage], reject.reason)
    assert stats.records == whole + 1 and stats.rejects == 1


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_prepare_goes_on_past_a_damaged_gzip(tmp_path, damage):
    folder = tmp_path / "data"
    folder.mkdir()
    blob, whole = damaged_gz(ndjson_lines(60), damage)
    (folder / "a.ndjson.gz").write_bytes(blob)
    (folder / "b.ndjson").write_bytes(b"\n".join(ndjson_lines(5, start=100)) + b"\n")
    manifest = prepare_folder(folder, tmp_path / "store")
    assert manifest["files"][str(folder / "a.ndjson.gz")] == {"format": "simplified-ndjson", "input": whole + 1,
                                                              "rejected": 1}
    assert manifest["files"][str(folder / "b.ndjson")] == {"format": "simplified-ndjson", "input": 5, "rejected": 0}
    assert manifest["accepted"] == whole + 5 and manifest["rejected"] == 1
    (reject,) = map(orjson.loads, (tmp_path / "store" / "_rejects.ndjson").read_bytes().splitlines())
    assert reject["line"] == whole + 1 and reject["source"] == str(folder / "a.ndjson.gz")


# -- 3. symbolic links ------------------------------------------------------------------------------------


def two_files(root: Path) -> tuple[Path, Path]:
    (root / "sub").mkdir(parents=True)
    a, b = root / "a.ndjson", root / "sub" / "b.ndjson"
    a.write_bytes(b"\n".join(ndjson_lines(2)) + b"\n")
    b.write_bytes(b"\n".join(ndjson_lines(3, start=10)) + b"\n")
    return a, b


def test_a_link_to_its_own_folder_is_walked_once(tmp_path):
    a, b = two_files(tmp_path)
    os.symlink(".", tmp_path / "loop")
    with bc.deadline(60):
        sources, skipped = expand_sources(tmp_path)
        assert [p for p, _ in sources] == [a, b] and skipped == []
        assert len(list(read(tmp_path))) == 5


def test_links_up_and_sideways_are_walked_once(tmp_path):
    a, b = two_files(tmp_path)
    os.symlink("..", tmp_path / "sub" / "up")
    os.symlink("sub", tmp_path / "side")  # the same folder under a second name
    os.symlink(".", tmp_path / "sub" / "here")
    with bc.deadline(60):
        sources, skipped = expand_sources(tmp_path)
    assert sorted(p.resolve() for p, _ in sources) == sorted([a.resolve(), b.resolve()])
    assert skipped == []


def test_a_link_to_a_file_already_read_is_skipped_with_a_reason(tmp_path):
    a, b = two_files(tmp_path)
    os.symlink("a.ndjson", tmp_path / "z_again.ndjson")
    os.symlink("missing.ndjson", tmp_path / "z_dangling.ndjson")
    sources, skipped = expand_sources([tmp_path, a])
    assert [p for p, _ in sources] == [a, b]
    reasons = dict(skipped)
    assert set(reasons) == {tmp_path / "z_again.ndjson", tmp_path / "z_dangling.ndjson", a}
    assert f"the same file as {a}" in reasons[tmp_path / "z_again.ndjson"]
    assert "a symbolic link to nothing" in reasons[tmp_path / "z_dangling.ndjson"]
    assert len(list(read([tmp_path, a]))) == 5


# -- 4. one bad record does not decide a file's fate ------------------------------------------------------


@pytest.mark.parametrize("named", [True, False])
def test_a_nul_byte_is_one_reject(tmp_path, named, caplog):
    lines = ndjson_lines(8)
    lines[3] = lines[3][:20] + b"\0" + lines[3][20:]
    path = tmp_path / "cat.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    if named:
        assert detect_format(path) == "simplified-ndjson"
        drawings, rejects = split(list(iter_records(path)))
        assert len(drawings) == 7 and [r.line for r in rejects] == [4] and rejects[0].reason.startswith("bad JSON")
    else:
        got: list[Reject] = []
        with caplog.at_level(logging.WARNING, logger="doodle.data.formats"):
            assert len(list(read(tmp_path, on_reject=got.append))) == 7
        assert [r.line for r in got] == [4] and "skipped" not in caplog.text


def test_a_nul_byte_in_a_kaggle_csv_is_one_reject(tmp_path):
    rows = [bc.kaggle_row(bc.KEY_BASE + i, i) for i in range(6)]
    rows[2] = rows[2].replace(b"True", b"Tr\0ue")
    path = tmp_path / "train.csv"
    path.write_bytes(b"\n".join([bc.KAGGLE_HEADER, *rows]) + b"\n")
    assert detect_format(path) == "kaggle-csv"
    drawings, rejects = split(list(iter_records(path)))
    assert len(drawings) == 5 and [r.line for r in rejects] == [4]


@pytest.mark.parametrize("bitmap_size", [True, False])
def test_a_binary_file_whose_first_record_has_no_strokes(tmp_path, bitmap_size):
    records = [bc.bin_record(bc.KEY_BASE, [])] + [bc.bin_record(bc.KEY_BASE + i, [3, 4]) for i in range(1, 4)]
    if bitmap_size:  # pad the last record so that the size is a multiple of 784 (records have odd sizes)
        records = records[:3]
        records.append(bc.bin_record(bc.KEY_BASE + 3, [(784 - sum(map(len, records)) - 19) // 2]))
        assert sum(map(len, records)) == 784
    path = tmp_path / "cat.bin"
    path.write_bytes(b"".join(records))
    assert detect_format(path) == "binary"
    drawings, rejects = split(list(iter_records(path)))
    assert [d.key_id for d in drawings] == [bc.KEY_BASE + i for i in range(1, 4)]
    assert [(r.line, r.reason) for r in rejects] == [(0, "drawing has no strokes")]


def test_describe_lists_each_skipped_file_with_its_reason(tmp_path):
    from doodle.data.store import describe

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "good.ndjson").write_bytes(b"\n".join(ndjson_lines(3)) + b"\n")
    (folder / "counts.json").write_bytes(b'{"cat": 3}\n')
    (folder / "odd.bin").write_bytes(bytes(range(256)) * 3)
    text = describe(prepare_folder(folder, tmp_path / "store"))
    assert "skipped 2 files" in text
    assert f"{folder / 'counts.json'}: not a Quick, Draw! drawing file: JSON objects without a 'drawing'" in text
    assert f"{folder / 'odd.bin'}: not a Quick, Draw! drawing file: binary data" in text


def test_read_reports_skipped_files(tmp_path, caplog):
    (tmp_path / "good.ndjson").write_bytes(b"\n".join(ndjson_lines(3)) + b"\n")
    (tmp_path / "counts.json").write_bytes(b'{"cat": 3}\n')
    skipped: list[tuple[Path, str]] = []
    assert len(list(read(tmp_path, on_skip=lambda p, why: skipped.append((p, why))))) == 3
    assert [p for p, _ in skipped] == [tmp_path / "counts.json"] and "'drawing'" in skipped[0][1]
    with caplog.at_level(logging.WARNING, logger="doodle.data.formats"):
        assert len(list(read(tmp_path))) == 3
    assert "skipped" in caplog.text and "counts.json" in caplog.text


# -- 5. byte-order marks, old-Mac line ends, long CSV fields ---------------------------------------------


@pytest.mark.parametrize("kind", ["ndjson", "document", "csv", "ndjson.gz"])
def test_a_byte_order_mark_costs_no_record(tmp_path, kind):
    if kind == "csv":
        data = b"\n".join([bc.KAGGLE_HEADER] + [bc.kaggle_row(bc.KEY_BASE + i, i) for i in range(3)]) + b"\n"
    elif kind == "document":
        data = orjson.dumps([bc.record(bc.KEY_BASE + i, i=i) for i in range(3)], option=orjson.OPT_INDENT_2)
    else:
        data = b"\n".join(ndjson_lines(3)) + b"\n"
    path = tmp_path / f"cat.{kind.replace('document', 'json')}"
    path.write_bytes(bc.gz(bc.BOM + data) if kind.endswith(".gz") else bc.BOM + data)
    drawings, rejects = split(list(iter_records(path)))
    assert rejects == [] and [d.key_id for d in drawings] == [bc.KEY_BASE + i for i in range(3)]


def old_mac_file(tmp_path: Path, kind: str) -> tuple[Path, list[int]]:
    """A CR-only file with blank lines and bad records; the bad records' line numbers."""
    if kind == "csv":
        f = bc.TextFile("kaggle-csv", bc.KAGGLE_HEADER)
        good = [bc.kaggle_row(bc.KEY_BASE + i, i) for i in range(30)]
        bad = b'US,"[]",1,True,,cat'
    else:
        f = bc.TextFile("simplified-ndjson")
        good, bad = ndjson_lines(30), b"{not json"
    rng = random.Random(3)
    for i, content in enumerate(good):
        f.good(content, bc.KEY_BASE + i)
        if rng.random() < 0.2:
            f.blank()
        if rng.random() < 0.2:
            f.bad(bad, "")
    data = f.render(b"\r", last_newline=False)
    path = tmp_path / f"mac.{kind}"
    path.write_bytes(bc.gz(data) if kind.endswith(".gz") else data)
    return path, [line for line, _ in f.expect.rejects]


@pytest.mark.parametrize("kind", ["ndjson", "csv", "ndjson.gz"])
def test_old_mac_line_ends_read_whole_and_in_ranges(tmp_path, kind):
    path, bad_lines = old_mac_file(tmp_path, kind)
    assert detect_format(path) == ("kaggle-csv" if kind == "csv" else "simplified-ndjson")
    whole = list(iter_records(path))
    drawings, rejects = split(whole)
    assert [d.key_id for d in drawings] == [bc.KEY_BASE + i for i in range(30)]
    assert [r.line for r in rejects] == bad_lines and bad_lines
    if kind.endswith(".gz"):
        return
    data = path.read_bytes()
    line_starts = [0] + [i + 1 for i, b in enumerate(data) if b == ord("\r")]
    rng = random.Random(5)
    for trial in range(10):
        cuts = rng.sample(range(1, len(data)), 4)
        if trial % 2:  # on line starts and just around them
            cuts = [rng.choice(line_starts[1:]) + rng.choice((-1, 0, 1)) for _ in range(4)]
        bounds = sorted({0, *(c for c in cuts if 0 < c < len(data))})
        got, absolute, before = [], [], 0
        for i, start in enumerate(bounds):
            stats = ReadStats()
            end = bounds[i + 1] if i + 1 < len(bounds) else None
            part = list(iter_records(path, start=start, end=end, stats=stats))
            got += part
            absolute += [before + r.line for r in part if isinstance(r, Reject)]
            before += stats.lines
        assert before == len(line_starts)
        assert [d.key_id for d in got if isinstance(d, Drawing)] == [d.key_id for d in drawings]
        assert absolute == bad_lines


def test_a_kaggle_drawing_longer_than_the_csv_field_limit(tmp_path):
    n = 13_000
    xs, ys, ts = ([float(f(j)) for j in range(n)] for f in (lambda j: 100 + j % 50, lambda j: j % 70, lambda j: j))
    drawing = [[xs, ys, ts]]
    field = bc.csv_field(orjson.dumps(drawing).decode())
    assert len(field) > 131_072
    path = tmp_path / "train_raw.csv"
    row = f"US,{field},{bc.KEY_BASE},True,2017-03-01 12:00:00.5,cat".encode()
    path.write_bytes(b"\n".join([bc.KAGGLE_HEADER, bc.kaggle_row(bc.KEY_BASE + 1), row]) + b"\n")
    previous = csv.field_size_limit(131_072)  # the default, whatever ran before
    try:
        drawings, rejects = split(list(iter_records(path)))
    finally:
        csv.field_size_limit(max(previous, csv.field_size_limit()))
    assert rejects == [] and len(drawings) == 2 and drawings[1].n_points == n


# -- 6. reasons and raw lengths -------------------------------------------------------------------------


def test_reject_reasons_say_what_is_wrong(tmp_path):
    path = tmp_path / "cat.ndjson"
    latin1 = b'{"key_id": "1", "word": "caf\xe9", "drawing": [[[1], [2]]]}'
    path.write_bytes(b"\n".join([
        b'{"key_id": 99999999999999999999999, "drawing": [[[1], [2]]]}',
        b'{"key_id": 123456789012345678901234567890, "drawing": [[[1], [2]]]}',
        latin1,
    ]) + b"\n")
    reasons = [r.reason for r in iter_records(path)]
    assert reasons == [
        "key_id 99999999999999999999999 outside the unsigned 64-bit range",
        "key_id 123456789012345678901234567890 outside the unsigned 64-bit range",
        f"line is not valid UTF-8 at byte {latin1.index(0xE9) + 1}",
    ]
    csv_path = tmp_path / "test.csv"
    csv_path.write_bytes(b'key_id,countrycode,drawing\n99999999999999999999999,US,"[[[1],[2]]]"\n1,\xe9\xe9,"[[[1],[2]]]"\n')
    assert [r.reason for r in iter_records(csv_path)] == [
        "key_id 99999999999999999999999 outside the unsigned 64-bit range", "row is not valid UTF-8 at byte 3"]


def test_raw_length_is_the_records_own_length(tmp_path):
    long_line = b'{"key_id": "1", "word": "' + b"x" * 70_000 + b'", "drawing": [}'
    path = tmp_path / "data" / "cat.ndjson"
    path.parent.mkdir()
    path.write_bytes(b"\n".join([*ndjson_lines(2), long_line]) + b"\n")
    (reject,) = split(list(iter_records(path)))[1]
    record = reject.to_json_dict()
    assert record["raw_length"] == len(long_line) and len(record["raw"]) == Reject.RAW_LIMIT
    prepare_folder(path.parent, tmp_path / "store")
    (written,) = map(orjson.loads, (tmp_path / "store" / "_rejects.ndjson").read_bytes().splitlines())
    assert written["raw_length"] == len(long_line) and written["line"] == 3
    big = bc.bin_record(bc.KEY_BASE, [300, 300], recognized=5)
    bin_path = tmp_path / "cat.bin"
    bin_path.write_bytes(bc.bin_record(bc.KEY_BASE + 1, [2]) + big + bc.bin_record(bc.KEY_BASE + 2, [2]))
    (bin_reject,) = split(list(iter_records(bin_path)))[1]
    assert bin_reject.to_json_dict()["raw_length"] == len(big) and bin_reject.raw.endswith(f"({len(big)} bytes)")


def test_a_zip_that_cannot_be_opened_is_one_reject(tmp_path):
    path = tmp_path / "cat.npz"
    np.savez(path, train=bc.object_array([bc.stroke3(0)]))
    data = path.read_bytes()
    assert detect_format(path) == "npz"
    path.write_bytes(data[: len(data) // 2])  # cut after detection (a download still running)
    (item,) = list(iter_records(path, "npz"))
    assert isinstance(item, Reject) and "not a readable .npz archive" in item.reason
    assert zipfile.is_zipfile(path) is False


@pytest.mark.parametrize("length", [2**16 - 5, 2**16 - 4, 2**16 - 3])  # with the BOM: CR at 65534..65536
def test_line_ends_are_told_right_across_read_boundaries(tmp_path, length):
    first = bc.line(bc.record(bc.KEY_BASE, word="c" * 10))
    first = first[:-1] + b" " * (length - len(first)) + b"}"  # its line end straddles a 64 KiB read
    lines = [first, *ndjson_lines(3, start=1), b"{bad", *ndjson_lines(2, start=4)]
    for newline in (b"\r\n", b"\r"):
        path = tmp_path / "cat.ndjson"
        path.write_bytes(bc.BOM + newline.join(lines))  # and no line end after the last line
        drawings, rejects = split(list(iter_records(path)))
        assert len(drawings) == 6 and [r.line for r in rejects] == [5], newline
    one = tmp_path / "one.ndjson"
    one.write_bytes(bc.BOM + lines[1] + b"\r")
    assert [d.key_id for d in iter_records(one)] == [bc.KEY_BASE + 1]


def test_gzip_members_and_zero_padding_read_whole(tmp_path):
    path = tmp_path / "cat.ndjson.gz"
    a, b = b"\n".join(ndjson_lines(3)) + b"\n", b"\n".join(ndjson_lines(2, start=3)) + b"\n"
    path.write_bytes(bc.gz(a) + bc.gz(b) + b"\0" * 100)
    drawings, rejects = split(list(iter_records(path)))
    assert rejects == [] and [d.key_id for d in drawings] == [bc.KEY_BASE + i for i in range(5)]
    path.write_bytes(bc.gz(a) + b"trailing garbage")
    drawings, rejects = split(list(iter_records(path)))
    assert len(drawings) == 3 and [r.line for r in rejects] == [4]
    assert rejects[0].reason.startswith("gzip stream damaged at compressed byte")


def test_a_file_that_breaks_under_prepare_is_one_reject(tmp_path):
    from doodle.data.drawing import DEFAULT_LIMITS
    from doodle.data.store import _Part, _records

    csv_path = tmp_path / "train.csv"
    csv_path.write_bytes(b"\n".join([bc.KAGGLE_HEADER, bc.kaggle_row(bc.KEY_BASE)]) + b"\n")
    assert detect_format(csv_path) == "kaggle-csv"
    csv_path.write_bytes(b"name,size\na,1\n")  # changed since it was detected
    for part in (_Part(str(tmp_path / "gone.ndjson"), "simplified-ndjson"), _Part(str(csv_path), "kaggle-csv")):
        stats = ReadStats()
        (item,) = list(_records(part, DEFAULT_LIMITS, stats))
        assert isinstance(item, Reject) and item.reason.startswith("reading stopped by an error: ")
        assert (item.line, stats.records, stats.rejects) == (1, 1, 1)
