"""`prepare`: accounting, determinism, deduplication, chunked files, classes, rejects."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pyarrow.dataset as ds
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doodle.cli import main
from doodle.data.store import (
    PROCESS_MB,
    PrepareConfig,
    _choose_buckets,
    _Part,
    _Task,
    buffer_mb,
    iter_store,
    load_manifest,
    prepare,
    store_files,
)
from doodle.errors import DoodleError

QUIET = {"progress": False, "workers": 1}


def real_lines(path: Path, n: int | None = None) -> list[bytes]:
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    return lines[:n] if n else lines


@pytest.fixture(scope="module")
def mixed_inputs(quickdraw: Path, tmp_path_factory) -> Path:
    """Raw and simplified files that share key_ids (duplicates), a binary file and a bitmap file."""
    root = tmp_path_factory.mktemp("mixed")
    for name in ("cat", "dog", "The Eiffel Tower"):
        shutil.copy(quickdraw / "raw" / f"{name}.ndjson", root / f"raw_{name}.ndjson")
        shutil.copy(quickdraw / "simplified" / f"{name}.ndjson", root / f"simplified_{name}.ndjson")
    shutil.copy(quickdraw / "bin" / "dog.bin", root / "dog.bin")
    (root / "notes.md").write_text("not a drawing file: not even looked at")
    shutil.copy(quickdraw / "meta" / "category-count-dict.json", root / "counts.json")  # skipped with a reason
    return root


def test_manifest_accounting_and_dedup(mixed_inputs: Path, tmp_path: Path):
    manifest = prepare([mixed_inputs], tmp_path / "store", PrepareConfig(val_fraction=0.2, **QUIET))
    assert manifest["input"] == manifest["accepted"] + manifest["duplicates"] + manifest["rejected"]
    # dog.bin ends with a cut record: the one reject
    assert manifest["rejected"] == 1
    rejects = [orjson.loads(line) for line in (tmp_path / "store" / "_rejects.ndjson").read_bytes().splitlines()]
    assert len(rejects) == 1 and rejects[0]["source"].endswith("dog.bin") and rejects[0]["line"] == 49
    # every key_id once; duplicates counted independently
    from doodle.data.formats import read

    keys = [d.key_id for d in read(mixed_inputs)]
    assert manifest["duplicates"] == len(keys) - len(set(keys)) > 0
    table = ds.dataset(store_files(tmp_path / "store"), format="parquet").to_table()
    assert table.num_rows == manifest["accepted"] == len(set(keys))
    assert len(set(table.column("key_id").to_pylist())) == table.num_rows
    # a raw copy wins over its simplified twin: every key_id seen in a raw file kept its timing
    raw_keys = {d.key_id for d in read(sorted(mixed_inputs.glob("raw_*")))}
    timed = dict(zip(table.column("key_id").to_pylist(), table.column("t").is_valid().to_pylist(), strict=True))
    assert all(timed[k] for k in raw_keys)
    assert manifest["classes"] == ["The Eiffel Tower", "cat", "dog"]
    labels = dict(zip(table.column("word").to_pylist(), table.column("label").to_pylist(), strict=True))
    assert labels == {"The Eiffel Tower": 0, "cat": 1, "dog": 2}
    for split in ("train", "val"):
        assert sum(manifest["per_class"][split].values()) == manifest["splits"][split]
    assert abs(manifest["splits"]["val"] / manifest["accepted"] - 0.2) < 0.06
    assert list(manifest["skipped_files"]) == [str(mixed_inputs / "counts.json")]


def test_split_is_a_function_of_key_id_whatever_the_order(mixed_inputs: Path, tmp_path: Path):
    files = sorted(p for p in mixed_inputs.iterdir() if p.suffix not in (".md", ".json"))
    a = prepare(files, tmp_path / "a", PrepareConfig(val_fraction=0.3, **QUIET))
    b = prepare(files[::-1], tmp_path / "b", PrepareConfig(val_fraction=0.3, progress=False, workers=2, shards=3))

    def split_of(store: Path) -> dict[int, str]:
        t = ds.dataset(store_files(store), format="parquet").to_table(columns=["key_id", "split"])
        return dict(zip(t.column("key_id").to_pylist(), t.column("split").to_pylist(), strict=True))

    assert split_of(tmp_path / "a") == split_of(tmp_path / "b")
    assert a["splits"] == b["splits"] and a["duplicates"] == b["duplicates"]
    assert b["shards"] == 3 and len(store_files(tmp_path / "b", "train")) == 3


def test_store_is_shuffled_and_reads_back(quickdraw: Path, tmp_path: Path):
    src = quickdraw / "simplified" / "JulienDuranleau_airplane.ndjson"
    prepare([src], tmp_path / "s", PrepareConfig(val_fraction=0.0, **QUIET))
    from doodle.data.formats import read

    original = {d.key_id: d for d in read(src)}
    stored = list(iter_store(tmp_path / "s", "train"))
    assert sorted(d.key_id for d in stored) == sorted(original)
    assert [d.key_id for d in stored] != list(original)  # shuffled
    # a store is itself a valid input: re-preparing it keeps every drawing
    again = prepare([tmp_path / "s"], tmp_path / "s2", PrepareConfig(val_fraction=0.5, **QUIET))
    assert again["accepted"] == len(original) and again["input"] == len(original)
    for d in stored[:50]:
        o = original[d.key_id]
        assert (d.word, d.countrycode, d.recognized, d.timestamp) == (o.word, o.countrycode, o.recognized, o.timestamp)
        assert all(np.array_equal(x, y) for x, y in zip(d.strokes, o.strokes, strict=True))


def test_a_split_folder_of_a_store_reads_that_split_only(quickdraw: Path, tmp_path: Path):
    from doodle.data.formats import expand_sources, read

    src = quickdraw / "simplified" / "JulienDuranleau_airplane.ndjson"
    prepare([src], tmp_path / "s", PrepareConfig(val_fraction=0.3, **QUIET))
    val = {d.key_id for d in iter_store(tmp_path / "s", "val")}
    train = {d.key_id for d in iter_store(tmp_path / "s", "train")}
    assert val and train
    assert expand_sources(tmp_path / "s" / "val")[0] == [(tmp_path / "s" / "val", "store-split")]
    assert {d.key_id for d in read(tmp_path / "s" / "val")} == val
    assert {d.key_id for d in read(tmp_path / "s")} == val | train
    # and `prepare` takes one split as input too
    again = prepare([tmp_path / "s" / "val"], tmp_path / "s2", PrepareConfig(val_fraction=0.0, **QUIET))
    assert again["accepted"] == len(val)


def test_chunked_file_gives_absolute_reject_lines(quickdraw: Path, tmp_path: Path):
    lines = real_lines(quickdraw / "raw" / "cat.ndjson")
    bad_at = [3, 17, len(lines) - 2]
    for i in bad_at:
        lines[i] = b'{"key_id": "1", "word": "cat", "drawing": "broken'
    path = tmp_path / "cat.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    cfg = PrepareConfig(chunk_mb=4096 / 2**20, progress=False, workers=2)  # ~4 kB ranges: many tasks
    manifest = prepare([path], tmp_path / "store", cfg)
    assert len(manifest["files"]) == 1
    rejects = [orjson.loads(x) for x in (tmp_path / "store" / "_rejects.ndjson").read_bytes().splitlines()]
    assert sorted(r["line"] for r in rejects) == [i + 1 for i in bad_at]
    assert manifest["accepted"] + manifest["duplicates"] == len(lines) - len(bad_at)


def test_class_list_rejects_unknown_words(quickdraw: Path, tmp_path: Path):
    files = [quickdraw / "raw" / "cat.ndjson", quickdraw / "raw" / "dog.ndjson"]
    manifest = prepare(files, tmp_path / "s", PrepareConfig(classes=["dog", "zebra"], **QUIET))
    n_cats = len(real_lines(files[0]))
    assert manifest["rejected"] == n_cats
    assert manifest["classes"] == ["dog", "zebra"] and manifest["classes_never_seen"] == ["zebra"]
    assert list(manifest["rejected_by_reason"]) == ["unknown class 'cat' (not in the class list)"]
    first = orjson.loads((tmp_path / "s" / "_rejects.ndjson").read_bytes().splitlines()[0])
    assert first["line"] == 1 and orjson.loads(first["raw"])["word"] == "cat"


def test_underscored_words_match_the_class_list(quickdraw: Path, tmp_path: Path):
    lines = [orjson.loads(x) for x in real_lines(quickdraw / "raw" / "The Eiffel Tower.ndjson", 5)]
    for obj in lines:
        obj["word"] = "The_Eiffel_Tower"
    src = tmp_path / "eiffel.ndjson"
    src.write_bytes(b"\n".join(orjson.dumps(o) for o in lines))
    manifest = prepare([src], tmp_path / "s", PrepareConfig(classes=["The Eiffel Tower"], **QUIET))
    assert manifest["accepted"] == 5 and manifest["per_class"]["train"]["The Eiffel Tower"] >= 4


def test_existing_store_needs_overwrite(quickdraw: Path, tmp_path: Path):
    src = quickdraw / "raw" / "ant.ndjson"
    prepare([src], tmp_path / "s", PrepareConfig(**QUIET))
    with pytest.raises(DoodleError, match="already exists"):
        prepare([src], tmp_path / "s", PrepareConfig(**QUIET))
    prepare([src], tmp_path / "s", PrepareConfig(**QUIET), overwrite=True)
    with pytest.raises(DoodleError, match="_manifest.json: not a Quick, Draw! drawing file"):
        prepare([tmp_path / "s" / "_manifest.json"], tmp_path / "t", PrepareConfig(**QUIET))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DoodleError, match="no drawing files"):
        prepare([tmp_path / "empty"], tmp_path / "t", PrepareConfig(**QUIET))


def test_buckets_grow_with_input_and_shrink_with_memory():
    tasks = [_Task(i, (_Part(f"f{i}", "raw-ndjson", size=1 << 30),)) for i in range(100)]  # 100 GB
    assert _choose_buckets(tasks, workers=2, buffers_mb=2048) > _choose_buckets(tasks, workers=2, buffers_mb=8192) > 10
    assert _choose_buckets(tasks[:1], 2, 2048) < _choose_buckets(tasks, 2, 2048)
    assert _choose_buckets([_Task(0, (_Part("f", "raw-ndjson", size=1000),))], 2, 2048) == 1


def test_budget_counts_every_process_before_its_buffers(caplog):
    assert buffer_mb(2, 2048) == 2048 - 3 * PROCESS_MB  # the parent and two pool workers
    assert buffer_mb(1, 2048) == 2048 - PROCESS_MB  # one worker works in the parent
    assert buffer_mb(4, 8192) == 8192 - 5 * PROCESS_MB
    assert not caplog.records
    assert buffer_mb(16, 2048) == 16
    assert "--memory-mb 2048 is below the ~4096 MB that 17 processes need" in caplog.text


def test_cli_prepare_and_info(quickdraw: Path, tmp_path: Path, capsys):
    src = str(quickdraw / "raw" / "ant.ndjson")
    assert main(["prepare", src, "--out", str(tmp_path / "s"), "--no-progress", "--workers", "1"]) == 0
    assert "accepted" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "ant" in out and "splits: train" in out
    assert main(["prepare", src, "--out", str(tmp_path / "s"), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err


# -- property-based: whatever is fed in, input = accepted + duplicates + rejected ----------------

MALFORMED = [
    b"{not json",
    b'{"key_id": "12", "word": "cat"}',  # no drawing
    b'{"key_id": "12", "word": "cat", "drawing": []}',  # no strokes
    b'{"key_id": "12", "word": "cat", "drawing": [[[1, 2], [3]]]}',  # mismatched x/y
    b'{"key_id": "12", "word": "cat", "drawing": [[[1, "a"], [3, 4]]]}',  # wrong type
    b'{"key_id": "12", "word": "cat", "drawing": [[[1, 1e400], [3, 4]]]}',  # inf
    b'{"key_id": "-5", "word": "cat", "drawing": [[[1], [3]]]}',  # bad key
    b'{"key_id": 1.5, "word": "cat", "drawing": [[[1], [3]]]}',  # float key
    b'{"key_id": "12", "word": 7, "drawing": [[[1], [3]]]}',  # word not a string
    b'{"key_id": "12", "word": "cat", "drawing": [[[], []]]}',  # empty stroke
    b'{"key_id": "12", "word": "cat", "drawing": [[[1e9], [3]]]}',  # absurd coordinate
    b"[1, 2, 3]",
    b'"just a string"',
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_accounting_property(quickdraw: Path, tmp_path_factory, data):
    pool = real_lines(quickdraw / "raw" / "ant.ndjson", 12)
    n = data.draw(st.integers(1, 40))
    picks = data.draw(st.lists(st.one_of(st.sampled_from(pool), st.sampled_from(MALFORMED)), min_size=n, max_size=n))
    n_files = data.draw(st.integers(1, 3))
    root = tmp_path_factory.mktemp("prop")
    for i in range(n_files):
        chunk = picks[i::n_files]
        if chunk:
            (root / f"part{i}.ndjson").write_bytes(b"\n".join(chunk) + b"\n")
    n_bad = sum(p in MALFORMED for p in picks)
    good = [orjson.loads(p)["key_id"] for p in picks if p not in MALFORMED]
    manifest = prepare([root], root.with_name(root.name + "-store"), PrepareConfig(progress=False, workers=1))
    assert manifest["input"] == len(picks)
    assert manifest["rejected"] == n_bad
    assert manifest["duplicates"] == len(good) - len(set(good))
    assert manifest["accepted"] == len(set(good))
    assert manifest["input"] == manifest["accepted"] + manifest["duplicates"] + manifest["rejected"]
    rejects = (root.with_name(root.name + "-store") / "_rejects.ndjson").read_bytes().splitlines()
    assert len(rejects) == n_bad
    assert load_manifest(root.with_name(root.name + "-store"))["input"] == len(picks)


def test_info_into_a_closed_pipe_exits_quietly(quickdraw: Path, tmp_path: Path):
    # `doodle info STORE | head -0`: the reader is gone before doodle writes; no traceback.
    import os
    import subprocess
    import sys

    prepare([quickdraw / "simplified" / "JulienDuranleau_airplane.ndjson"], tmp_path / "s", PrepareConfig(**QUIET))
    reader, writer = os.pipe()
    os.close(reader)
    proc = subprocess.run([sys.executable, "-m", "doodle", "info", str(tmp_path / "s")], stdout=writer,
                          stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(writer)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
