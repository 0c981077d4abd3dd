"""Train/serve parity: real raw drawings posted over HTTP get exactly `doodle predict`'s top-3.

Mismatched preprocessing is the most common fault of doodle demos: the served path must turn canvas
strokes into exactly what training saw. The model here was trained with Google's simplification on
(`input.simplify`), so the server must simplify posted raw strokes just as `doodle predict` does
for a raw file, whatever the canvas scale and whether or not t is sent.
"""

from __future__ import annotations

import csv

import httpx
import pytest

from doodle.infer.predict import predict, submission_name

from .serve_helpers import CLASSES, raw_drawings, scaled

OTHERS = ["cat", "The Eiffel Tower"]  # classes the model does not know: still the same guesses


def served(url: str, strokes_list: list, k: int = 3) -> list[list[dict]]:
    with httpx.Client(base_url=url, timeout=60) as c:
        out = []
        for strokes in strokes_list:
            r = c.post("/predict", json={"strokes": strokes, "top_k": k})
            assert r.status_code == 200, r.text
            out.append(r.json()["predictions"])
        return out


def test_served_top3_equals_doodle_predict(live_server, tiny_run, quickdraw, tmp_path):
    names = CLASSES + OTHERS
    records = raw_drawings(quickdraw, names)
    out = tmp_path / "sub.csv"
    rows = predict(tiny_run, [quickdraw / "raw" / f"{n}.ndjson" for n in names], out, progress=False)
    assert rows == len(records) > 100
    with open(out, newline="") as handle:
        expected = {row["key_id"]: row["word"].split(" ") for row in csv.DictReader(handle)}
    answers = served(live_server.url, [r["drawing"] for r in records])
    for record, preds in zip(records, answers, strict=True):
        assert [submission_name(p["word"]) for p in preds] == expected[record["key_id"]], record["key_id"]
    # a real model, not a constant: it knows its classes and its answers vary
    right = sum(p[0]["word"] == r["word"] for r, p in zip(records, answers, strict=True) if r["word"] in CLASSES)
    assert right / sum(r["word"] in CLASSES for r in records) > 0.7
    assert len({p[0]["word"] for p in answers}) == len(CLASSES)


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
