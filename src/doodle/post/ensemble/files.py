"""Ensembles of predictions files: what `doodle ensemble` does, callable from Python.

    ensemble_files(["cnn.parquet", "seq.parquet"], "blend.parquet")                       # equal weights
    ensemble_files(["cnn.parquet", "seq.parquet"], "sub.csv", fit="map3",
                   holdout=["cnn_val.parquet", "seq_val.parquet"])                        # fitted weights
    ensemble_files(["cnn.parquet", "seq.parquet"], "stack.parquet", method="stack",
                   holdout=["cnn_val.parquet", "seq_val.parquet"])                        # LightGBM
    ensemble_files(["a.csv", "b.csv"], "vote.csv", method="vote")                         # submissions

Fitting (weights or stacker) uses `holdout`: predictions of the same models, in the same order,
on labelled drawings. Without `holdout` the inputs themselves must be labelled: they are split in
two halves by key_id hash, the fit uses one, and only the other half is written and scored, so
the reported figure comes from drawings the fit never saw.

Everything streams, batch by batch, so a 1,000,000-drawing holdout of several models fits in a
few GB: the fit reads the holdout files once (twice for the key_id and word columns), and the
output is computed and written one batch of the inputs at a time. What the fit keeps:

* "score", "score-corr", "inv-loss" weights: sums over every labelled holdout row (`WeightStats`);
* "map3" weights: the probabilities of at most `MAP3_ROWS` (200,000) labelled holdout rows, for
  the search (rows x classes x models float32: 0.54 GB for 200,000 x 340 x 2);
* the stacker: its training matrix over at most `max_rows` (default 1,000,000) labelled holdout
  rows, rows x candidates x (3 x models + 9) float32 (0.6 GB for 1,000,000 x 10 x 2 models).

Where a fit uses fewer rows than the holdout has, it takes those whose key_id hashes lowest
(`fit_rows`): a fixed pseudo-random subset that does not depend on the files' row order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from doodle.data.split import splitmix64
from doodle.errors import DoodleError
from doodle.evaluate.metrics import Metrics
from doodle.infer.probabilities import (
    Predictions,
    PredictionWriter,
    check_aligned,
    iter_aligned,
    read_key_ids,
    read_labels,
    read_meta,
    write_predictions,
)
from doodle.post.ensemble.blend import WeightStats, blend, check_fit, fit_weights, holdout_halves, normalise
from doodle.post.ensemble.stack import StackBatch, StackConfig, Stacker
from doodle.post.ensemble.vote import vote

PathLike = str | os.PathLike[str]
METHODS = ("mean", "geom", "vote", "stack")
BATCH_ROWS = 8192
"""Drawings per batch when streaming predictions files."""
MAX_ROWS = 1_000_000
"""Default most labelled holdout rows the stacker trains on (the 1st place's holdout)."""
MAP3_ROWS = 200_000
"""Most labelled holdout rows the "map3" weight search holds in memory."""
_FIT_SALT = 0x5E1EC7


def write_output(preds: Predictions, out: PathLike) -> int:
    """Write predictions as a predictions file (.parquet) or a Kaggle submission (.csv)."""
    out = Path(out)
    if out.suffix.lower() == ".parquet":
        return write_predictions(preds, out)
    if out.suffix.lower() == ".csv":
        from doodle.infer.predict import BatchPrediction, write_submission

        logp = np.log(np.clip(preds.probs, 1e-38, None)).astype(np.float32)
        batch = BatchPrediction([int(k) for k in preds.key_ids], logp, list(preds.words))
        return write_submission([batch], preds.classes, out)
    raise DoodleError(f"--out {out}: expected a .parquet or .csv file")


def _stream_mean(inputs: Sequence[PathLike], out: Path, weights: np.ndarray, mean: str) -> int:
    classes, _ = check_aligned(inputs)
    meta = {"ensemble": mean, "weights": list(weights), "inputs": list(map(str, inputs))}
    batches = (parts[0].with_probs(blend([p.probs for p in parts], weights, mean))
               for parts in iter_aligned(inputs, None, BATCH_ROWS))
    return write_stream(batches, classes, out, meta)


def ensemble_files(inputs: Sequence[PathLike], out: PathLike, *, method: str = "mean",
                   weights: Sequence[float] | None = None, fit: str | None = None,
                   holdout: Sequence[PathLike] = (), stack: StackConfig | None = None,
                   max_rows: int = MAX_ROWS) -> dict:
    """Blend, stack or vote `inputs` into `out`; returns a summary (weights, held-out MAP@3 where known).

    `max_rows`: the most labelled holdout rows the stacker trains on (see the module docstring)."""
    out = Path(out)
    if method not in METHODS:
        raise DoodleError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if len(inputs) < 1:
        raise DoodleError("give at least one input")
    if method == "vote":
        if out.suffix.lower() != ".csv":
            raise DoodleError("vote combines submission CSVs and writes one: --out must end in .csv")
        return {"rows": vote(inputs, out, weights), "method": "vote"}
    mean = "geom" if method == "geom" else "arith"
    if weights is not None and fit is not None:
        raise DoodleError("give weights or a fitting method, not both")
    if holdout and len(holdout) != len(inputs):
        raise DoodleError(f"{len(holdout)} holdout file(s) for {len(inputs)} input(s): give one per input, same order")
    if max_rows < 1:
        raise DoodleError(f"max_rows must be at least 1, got {max_rows}")
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise DoodleError(f"--out {out}: expected a .parquet or .csv file")
    if method != "stack" and fit is None:
        w = normalise(np.ones(len(inputs)) if weights is None else weights, len(inputs))
        return {"rows": _stream_mean(inputs, out, w, mean), "method": method, "weights": list(w)}
    if method != "stack":
        check_fit(len(inputs), np.zeros(1, np.int64), fit)
    plan = plan_fit(inputs, holdout, MAP3_ROWS if method != "stack" and fit == "map3" else max_rows)
    summary: dict = {"method": method, "fit_rows": plan.fit_rows}
    if method == "stack":
        stacker = Stacker(stack).fit_batches(_stack_batches(plan), plan.fit_rows)
        combine = stacker.predict
    else:
        w = fit_streamed(plan, fit, mean)
        summary["weights"] = list(w)

        def combine(probs, _time_features):
            return blend(probs, w, mean)

    meta = {**read_meta(inputs[0]), "ensemble": method, "fit": fit, "inputs": [str(p) for p in inputs]}
    scores = _Scores(len(inputs))
    batches = _combined(iter_aligned(inputs, plan.apply_rows, BATCH_ROWS), combine, scores)
    summary["rows"] = write_stream(batches, plan.classes, out, meta)
    summary.update(scores.summary())
    return summary



@dataclass
class FitPlan:
    """Which files and rows a fit reads, and which rows of the inputs are then written."""

    classes: list[str]
    fit_paths: list[PathLike]
    fit_mask: np.ndarray
    """bool [holdout rows]: the rows the fit uses."""
    labels: np.ndarray
    """int64 [holdout rows] class of each row (-1: unknown)."""
    apply_rows: np.ndarray | None
    """bool [input rows]: the rows to write (None: all)."""

    @property
    def fit_rows(self) -> int:
        return int(self.fit_mask.sum())


def plan_fit(inputs: Sequence[PathLike], holdout: Sequence[PathLike], max_rows: int) -> FitPlan:
    """Check the files and choose the fitting rows: the labelled rows of `holdout`, or, without
    one, the fitting half of the (labelled) inputs, whose other half is then the output; at most
    `max_rows` of them (`fit_rows`). Reads key_ids and words only."""
    classes, _ = check_aligned(inputs)
    apply_rows = None
    if holdout:
        hold_classes, _ = check_aligned(holdout)
        if hold_classes != classes:
            raise DoodleError(f"{holdout[0]} has other classes than {inputs[0]}")
        fit_paths, labels = list(holdout), read_labels(holdout[0])
        eligible = labels >= 0
        if not eligible.any():
            raise DoodleError(f"{holdout[0]}: no drawing with a known class; fitting needs a labelled holdout")
    else:
        fit_paths, labels = list(inputs), read_labels(inputs[0])
        if not len(labels) or (labels < 0).any():
            raise DoodleError("fitting needs labelled drawings: pass --holdout (predictions of the same models on "
                              "a labelled split), or inputs whose every drawing is labelled")
        fit_half, eval_half = holdout_halves(read_key_ids(inputs[0]))
        eligible = np.zeros(len(labels), bool)
        eligible[fit_half] = True
        apply_rows = np.zeros(len(labels), bool)
        apply_rows[eval_half] = True
    mask = fit_rows(read_key_ids(fit_paths[0]), eligible, max_rows)
    return FitPlan(classes, fit_paths, mask, labels, apply_rows)


def fit_rows(key_ids: np.ndarray, eligible: np.ndarray, max_rows: int) -> np.ndarray:
    """bool [N]: the eligible rows, or, when there are more than `max_rows`, the `max_rows` of them
    whose key_id hashes lowest (a pseudo-random subset independent of the row order)."""
    rows = np.flatnonzero(eligible)
    if len(rows) > max_rows:
        hashes = splitmix64(np.asarray(key_ids, np.uint64)[rows], _FIT_SALT)
        rows = rows[np.argpartition(hashes, max_rows - 1)[:max_rows]]
    mask = np.zeros(len(eligible), bool)
    mask[rows] = True
    return mask


def _fit_batches(plan: FitPlan) -> Iterator[tuple[list[Predictions], np.ndarray]]:
    """(the models' batches, their labels) of the fitting rows, one batch at a time."""
    start = 0
    with tqdm(total=plan.fit_rows, desc="fit", unit=" drawings", disable=_quiet(), dynamic_ncols=True) as bar:
        for parts in iter_aligned(plan.fit_paths, None, BATCH_ROWS):
            n = len(parts[0])
            keep = np.flatnonzero(plan.fit_mask[start:start + n])
            labels = plan.labels[start:start + n][keep]
            start += n
            if len(keep):
                bar.update(len(keep))
                yield [p.take(keep) if len(keep) < n else p for p in parts], labels


def _stack_batches(plan: FitPlan) -> Iterator[StackBatch]:
    for parts, labels in _fit_batches(plan):
        yield [p.probs for p in parts], labels, parts[0].time_features


def fit_streamed(plan: FitPlan, method: str, mean: str, power: float = 24.0) -> np.ndarray:
    """Blend weights fitted on the plan's rows, read batch by batch: sums for "score", "score-corr"
    and "inv-loss"; the rows' probabilities for "map3" (at most `MAP3_ROWS` by the plan)."""
    models = len(plan.fit_paths)
    if method == "map3":  # the rows' probabilities, filled batch by batch into arrays of their final size
        probs = [np.empty((plan.fit_rows, len(plan.classes)), np.float32) for _ in range(models)]
        labels = np.empty(plan.fit_rows, np.int64)
        at = 0
        for parts, batch_labels in _fit_batches(plan):
            for m, p in enumerate(parts):
                probs[m][at:at + len(p)] = p.probs
            labels[at:at + len(batch_labels)] = batch_labels
            at += len(batch_labels)
        return fit_weights(probs, labels, "map3", mean=mean)
    stats = WeightStats(models)
    for parts, labels in _fit_batches(plan):
        stats.update([p.probs for p in parts], labels)
    return normalise(stats.raw_weights(method, power), models)


class _Scores:
    """MAP@3 of the output and of each input, accumulated while writing (reported when every
    written drawing is labelled)."""

    def __init__(self, models: int):
        self.out = Metrics()
        self.inputs = [Metrics() for _ in range(models)]
        self.unlabelled = 0

    def update(self, parts: list[Predictions], probs: np.ndarray) -> None:
        labels = parts[0].labels()
        known = labels >= 0
        self.unlabelled += int((~known).sum())
        if known.any():
            self.out.update(probs[known], labels[known])
            for m, p in zip(self.inputs, parts, strict=True):
                m.update(p.probs[known], labels[known])

    def summary(self) -> dict:
        if self.unlabelled or not self.out.n:
            return {}
        return {"map3": self.out.compute()["map3"], "inputs_map3": [m.compute()["map3"] for m in self.inputs]}


def _combined(batches: Iterable[list[Predictions]], combine: Callable[[list[np.ndarray], np.ndarray | None],
                                                                     np.ndarray],
              scores: _Scores) -> Iterator[Predictions]:
    """The combined output of each batch of the inputs (scored on the way)."""
    with tqdm(desc="ensemble", unit=" drawings", disable=_quiet(), dynamic_ncols=True) as bar:
        for parts in batches:
            probs = combine([p.probs for p in parts], parts[0].time_features)
            scores.update(parts, probs)
            bar.update(len(probs))
            yield parts[0].with_probs(probs)


def write_stream(batches: Iterable[Predictions], classes: Sequence[str], out: PathLike, meta: dict) -> int:
    """Write predictions given batch by batch as a predictions file (.parquet) or a Kaggle
    submission (.csv), atomically; returns the rows written."""
    out = Path(out)
    if out.suffix.lower() == ".csv":
        from doodle.infer.predict import BatchPrediction, write_submission

        logs = (BatchPrediction([int(k) for k in b.key_ids], np.log(np.clip(b.probs, 1e-38, None))) for b in batches)
        return write_submission(logs, classes, out)
    with PredictionWriter(out, classes, meta) as writer:
        for b in batches:
            writer.write(b.key_ids, b.probs, b.words or None, b.time_features)
    return writer.rows


def _quiet() -> bool:
    return not logging.getLogger("doodle").isEnabledFor(logging.INFO)
