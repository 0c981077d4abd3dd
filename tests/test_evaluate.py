"""The evaluation report on a constructed case whose every number is known by hand."""

from __future__ import annotations

import base64
import csv
import re

import numpy as np
import orjson
import pytest

from doodle.cli import main
from doodle.errors import DoodleError
from doodle.evaluate import compute, evaluate_predictions
from doodle.predictions_io import Predictions, write_predictions

CLASSES = ["cat", "dog", "eye"]
# Drawing:      true   guesses (best first)   credit
#  0 cat         cat    cat dog eye             1
#  1 cat         cat    dog cat eye             1/2
#  2 dog         dog    dog eye cat             1
#  3 dog         dog    eye cat dog             1/3
#  4 eye         eye    cat dog eye             1/3   (K = 3: always in the top 3)
#  5 cat         cat    cat eye dog             1
PROBS = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1 + 1e-3], [0.3, 0.2, 0.5], [0.5, 0.3, 0.2],
                  [0.95, 0.01, 0.04]], np.float32)
PROBS = PROBS / PROBS.sum(1, keepdims=True)
WORDS = ["cat", "cat", "dog", "dog", "eye", "cat"]


def preds() -> Predictions:
    return Predictions(np.array([1, 2, 3, 4, 5, 2**64 - 1], np.uint64), PROBS, CLASSES, WORDS + [])


def test_numbers_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 0])
    metrics, per_class, confusion, pairs, bins = compute(PROBS, labels, CLASSES)
    assert metrics["map3"] == pytest.approx((1 + 0.5 + 1 + 1 / 3 + 1 / 3 + 1) / 6)
    assert metrics["acc1"] == pytest.approx(3 / 6) and metrics["acc3"] == 1.0
    # top-1 counts: cat 3 (0, 4, 5), dog 2 (1, 2), eye 1 (3); expected 2 each: |3-2|+|2-2|+|1-2| = 2
    assert metrics["proxy_score"] == pytest.approx(2.0)
    assert confusion.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 0]]
    cat = per_class[0]
    assert cat["n"] == 3 and cat["acc1"] == pytest.approx(2 / 3) and cat["map3"] == pytest.approx(2.5 / 3)
    assert cat["precision"] == pytest.approx(2 / 3) and cat["predicted"] == 3 and cat["confused_with"] == "dog"
    assert sorted(pairs) == [("cat", "dog", 1), ("dog", "eye", 1), ("eye", "cat", 1)]
    assert sum(b["n"] for b in bins) == 6
    top_bin = bins[-1]  # confidence 0.95 of drawing 5, right
    assert top_bin["n"] == 1 and top_bin["accuracy"] == 1.0


def test_report_files_and_self_contained_html(tmp_path):
    unlabelled = preds()
    unlabelled.words = WORDS[:-1] + [None]  # one drawing without a label is skipped
    report = evaluate_predictions(unlabelled, tmp_path / "rep")
    assert report.metrics["n"] == 5 and report.metrics["unlabelled_skipped"] == 1
    for name in ("report.html", "metrics.json", "per_class.csv", "confusion.png", "confused_pairs.png",
                 "reliability.png"):
        assert (tmp_path / "rep" / name).stat().st_size > 0, name
    html = (tmp_path / "rep" / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 3 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert not re.search(r'src="(?!data:)', html)  # nothing outside the file
    assert "Proxy score" in html and "most-confused" in html.lower()
    rows = list(csv.DictReader((tmp_path / "rep" / "per_class.csv").read_text().splitlines()))
    assert [r["class"] for r in rows] == CLASSES
    saved = orjson.loads((tmp_path / "rep" / "metrics.json").read_bytes())
    assert saved["map3"] == pytest.approx(report.metrics["map3"])
    nothing = preds()
    nothing.words = []
    with pytest.raises(DoodleError, match="known class"):
        evaluate_predictions(nothing, tmp_path / "none")


def test_cli_on_a_predictions_file(tmp_path, capsys):
    write_predictions(preds(), tmp_path / "p.parquet")
    assert main(["evaluate", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "r")]) == 0
    assert "MAP@3 0.6944" in capsys.readouterr().out
    assert main(["evaluate", "runs/none", "--out", str(tmp_path / "r")]) == 2  # a model needs --data
