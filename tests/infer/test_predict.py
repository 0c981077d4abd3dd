"""`doodle predict`: the Kaggle submission CSV from a checkpoint, on real drawings."""

from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path

import numpy as np
import orjson
import pytest
import torch
from torch import nn

import doodle.infer.predict as predict_mod
from doodle.cli import main
from doodle.data.formats import read
from doodle.errors import DoodleError
from doodle.evaluate.metrics import topk
from doodle.infer.predict import (
    BatchPrediction,
    MissingRows,
    iter_predictions,
    predict,
    prefetch,
    recover_key_id,
    submission_word,
    write_submission,
)
from doodle.preprocess import InputConfig, Preprocessor

CLASSES = ["The Eiffel Tower", "cat", "alarm clock", "The Great Wall of China", "hot air balloon", "dog", "apple"]
K = len(CLASSES)
FILES = ["The Eiffel Tower.ndjson", "cat.ndjson", "alarm clock.ndjson"]
MAX_POINTS = 2048


class LengthModel(nn.Module):
    """Scores class c by -|c - (points mod K)|: the guesses follow from the drawing alone, and the
    two runners-up tie (broken by the lower class index)."""

    def __init__(self):
        super().__init__()
        self.calls = 0
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, batch):
        self.calls += 1
        assert not torch.is_grad_enabled()  # inference mode
        m = (batch["lengths"] % K).to(self.dummy.device)
        classes = torch.arange(K, device=m.device)
        return -(classes[None, :] - m[:, None]).abs().float() + self.dummy


def expected_names(n_points: int) -> list[str]:
    m = n_points % K
    ranked = sorted(range(K), key=lambda c: (abs(c - m), c))[:3]
    return ["_".join(CLASSES[c].split(" ")) for c in ranked]


