"""The bad-input corpus (bad_corpus.py) read, prepared and predicted: exact accounting, no traceback.

Every reader must turn each bad record into one reject with its reason and read every good one;
`doodle prepare` over the whole folder (through the CLI, two worker processes) must exit 0 with
a manifest that accounts for every record of every file, and `predict` must write one row per
valid drawing. No pickle in the corpus may ever run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import bad_corpus
import orjson
import pyarrow.parquet as pq
import pytest

from doodle.data.drawing import Drawing, Reject
from doodle.data.formats import expand_sources, iter_records


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, bad_corpus.Expect]]:
    root = tmp_path_factory.mktemp("bad") / "corpus"
    bad_corpus.MARKER.unlink(missing_ok=True)
    return root, bad_corpus.write_corpus(root)


def rel(root: Path, path: str | Path) -> str:
    return str(Path(path).relative_to(root))


def assert_no_code_ran() -> None:
    assert not bad_corpus.MARKER.exists(), "a pickle in the corpus ran code"


def test_corpus_is_large_enough_small_and_deterministic(corpus, tmp_path):
    root, expect = corpus
    read = {k: e for k, e in expect.items() if e.skipped is None}
    assert len(expect) >= 40 and len(read) >= 30
    assert {e.format for e in read.values()} == {"raw-ndjson", "simplified-ndjson", "kaggle-csv", "binary", "npz",
                                                 "bitmap-npy", "bitmap-bin"}
    assert all(e.drawings and e.rejects for e in read.values() if e.format not in ("bitmap-npy", "bitmap-bin"))
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    assert sum(p.stat().st_size for p in files) < 400_000
    # the script form writes the same bytes
    again = tmp_path / "again"
    script = Path(bad_corpus.__file__)
    done = subprocess.run([sys.executable, str(script), str(again)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for path in files:
        assert (again / path.relative_to(root)).read_bytes() == path.read_bytes(), path
    saved = orjson.loads((again / ".expected.json").read_bytes())
    assert saved == {k: orjson.loads(orjson.dumps(asdict(e))) for k, e in expect.items()}


def test_every_file_reads_as_expected(corpus):
    root, expect = corpus
    with bad_corpus.deadline(120):
        sources, skipped = expand_sources(root)
    assert sorted(rel(root, p) for p, _ in skipped) == sorted(k for k, e in expect.items() if e.skipped)
    for path, reason in skipped:
        assert re.search(expect[rel(root, path)].skipped, reason), (path, reason)
        assert "\n" not in reason
    assert sorted(rel(root, p) for p, _ in sources) == sorted(k for k, e in expect.items() if e.skipped is None)
    for path, fmt in sources:
        want = expect[rel(root, path)]
        assert fmt == want.format, path
        items = list(iter_records(path))
        drawings = [i for i in items if isinstance(i, Drawing)]
        rejects = [i for i in items if isinstance(i, Reject)]
        assert len(drawings) == want.drawings, path
        assert sum(d.bitmap is not None for d in drawings) == want.bitmaps, path
        if want.key_ids:
            assert [d.key_id for d in drawings] == want.key_ids, path
        assert [r.line for r in rejects] == [line for line, _ in want.rejects], path
        for reject, (_, pattern) in zip(rejects, want.rejects, strict=True):
            assert reject.source == str(path)
            assert re.search(pattern, reject.reason), (path, reject.line, reject.reason, pattern)
    assert_no_code_ran()


def test_prepare_accounts_for_every_record(corpus, tmp_path, capsys):
    from doodle.cli import main

    root, expect = corpus
    store = tmp_path / "store"
    with bad_corpus.deadline(300):
        assert main(["prepare", str(root), "--out", str(store), "--workers", "2", "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err + printed.out
    manifest = orjson.loads((store / "_manifest.json").read_bytes())
    totals = bad_corpus.totals(expect)
    assert manifest["input"] == totals["input"]
    assert manifest["rejected"] == totals["rejected"]
    assert manifest["duplicates"] == totals["duplicates"]
    assert manifest["accepted"] == totals["drawings"] - totals["duplicates"]
    assert manifest["input"] == manifest["accepted"] + manifest["duplicates"] + manifest["rejected"]
    read = {k: e for k, e in expect.items() if e.skipped is None}
    assert {rel(root, p): (f["format"], f["input"], f["rejected"]) for p, f in manifest["files"].items()} == {
        k: (e.format, e.input, len(e.rejects)) for k, e in read.items()}
    skipped = {rel(root, p): reason for p, reason in manifest["skipped_files"].items()}
    assert sorted(skipped) == sorted(k for k, e in expect.items() if e.skipped)
    assert all(re.search(expect[k].skipped, reason) for k, reason in skipped.items())
    for name in skipped:  # describe() lists each skipped file
        assert str(root / name) in printed.out
    lines = (store / "_rejects.ndjson").read_bytes().splitlines()
    assert len(lines) == totals["rejected"]
    got = sorted((rel(root, r["source"]), r["line"], r["reason"]) for r in map(orjson.loads, lines))
    want = sorted((k, line, pattern) for k, e in read.items() for line, pattern in e.rejects)
    for (source, line, reason), (w_source, w_line, pattern) in zip(got, want, strict=True):
        assert (source, line) == (w_source, w_line)
        assert re.search(pattern, reason), (source, line, reason, pattern)
    long = [orjson.loads(x) for x in lines if b"long_reject" in x]
    assert len(long) == 1 and long[0]["raw_length"] > 70_000 and len(long[0]["raw"]) == Reject.RAW_LIMIT
    assert_no_code_ran()


class SpyCounter:
    """Wraps predict's RejectCounter: record rejects and drawings dropped after reading, apart."""

    instances: list[SpyCounter] = []

    def __init__(self, real: type, *args, **kwargs) -> None:
        self.real = real(*args, **kwargs)
        self.records: Counter = Counter()
        self.dropped: Counter = Counter()
        SpyCounter.instances.append(self)

    def __call__(self, reject: Reject) -> None:
        self.records[reject.source] += 1
        self.real(reject)

    def count(self, reason: str) -> None:
        self.dropped[reason] += 1
        self.real.count(reason)

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def tiny_image_checkpoint(run: Path) -> None:
    import torch

    from doodle.models import ModelConfig, create_model
    from doodle.preprocess import InputConfig
    from doodle.runs.checkpoint import atomic_save, make_checkpoint

    inputs = InputConfig(encoding="order-speed-accel", size=32, simplify=True)
    config = ModelConfig(family="cnn", arch="resnet10t")
    torch.manual_seed(0)
    model = create_model(config, inputs, 3)
    atomic_save(make_checkpoint(model_config=asdict(config), input_config=asdict(inputs), input_kind="image",
                                classes=["cat", "dog", "cats"], config={}, model_state=model.state_dict()),
                run / "best.pt")


