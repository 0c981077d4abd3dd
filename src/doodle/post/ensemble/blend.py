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

Weights are normalised to sum to 1. "score", "score-corr" and "inv-loss" need only sums over
the holdout (`WeightStats`, accumulated batch by batch); "map3" searches on the probabilities
themselves, so it holds them in memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from doodle.data.split import is_val
from doodle.errors import DoodleError
from doodle.evaluate.metrics import map_at_3

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


class WeightStats:
    """What the "score", "score-corr" and "inv-loss" weights need, summed batch by batch over a
    labelled holdout, in O(M^2) memory whatever its size: per model the MAP@3 credit and the
    log-loss, and the sums of the models' probabilities, of their squares and of their pairwise
    products (the Pearson correlations of the flattened probabilities follow from these)."""

    def __init__(self, models: int):
        self.models = models
        self.n = 0
        self.values = 0
        self.credit = np.zeros(models)
        self.loss = np.zeros(models)
        self.sums = np.zeros(models)
        self.products = np.zeros((models, models))

    def update(self, probs: Sequence[np.ndarray], labels: np.ndarray) -> None:
        """Add one batch: [B, K] probabilities per model, labels [B] (all known)."""
        labels = np.asarray(labels, np.int64)
        flat = np.stack([np.asarray(p, np.float64).reshape(-1) for p in probs])
        for m, p in enumerate(probs):
            self.credit[m] += map_at_3(p, labels) * len(labels)
            self.loss[m] += log_loss(p, labels) * len(labels)
        self.sums += flat.sum(1)
        self.products += flat @ flat.T
        self.n += len(labels)
        self.values += flat.shape[1]

    def map3(self) -> np.ndarray:
        return self.credit / self.n

    def correlation(self) -> np.ndarray:
        """float64 [M, M] correlations of the models' probabilities (np.corrcoef of the flattened arrays)."""
        mean = self.sums / self.values
        cov = self.products / self.values - np.outer(mean, mean)
        sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
        return cov / np.maximum(np.outer(sd, sd), EPS)

    def raw_weights(self, method: str, power: float) -> np.ndarray:
        """Unnormalised weights of "score", "score-corr" or "inv-loss" (see the module docstring)."""
        score = 1.0 / np.maximum(1.0 - self.map3(), 1e-6)
        if method == "score":
            return score
        if method == "score-corr":
            corr = self.correlation()
            mean_corr = (corr.sum(1) - 1.0) / (self.models - 1) if self.models > 1 else np.zeros(1)
            return score * np.maximum(1.0 - mean_corr, 1e-3)
        if method == "inv-loss":
            losses = self.loss / self.n
            return (losses.min() / np.maximum(losses, EPS)) ** power  # scaled by the best loss: no overflow
        raise DoodleError(f"unknown weight fitting {method!r}; choose from {', '.join(FIT_METHODS)}")


def blend_map3(probs: Sequence[np.ndarray], labels: np.ndarray, weights: np.ndarray, mean: str,
               chunk: int = 8192) -> float:
    """MAP@3 of the blend, computed `chunk` rows at a time (no [N, K] float64 blend in memory)."""
    credit = 0.0
    for lo in range(0, len(labels), chunk):
        part = labels[lo:lo + chunk]
        credit += map_at_3(blend([p[lo:lo + chunk] for p in probs], weights, mean), part) * len(part)
    return credit / len(labels)


def _coordinate_ascent(probs: Sequence[np.ndarray], labels: np.ndarray, mean: str, rounds: int = 4) -> np.ndarray:
    w = np.ones(len(probs)) / len(probs)
    best = blend_map3(probs, labels, w, mean)
    for _ in range(rounds):
        improved = False
        for i in range(len(probs)):
            for s in _SCALES:
                trial = w.copy()
                trial[i] *= s
                if trial.sum() <= 0:
                    continue
                trial /= trial.sum()
                score = blend_map3(probs, labels, trial, mean)
                if score > best + 1e-12:
                    best, w, improved = score, trial, True
        if not improved:
            break
    return w


def fit_weights(probs: Sequence[np.ndarray], labels: np.ndarray, method: str = "map3", *, mean: str = "arith",
                power: float = 24.0) -> np.ndarray:
    """float64 [M] blend weights fitted on a labelled holdout (see the module docstring)."""
    labels = np.asarray(labels, np.int64)
    check_fit(len(probs), labels, method)
    if method == "map3":
        return normalise(_coordinate_ascent(probs, labels, mean), len(probs))
    stats = WeightStats(len(probs))
    stats.update(probs, labels)
    return normalise(stats.raw_weights(method, power), len(probs))


def check_fit(models: int, labels: np.ndarray, method: str) -> None:
    """Refuse a fit without models, on unlabelled drawings, or by an unknown method."""
    if models < 1:
        raise DoodleError("no models to weigh")
    if not len(labels) or (labels < 0).any():
        raise DoodleError("fitting weights needs a holdout whose every drawing has a known class")
    if method not in FIT_METHODS:
        raise DoodleError(f"unknown weight fitting {method!r}; choose from {', '.join(FIT_METHODS)}")


def holdout_halves(key_ids: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (fit, evaluate) splitting drawings in two halves by a hash of key_id
    (`doodle.data.split.is_val`), so that a figure reported on `evaluate` comes from drawings a
    fitted ensemble never saw, whatever the row order."""
    held = is_val(np.asarray(key_ids, np.uint64), 0.5, _HALF_SEED + seed)
    return np.flatnonzero(~held), np.flatnonzero(held)
