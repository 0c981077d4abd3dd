"""The Kaggle job in one store: train and test CSVs together or the test CSV alone (drawings without a
word go to test/ with label -1), `--word` for files without one, and no `STORE.partial` left by a
failed run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

import doodle.data.store as store_mod
from doodle.cli import main
from doodle.data.drawing import Drawing
from doodle.data.formats import infer_word, read, write_binary, write_kaggle_csv
from doodle.data.store import PrepareConfig, load_manifest, prepare, store_files
from doodle.data.synth import synth

QUIET = {"progress": False, "workers": 1}
WORDS = ["circle", "square", "star"]
GIVEN = ["star", "circle", "square"]  # a label order other than the sorted one


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory) -> tuple[Path, Path, list[Drawing], list[Drawing]]:
    """Kaggle's two layouts: a train CSV (with words) and a test CSV (no word column), other key_ids."""
    folder = tmp_path_factory.mktemp("kaggle")
    synth(folder / "src", per_class=20, classes=WORDS)
    drawings = list(read(folder / "src"))
    train, test = drawings[:42], drawings[42:]
    write_kaggle_csv(train, folder / "train.csv")
    write_kaggle_csv(test, folder / "test.csv", test=True)
    return folder / "train.csv", folder / "test.csv", train, test


def rows(store: Path):
    return ds.dataset(store_files(store), format="parquet").to_table(columns=["key_id", "word", "label", "split"])


def prepare_cli(sources: list[Path], out: Path, *extra: str) -> dict:
    assert main(["prepare", *map(str, sources), "--out", str(out), "--no-progress", "--workers", "1", *extra]) == 0
    return load_manifest(out)


@pytest.mark.parametrize("classes", [None, GIVEN])
def test_kaggle_train_and_test_csvs_prepare_together(kaggle, tmp_path: Path, classes):
    train_csv, test_csv, train, test = kaggle
    extra = ["--classes", ",".join(classes)] if classes else []
    manifest = prepare_cli([train_csv, test_csv], tmp_path / "s", "--val-fraction", "0.2", *extra)
    n = len(train) + len(test)
    assert manifest["input"] == manifest["accepted"] == n and manifest["rejected"] == manifest["duplicates"] == 0
    assert manifest["classes"] == (classes or WORDS) and manifest["classes_never_seen"] == []
    assert manifest["splits"]["test"] == manifest["unlabelled"] == len(test)
    assert manifest["splits"]["train"] + manifest["splits"]["val"] == len(train)
    for split in ("train", "val"):
        assert sum(manifest["per_class"][split].values()) == manifest["splits"][split]
    table = rows(tmp_path / "s")
    got = {k: (w, label, s) for k, w, label, s in zip(*(table.column(c).to_pylist() for c in table.column_names),
                                                       strict=True)}
    assert {k for k, (_, _, s) in got.items() if s == "test"} == {d.key_id for d in test}
    assert all(w is None and label == -1 for w, label, s in got.values() if s == "test")
    order = manifest["classes"]
    assert all(label == order.index(w) for w, label, s in got.values() if s != "test")
    assert {got[d.key_id][0] for d in train} == set(WORDS)