def test_predict_writes_a_row_per_valid_drawing(corpus, tmp_path, monkeypatch):
    """Probabilities skip and count what a model cannot take (a submission refuses it: below)."""
    import doodle.infer.predict as predict_mod

    root, expect = corpus
    run = tmp_path / "run"
    run.mkdir()
    tiny_image_checkpoint(run)
    real = predict_mod.RejectCounter
    SpyCounter.instances.clear()
    monkeypatch.setattr(predict_mod, "RejectCounter", lambda *a, **k: SpyCounter(real, *a, **k))
    out = tmp_path / "probabilities.parquet"
    with bad_corpus.deadline(300):
        rows = predict_mod.predict(run, [root], out, batch_size=64, progress=False, device="cpu")
    (spy,) = SpyCounter.instances
    totals = bad_corpus.totals(expect)
    assert sum(spy.records.values()) == totals["rejected"]
    # predict does not deduplicate; drawings without strokes (bitmaps) are left out, and counted
    assert spy.dropped == {predict_mod.BITMAP_ONLY: totals["bitmaps"]}
    assert rows + totals["bitmaps"] == totals["drawings"]
    assert pq.ParquetFile(out).metadata.num_rows == rows
    assert_no_code_ran()


def test_a_submission_of_the_corpus_names_its_first_bad_record(corpus, tmp_path):
    import doodle.infer.predict as predict_mod
    from doodle.errors import DoodleError

    root, _expect = corpus
    run = tmp_path / "run"
    run.mkdir()
    tiny_image_checkpoint(run)
    with bad_corpus.deadline(300), pytest.raises(DoodleError, match=r":\d+: .*a submission needs a row for every"):
        predict_mod.predict(run, [root], tmp_path / "submission.csv", batch_size=64, progress=False, device="cpu")
    assert not (tmp_path / "submission.csv").exists()
    assert_no_code_ran()
