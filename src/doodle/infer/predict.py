"""Predict with a trained checkpoint and write a Kaggle submission (`key_id,word`, FORMATS.md 4).

    predict("runs/resnet18", ["test_simplified.csv"], "submission.csv")

The work is split so each part can be reused and extended (test-time augmentation, saved
probabilities, ensembles):

* `load_model(path)`: (model, preprocessor, classes, meta) from a checkpoint file;
* `iter_predictions(model, preprocessor, drawings)`: streams `BatchPrediction`s (key ids and
  log-probabilities [B, K]) in input order, `batch_size` drawings at a time, the next batch read
  and preprocessed in a background thread while the model runs on the current one, so memory
  stays constant whatever the input size;
* `write_submission(predictions, classes, out)`: the CSV, top-3 class names per drawing,
  written to a temporary file and renamed into place only when complete.
* `write_probabilities(predictions, classes, out)`: every class probability with key_ids, labels
  and timing, as a predictions Parquet file (`doodle.infer.probabilities`), for ensembles and evaluation;
* test-time augmentation (`iter_predictions(..., tta=["flip", "dropout"])`, see `doodle.infer.tta`) and
  checkpoint averaging (`load_averaged(files)`, `checkpoint="last:K"` for a run's last K snapshots).

Top-3 ties are broken by the lower class index (`doodle.evaluate.metrics.topk`).
"""

from __future__ import annotations

import csv
import functools
import itertools
import logging
import os
import queue
import re
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from doodle.data.drawing import Drawing, Reject

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
SUBMISSION_HEADER = ("key_id", "word")
TOP_K = 3
SHOWN_REJECTS = 5


@dataclass
class BatchPrediction:
    """One batch of predictions, in input order."""

    key_ids: list[int]
    """The drawings' key ids (Python ints: Quick, Draw! ids use the full unsigned 64-bit range)."""
    log_probs: np.ndarray
    """float32 [B, K] log-softmax of the model's scores (log, so no probability underflows to a tie)."""
    words: list[str | None] = field(default_factory=list)
    """The drawings' labels where the input has them (for evaluation), else None."""
    time_features: np.ndarray | None = None
    """float32 [B, 6] the drawings' timing from their input strokes (`doodle.preprocess.time_features`)."""

    @property
    def probs(self) -> np.ndarray:
        """float32 [B, K] class probabilities."""
        return np.exp(self.log_probs)

    def __len__(self) -> int:
        return len(self.key_ids)


# -- model -------------------------------------------------------------------------------------
def load_model(path: PathLike, weights: str = "model") -> tuple[Any, Any, list[str], dict]:
    """(model in eval mode, Preprocessor, class names in label order, meta) from a checkpoint file."""
    from doodle.runs.checkpoint import load_checkpoint

    return load_checkpoint(path, weights=weights)


def resolve(run_or_checkpoint: PathLike, checkpoint: str = "best") -> Path:
    """The checkpoint file: a file given directly, else RUN/best.pt, RUN/last.pt (by `checkpoint`,
    which may also be a path)."""
    from doodle.runs.checkpoint import resolve_checkpoint

    return resolve_checkpoint(run_or_checkpoint, checkpoint)


def default_device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def forward_log_probs(model: Any, batch: dict[str, np.ndarray], device: Any) -> np.ndarray:
    """float32 [B, K] log-probabilities of one preprocessed batch (call under inference mode)."""
    import torch

    inputs = {}
    for key, value in batch.items():
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        # lengths stay on the CPU, as in training (pack_padded_sequence wants them there)
        inputs[key] = tensor if key == "lengths" else tensor.to(device, non_blocking=True)
    logits = model(inputs)
    return torch.log_softmax(logits.float(), dim=1).cpu().numpy()


# -- streaming ---------------------------------------------------------------------------------
def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of `size` items (the last one shorter)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


_DONE = object()


