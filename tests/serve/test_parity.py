"""Train/serve parity: real drawings posted over HTTP get exactly `doodle predict`'s top-3, for every
kind of input: raw drawings with timing, the same without t, and Google's simplified drawings.

Mismatched preprocessing is the most common fault of doodle demos: the served path must turn posted
strokes into exactly what training saw. The model here was trained with Google's simplification on
(`input.simplify`), so raw strokes, timed or not, must be simplified exactly as `doodle predict`
simplifies a raw file, and strokes that are already simplified must not be simplified again (doing
so moved the 2nd and 3rd guesses of about a quarter of simplified drawings). Each kind is checked
twice: the preprocessed arrays are identical, and the top-3 over HTTP equals the submission's.
"""

from __future__ import annotations

import csv
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from doodle.infer.predict import predict, submission_name

from .serve_helpers import CLASSES, raw_drawings, scaled

OTHERS = ["cat", "The Eiffel Tower"]  # classes the model does not know: still the same guesses
KINDS = ["raw", "raw-untimed", "simplified"]


def served(url: str, strokes_list: list, k: int = 3) -> list[list[dict]]:
    with httpx.Client(base_url=url, timeout=60) as c:
        out = []
        for strokes in strokes_list:
            r = c.post("/predict", json={"strokes": strokes, "top_k": k})
            assert r.status_code == 200, r.text
            out.append(r.json()["predictions"])
        return out


def input_files(kind: str, quickdraw: Path, names: list[str], tmp: Path) -> list[Path]:
    """One ndjson file per class of the `kind` of input: the committed raw or simplified files, or
    the raw ones written again with t removed from every stroke."""
    if kind == "simplified":
        return [quickdraw / "simplified" / f"{n}.ndjson" for n in names]
    files = [quickdraw / "raw" / f"{n}.ndjson" for n in names]
    if kind == "raw":
        return files
    out = []
    for path in files:
        records = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
        untimed = tmp / path.name
        untimed.write_bytes(b"".join(orjson.dumps({**r, "drawing": [s[:2] for s in r["drawing"]]},
                                                  option=orjson.OPT_APPEND_NEWLINE) for r in records))
        out.append(untimed)
    return out


def records_of(files: list[Path]) -> list[dict]:
    return [orjson.loads(line) for path in files for line in path.read_bytes().splitlines() if line.strip()]


@pytest.mark.parametrize("kind", KINDS)
def test_served_arrays_equal_doodle_predicts(kind, engine, tiny_run, quickdraw, tmp_path):
    """The model input the server builds from posted JSON is the one `doodle predict` builds from
    the file, byte for byte (the strongest form of parity: any model gives the same answers)."""
    from doodle.data.drawing import Limits
    from doodle.data.formats import read
    from doodle.infer.predict import load_model
    from doodle.serve.inference import to_drawing

    files = input_files(kind, quickdraw, CLASSES + OTHERS, tmp_path)
    _, preprocessor, _, _ = load_model(tiny_run / "best.pt")
    offline = preprocessor(list(read(files)))
    posted = [to_drawing(r["drawing"], Limits()) for r in records_of(files)]
    online = engine.encode([engine.simplified(d) for d in posted])
    assert offline.keys() == online.keys()
    for key in offline:
        assert offline[key].shape[0] == len(posted) > 100
        assert np.array_equal(offline[key], online[key]), key


@pytest.mark.parametrize("kind", KINDS)
def test_served_top3_equals_doodle_predict(kind, live_server, tiny_run, quickdraw, tmp_path):
    files = input_files(kind, quickdraw, CLASSES + OTHERS, tmp_path)
    records = records_of(files)
    out = tmp_path / "sub.csv"
    rows = predict(tiny_run, files, out, progress=False)
    assert rows == len(records) > 100
    with open(out, newline="") as handle:
        expected = {row["key_id"]: row["word"].split(" ") for row in csv.DictReader(handle)}
    answers = served(live_server.url, [r["drawing"] for r in records])
    for record, preds in zip(records, answers, strict=True):
        assert [submission_name(p["word"]) for p in preds] == expected[str(record["key_id"])], record["key_id"]
    # a real model, not a constant: it knows its classes and its answers vary
    right = sum(p[0]["word"] == r["word"] for r, p in zip(records, answers, strict=True) if r["word"] in CLASSES)
    assert right / sum(r["word"] in CLASSES for r in records) > 0.7
    assert len({p[0]["word"] for p in answers}) == len(CLASSES)


def test_simplified_input_is_not_simplified_again(engine, quickdraw):
    """Google's simplified strokes reach the model as they are (simplifying them again changes
    them); raw strokes, timed or not, are simplified. Every committed drawing of both kinds."""
    from doodle.data.drawing import Limits
    from doodle.serve.inference import to_drawing

    simplified = records_of(sorted((quickdraw / "simplified").glob("*.ndjson")))
    raw = records_of(sorted((quickdraw / "raw").glob("*.ndjson")))
    assert len(simplified) > 3000 and len(raw) > 250
    for record in simplified:
        d = to_drawing(record["drawing"], Limits())
        assert engine.simplified(d) is d and engine.simplify_size(d) == 0, record["key_id"]
    for record in raw:
        for strokes in (record["drawing"], [s[:2] for s in record["drawing"]]):
            d = to_drawing(strokes, Limits())
            assert engine.simplified(d) is not d and engine.simplify_size(d) > 0, record["key_id"]


@pytest.mark.parametrize("factor, dx, dy", [(2.0, 0, 0), (0.5, 37, -12), (4.0, -1000, 3000)])
def test_canvas_scale_and_position_do_not_matter(live_server, quickdraw, factor, dx, dy):
    """A bigger or smaller canvas, or the drawing elsewhere on it, gives the same answer (scales by
    powers of two and whole shifts are exact in floating point, so the probabilities match too)."""
    records = raw_drawings(quickdraw, ["eye", "camera"])[:20]
    base = served(live_server.url, [r["drawing"] for r in records])
    moved = served(live_server.url, [scaled(r["drawing"], factor, dx, dy) for r in records])
    for a, b in zip(base, moved, strict=True):
        assert [p["word"] for p in a] == [p["word"] for p in b]
        assert [p["probability"] for p in a] == pytest.approx([p["probability"] for p in b], abs=1e-6)


def test_timing_is_optional(live_server, quickdraw):
    """Without t the strokes are simplified all the same (Google's simplification ignores time)."""
    records = raw_drawings(quickdraw, ["headphones", "television"])[:20]
    timed = served(live_server.url, [r["drawing"] for r in records])
    untimed = served(live_server.url, [[s[:2] for s in r["drawing"]] for r in records])
    for a, b in zip(timed, untimed, strict=True):
        assert [p["word"] for p in a] == [p["word"] for p in b]
        assert [p["probability"] for p in a] == pytest.approx([p["probability"] for p in b], abs=1e-6)


def test_torch_backend_agrees_with_onnx(tiny_run, engine, quickdraw):
    """The eager PyTorch backend (the benchmark's comparison) serves the same guesses."""
    import torch

    from doodle.data.drawing import Limits
    from doodle.serve.inference import load_engine, to_drawing

    threads = torch.get_num_threads()
    try:
        torch_engine = load_engine(tiny_run, backend="torch", threads=1)
        for record in raw_drawings(quickdraw, CLASSES)[::4]:
            d = to_drawing(record["drawing"], Limits())
            assert [g.word for g in torch_engine.guesses(d, 3)] == [g.word for g in engine.guesses(d, 3)]
    finally:
        torch.set_num_threads(threads)  # load_engine set it for a server process
