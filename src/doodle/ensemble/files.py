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
the reported figure comes from drawings the fit never saw. With given (or equal) weights, means
stream the inputs batch by batch (constant memory).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from doodle.ensemble.blend import blend, fit_weights, holdout_halves, normalise
from doodle.ensemble.stack import StackConfig, Stacker
from doodle.ensemble.vote import vote
from doodle.errors import DoodleError
from doodle.metrics import map_at_3
from doodle.predictions_io import (
    Predictions,
    PredictionWriter,
    align,
    check_aligned,
    iter_prediction_batches,
    read_predictions,
    write_predictions,
)

PathLike = str | os.PathLike[str]
METHODS = ("mean", "geom", "vote", "stack")


def write_output(preds: Predictions, out: PathLike) -> int:
    """Write predictions as a predictions file (.parquet) or a Kaggle submission (.csv)."""
    out = Path(out)
    if out.suffix.lower() == ".parquet":
        return write_predictions(preds, out)
    if out.suffix.lower() == ".csv":
        from doodle.predict import BatchPrediction, write_submission

        logp = np.log(np.clip(preds.probs, 1e-38, None)).astype(np.float32)
        batch = BatchPrediction([int(k) for k in preds.key_ids], logp, list(preds.words))
        return write_submission([batch], preds.classes, out)
    raise DoodleError(f"--out {out}: expected a .parquet or .csv file")


def _stream_mean(inputs: Sequence[PathLike], out: Path, weights: np.ndarray, mean: str) -> int:
    classes, _ = check_aligned(inputs)
    streams = [iter_prediction_batches(p) for p in inputs]
    csv_out = out.suffix.lower() == ".csv"
    if csv_out:
        from doodle.predict import BatchPrediction, write_submission

        def batches():
            for parts in zip(*streams, strict=True):
                probs = blend([p.probs for p in parts], weights, mean)
                yield BatchPrediction([int(k) for k in parts[0].key_ids], np.log(np.clip(probs, 1e-38, None)))

        return write_submission(batches(), classes, out)
    with PredictionWriter(out, classes, {"ensemble": mean, "weights": list(weights), "inputs": list(map(str, inputs))}
                          ) as writer:
        for parts in zip(*streams, strict=True):
            first = parts[0]
            writer.write(first.key_ids, blend([p.probs for p in parts], weights, mean), first.words or None,
                         first.time_features)
    return writer.rows


def ensemble_files(inputs: Sequence[PathLike], out: PathLike, *, method: str = "mean",
                   weights: Sequence[float] | None = None, fit: str | None = None,
                   holdout: Sequence[PathLike] = (), stack: StackConfig | None = None) -> dict:
    """Blend, stack or vote `inputs` into `out`; returns a summary (weights, held-out MAP@3 where known)."""
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
    if method != "stack" and fit is None:
        w = normalise(np.ones(len(inputs)) if weights is None else weights, len(inputs))
        return {"rows": _stream_mean(inputs, out, w, mean), "method": method, "weights": list(w)}

    preds = [read_predictions(p) for p in inputs]
    align(preds, [str(p) for p in inputs])
    if holdout:
        fit_set = [read_predictions(p) for p in holdout]
        align(fit_set, [str(p) for p in holdout])
        if fit_set[0].classes != preds[0].classes:
            raise DoodleError(f"{holdout[0]} has other classes than {inputs[0]}")
        fit_set = [p.labelled() for p in fit_set]
        target = preds
    else:
        labels = preds[0].labels()
        if (labels < 0).any() or not len(labels):
            raise DoodleError("fitting needs labelled drawings: pass --holdout (predictions of the same models on "
                              "a labelled split), or inputs whose every drawing is labelled")
        fit_rows, eval_rows = holdout_halves(preds[0].key_ids)
        fit_set = [p.take(fit_rows) for p in preds]
        target = [p.take(eval_rows) for p in preds]
    y_fit = fit_set[0].labels()
    summary: dict = {"method": method, "fit_rows": len(y_fit)}
    if method == "stack":
        stacker = Stacker(stack).fit([p.probs for p in fit_set], y_fit, fit_set[0].time_features)
        probs = stacker.predict([p.probs for p in target], target[0].time_features)
    else:
        w = fit_weights([p.probs for p in fit_set], y_fit, fit, mean=mean)
        summary["weights"] = list(w)
        probs = blend([p.probs for p in target], w, mean)
    result = target[0].with_probs(probs, ensemble=method, fit=fit, inputs=[str(p) for p in inputs])
    y = result.labels()
    if len(y) and (y >= 0).all():
        summary["map3"] = map_at_3(result.probs, y)
        summary["inputs_map3"] = [map_at_3(p.probs, y) for p in target]
    summary["rows"] = write_output(result, out)
    return summary
