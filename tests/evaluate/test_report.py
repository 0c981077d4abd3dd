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
from doodle.evaluate.report import compute, evaluate_file, evaluate_predictions, evaluate_run, predict_in_memory
from doodle.infer.probabilities import Predictions, read_predictions, write_predictions

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
    import torch

    import doodle.infer.predict as predict_mod
    from doodle.data.synth import synth
    from doodle.preprocess import InputConfig, Preprocessor

    class PointsModel(torch.nn.Module):
        """Class scores from the number of points: the guesses follow from the drawing alone."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))

        def forward(self, batch):
            return torch.sin(batch["lengths"].float()[:, None] * self.w[None, :] * 7)

    names = ["circle", "square", "star"]
    model_files = tmp_path / "data"
    synth(model_files, per_class=9, classes=names)
    (tmp_path / "run.pt").write_bytes(b"")
    monkeypatch.setattr(predict_mod, "load_model", lambda path, weights="model": (
        PointsModel().eval(), Preprocessor(InputConfig(max_points=256), "sequence"), list(names), {}))
    in_memory = predict_in_memory(tmp_path / "run.pt", [model_files], batch_size=4, progress=False)
    spies = []
    real = predict_mod.iter_predictions

    def spied(*args, **kwargs):
        spies.append(BatchSpy(Wrapped(b) for b in real(*args, **kwargs)))
        return iter(spies[-1])

    monkeypatch.setattr(predict_mod, "iter_predictions", spied)
    report = evaluate_run(tmp_path / "run.pt", [model_files], tmp_path / "rep", batch_size=4, progress=False)
    assert spies[0].count == 7 and spies[0].most_alive <= 1  # 27 drawings, 4 at a time
    metrics, per_class, confusion, _ = reference(in_memory.probs, in_memory.labels(), names)
    assert report.metrics["n"] == 27 and np.array_equal(report.confusion, confusion)
    for key, value in metrics.items():
        assert report.metrics[key] == pytest.approx(value, rel=1e-9), key


class Wrapped:
    """A model batch whose probabilities are one array the spy can watch (BatchPrediction computes
    them afresh on each access)."""

    def __init__(self, batch):
        self.probs = batch.probs
        self.key_ids, self.words, self.time_features = batch.key_ids, batch.words, batch.time_features

    def __len__(self):
        return len(self.key_ids)
