"""The evaluation report on a constructed case whose every number is known by hand."""

from __future__ import annotations

import base64
import csv
import re
import weakref

import numpy as np
import orjson
import pytest

from doodle.cli import main
from doodle.errors import DoodleError
from doodle.evaluate.examples import THUMBNAILS, ExampleKeeper
from doodle.evaluate.report import compute, evaluate_file, evaluate_predictions, evaluate_run, predict_in_memory
from doodle.evaluate.report_html import class_chart, headline, metric_cards, percent
from doodle.infer.probabilities import Predictions, read_predictions, write_predictions

from .report_helpers import POINTS_CLASSES, points_run

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
    assert not re.search(r'(src|href)="(?!data:)', html) and "@import" not in html  # nothing outside the file
    for section in ('id="headline"', 'id="examples"', 'id="per-class-chart"', 'id="pairs"', 'id="confusion"',
                    'id="reliability"', 'id="per-class"'):
        assert section in html, section
    assert "The right word is the first guess for 40 % of 5 drawings and in the top three for 100 %." in html
    assert html.count('class="explain"') == 6 and "proxy score" in html and "most-confused" in html.lower()
    # a predictions file holds no drawings: the page says so and lists the examples without pictures
    assert 'id="no-drawings"' in html and "<svg" not in html
    # mistakes: key 2 (dog at 0.6), then keys 4 and 5 (0.5 each, the truth at 0.2 each: the earlier first)
    assert [e.key_id for e in report.worst] == [2, 4, 5] and [e.key_id for e in report.best] == [3, 1]
    assert "key_id 4" in html and html.count('class="example"') == 5
    rows = list(csv.DictReader((tmp_path / "rep" / "per_class.csv").read_text().splitlines()))
    assert [r["class"] for r in rows] == CLASSES
    saved = orjson.loads((tmp_path / "rep" / "metrics.json").read_bytes())
    assert saved["map3"] == pytest.approx(report.metrics["map3"])
    assert saved["examples"]["worst"][0] == {"key_id": 2, "word": "cat", "guesses": [
        {"word": w, "probability": pytest.approx(p, rel=1e-6)} for w, p in (("dog", 0.6), ("cat", 0.3), ("eye", 0.1))]}
    nothing = preds()
    nothing.words = []
    with pytest.raises(DoodleError, match="known class"):
        evaluate_predictions(nothing, tmp_path / "none")


