"""Weighted means of several models' probabilities, and weights fitted on a labelled holdout.

Means: "arith" (sum of w_i p_i) or "geom" (exp of sum of w_i log p_i, renormalised). Weight
fitting (`fit_weights`), always on drawings with known labels:

* "score": w_i proportional to 1 / (1 - MAP@3_i), the inverse error rate (a model with half the
  errors counts twice);
* "score-corr" (24th place): the "score" weight times (1 - mean correlation of the model's
  probabilities with the other models'), so a model that disagrees more adds more;
* "inv-loss" (8th place): w_i proportional to (1 / log-loss_i) ** k, k = 24 by default (a large k
  all but picks the best model, a small k averages);
* "map3": coordinate ascent on MAP@3 of the blend itself, from equal weights.

Weights are normalised to sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from doodle.data.split import is_val
from doodle.errors import DoodleError
from doodle.metrics import map_at_3

MEANS = ("arith", "geom")
FIT_METHODS = ("score", "score-corr", "inv-loss", "map3")
EPS = 1e-12
_HALF_SEED = 0x5AC4
_SCALES = (0.0, 0.25, 0.5, 0.75, 1.25, 1.5, 2.0, 4.0)


def normalise(weights: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """float64 [n] non-negative weights summing to 1 (raises on a bad count or all zeros)."""
    w = np.asarray(weights, np.float64).reshape(-1)
    if len(w) != n:
        raise DoodleError(f"{len(w)} weight(s) for {n} model(s)")
    if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise DoodleError(f"weights must be finite, non-negative and not all zero, got {list(w)}")
    return w / w.sum()


def blend(probs: Sequence[np.ndarray], weights: Sequence[float] | np.ndarray | None = None,
          mean: str = "arith") -> np.ndarray:
    """float32 [N, K] weighted mean of the models' probabilities (equal weights by default)."""
    if not probs:
        raise DoodleError("nothing to blend")
    w = normalise(np.ones(len(probs)) if weights is None else weights, len(probs))
    if mean == "arith":
        out = sum(wi * np.asarray(p, np.float64) for wi, p in zip(w, probs, strict=True))
    elif mean == "geom":
        logs = sum(wi * np.log(np.clip(np.asarray(p, np.float64), EPS, None)) for wi, p in zip(w, probs, strict=True))
        logs = logs - logs.max(1, keepdims=True)
        out = np.exp(logs)
    else:
        raise DoodleError(f"unknown mean {mean!r}; choose from {', '.join(MEANS)}")
    return (out / out.sum(1, keepdims=True)).astype(np.float32)


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-probability of the true class."""
    p = np.asarray(probs, np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.clip(p, EPS, None)).mean())


def _mean_correlation(probs: Sequence[np.ndarray]) -> np.ndarray:
    flat = [np.asarray(p, np.float64).reshape(-1) for p in probs]
    corr = np.corrcoef(np.stack(flat))
    m = len(flat)
    return np.array([(corr[i].sum() - 1.0) / (m - 1) for i in range(m)]) if m > 1 else np.zeros(1)


def _coordinate_ascent(probs: Sequence[np.ndarray], labels: np.ndarray, mean: str, rounds: int = 4) -> np.ndarray:
    w = np.ones(len(probs)) / len(probs)
    best = map_at_3(blend(probs, w, mean), labels)
    for _ in range(rounds):
        improved = False
        for i in range(len(probs)):
            for s in _SCALES:
                trial = w.copy()
                trial[i] *= s
                if trial.sum() <= 0:
                    continue
                trial /= trial.sum()
                score = map_at_3(blend(probs, trial, mean), labels)
                if score > best + 1e-12:
                    best, w, improved = score, trial, True
        if not improved:
            break
    return w


def fit_weights(probs: Sequence[np.ndarray], labels: np.ndarray, method: str = "map3", *, mean: str = "arith",
                power: float = 24.0) -> np.ndarray:
    """float64 [M] blend weights fitted on a labelled holdout (see the module docstring)."""
    labels = np.asarray(labels, np.int64)
    if len(probs) < 1:
        raise DoodleError("no models to weigh")
    if not len(labels) or (labels < 0).any():
        raise DoodleError("fitting weights needs a holdout whose every drawing has a known class")
    scores = np.array([map_at_3(p, labels) for p in probs])
    if method == "score":
        w = 1.0 / np.maximum(1.0 - scores, 1e-6)
    elif method == "score-corr":
        w = (1.0 / np.maximum(1.0 - scores, 1e-6)) * np.maximum(1.0 - _mean_correlation(probs), 1e-3)
    elif method == "inv-loss":
        losses = np.array([log_loss(p, labels) for p in probs])
        w = (losses.min() / np.maximum(losses, EPS)) ** power  # scaled by the best loss: no overflow
    elif method == "map3":
        w = _coordinate_ascent(probs, labels, mean)
    else:
        raise DoodleError(f"unknown weight fitting {method!r}; choose from {', '.join(FIT_METHODS)}")
    return normalise(w, len(probs))


def holdout_halves(key_ids: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (fit, evaluate) splitting drawings in two halves by a hash of key_id
    (`doodle.data.split.is_val`), so that a figure reported on `evaluate` comes from drawings a
    fitted ensemble never saw, whatever the row order."""
    held = is_val(np.asarray(key_ids, np.uint64), 0.5, _HALF_SEED + seed)
    return np.flatnonzero(~held), np.flatnonzero(held)
