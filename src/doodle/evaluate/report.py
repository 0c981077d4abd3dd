"""Evaluation report of labelled predictions: metrics, per-class table, figures, one HTML file.

    report = evaluate_file("val.parquet", "report/")                  # streamed from a predictions file
    report = evaluate_run("runs/resnet18", ["store/val"], "report/", tta=["flip"])   # streamed from a model
    report = evaluate_predictions(preds, "report/")                    # predictions in memory

Every figure is accumulated batch by batch (`ReportAccumulator`): memory holds one batch of
scores, K x K counts and a fixed number of example drawings (the `THUMBNAILS` worst mistakes and
surest right answers, `doodle.evaluate.examples`), whatever the number of drawings (a
1,000,000-drawing holdout as well).

Writes into the output folder (each file atomically):

* `report.html`: everything below in one self-contained file for people (`doodle.evaluate.report_html`):
  a plain-words headline, each metric explained in a line, the worst mistakes and surest right
  answers drawn with their top-3 guesses (from a model; a predictions file holds no drawings, and
  the page says so), per-class accuracy bars, the figures embedded as base64 PNG;
* `metrics.json`: MAP@3, acc@1, acc@3, log-loss, expected calibration error, proxy score, and the
  shown examples (key id, true word, top-3 guesses);
* `per_class.csv`: per class: drawings, acc@1 (recall), acc@3, MAP@3, precision, top-1 count,
  its expected count under a balanced distribution, and the class it is most often taken for;
* `confusion.png` (row-normalised confusion matrix), `confused_pairs.png` (the most frequent
  true -> predicted mistakes), `reliability.png` (top-1 confidence against accuracy).

The proxy score is the sum over classes of |top-1 count - N/K|: how far the predicted classes are
from a balanced distribution (Kaggle's test set was balanced, and this number tracked the
leaderboard); it is also given divided by N.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from doodle.data.drawing import Drawing
from doodle.data.formats.common import atomic_output
from doodle.errors import DoodleError
from doodle.evaluate.examples import THUMBNAILS, DrawingTap, Example, ExampleKeeper, first_guess
from doodle.evaluate.metrics import label_rank
from doodle.evaluate.report_html import NO_DRAWINGS_MATCHED, Page, render_html
from doodle.infer.probabilities import Predictions

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
RELIABILITY_BINS = 10
TOP_PAIRS = 20


@dataclass
class Report:
    """What `evaluate_predictions` computed (also written to disk)."""

    metrics: dict
    """Headline numbers (see the module docstring)."""
    per_class: list[dict]
    """One dict per class, in class order."""
    confusion: np.ndarray
    """int64 [K, K] counts: row = true class, column = top-1 guess."""
    pairs: list[tuple[str, str, int]]
    """The most frequent mistakes (true, predicted, count), most frequent first."""
    reliability: list[dict]
    """Per confidence bin: lo, hi, n, confidence (mean), accuracy."""
    files: dict[str, Path]
    """The files written, by kind."""
    worst: list[Example] = field(default_factory=list)
    """The worst mistakes shown (surest wrong first guess first)."""
    best: list[Example] = field(default_factory=list)
    """The surest right answers shown."""
    drawings: bool = False
    """Whether the examples carry their drawings (a model on drawings; not a predictions file)."""


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a temporary file and a rename (`atomic_output`)."""
    with atomic_output(path) as handle:
        handle.write(data)