@pytest.mark.parametrize("classes", [None, GIVEN])
def test_a_kaggle_test_csv_alone_is_a_store_of_test_rows(kaggle, tmp_path: Path, capsys, classes):
    from doodle.train.data import EpochBatches

    _, test_csv, _, test = kaggle
    extra = ["--classes", ",".join(classes)] if classes else []
    manifest = prepare_cli([test_csv], tmp_path / "s", *extra)
    assert manifest["splits"] == {"train": 0, "val": 0, "test": len(test)}
    assert manifest["input"] == manifest["accepted"] == manifest["unlabelled"] == len(test)
    assert manifest["classes"] == (classes or []) and manifest["classes_never_seen"] == (classes or [])
    assert set(rows(tmp_path / "s").column("label").to_pylist()) == {-1}
    capsys.readouterr()
    assert main(["info", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    shown = f"classes: none (no drawing has a word: all {len(test)} are in test)" if not classes else \
        "classes: 3 (3 listed but never seen)"
    assert shown in out and f"test {len(test)}" in out
    # the loader takes it as it is: every row of the test split, none of the others
    batches = EpochBatches(tmp_path / "s", "test", batch_size=7, shuffle=False, drop_last=False)
    assert sorted(k for i in range(len(batches)) for k in batches.batch_rows(i).column("key_id").to_pylist()) == \
        sorted(d.key_id for d in test)
    assert len(EpochBatches(tmp_path / "s", "train", batch_size=7)) == 0


@pytest.mark.parametrize("stage", ["_run_map", "_run_reduce", "_merge_rejects"])
def test_a_failed_run_leaves_no_partial_folder(kaggle, tmp_path: Path, monkeypatch, stage: str):
    train_csv, test_csv, _, _ = kaggle

    def broken(*args, **kwargs):
        raise RuntimeError(f"{stage} died")

    monkeypatch.setattr(store_mod, stage, broken)
    with pytest.raises(RuntimeError, match="died"):
        prepare([train_csv, test_csv], tmp_path / "s", PrepareConfig(**QUIET))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no s.partial, no lock


# -- --word ---------------------------------------------------------------------------------------


def simple_drawings(n: int, start: int) -> list[Drawing]:
    """Drawings the binary format can hold (integer points in 0..255, no timing)."""
    rng = np.random.default_rng(start)
    return [Drawing(key_id=start + i, strokes=[rng.integers(0, 256, (5, 2)).astype(np.float64)], word="ignored",
                    countrycode="FR", recognized=True, timestamp=datetime(2017, 1, 2, 3, 4, 5, tzinfo=UTC))
            for i in range(n)]


@pytest.fixture(scope="module")
def wordless(tmp_path_factory, kaggle) -> Path:
    """A binary file and a bitmap file whose names are not categories, and a Kaggle test CSV."""
    folder = tmp_path_factory.mktemp("wordless")
    write_binary(simple_drawings(12, 1000), folder / "export_2024.bin")
    np.save(folder / "sample_images.npy", np.random.default_rng(1).integers(0, 256, (8, 784), dtype=np.uint8))
    (folder / "test.csv").write_bytes(kaggle[1].read_bytes())
    return folder


def words_by_file(store: Path) -> dict[str, set]:
    table = ds.dataset(store_files(store), format="parquet").to_table(columns=["word", "source"])
    out: dict[str, set] = {}
    for word, source in zip(table.column("word").to_pylist(), table.column("source").to_pylist(), strict=True):
        out.setdefault(Path(source).name, set()).add(word)
    return out


def test_word_names_the_category_of_files_without_one(wordless: Path, tmp_path: Path):
    guessed = prepare([wordless], tmp_path / "guessed", PrepareConfig(**QUIET))
    assert words_by_file(tmp_path / "guessed") == {"export_2024.bin": {infer_word("export_2024.bin")},
                                                    "sample_images.npy": {infer_word("sample_images.npy")},
                                                    "test.csv": {None}}
    named = prepare([wordless], tmp_path / "named", PrepareConfig(word="hot dog", **QUIET))
    # the word names the wordless formats only: the test CSV's rows stay unlabelled, in test
    assert words_by_file(tmp_path / "named") == {"export_2024.bin": {"hot dog"}, "sample_images.npy": {"hot dog"},
                                                  "test.csv": {None}}
    assert named["classes"] == ["hot dog"] and named["splits"]["test"] == guessed["splits"]["test"]
    assert named["per_class"]["train"]["hot dog"] + named["per_class"]["val"]["hot dog"] == 20


def test_word_on_the_command_line(wordless: Path, tmp_path: Path, capsys):
    manifest = prepare_cli([wordless / "export_2024.bin"], tmp_path / "s", "--word", "hot dog", "--classes",
                           "cat,hot dog")
    assert manifest["classes"] == ["cat", "hot dog"] and manifest["accepted"] == 12
    assert manifest["config"]["word"] == "hot dog"
    assert set(rows(tmp_path / "s").column("label").to_pylist()) == {1}
    assert main(["prepare", str(wordless), "--out", str(tmp_path / "t"), "--word", " ", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1].endswith("word must name a category, got ' '") and "Traceback" not in err
    assert not (tmp_path / "t").exists()