def test_cli_on_a_predictions_file(tmp_path, capsys):
    write_predictions(preds(), tmp_path / "p.parquet")
    assert main(["evaluate", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "MAP@3 0.6944" in out and "first guess for 50 % of 6 drawings and in the top three for 100 %." in out
    (tmp_path / "run").mkdir()
    assert main(["evaluate", str(tmp_path / "run"), "--out", str(tmp_path / "r")]) == 2  # a model needs --data


# -- streamed, in bounded memory ---------------------------------------------------------------------
def reference(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> tuple:
    """The report's figures computed on whole arrays in memory, independently of the accumulator."""
    probs = np.asarray(probs, np.float64)
    n, k = probs.shape
    order = np.argsort(-probs, axis=1, kind="stable")
    rank = np.argmax(order == labels[:, None], axis=1)
    credit = np.where(rank < 3, 1.0 / (rank + 1), 0.0)
    top1 = order[:, 0]
    conf = probs[np.arange(n), top1]
    confusion = np.zeros((k, k), np.int64)
    np.add.at(confusion, (labels, top1), 1)
    bins, ece = [], 0.0
    edges = np.linspace(0, 1, 11)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        m = int(inside.sum())
        acc = float((top1[inside] == labels[inside]).mean()) if m else float("nan")
        mean_conf = float(conf[inside].mean()) if m else float("nan")
        ece += m / n * abs(acc - mean_conf) if m else 0.0
        bins.append({"lo": float(lo), "hi": float(hi), "n": m, "confidence": mean_conf, "accuracy": acc})
    true_p = probs[np.arange(n), labels] / probs.sum(1)
    metrics = {"n": n, "classes": k, "map3": credit.mean(), "acc1": (rank == 0).mean(), "acc3": (rank < 3).mean(),
               "log_loss": -np.log(np.clip(true_p, 1e-12, None)).mean(), "ece": ece,
               "proxy_score": np.abs(confusion.sum(0) - n / k).sum()}
    per_class = [{"n": int((labels == c).sum()), "map3": credit[labels == c].mean(),
                  "acc1": (rank[labels == c] == 0).mean(), "predicted": int((top1 == c).sum())} for c in range(k)]
    return metrics, per_class, confusion, bins


def labelled_file(tmp_path, n: int = 1000, k: int = 12, seed: int = 0):
    """A predictions file of n drawings (one in 10 unlabelled, many tied scores) and its arrays."""
    rng = np.random.default_rng(seed)
    classes = [f"class {i}" for i in range(k)]
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), labels] += 1.5
    probs = np.exp(logits)
    probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
    probs[::7] = np.round(probs[::7], 1)  # ties
    words = [classes[y] if i % 10 else None for i, y in enumerate(labels)]
    path = tmp_path / "holdout.parquet"
    write_predictions(Predictions(np.arange(n, dtype=np.uint64) + 2**63, probs, classes, words), path,
                      rows_per_group=128)
    known = np.array([w is not None for w in words])
    return path, probs[known], labels[known], classes


class BatchSpy:
    """Hands out the batches of an iterator and records, at each request, how many batches handed out
    earlier are still alive (their probabilities referenced by someone): 1 at most means the consumer
    holds one batch at a time, whatever the number of drawings."""

    def __init__(self, batches):
        self.batches = batches
        self.alive = 0
        self.most_alive = 0
        self.count = 0

    def __iter__(self):
        for batch in self.batches:
            self.most_alive = max(self.most_alive, self.alive)
            self.alive += 1
            self.count += 1
            weakref.finalize(batch.probs, self._freed)
            yield batch
            del batch

    def _freed(self):
        self.alive -= 1


def test_a_streamed_file_gives_the_in_memory_report(tmp_path, monkeypatch):
    import doodle.infer.probabilities as pio

    path, probs, labels, classes = labelled_file(tmp_path)
    spies = []

    def spied(*args, **kwargs):
        spies.append(BatchSpy(real(*args, **kwargs)))
        return iter(spies[-1])

    real = pio.iter_prediction_batches
    monkeypatch.setattr(pio, "iter_prediction_batches", spied)
    report = evaluate_file(path, tmp_path / "rep", batch_size=50)
    assert spies[0].count == 20 and spies[0].most_alive <= 1  # one batch of 50 at a time
    metrics, per_class, confusion, bins = reference(probs, labels, classes)
    assert report.metrics["unlabelled_skipped"] == 100
    for key, value in metrics.items():
        assert report.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    assert np.array_equal(report.confusion, confusion)
    for got, want in zip(report.per_class, per_class, strict=True):
        assert {key: got[key] for key in want} == pytest.approx(want, rel=1e-12)
    for got, want in zip(report.reliability, bins, strict=True):
        assert got == pytest.approx(want, rel=1e-12, nan_ok=True)
    whole = evaluate_predictions(read_predictions(path), tmp_path / "whole")  # the same report in memory
    assert whole.metrics == pytest.approx(report.metrics, rel=1e-12) and whole.pairs == report.pairs
    for got, want in zip(report.per_class, whole.per_class, strict=True):
        assert (got["class"], got["confused_with"]) == (want["class"], want["confused_with"])
        assert {k: v for k, v in got.items() if not isinstance(v, str)} == pytest.approx(
            {k: v for k, v in want.items() if not isinstance(v, str)}, rel=1e-12, nan_ok=True)
    html = (tmp_path / "rep" / "report.html").read_text()
    assert f"{metrics['map3']:.4f}" in html and str(path) in html


def test_a_streamed_model_gives_the_in_memory_report(tmp_path, monkeypatch):
    import doodle.infer.predict as predict_mod

    run, model_files = points_run(tmp_path, monkeypatch)
    in_memory = predict_in_memory(run, [model_files], batch_size=4, progress=False)
    spies = []
    real = predict_mod.iter_predictions

    def spied(*args, **kwargs):
        spies.append(BatchSpy(Wrapped(b) for b in real(*args, **kwargs)))
        return iter(spies[-1])

    monkeypatch.setattr(predict_mod, "iter_predictions", spied)
    report = evaluate_run(run, [model_files], tmp_path / "rep", batch_size=4, progress=False)
    assert spies[0].count == 7 and spies[0].most_alive <= 1  # 27 drawings, 4 at a time
    metrics, per_class, confusion, _ = reference(in_memory.probs, in_memory.labels(), POINTS_CLASSES)
    assert report.metrics["n"] == 27 and np.array_equal(report.confusion, confusion)
    for key, value in metrics.items():
        assert report.metrics[key] == pytest.approx(value, rel=1e-9), key


def test_a_model_report_draws_the_right_drawings(tmp_path, monkeypatch):
    """The examples of a model's report are those of the in-memory scores, each with its own drawing."""
    import doodle

    run, data = points_run(tmp_path, monkeypatch, per_class=12)
    whole = predict_in_memory(run, [data], progress=False)
    report = evaluate_run(run, [data], tmp_path / "rep", batch_size=5, progress=False)
    keeper = ExampleKeeper()
    keeper.update(whole.probs, whole.labels(), whole.key_ids)
    assert report.drawings and len(report.worst) == len(report.best) == THUMBNAILS  # 36 drawings, bounded
    assert [e.key_id for e in report.worst] == [e.key_id for e in keeper.worst]
    assert [e.key_id for e in report.best] == [e.key_id for e in keeper.best]
    strokes = {d.key_id: d.strokes for d in doodle.read(data)}
    for e in report.worst + report.best:
        assert len(e.strokes) == len(strokes[e.key_id])
        for got, want in zip(e.strokes, strokes[e.key_id], strict=True):
            assert np.allclose(got, want[:, :2])
    html = report.files["html"].read_text()
    assert html.count('<svg class="drawing"') == 2 * THUMBNAILS and 'id="no-drawings"' not in html


# -- the examples, the headline and the chart ----------------------------------------------------
# row: true  probabilities       first guess (p)   kept as
#  0   cat   .90 .05 .05         cat .90            best #2 (ties with row 5: the earlier one)
#  1   cat   .20 .70 .10         dog .70            worst #3 (ties with row 4 at .70; the truth .20 > .10)
#  2   dog   .10 .10 .80         eye .80            worst #1
#  3   dog   .05 .95 .00         dog .95            best #1
#  4   dog   .20 .10 .70         eye .70            worst #2
#  5   cat   .90 .05 .05         cat .90            best #3 (k = 3)
#  6   eye   .50 .30 .20         cat .50            - (the least sure mistake)
SELECT_PROBS = np.array([[.9, .05, .05], [.2, .7, .1], [.1, .1, .8], [.05, .95, 0], [.2, .1, .7], [.9, .05, .05],
                         [.5, .3, .2]])
SELECT_LABELS = np.array([0, 0, 1, 1, 1, 0, 2])


@pytest.mark.parametrize("batch", [1, 2, 3, 7])
def test_the_worst_and_best_examples_whatever_the_batches(batch):
    keeper = ExampleKeeper(k=3)
    for start in range(0, 7, batch):
        rows = slice(start, start + batch)
        keeper.update(SELECT_PROBS[rows], SELECT_LABELS[rows], list(range(100 + start, 107)[:batch]))
    assert [e.position for e in keeper.worst] == [2, 4, 1]
    assert [e.position for e in keeper.best] == [3, 0, 5]
    assert [e.key_id for e in keeper.worst] == [102, 104, 101]
    four = keeper.worst[1]
    assert four.label == 1 and four.truth == pytest.approx(.1) and four.strokes is None
    assert four.guesses == [(2, pytest.approx(.7)), (0, pytest.approx(.2)), (1, pytest.approx(.1))]
    two = ExampleKeeper(k=2)
    two.update(SELECT_PROBS, SELECT_LABELS)
    assert [e.position for e in two.best] == [3, 0] and two.worst[0].key_id is None


def test_the_headline_and_the_metric_lines():
    m = {"n": 1083, "classes": 15, "acc1": 0.93, "acc3": 0.98, "map3": 0.9512, "log_loss": np.log(2), "ece": 0.031,
         "proxy_score": 120.0, "proxy_score_per_drawing": 120 / 1083}
    assert headline(m) == ("The right word is the first guess for 93 % of 1,083 drawings and in the top three "
                           "for 98 %.")
    assert headline({**m, "n": 1, "acc1": 1.0, "acc3": 1.0}) == (
        "The right word is the first guess for 100 % of 1 drawing and in the top three for 100 %.")
    cards = {name: (value, text) for name, value, text in metric_cards(m)}
    assert list(cards) == ["MAP@3", "acc@1", "acc@3", "log-loss", "calibration error", "proxy score"]
    assert cards["MAP@3"][0] == "0.951" and cards["acc@3"][0] == "98 %" and cards["calibration error"][0] == "3.1 pts"
    assert "right word 50 %" in cards["log-loss"][1]  # exp(-log 2): half the probability on a typical drawing
    assert "fair share of 72.2" in cards["proxy score"][1] and cards["proxy score"][0] == "120"
    assert [percent(x) for x in (0, 0.0004, 0.5, 0.997, 0.9996, 1)] == ["0 %", "0.1 %", "50 %", "99.7 %", "99.9 %",
                                                                       "100 %"]


def test_the_chart_shows_the_hardest_and_easiest_of_many_classes():
    rows = [{"class": f"w{i:03d}", "n": 10, "acc1": (i % 100) / 100, "acc3": 1.0} for i in range(345)]
    chart = class_chart(rows + [{"class": "empty", "n": 0, "acc1": float("nan"), "acc3": float("nan")}])
    names = re.findall(r'<span class="name">(w\d+)</span>', chart)
    assert len(names) == 40 and "The 20 hardest words" in chart and "The 20 easiest words" in chart
    assert names[:4] == ["w000", "w100", "w200", "w300"] and names[-1] == "w299"  # worst first, best last
    small = class_chart(rows[:15])
    assert small.count('class="bar-row"') == 15 and "All 15 words, hardest first" in small


class Wrapped:
    """A model batch whose probabilities are one array the spy can watch (BatchPrediction computes
    them afresh on each access)."""

    def __init__(self, batch):
        self.probs = batch.probs
        self.key_ids, self.words, self.time_features = batch.key_ids, batch.words, batch.time_features

    def __len__(self):
        return len(self.key_ids)


def test_the_drawing_tap_hands_each_batch_its_drawings_or_gives_up(tmp_path):
    from doodle.data.drawing import Drawing
    from doodle.evaluate.examples import DrawingTap
    from doodle.evaluate.report import evaluate_batches

    drawings = [Drawing(k, [np.array([[0.0, 0.0], [k, 1.0]])], "cat") for k in range(1, 7)]
    tap = DrawingTap()
    fed = tap.feed(drawings)
    read = [next(fed) for _ in range(4)]  # the reader runs ahead of the predictions
    assert tap.take(np.array([1, 2], np.uint64)) == read[:2] and tap.take([3]) == read[2:3]
    assert tap.take([5]) is None and tap.broken  # 4 was next: the order is lost, and so are the thumbnails
    assert list(fed) == drawings[4:] and not tap._queue  # nothing more is kept once broken
    tap = DrawingTap()
    list(tap.feed(drawings[:1]))
    report = evaluate_batches([preds()], tmp_path / "rep", tap=tap)
    html = report.files["html"].read_text()
    assert not report.drawings and "could not be matched" in html and "<svg" not in html
