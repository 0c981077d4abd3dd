"""benchmarks/prepare_bench.py, Kaggle CSV parts: on a tiny generated input, the parse-rate part
checks both paths agree and reports both rates and their ratio; the end-to-end part runs prepare on
the new and the general path (the baseline shim reaching the spawned workers) with the same counts.
Behaviour only: no timing is asserted."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import load_benchmark

from doodle.data.formats.kaggle_csv import write_kaggle_csv
from doodle.data.simplify import simplify
from doodle.data.synth import make_drawing


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("prepare_bench")


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory) -> Path:
    """Two tiny Kaggle train CSVs: integer (simplified) drawings, one float drawing and a bad row."""
    folder = tmp_path_factory.mktemp("kaggle")
    for word in ("circle", "square"):
        drawings = [simplify(make_drawing(word, i)) for i in range(12)]
        drawings.append(make_drawing(word, 99))  # raw synthetic: float coordinates, the general path
        write_kaggle_csv(drawings, folder / f"{word}.csv")
    with open(folder / "circle.csv", "a") as handle:
        handle.write('US,"[[[1, 2], [3]]]",123,True,2017-03-08 21:12:07.266040,circle\n')  # ragged: a reject
    return folder


def test_drawing_texts_share_the_rows_between_the_files(bench, kaggle):
    files = bench.csv_files([kaggle])
    assert [f.name for f in files] == ["circle.csv", "square.csv"]
    texts = bench.drawing_texts(files, 6)
    assert len(texts) == 6 and all(t.startswith("[[[") for t in texts)
    assert bench.drawing_texts(files, 0)[-1] == bench.drawing_texts([files[1]], 0)[-1]
    assert len(bench.drawing_texts(files, 0)) == 27


def test_both_sides_count_the_same_drawings(bench, kaggle):
    texts = bench.drawing_texts(bench.csv_files([kaggle]), 0)
    assert bench.old_side(texts) == bench.new_side(texts) == 26  # all but the ragged one
    assert bench.check_same(texts) == 24  # the integer drawings: the float ones and the reject fall back


def test_check_same_names_a_row_where_the_paths_differ(bench, monkeypatch):
    monkeypatch.setattr(bench, "strokes_from_text", lambda text, limits: [np.zeros((1, 2))])
    with pytest.raises(SystemExit, match="row 0"):
        bench.check_same(["[[[1], [2]]]"])


def test_the_csv_parts_run_end_to_end(bench, kaggle, tmp_path, capsys):
    bench.main(["--csv", str(kaggle), "--rows", "0", "--repeats", "1", "--workers", "1", "2", "--baseline",
                "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "27 drawing texts from 2 files" in out and "handles 88.89% itself" in out
    assert re.search(r"general: orjson \+ strokes_from_json \+ to_flat +[\d,]+ drawings per CPU-second", out)
    assert re.search(r"prepare: strokes_from_text \+ batch flat +[\d,]+ drawings per CPU-second", out)
    assert re.search(r"new / old: [\d.]+x", out)
    for workers in (1, 2):
        assert f"workers={workers}, 27 drawings" in out
    assert len(re.findall(r"new +[\d.]+ s wall +CPU/wall [\d.]+ +[\d,]+ drawings/s per core", out)) == 2
    assert len(re.findall(r"general +[\d.]+ s wall", out)) == 2
    assert len(re.findall(r"new / general: [\d.]+x in wall time, [\d.]+x in CPU time", out)) == 2
    assert list(tmp_path.iterdir()) == []  # the scratch folder is removed


def test_the_baseline_shim_takes_the_general_path_in_every_process(bench, kaggle, tmp_path, monkeypatch):
    shim = tmp_path / "shim"
    shim.mkdir()
    # a shim that breaks the general path instead: prepare then rejects every row, in each worker too
    (shim / "sitecustomize.py").write_text(bench.GENERAL_PATH_SHIM.replace(
        "lambda text, limits: None", "lambda text, limits: 1 / 0"))
    with pytest.raises(SystemExit, match="prepare failed"):
        bench.prepare_run([kaggle], tmp_path / "store", 2, shim)
    (shim / "sitecustomize.py").write_text(bench.GENERAL_PATH_SHIM)
    run = bench.prepare_run([kaggle], tmp_path / "store", 2, shim)
    assert run.drawings == 27 and run.wall > 0 and run.cpu > 0