def records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def n_points(record: dict) -> int:
    return sum(len(stroke[0]) for stroke in record["drawing"])


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """A run folder whose checkpoints load as LengthModel (the loader is patched)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"")
    (run / "last.pt").write_bytes(b"")
    loaded: list[tuple[Path, str]] = []

    def load_model(path, weights="model"):
        loaded.append((Path(path), weights))
        return LengthModel().eval(), Preprocessor(InputConfig(max_points=MAX_POINTS), "sequence"), list(CLASSES), {}

    monkeypatch.setattr(predict_mod, "load_model", load_model)
    return run, loaded


def test_submission_on_real_drawings(quickdraw, fake_run, tmp_path):
    run, loaded = fake_run
    sources = [quickdraw / "simplified" / name for name in FILES]
    out = tmp_path / "sub" / "submission.csv"
    rows = predict(run, sources, out, batch_size=7, progress=False)

    expected = [r for path in sources for r in records(path)]
    assert rows == len(expected) == 75
    assert loaded == [(run / "best.pt", "model")]
    assert out.read_bytes().startswith(b"key_id,word\n")
    header, body = read_rows(out)
    assert header == ["key_id", "word"]
    assert [r[0] for r in body] == [r["key_id"] for r in expected]  # exact ids, input order
    for (key_id, word), record in zip(body, expected, strict=True):
        assert key_id.isdigit() and int(key_id) < 2**64
        names = word.split(" ")
        assert len(names) == 3 and " ".join(names) == word  # single spaces, no padding
        assert all(n and " " not in n for n in names)
        assert names == expected_names(min(n_points(record), MAX_POINTS))
    words = {w for _, w in body}
    assert any("The_Eiffel_Tower" in w or "The_Great_Wall_of_China" in w for w in words)
    assert not list(out.parent.glob(".*tmp*"))  # the temporary file is gone


def test_checkpoint_choice(quickdraw, fake_run, tmp_path):
    run, loaded = fake_run
    src = quickdraw / "simplified" / "cat.ndjson"
    predict(run, [src], tmp_path / "a.csv", checkpoint="last", progress=False)
    predict(run / "best.pt", src, tmp_path / "b.csv", progress=False)
    predict(run, [src], tmp_path / "c.csv", checkpoint="ema", progress=False)
    # "ema": the EMA weights at the end of training, kept in the resumable checkpoint
    assert loaded == [(run / "last.pt", "model"), (run / "best.pt", "model"), (run / "last.pt", "ema")]
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    with pytest.raises(DoodleError, match="averaged"):
        predict(run, [src], tmp_path / "d.csv", checkpoint="averaged", progress=False)


def test_rejects_are_skipped_and_big_key_ids_exact(quickdraw, fake_run, tmp_path, caplog):
    run, _ = fake_run
    good = records(quickdraw / "simplified" / "cat.ndjson")[:3]
    ids = ["18446744073709551615", "9223372036854775808", "1"]
    lines = []
    for record, key in zip(good, ids, strict=True):
        lines.append(orjson.dumps({**record, "key_id": key}))
        lines.append(b'{"word": "cat", "key_id": "5", "drawing": [[[1, 2], [3]]]}')  # bad: unequal x, y
    src = tmp_path / "mixed.ndjson"
    src.write_bytes(b"\n".join(lines) + b"\n")
    with caplog.at_level(logging.WARNING):  # probabilities: bad records skipped and counted
        rows = predict(run, [src], tmp_path / "out.parquet", batch_size=2, progress=False)
    assert rows == 3
    from doodle.infer.probabilities import read_predictions

    assert [str(k) for k in read_predictions(tmp_path / "out.parquet").key_ids.tolist()] == ids
    assert "3 record(s) rejected" in caplog.text
    # a submission writes a fallback row under each bad record's key_id, in input order
    rows = predict(run, [src], tmp_path / "out.csv", batch_size=2, progress=False,
                   missing=MissingRows(fallback=True))
    _, body = read_rows(tmp_path / "out.csv")
    assert rows == 6 and [r[0] for r in body] == [k for key in ids for k in (key, "5")]


def test_failure_leaves_no_partial_file(quickdraw, fake_run, tmp_path, monkeypatch):
    run, _ = fake_run
    out = tmp_path / "sub.csv"
    out.write_text("old\n")

    def broken(model, batch, device):
        if broken.calls == 2:
            raise RuntimeError("boom")
        broken.calls += 1
        return np.zeros((len(batch["lengths"]), K), np.float32)

    broken.calls = 0
    monkeypatch.setattr(predict_mod, "forward_log_probs", broken)
    with pytest.raises(RuntimeError, match="boom"):
        predict(run, [quickdraw / "simplified" / "cat.ndjson"], out, batch_size=4, progress=False)
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "sub.csv"]


def test_empty_input_writes_the_header(fake_run, tmp_path):
    run, _ = fake_run
    src = tmp_path / "empty.ndjson"
    src.write_bytes(b"")
    out = tmp_path / "out.csv"
    assert predict(run, [src], out, progress=False) == 0
    assert out.read_text() == "key_id,word\n"


def test_cli(quickdraw, fake_run, tmp_path, capsys):
    run, _ = fake_run
    out = tmp_path / "cli.csv"
    code = main(["-q", "predict", str(run), "--data", str(quickdraw / "simplified" / "cat.ndjson"),
                 str(quickdraw / "simplified" / "The Eiffel Tower.ndjson"), "--out", str(out), "--batch-size", "16"])
    assert code == 0
    assert "50 rows" in capsys.readouterr().out
    _, body = read_rows(out)
    assert len(body) == 50
    with pytest.raises(SystemExit) as exit_info:  # a missing run: refused while the command line is read
        main(["predict", str(tmp_path / "nowhere"), "--data", str(out), "--out", str(tmp_path / "x.csv")])
    assert exit_info.value.code == 2
    assert main(["predict", str(run), "--data", str(out), "--out", str(out)]) == 2  # refuses to overwrite input
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses it: one usage line
        main(["predict", str(run), "--data", str(out), "--out", str(tmp_path / "y.csv"), "--batch-size", "0"])
    assert exit_info.value.code == 2


def test_write_submission_ties_and_names(tmp_path):
    preds = [BatchPrediction([7, 2**64 - 1], np.log(np.array([[0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]],
                                                               np.float32)))]
    out = tmp_path / "s.csv"
    assert write_submission(preds, ["a b", "c", "d e f", "g"], out) == 2
    assert out.read_text() == "key_id,word\n7,a_b c d_e_f\n18446744073709551615,g d_e_f c\n"
    assert submission_word(["The Eiffel Tower", "cat"]) == "The_Eiffel_Tower cat"
    with pytest.raises(ValueError, match="shape"):
        write_submission([BatchPrediction([1], np.zeros((1, 3), np.float32))], ["a", "b"], tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def test_iter_predictions_matches_a_direct_forward(simplified_cats):
    model = LengthModel()
    prep = Preprocessor(InputConfig(max_points=MAX_POINTS), "sequence")
    batches = list(iter_predictions(model, prep, simplified_cats, batch_size=10, device="cpu"))
    assert [len(b) for b in batches] == [10, 10, 5]
    assert model.calls == 3
    with torch.inference_mode():
        direct = torch.log_softmax(model({k: torch.from_numpy(v) for k, v in prep(simplified_cats).items()}), 1)
    got = np.concatenate([b.log_probs for b in batches])
    assert got.dtype == np.float32 and np.allclose(got, direct.numpy())
    assert np.allclose(batches[0].probs.sum(1), 1.0, atol=1e-5)
    assert [w for b in batches for w in b.words] == ["cat"] * 25


def test_prefetch_keeps_order_and_reraises():
    assert list(prefetch(iter(range(100)), depth=2)) == list(range(100))

    def failing():
        yield 1
        raise KeyError("bad source")

    got = []
    with pytest.raises(KeyError, match="bad source"):
        for x in prefetch(failing()):
            got.append(x)
    assert got == [1]
    gen = prefetch(iter(range(10**6)))
    assert next(gen) == 0
    gen.close()  # stopping early does not hang


def test_real_checkpoint_round_trip(quickdraw, tmp_path):
    """A checkpoint written the way training writes it, loaded by the real `load_model`."""
    from doodle.models import ModelConfig, create_model
    from doodle.runs import checkpoint

    model_config = ModelConfig(family="sequence", conv_channels=[8], conv_kernels=[3], rnn_hidden=8, rnn_layers=1)
    inputs = InputConfig(max_points=64)
    torch.manual_seed(0)
    model = create_model(model_config, inputs, K)
    data = checkpoint.make_checkpoint(
        model_config=dataclasses.asdict(model_config), input_config=dataclasses.asdict(inputs), input_kind="sequence",
        classes=CLASSES, config={}, model_state=model.state_dict())
    run = tmp_path / "run"
    checkpoint.atomic_save(data, run / "best.pt")
    out = tmp_path / "real.csv"
    src = quickdraw / "simplified" / "cat.ndjson"
    assert predict(run, [src], out, batch_size=8, progress=False, device="cpu") == 25
    _, body = read_rows(out)
    allowed = {"_".join(c.split(" ")) for c in CLASSES}
    assert all(len(set(w.split(" "))) == 3 and set(w.split(" ")) <= allowed for _, w in body)
    # the same guesses as the model in memory
    model.eval()
    prep = Preprocessor(inputs, "sequence")
    with torch.inference_mode():
        batch = prep(list(read(src)))
        logits = model({k: torch.from_numpy(v) for k, v in batch.items()})
    names = [" ".join("_".join(CLASSES[c].split(" ")) for c in row) for row in topk(logits, 3).tolist()]
    assert [w for _, w in body] == names


# -- saved probabilities and TTA (the last mile) --------------------------------------------------
def test_parquet_output_keeps_ids_labels_and_probabilities(quickdraw, fake_run, tmp_path):
    from doodle.infer.probabilities import read_predictions

    run, _ = fake_run
    sources = [quickdraw / "simplified" / name for name in FILES]
    rows = predict(run, sources, tmp_path / "p.parquet", batch_size=7, progress=False)
    preds = read_predictions(tmp_path / "p.parquet")
    expected = [r for path in sources for r in records(path)]
    assert rows == len(preds) == len(expected)
    assert preds.key_ids.dtype == np.uint64 and preds.key_ids.tolist() == [int(r["key_id"]) for r in expected]
    assert preds.words == [r["word"] for r in expected] and preds.classes == CLASSES
    assert np.allclose(preds.probs.sum(1), 1, atol=1e-5)
    for p, record in zip(preds.probs, expected, strict=True):
        names = ["_".join(CLASSES[c].split(" ")) for c in topk(p[None], 3)[0]]
        assert names == expected_names(min(n_points(record), MAX_POINTS))


def test_tta_views_and_means():
    from doodle.infer.tta import combine, make_views, parse_tta

    assert parse_tta("flip, dropout") == ["flip", "dropout"] and parse_tta("none") == [] and parse_tta(None) == []
    with pytest.raises(DoodleError, match="unknown TTA view 'rotate'"):
        parse_tta("flip,rotate")
    a = np.log(np.array([[0.8, 0.2]], np.float32))
    b = np.log(np.array([[0.2, 0.8]], np.float32))
    c = np.log(np.array([[0.5, 0.5]], np.float32))
    assert np.allclose(np.exp(combine([a, b, c], "prob")), [[0.5, 0.5]], atol=1e-6)
    assert np.allclose(np.exp(combine([a, c], "prob")), [[0.65, 0.35]], atol=1e-6)
    geo = np.sqrt([0.8 * 0.5, 0.2 * 0.5])
    assert np.allclose(np.exp(combine([a, c], "log")), [geo / geo.sum()], atol=1e-6)
    views = make_views(["flip", "dropout"])
    assert len(views) == 3


def test_tta_views_on_real_drawings(simplified_cats):
    from doodle.infer.tta import make_views

    drawings = simplified_cats[:10]
    original, flip, dropout = (view(list(drawings)) for view in make_views(["flip", "dropout"]))
    assert [d.key_id for d in original] == [d.key_id for d in drawings]
    for d, f in zip(drawings, flip, strict=True):
        x = np.concatenate([s[:, 0] for s in d.strokes])
        fx = np.concatenate([s[:, 0] for s in f.strokes])
        assert np.allclose(fx, x.min() + x.max() - x)  # mirrored within the bounding box
    assert any(len(o.strokes) > len(p.strokes) for o, p in zip(drawings, dropout, strict=True))
    assert all(p.strokes for p in dropout)
    again = make_views(["flip", "dropout"])[2](list(reversed(drawings)))[::-1]
    assert [len(p.strokes) for p in again] == [len(p.strokes) for p in dropout]  # seeded by key_id, not position


# -- a submission never silently lacks a key_id -----------------------------------------------------
def stroke_json(points: int) -> str:
    """A one-stroke drawing of `points` points (LengthModel's first guess: class points % K)."""
    xs = list(range(0, 10 * points, 10))
    return orjson.dumps([[xs, [x // 2 for x in xs]]]).decode()


BAD_DRAWING = "[[[1, 2], [3]]]"  # unequal x and y


def kaggle_test_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A Kaggle test CSV (key_id,countrycode,drawing) of (key_id, drawing JSON) rows."""
    lines = ["key_id,countrycode,drawing"] + [f'{key},US,"{drawing}"' for key, drawing in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = [("101", stroke_json(4)), ("102", stroke_json(5)), ("103", stroke_json(4)),
        ("104", stroke_json(4)), ("105", stroke_json(5))]
BAD_KEY = "18446744073709551615"


def with_bad_row(tmp_path: Path, key: str = BAD_KEY) -> Path:
    """GOOD with a bad drawing after its first two rows: CSV line 4."""
    return kaggle_test_csv(tmp_path / "test_simplified.csv", GOOD[:2] + [(key, BAD_DRAWING)] + GOOD[2:])


def test_a_submission_refuses_an_unreadable_record(fake_run, tmp_path):
    run, _ = fake_run
    src = with_bad_row(tmp_path)
    out = tmp_path / "sub.csv"
    out.write_text("old\n")
    with pytest.raises(DoodleError, match=rf"{src}:4: .*--fallback-rows"):
        predict(run, [src], out, batch_size=2, progress=False)
    assert out.read_text() == "old\n"  # nothing incomplete written, the old file kept
    assert not list(tmp_path.glob(".*tmp*"))


def test_fallback_rows_keep_every_key_id_in_input_order(fake_run, tmp_path, capsys):
    run, _ = fake_run
    src = with_bad_row(tmp_path)
    missing = MissingRows(fallback=True)
    out = tmp_path / "sub.csv"
    assert predict(run, [src], out, progress=False, missing=missing) == 6
    _, body = read_rows(out)
    assert [r[0] for r in body] == ["101", "102", BAD_KEY, "103", "104", "105"]
    assert [r[1] for r in body if r[0] != BAD_KEY] == [" ".join(expected_names(n)) for n in (4, 5, 4, 4, 5)]
    # the fallback guesses: the classes most often first (class 4 three times, class 5 twice), then class 0
    assert body[2][1] == "hot_air_balloon dog The_Eiffel_Tower"
    assert missing.written == 1 and missing.summary().startswith("1 fallback row(s) written")
    assert "different lengths (2 and 1) (1)" in missing.summary()
    for batch_size in (1, 2, 3):  # the place in the order does not depend on the batches
        predict(run, [src], out, batch_size=batch_size, progress=False, missing=MissingRows(fallback=True))
        assert [r[0] for r in read_rows(out)[1]] == ["101", "102", BAD_KEY, "103", "104", "105"]
    code = main(["-q", "predict", str(run), "--data", str(src), "--out", str(tmp_path / "cli.csv"), "--fallback-rows"])
    assert code == 0 and "6 rows (1 of them fallback rows" in capsys.readouterr().out
    assert main(["-q", "predict", str(run), "--data", str(src), "--out", str(tmp_path / "no.csv")]) == 2
    assert f"{src}:4:" in capsys.readouterr().err and not (tmp_path / "no.csv").exists()
    assert main(["-q", "predict", str(run), "--data", str(src), "--out", str(tmp_path / "p.parquet"),
                 "--fallback-rows"]) == 2


def test_a_record_without_a_readable_key_id_stays_an_error(fake_run, tmp_path):
    run, _ = fake_run
    src = with_bad_row(tmp_path, key="12x")
    with pytest.raises(DoodleError, match=rf"{src}:4: .*key_id cannot be read"):
        predict(run, [src], tmp_path / "sub.csv", progress=False, missing=MissingRows(fallback=True))
    assert not (tmp_path / "sub.csv").exists() and not list(tmp_path.glob(".*tmp*"))


def test_probabilities_skip_and_count_unreadable_records(fake_run, tmp_path, caplog):
    from doodle.infer.probabilities import read_predictions

    run, _ = fake_run
    src = with_bad_row(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert predict(run, [src], tmp_path / "p.parquet", batch_size=2, progress=False) == 5
    assert read_predictions(tmp_path / "p.parquet").key_ids.tolist() == [int(k) for k, _ in GOOD]
    assert "1 record(s) rejected and skipped" in caplog.text


def test_key_ids_recovered_from_raw_records(tmp_path):
    from doodle.data.drawing import Reject

    src = kaggle_test_csv(tmp_path / "t.csv", GOOD[:1])
    csv_reject = Reject(str(src), 3, "broken", raw='77,US,"[[[1, 2]')
    assert recover_key_id(csv_reject, "kaggle-csv") == 77
    assert recover_key_id(Reject(str(src), 3, "broken", raw="no key here"), "kaggle-csv") is None
    line = '{"word": "cat", "key_id": "9223372036854775808", "drawing": [[[1, 2], [3]'
    assert recover_key_id(Reject("x.ndjson", 1, "bad JSON", raw=line), "simplified-ndjson") == 2**63
    assert recover_key_id(Reject("x.ndjson", 1, "bad JSON", raw='{"drawing": []}'), "raw-ndjson") is None
    assert recover_key_id(Reject("x.bin", 0, "truncated", raw="00ff"), "binary") is None