def prefetch(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """`items`, produced by a background thread up to `depth` ahead (errors re-raised here)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            put((_DONE, err))
            return
        put((_DONE, None))

    thread = threading.Thread(target=produce, name="doodle-predict-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, err = q.get()
            if item is _DONE:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def iter_predictions(model: Any, preprocessor: Callable[[Sequence[Drawing]], dict[str, np.ndarray]],
                     drawings: Iterable[Drawing], *, batch_size: int = 256, device: Any = None,
                     background: bool = True, tta: Sequence[str] = (), tta_mean: str = "prob",
                     ) -> Iterator[BatchPrediction]:
    """Predictions for `drawings`, `batch_size` at a time, in input order.

    Reading and preprocessing run in a background thread (`background=False`: inline); the model
    runs under `torch.inference_mode` on `device` (default: CUDA when available, else the CPU; the
    model is moved there). `tta` names test-time views ("flip", "dropout", see `doodle.infer.tta`)
    averaged with the original by `tta_mean` ("prob" or "log").
    """
    import torch

    from doodle.infer.tta import combine, make_views
    from doodle.preprocess import time_features

    device = torch.device(device) if device is not None else default_device()
    model = model.to(device)
    model.eval()
    views = make_views(list(tta))

    def prepared() -> Iterator[tuple[list[Drawing], list[dict[str, np.ndarray]]]]:
        for chunk in batched(drawings, batch_size):
            yield chunk, [preprocessor(view(chunk)) for view in views]

    source = prefetch(prepared()) if background else prepared()
    try:
        for chunk, batches in source:
            with torch.inference_mode():
                log_probs = combine([forward_log_probs(model, b, device) for b in batches], tta_mean)
            timing = np.stack([time_features(d) for d in chunk]) if chunk else None
            yield BatchPrediction([d.key_id for d in chunk], log_probs, [d.word for d in chunk], timing)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


# -- submission --------------------------------------------------------------------------------
def submission_name(name: str) -> str:
    """A class name as Kaggle writes it: spaces become underscores (`The_Eiffel_Tower`)."""
    return "_".join(name.split(" "))


def submission_word(class_names: Sequence[str]) -> str:
    """The `word` cell: the guesses, best first, separated by single spaces."""
    return " ".join(submission_name(n) for n in class_names)


def write_submission(predictions: Iterable[BatchPrediction], classes: Sequence[str], out: PathLike, *,
                     k: int = TOP_K, on_batch: Callable[[int], object] | None = None,
                     missing: MissingRows | None = None) -> int:
    """Write `key_id,word` rows (the top-k class names) to `out` atomically; returns the rows written.

    The file appears only once complete (a temporary file beside it is renamed); on any error the
    temporary file is removed and an existing `out` is left as it was. `on_batch(n)` is called
    after each batch of n rows (a progress bar). `missing` holds fallback rows for records the model
    could not take (`MissingRows`): each is written at its place in the input order, its guesses
    the most frequent top-1 classes of the rows predicted so far.
    """
    from doodle.evaluate.metrics import topk

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = np.array([submission_name(c) for c in classes], dtype=object)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    predicted, rows = 0, 0
    counts = np.zeros(len(classes), np.int64)  # top-1 counts so far, for the fallback rows
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(SUBMISSION_HEADER)
            for pred in predictions:
                if pred.log_probs.shape != (len(pred.key_ids), len(classes)):
                    raise ValueError(f"predictions of shape {pred.log_probs.shape} for {len(pred.key_ids)} "
                                     f"drawings and {len(classes)} classes")
                best = topk(pred.log_probs, k)
                counts += np.bincount(best[:, 0], minlength=len(classes)) if len(best) else 0
                lines = [(str(key), " ".join(g)) for key, g in zip(pred.key_ids, names[best], strict=True)]
                if missing is not None:
                    lines = missing.interleave(lines, predicted, _fallback_word(names, counts, k))
                writer.writerows(lines)
                predicted += len(pred)
                rows += len(lines)
                if on_batch is not None:
                    on_batch(len(pred))
            if missing is not None:  # the records after the last drawing
                rows += missing.write_rest(writer, _fallback_word(names, counts, k))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return rows


def _fallback_word(names: np.ndarray, counts: np.ndarray, k: int) -> str:
    """The `word` of a fallback row: the k classes most often first so far (ties: lower index)."""
    from doodle.evaluate.metrics import topk

    return " ".join(names[topk(counts[None, :].astype(np.float64), k)[0]])


class RejectCounter:
    """Counts rejected records by reason, logging the first few (`read(..., on_reject=counter)`)."""

    def __init__(self, shown: int = SHOWN_REJECTS):
        self.reasons: Counter[str] = Counter()
        self.shown = shown

    def __call__(self, reject: Reject) -> None:
        if self.total < self.shown:
            log.warning("%s:%d: rejected: %s", reject.source, reject.line, reject.reason)
        self.reasons[reject.reason] += 1

    def count(self, reason: str) -> None:
        """Count a drawing skipped after reading (it has no source line to show)."""
        if self.reasons[reason] == 0:
            log.warning("skipped: %s", reason)
        self.reasons[reason] += 1

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def summary(self) -> str:
        top = ", ".join(f"{reason} ({n})" for reason, n in self.reasons.most_common(5))
        return f"{self.total:,} record(s) rejected and skipped: {top}"


BITMAP_ONLY = ("a 28x28 bitmap without strokes: doodle's models draw strokes, so a bitmap would be "
               "a blank image with meaningless guesses")
BITMAP_FORMATS = frozenset({"bitmap-npy", "bitmap-bin"})
KEY_FIELD = re.compile(r'"key_id"\s*:\s*"?\s*([0-9]+)\s*"?\s*[,}]')
"""An ndjson record's key_id field, found in text that JSON cannot parse."""


@dataclass
class FallbackRow:
    """A record a submission would lack, and the key_id its fallback row is written under."""

    position: int
    """Drawings read before it: the row goes right before the model's row of that drawing."""
    key_id: int


class MissingRows:
    """What a submission does with the records the model cannot take (unreadable, bitmap-only).

    A submission must have a row for every test drawing, so by default the first such record is an
    error naming it (`DoodleError`, raised from the reader before the CSV is renamed into place).
    With `fallback=True` a fallback row is kept for each record whose key_id can be read from its
    raw text (a Kaggle CSV's key_id column, an ndjson record's "key_id" field), and
    `write_submission` writes it in input order; a record without a readable key_id is still an
    error. `formats` maps each source file (as the reader names it) to its format.
    """

    def __init__(self, fallback: bool = False, formats: dict[str, str] | None = None):
        self.fallback = fallback
        self.formats = dict(formats or {})
        self.reasons: Counter[str] = Counter()
        self._pending: deque[FallbackRow] = deque()
        self._lock = threading.Lock()  # the reader runs in a background thread (`prefetch`)

    def reject(self, reject: Reject, position: int) -> None:
        """A record the reader rejected, after `position` drawings."""
        from doodle.errors import DoodleError

        where = f"{reject.source}:{reject.line}: {reject.reason}"
        if not self.fallback:
            raise DoodleError(f"{where}: a submission needs a row for every drawing, so fix the record, or pass "
                              "--fallback-rows to write a guess under its key_id")
        key_id = recover_key_id(reject, self.formats.get(reject.source))
        if key_id is None:
            raise DoodleError(f"{where}, and its key_id cannot be read from the record, so not even a "
                              "fallback row can stand for it in the submission")
        self._add(FallbackRow(position, key_id), reject.reason)

    def drawing(self, drawing: Drawing, reason: str, position: int) -> None:
        """A drawing the model cannot take (`reason`), after `position` drawings."""
        from doodle.errors import DoodleError

        if not self.fallback:
            raise DoodleError(f"drawing {drawing.key_id} is {reason}; a submission needs a row for every "
                              "drawing, so predict its strokes, or pass --fallback-rows to write a guess for it")
        self._add(FallbackRow(position, drawing.key_id), reason)

    def _add(self, row: FallbackRow, reason: str) -> None:
        with self._lock:
            self._pending.append(row)
            self.reasons[reason] += 1

    @property
    def written(self) -> int:
        """Fallback rows kept so far."""
        return sum(self.reasons.values())

    def take(self, before: int | None) -> list[FallbackRow]:
        """The pending rows placed before drawing `before` (None: all), in input order."""
        out = []
        with self._lock:
            while self._pending and (before is None or self._pending[0].position < before):
                out.append(self._pending.popleft())
        return out

    def interleave(self, lines: list[tuple[str, str]], start: int, word: str) -> list[tuple[str, str]]:
        """The rows of drawings start.. with the fallback rows placed among them.

        Every reject before the batch's last drawing was recorded before that drawing was read,
        so the rows placed inside the batch are all pending by now."""
        rows = self.take(start + len(lines))
        if not rows:
            return lines
        out, at = [], 0
        for row in rows:
            cut = max(row.position - start, 0)
            out += lines[at:cut]
            out.append((str(row.key_id), word))
            at = max(at, cut)
        return out + lines[at:]

    def write_rest(self, writer: Any, word: str) -> int:
        """Write the rows still pending (records after the last drawing); returns how many."""
        rows = self.take(None)
        writer.writerows((str(row.key_id), word) for row in rows)
        return len(rows)

    def summary(self) -> str:
        top = ", ".join(f"{reason} ({n})" for reason, n in self.reasons.most_common(5))
        return f"{self.written:,} fallback row(s) written for records the model could not take: {top}"


def recover_key_id(reject: Reject, fmt: str | None) -> int | None:
    """The key_id of a rejected text record read from its raw text, or None when it cannot be read:
    the key_id column of a Kaggle CSV (the first in test files), an ndjson record's "key_id"."""
    from doodle.data.drawing import BadRecord, parse_key_id

    text = _key_text(reject, fmt) if reject.raw else None
    if text is None:
        return None
    try:
        return parse_key_id(text)
    except BadRecord:
        return None


def _key_text(reject: Reject, fmt: str | None) -> str | None:
    if fmt == "kaggle-csv":
        return _csv_key_text(Path(reject.source), reject.raw or "")
    if fmt in ("raw-ndjson", "simplified-ndjson"):
        found = KEY_FIELD.search(reject.raw or "")
        return found.group(1) if found else None
    return None


def _csv_key_text(path: Path, raw: str) -> str | None:
    """The key_id cell of one CSV row; the row may be cut short or broken after that cell."""
    column = _csv_key_column(str(path))
    if column is None:
        return None
    try:
        cells = next(csv.reader([raw]))
    except (csv.Error, StopIteration):
        cells = []
    if column < len(cells):
        return cells[column]
    if column == 0 and "," in raw:  # a broken row: the first cell still ends at the first comma
        return raw.split(",", 1)[0]
    return None


@functools.lru_cache(maxsize=64)
def _csv_key_column(path: str) -> int | None:
    """The key_id column of a Kaggle CSV, from its header (read once per file)."""
    from doodle.data.formats.common import first_line
    from doodle.data.formats.kaggle_csv import parse_header

    header = parse_header(first_line(Path(path)))
    return None if isinstance(header, str) else header.index("key_id")


def model_inputs(sources: PathLike | Iterable[PathLike], rejects: RejectCounter,
                 missing: MissingRows | None = None) -> Iterator[Drawing]:
    """The drawings of `sources` a model can take: every drawing with strokes, in input order.

    Bad records and bitmap-only drawings (numpy bitmap files, or such rows of a store) are counted
    in `rejects`, and handed to `missing` when given (a submission: an error, or a fallback row);
    sources that are nothing but bitmap files are refused at once (DoodleError).
    """
    from doodle.data.formats import expand_sources, read
    from doodle.errors import DoodleError

    files, _skipped = expand_sources(sources)
    if files and all(fmt in BITMAP_FORMATS for _, fmt in files):
        names = ", ".join(str(path) for path, _ in files[:3]) + (" ..." if len(files) > 3 else "")
        raise DoodleError(f"{names}: 28x28 bitmap files hold no strokes, and doodle's models draw strokes; "
                          "predict stroke files instead (ndjson, Kaggle CSV, .bin, .npz)")
    if missing is not None:
        missing.formats.update({str(path): fmt for path, fmt in files})
    position = 0  # drawings yielded so far: where a fallback row goes

    def on_reject(reject: Reject) -> None:
        if missing is not None:
            missing.reject(reject, position)
        rejects(reject)

    for drawing in read(sources, on_reject=on_reject):  # a store split folder (STORE/val) reads that split
        if drawing.strokes:
            yield drawing
            position += 1
        else:
            if missing is not None:
                missing.drawing(drawing, BITMAP_ONLY, position)
            rejects.count(BITMAP_ONLY)


def prepare_output(out: PathLike) -> Path:
    """Check before any work that `out` can be written, and remove temporaries of an earlier run
    of it that was killed mid-write (`.OUT.tmpPID`)."""
    from doodle.errors import DoodleError
    from doodle.fs import check_writable, remove_stale_temporaries

    out = Path(out)
    if out.is_dir():
        raise DoodleError(f"--out {out} is a folder; give a file name")
    check_writable(out.parent, shown=str(out))
    if out.parent.is_dir():
        remove_stale_temporaries(out.parent, f".{out.name}.tmp*")
    return out


# -- checkpoint averaging ----------------------------------------------------------------------
def snapshot_files(run: PathLike, last: int) -> list[Path]:
    """The last `last` weight snapshots of a run (RUN/checkpoints/step-*.pt, by step), oldest first."""
    from doodle.errors import DoodleError
    from doodle.runs import Run

    handle = Run(Path(run))
    files = handle.snapshots()
    if last < 1:
        raise DoodleError(f"average the last K snapshots: K must be at least 1, got {last}")
    if len(files) < last:
        raise DoodleError(f"{run} has {len(files)} snapshot(s) in {handle.snapshot_dir}, fewer than the "
                          f"{last} asked for")
    return files[-last:]


def average_spec(run_or_checkpoint: PathLike, checkpoint: str) -> tuple[list[Path], str] | None:
    """(files, weights) to average when `checkpoint` is "last:K" (the raw weights of the run's last K
    snapshots) or "ema:K" (their EMA weights), else None."""
    kind, sep, count = checkpoint.partition(":")
    if not sep or kind not in ("last", "ema"):
        return None
    from doodle.errors import DoodleError

    try:
        k = int(count)
    except ValueError:
        raise DoodleError(f"--checkpoint {checkpoint}: expected {kind}:K with K a number") from None
    return snapshot_files(run_or_checkpoint, k), "ema" if kind == "ema" else "model"


def load_averaged(paths: Sequence[PathLike], weights: str = "model") -> tuple[Any, Any, list[str], dict]:
    """(model, preprocessor, classes, meta) with the element-wise mean of the weights of several
    checkpoints of one model (`doodle.runs.checkpoint.average_state_dicts`): their models, or with
    `weights="ema"` their EMA weights (an error for a checkpoint without them). They must share the
    model, its input and the classes. BatchNorm statistics are averaged too (no recalibration pass)."""
    from doodle.errors import DoodleError
    from doodle.runs.checkpoint import average_state_dicts, build_from_checkpoint, pick_weights, read_checkpoint

    if not paths:
        raise DoodleError("no checkpoints to average")
    datas = [read_checkpoint(p) for p in paths]
    first = datas[0]
    for path, data in zip(paths[1:], datas[1:], strict=True):
        for key in ("model_config", "input_config", "input_kind", "classes"):
            if data[key] != first[key]:
                raise DoodleError(f"cannot average {path} with {paths[0]}: their {key.replace('_', ' ')} differ")
    states = []
    for path, data in zip(paths, datas, strict=True):
        try:
            states.append(pick_weights(data, weights))
        except DoodleError as err:
            raise DoodleError(f"{path}: {err}") from None
    merged = {**first, "model": average_state_dicts(states), "ema": None}
    model, preprocessor, classes = build_from_checkpoint(merged)
    meta = {k: v for k, v in first.items() if k not in ("model", "ema", "train_state")}
    meta["averaged"] = [str(p) for p in paths]
    meta["weights"] = "ema" if weights == "ema" else first.get("weights", "raw")
    return model, preprocessor, classes, meta


def load_predictor(run_or_checkpoint: PathLike, checkpoint: str = "best", average: Sequence[PathLike] = ()
                   ) -> tuple[Any, Any, list[str], dict, str]:
    """(model, preprocessor, classes, meta, description) for prediction: one checkpoint of a run
    ("best", "last", "averaged", "ema" for the EMA weights at the end of training, a file), the
    average of the raw or EMA weights of the run's last K snapshots (`checkpoint="last:K"` or
    `"ema:K"`), or the average of the given checkpoint files (`average`)."""
    spec = ([Path(p) for p in average], "model") if average else average_spec(run_or_checkpoint, checkpoint)
    if spec:
        files, weights = spec
        model, preprocessor, classes, meta = load_averaged(files, weights)
        described = f"the average of {len(files)} checkpoints ({meta['weights']} weights)"
        return model, preprocessor, classes, meta, described
    path = resolve(run_or_checkpoint, checkpoint)
    model, preprocessor, classes, meta = load_model(path, weights="ema" if checkpoint == "ema" else "model")
    return model, preprocessor, classes, meta, str(path)


def write_probabilities(predictions: Iterable[BatchPrediction], classes: Sequence[str], out: PathLike, *,
                        meta: dict | None = None, on_batch: Callable[[int], object] | None = None) -> int:
    """Write class probabilities, key_ids, labels and timing to a predictions Parquet file
    (`doodle.infer.probabilities`), one row group per batch, atomically; returns the rows written."""
    from doodle.infer.probabilities import PredictionWriter

    with PredictionWriter(out, classes, meta) as writer:
        for pred in predictions:
            writer.write(np.array(pred.key_ids, dtype=np.uint64), pred.probs, pred.words, pred.time_features)
            if on_batch is not None:
                on_batch(len(pred))
    return writer.rows


def predict(run_or_checkpoint: PathLike, sources: PathLike | Iterable[PathLike], out: PathLike, *,
            checkpoint: str = "best", batch_size: int = 256, progress: bool = True, device: Any = None,
            tta: Sequence[str] = (), tta_mean: str = "prob", average: Sequence[PathLike] = (),
            missing: MissingRows | None = None) -> int:
    """Predict every drawing of `sources` (files, folders, stores in any format) with a checkpoint and
    write `out`: a Kaggle submission for `.csv`, class probabilities for `.parquet`; returns the
    number of rows written.

    `run_or_checkpoint` is a checkpoint file, or a run folder whose `checkpoint` ("best", "last",
    "averaged", "ema" for the EMA weights at the end of training, "last:K" / "ema:K" for the average
    of the raw / EMA weights of its last K snapshots, or a path) is used; `average` lists checkpoint
    files whose weights are averaged instead. `tta` names test-time views (`doodle.infer.tta`). Rows keep
    the input order. `out` is checked to be writable before the model is loaded.

    Records that cannot be read, and bitmap-only drawings: a submission must not lack them, so for
    a `.csv` the first one is an error naming it (nothing is written), unless `missing` is
    `MissingRows(fallback=True)`, which writes a fallback row for each (counted in `missing`); a
    `.parquet` output skips them, counted and logged (`model_inputs`).
    """
    from tqdm import tqdm

    from doodle.infer.tta import parse_tta

    views = parse_tta(list(tta))
    out = prepare_output(out)
    model, preprocessor, classes, _meta, described = load_predictor(run_or_checkpoint, checkpoint, average)
    parquet = out.suffix.lower() == ".parquet"
    if len(classes) < TOP_K and not parquet:
        log.warning("the checkpoint knows only %d classes: fewer than %d guesses per row", len(classes), TOP_K)
    if not parquet and missing is None:
        missing = MissingRows()
    rejects = RejectCounter()
    drawings = model_inputs(sources, rejects, None if parquet else missing)
    log.info("predicting with %s (%d classes, TTA %s) -> %s", described, len(classes), views or "off", out)
    with tqdm(unit=" drawings", desc="predict", disable=not progress, dynamic_ncols=True) as bar:
        predictions = iter_predictions(model, preprocessor, drawings, batch_size=batch_size, device=device,
                                       tta=views, tta_mean=tta_mean)
        try:
            if parquet:
                meta = {"model": described, "tta": views, "tta_mean": tta_mean}
                rows = write_probabilities(predictions, classes, out, meta=meta, on_batch=bar.update)
            else:
                rows = write_submission(predictions, classes, out, on_batch=bar.update, missing=missing)
        finally:
            predictions.close()
    if missing is not None and missing.written:
        log.warning(missing.summary())
    elif rejects.total:
        log.warning(rejects.summary())
    if rows == 0:
        log.warning("no drawings read from %s: %s holds no rows", sources, out)
    log.info("wrote %s: %d rows", out, rows)
    return rows