class ReportAccumulator:
    """The sums every figure of the report comes from, added one batch of labelled scores at a time.

    Its size is K x K counts (the confusion matrix) plus a few K-vectors, whatever the number of
    drawings: per true class the MAP@3 credit and the hits at 1 and 3, per confidence bin the
    drawings, their summed top-1 confidence and their right first guesses, and the summed log-loss;
    and the `thumbnails` worst mistakes and surest right answers (`ExampleKeeper`: at most 2 x
    `thumbnails` drawings).
    """

    def __init__(self, classes: Sequence[str], thumbnails: int = THUMBNAILS):
        k = len(classes)
        self.classes = list(classes)
        self.confusion = np.zeros((k, k), np.int64)
        self.credit = np.zeros(k)
        self.hit1 = np.zeros(k, np.int64)
        self.hit3 = np.zeros(k, np.int64)
        self.bin_n = np.zeros(RELIABILITY_BINS, np.int64)
        self.bin_confidence = np.zeros(RELIABILITY_BINS)
        self.bin_right = np.zeros(RELIABILITY_BINS, np.int64)
        self.loss = 0.0
        self.n = 0
        self.examples = ExampleKeeper(thumbnails)

    def update(self, probs: np.ndarray, labels: np.ndarray, key_ids: Sequence[int] | None = None,
               drawings: Sequence[Drawing] | None = None) -> None:
        """Add scores [B, K] of drawings with known classes `labels` [B] (0..K-1), with their key ids
        and drawings when known (for the examples the report shows)."""
        probs = np.asarray(probs, np.float64)
        labels = np.asarray(labels, np.int64)
        if not len(labels):
            return
        rank = label_rank(probs, labels).numpy()  # 0 = the first guess
        k = len(self.classes)
        np.add.at(self.credit, labels, np.where(rank < 3, 1.0 / (rank + 1), 0.0))
        self.hit1 += np.bincount(labels[rank == 0], minlength=k)
        self.hit3 += np.bincount(labels[rank < 3], minlength=k)
        top1 = first_guess(probs)
        np.add.at(self.confusion, (labels, top1), 1)
        self._add_reliability(probs[np.arange(len(labels)), top1], top1 == labels)
        true_p = probs[np.arange(len(labels)), labels] / np.maximum(probs.sum(1), 1e-12)
        self.loss += float(-np.log(np.clip(true_p, 1e-12, None)).sum())
        self.n += len(labels)
        self.examples.update(probs, labels, key_ids, drawings)

    def _add_reliability(self, conf: np.ndarray, right: np.ndarray) -> None:
        edges = np.linspace(0, 1, RELIABILITY_BINS + 1)
        for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            inside = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
            self.bin_n[b] += int(inside.sum())
            self.bin_confidence[b] += float(conf[inside].sum())
            self.bin_right[b] += int(right[inside].sum())

    def reliability(self) -> tuple[list[dict], float]:
        """(per confidence bin: lo, hi, n, confidence, accuracy; expected calibration error)."""
        edges = np.linspace(0, 1, RELIABILITY_BINS + 1)
        bins, ece = [], 0.0
        for b, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            m = int(self.bin_n[b])
            acc = self.bin_right[b] / m if m else float("nan")
            mean_conf = self.bin_confidence[b] / m if m else float("nan")
            if m:
                ece += m / self.n * abs(acc - mean_conf)
            bins.append({"lo": float(lo), "hi": float(hi), "n": m, "confidence": float(mean_conf),
                         "accuracy": float(acc)})
        return bins, float(ece)

    def metrics(self, ece: float) -> dict:
        n, k = self.n, len(self.classes)
        proxy = float(np.abs(self.confusion.sum(0) - n / k).sum())
        return {
            "n": int(n), "classes": int(k), "map3": float(self.credit.sum() / n), "acc1": float(self.hit1.sum() / n),
            "acc3": float(self.hit3.sum() / n), "log_loss": self.loss / n, "ece": ece, "proxy_score": proxy,
            "proxy_score_per_drawing": proxy / n,
        }

    def per_class(self) -> list[dict]:
        counts = self.confusion.sum(0)
        off = self._mistakes()
        rows = []
        for c, name in enumerate(self.classes):
            m = int(self.confusion[c].sum())
            rows.append({
                "class": name, "n": m,
                "acc1": float(self.hit1[c] / m) if m else float("nan"),
                "acc3": float(self.hit3[c] / m) if m else float("nan"),
                "map3": float(self.credit[c] / m) if m else float("nan"),
                "precision": float(self.confusion[c, c] / counts[c]) if counts[c] else float("nan"),
                "predicted": int(counts[c]), "expected": self.n / len(self.classes),
                "confused_with": self.classes[int(off[c].argmax())] if off[c].any() else "",
            })
        return rows

    def _mistakes(self) -> np.ndarray:
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        return off

    def pairs(self) -> list[tuple[str, str, int]]:
        """The most frequent mistakes (true, predicted, count), most frequent first."""
        off, k = self._mistakes(), len(self.classes)
        flat = np.argsort(-off, axis=None, kind="stable")[:TOP_PAIRS]
        return [(self.classes[i // k], self.classes[i % k], int(off.flat[i])) for i in flat if off.flat[i] > 0]

    def result(self) -> tuple[dict, list[dict], np.ndarray, list[tuple[str, str, int]], list[dict]]:
        """(metrics, per-class rows, confusion, most-confused pairs, reliability bins)."""
        bins, ece = self.reliability()
        return self.metrics(ece), self.per_class(), self.confusion.copy(), self.pairs(), bins


def compute(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> tuple[dict, list[dict], np.ndarray,
                                                                                     list[tuple[str, str, int]],
                                                                                     list[dict]]:
    """(metrics, per-class rows, confusion, most-confused pairs, reliability bins) of labelled scores."""
    acc = ReportAccumulator(classes)
    acc.update(probs, labels)
    return acc.result()


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def plot_confusion(confusion: np.ndarray, classes: Sequence[str]) -> bytes:
    """PNG of the row-normalised confusion matrix (class names shown up to 60 classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(classes)
    norm = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    side = min(4 + 0.3 * k, 30)
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 60:
        ax.set_xticks(range(k), classes, rotation=90, fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("top-1 guess")
    ax.set_ylabel("true class")
    ax.set_title("confusion (each row sums to 1)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _png(fig)


def plot_pairs(pairs: list[tuple[str, str, int]]) -> bytes:
    """PNG bar chart of the most frequent true -> predicted mistakes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 1 + 0.3 * max(len(pairs), 1)))
    labels = [f"{t} -> {p}" for t, p, _ in pairs][::-1]
    ax.barh(range(len(pairs)), [n for _, _, n in pairs][::-1], color="tab:red")
    ax.set_yticks(range(len(pairs)), labels, fontsize=8)
    ax.set_xlabel("drawings")
    ax.set_title("most-confused pairs (true -> top-1 guess)" if pairs else "no mistakes")
    return _png(fig)


def plot_reliability(bins: list[dict], ece: float) -> bytes:
    """PNG reliability diagram: accuracy against mean top-1 confidence per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    centers = [(b["lo"] + b["hi"]) / 2 for b in bins]
    acc = [b["accuracy"] if b["n"] else 0.0 for b in bins]
    ax.bar(centers, acc, width=1 / len(bins), edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    ax.set_xlabel("top-1 confidence")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title(f"reliability (ECE {ece:.3f})")
    ax.legend(loc="upper left")
    return _png(fig)


def accumulate(batches: Iterable[Predictions], tap: DrawingTap | None = None
               ) -> tuple[ReportAccumulator, int, dict]:
    """(the sums of the batches' labelled rows, unlabelled rows skipped, the first batch's meta),
    taking one batch at a time: nothing of a batch is kept once it is added, but the few examples
    the report shows (with their drawings, collected from `tap`, when given)."""
    acc, skipped, meta = None, 0, {}
    for batch in batches:
        if acc is None:
            acc, meta = ReportAccumulator(batch.classes), dict(batch.meta)
        labels = batch.labels()
        known = labels >= 0
        drawings = tap.take(batch.key_ids) if tap is not None else None
        acc.update(batch.probs[known], labels[known], batch.key_ids[known], _known(drawings, known))
        skipped += int((~known).sum())
    if acc is None or not acc.n:
        raise DoodleError("no drawing with a known class among the predictions: nothing to evaluate "
                          "(evaluate needs labelled drawings, e.g. a store's val split)")
    return acc, skipped, meta


def _known(drawings: list[Drawing] | None, known: np.ndarray) -> list[Drawing] | None:
    return None if drawings is None else [d for d, k in zip(drawings, known, strict=True) if k]


def evaluate_batches(batches: Iterable[Predictions], out_dir: PathLike, *, title: str = "doodle evaluation",
                     meta: dict | None = None, tap: DrawingTap | None = None) -> Report:
    """Write the report of labelled predictions given batch by batch (rows without a known class are
    skipped) to `out_dir`; memory holds one batch at a time. `tap`: the drawings of the batches (the
    report then draws its examples)."""
    acc, skipped, first_meta = accumulate(batches, tap)
    drawings = tap is not None and not tap.broken
    missing = NO_DRAWINGS_MATCHED if tap is not None and tap.broken else ""
    return report_of(acc, skipped, out_dir, title=title, meta=first_meta if meta is None else meta,
                     drawings=drawings, missing=missing)


def report_of(acc: ReportAccumulator, skipped: int, out_dir: PathLike, *, title: str, meta: dict,
              drawings: bool = False, missing: str = "") -> Report:
    """Write the report of accumulated sums (`skipped` unlabelled rows) to `out_dir`; `drawings`: the
    examples carry their strokes (else `missing` says why not; default: a predictions file)."""
    metrics, per_class, confusion, pairs, bins = acc.result()
    metrics["unlabelled_skipped"] = skipped
    page = Page(title, acc.classes, acc.examples.worst, acc.examples.best, drawings, meta, missing)
    report = Report(metrics, per_class, confusion, pairs, bins, {}, page.worst, page.best, drawings)
    report.files = write_report(report, page, out_dir)
    return report


def write_report(report: Report, page: Page, out_dir: PathLike) -> dict[str, Path]:
    """Write the figures, tables and HTML of computed results into `out_dir` (each file atomically);
    returns the files written, by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = {"confusion": plot_confusion(report.confusion, page.classes), "confused_pairs": plot_pairs(report.pairs),
              "reliability": plot_reliability(report.reliability, report.metrics["ece"])}
    files = {name: out / f"{name}.png" for name in images}
    files |= {"per_class": out / "per_class.csv", "metrics": out / "metrics.json", "html": out / "report.html"}
    for name, data in images.items():
        atomic_write(files[name], data)
    atomic_write(files["per_class"], per_class_csv(report.per_class))
    atomic_write(files["metrics"], metrics_json(report, page))
    atomic_write(files["html"], render_html(report.metrics, report.per_class, report.pairs, images, page).encode())
    return files


def per_class_csv(per_class: list[dict]) -> bytes:
    """The per-class rows as CSV (a header, then one line per class)."""
    import csv

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(per_class[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(per_class)
    return buf.getvalue().encode()


def metrics_json(report: Report, page: Page) -> bytes:
    """metrics.json: the headline numbers, the reliability bins, the provenance and the shown examples."""
    examples = {name: [example_json(e, page.classes) for e in kept]
                for name, kept in (("worst", report.worst), ("best", report.best))}
    return orjson.dumps({**report.metrics, "reliability": report.reliability, "meta": page.meta,
                         "examples": examples}, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)


def example_json(e: Example, classes: Sequence[str]) -> dict:
    """An example without its strokes: key id, true word and the top-3 guesses with probabilities."""
    return {"key_id": e.key_id, "word": classes[e.label],
            "guesses": [{"word": classes[c], "probability": p} for c, p in e.guesses]}


def evaluate_predictions(preds: Predictions, out_dir: PathLike, *, title: str = "doodle evaluation") -> Report:
    """Write the report of labelled predictions in memory to `out_dir` (rows without a known class are skipped)."""
    return evaluate_batches([preds], out_dir, title=title, meta=preds.meta)


def evaluate_file(path: PathLike, out_dir: PathLike, *, title: str | None = None, batch_size: int = 8192,
                  progress: bool = False) -> Report:
    """Write the report of a predictions file, streamed `batch_size` rows at a time (`iter_prediction_batches`)."""
    from tqdm import tqdm

    from doodle.infer.probabilities import count_rows, iter_prediction_batches

    with tqdm(total=count_rows(path), unit=" drawings", desc="evaluate", disable=not progress,
              dynamic_ncols=True) as bar:
        acc, skipped, meta = accumulate(_counted(b, bar) for b in iter_prediction_batches(path, batch_size))
    return report_of(acc, skipped, out_dir, title=title or f"doodle evaluation of {path}", meta=meta)


def _counted(batch: Predictions, bar: Any) -> Predictions:
    bar.update(len(batch))
    return batch


def model_predictions(run_or_checkpoint: PathLike, sources: Sequence[PathLike], *, checkpoint: str = "best",
                      average: Sequence[PathLike] = (), tta: Sequence[str] = (), tta_mean: str = "prob",
                      batch_size: int = 256, device: Any = None, progress: bool = True,
                      tap: DrawingTap | None = None) -> tuple[dict, Iterator[Predictions]]:
    """(provenance, the predictions of a checkpoint for `sources` batch by batch): the model is loaded
    now, and the drawings are read and predicted as the iterator is consumed (each one passing
    through `tap` when given)."""
    from doodle.infer.predict import load_predictor

    model, preprocessor, classes, _meta, described = load_predictor(run_or_checkpoint, checkpoint, average)
    meta = {"model": described, "tta": list(tta), "tta_mean": tta_mean}
    options = {"batch_size": batch_size, "device": device, "tta": list(tta), "tta_mean": tta_mean}
    return meta, _model_batches(model, preprocessor, classes, sources, meta, options, progress, tap)


def _model_batches(model: Any, preprocessor: Any, classes: list[str], sources: Sequence[PathLike], meta: dict,
                   options: dict, progress: bool, tap: DrawingTap | None) -> Iterator[Predictions]:
    from tqdm import tqdm

    from doodle.infer.predict import RejectCounter, iter_predictions, model_inputs

    rejects = RejectCounter()
    rows = 0
    drawings = model_inputs(sources, rejects)
    drawings = tap.feed(drawings) if tap is not None else drawings
    with tqdm(unit=" drawings", desc="evaluate", disable=not progress, dynamic_ncols=True) as bar:
        for b in iter_predictions(model, preprocessor, drawings, **options):
            rows += len(b)
            bar.update(len(b))
            yield Predictions(np.array(b.key_ids, np.uint64), b.probs, classes, list(b.words), b.time_features,
                              meta)
    if rejects.total:
        log.warning(rejects.summary())
    if not rows:
        raise DoodleError(f"no drawings read from {', '.join(map(str, sources))}")


def predict_in_memory(run_or_checkpoint: PathLike, sources: Sequence[PathLike], **options: Any) -> Predictions:
    """Predictions of a checkpoint (or averaged checkpoints) for `sources`, in memory (see
    `model_predictions` for `options`)."""
    from doodle.infer.probabilities import concat_batches

    meta, batches = model_predictions(run_or_checkpoint, sources, **options)
    out = concat_batches(batches)
    out.meta = meta
    return out


def evaluate_run(run_or_checkpoint: PathLike, sources: Sequence[PathLike], out_dir: PathLike, **options: Any
                 ) -> Report:
    """Predict labelled `sources` with a run (see `model_predictions` for `options`) and write the
    report, accumulated batch by batch as the model predicts; the examples it shows are drawn from the
    drawings as they pass (`DrawingTap`), without a second read."""
    tap = DrawingTap()
    meta, batches = model_predictions(run_or_checkpoint, sources, tap=tap, **options)
    return evaluate_batches(batches, out_dir, title=f"doodle evaluation of {meta['model']}", meta=meta, tap=tap)
