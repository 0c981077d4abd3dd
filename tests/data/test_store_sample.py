"""`prepare --per-class N`: a sample of at most N drawings per class, chosen by a hash of key_id, that
keeps the same drawings of a class when other classes are added, with every input drawing counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from doodle.cli import main
from doodle.data.formats import read
from doodle.data.split import splitmix64
from doodle.data.store import SAMPLE_SALT, PrepareConfig, describe, iter_store, prepare, sample_hash

QUIET = {"progress": False, "workers": 1}
N = 60


def _files(quickdraw: Path, *names: str) -> list[Path]:
    simplified = {"cat": "JulienDuranleau_cat_2k", "camera": "JulienDuranleau_camera", "eye": "JulienDuranleau_eye",
                  "map": "JulienDuranleau_map"}
    out = [quickdraw / "simplified" / f"{simplified[n]}.ndjson" for n in names]
    return out + [quickdraw / "raw" / f"{n}.ndjson" for n in names]  # raw copies: duplicates of simplified ones


def _keys(store: Path) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for drawing in iter_store(store):
        out.setdefault(drawing.word, set()).add(drawing.key_id)
    return out


def _expected(files: list[Path], n: int, seed: int = 0) -> dict[str, set[int]]:
    """The n lowest hashes of each class's distinct key_ids, computed with NumPy's splitmix64."""
    by_word: dict[str, set[int]] = {}
    for drawing in read(files):
        by_word.setdefault(drawing.word, set()).add(drawing.key_id)
    out = {}
    for word, keys in by_word.items():
        arr = np.array(sorted(keys), np.uint64)
        order = np.argsort(splitmix64(arr, SAMPLE_SALT + seed), kind="stable")
        out[word] = {int(k) for k in arr[order[:n]]}
    return out


def test_the_python_hash_is_the_numpy_hash():
    keys = [0, 1, 5321656484495360, 2**64 - 1, 6_000_000_000_000_000]
    for seed in (0, 7, 2**40):
        expected = splitmix64(np.array(keys, np.uint64), SAMPLE_SALT + seed).tolist()
        assert [sample_hash(k, seed) for k in keys] == expected


def test_at_most_n_per_class_the_lowest_hashes_and_counts_add_up(quickdraw, tmp_path):
    files = _files(quickdraw, "cat", "camera", "eye")
    manifest = prepare(files, tmp_path / "s", PrepareConfig(per_class=N, chunk_mb=0.05, **QUIET))
    kept = _keys(tmp_path / "s")
    assert kept == _expected(files, N)
    assert all(len(keys) == N for keys in kept.values())
    assert manifest["input"] == (manifest["accepted"] + manifest["duplicates"] + manifest["sampled_out"]
                                 + manifest["rejected"])
    assert manifest["accepted"] == 3 * N and manifest["sampled_out"] > 0 and manifest["duplicates"] > 0
    assert f"sampled out {manifest['sampled_out']:,} (at most {N} per class)" in describe(manifest)


def test_adding_classes_keeps_the_same_drawings_of_the_old_ones(quickdraw, tmp_path):
    prepare(_files(quickdraw, "cat"), tmp_path / "one", PrepareConfig(per_class=N, **QUIET))
    prepare(_files(quickdraw, "map", "cat", "eye"), tmp_path / "three", PrepareConfig(per_class=N, **QUIET))
    one, three = _keys(tmp_path / "one"), _keys(tmp_path / "three")
    assert one["cat"] == three["cat"] and set(three) == {"cat", "eye", "map"}


def test_the_sample_is_deterministic_and_depends_on_the_seed(quickdraw, tmp_path):
    files = _files(quickdraw, "cat", "eye")
    prepare(files, tmp_path / "a", PrepareConfig(per_class=N, **QUIET))
    # other workers, other chunking and the files in the other order: the same drawings
    prepare(files[::-1], tmp_path / "b", PrepareConfig(per_class=N, progress=False, workers=2, chunk_mb=0.03))
    prepare(files, tmp_path / "c", PrepareConfig(per_class=N, seed=3, **QUIET))
    a, b, c = _keys(tmp_path / "a"), _keys(tmp_path / "b"), _keys(tmp_path / "c")
    assert a == b and a != c and c == _expected(files, N, seed=3)


def test_a_class_smaller_than_n_is_kept_whole_and_unsampled_stores_are_unchanged(quickdraw, tmp_path):
    files = _files(quickdraw, "eye")
    sampled = prepare(files, tmp_path / "s", PrepareConfig(per_class=10_000, **QUIET))
    whole = prepare(files, tmp_path / "w", PrepareConfig(**QUIET))
    assert sampled["sampled_out"] == whole["sampled_out"] == 0 and sampled["splits"] == whole["splits"]
    assert "sampled out" not in describe(whole)


@pytest.mark.parametrize("value", ["-1", "x"])
def test_cli_per_class(quickdraw, tmp_path, capsys, value):
    files = [str(f) for f in _files(quickdraw, "cat")]
    assert main(["prepare", *files, "--out", str(tmp_path / "s"), "--per-class", "25", "--workers", "1",
                 "--no-progress"]) == 0
    assert "sampled out" in capsys.readouterr().out and len(_keys(tmp_path / "s")["cat"]) == 25
    with pytest.raises(SystemExit):
        main(["prepare", *files, "--out", str(tmp_path / "t"), "--per-class", value])
