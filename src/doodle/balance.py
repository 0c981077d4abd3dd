"""Balancing: re-rank predictions so that top-1 class counts match known (or uniform) class counts.

Kaggle's test set held about the same number of drawings per class; pushing the predicted top-1
counts towards that was the largest single post-processing gain of the competition (+0.6-0.7 %).
Three methods, for any number of classes and any expected counts (default: uniform):

* `iterative` (1st place): per-class multipliers start at 1; repeatedly the class predicted most
  often beyond its expected count has its multiplier lowered by a factor (1 - alpha), alpha
  halving from 0.01 to 1e-4 with `steps` steps each; the multipliers with the lowest proxy score
  (most even counts) seen on the way are kept. Output: the probabilities times the multipliers.
* `greedy` (4th place): each class takes at most ceil(expected) drawings; drawings are assigned
  to their top-1 class by decreasing confidence while it has room, then the rest to their top-2,
  top-3, ... class.
* `flow` (11th place): the assignment of drawings to classes, each class taking at most
  ceil(expected), that maximises the total log-probability, solved exactly as a minimum-cost
  flow (networkx network simplex, integer costs) over each drawing's `candidates` best classes.

Greedy and flow fix a top-1 class; the output scores put it first and keep the model's order for
the other guesses (so top-2 and top-3 stay the model's), which is what MAP@3 needs; these scores
are a ranking, not calibrated probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from doodle.errors import DoodleError

METHODS = ("iterative", "greedy", "flow")
COST_SCALE = 1_000_000
"""flow: -log p is rounded to multiples of 1e-6 (network simplex is exact on integers)."""


def expected_counts(n: int, k: int, given: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """float64 [K] expected top-1 counts: `given`, or N/K each."""
    if given is None:
        return np.full(k, n / k)
    out = np.asarray(given, np.float64)
    if out.shape != (k,):
        raise DoodleError(f"expected counts: {len(out)} values for {k} classes")
    if (out < 0).any():
        raise DoodleError("expected counts must not be negative")
    return out


def proxy_score(top1: np.ndarray, expected: np.ndarray) -> float:
    """Sum over classes of |top-1 count - expected count| (0: perfectly balanced).

    `top1` is int [N] (top-1 class per drawing) or scores [N, K]."""
    top1 = np.asarray(top1)
    if top1.ndim == 2:
        top1 = top1.argmax(1)
    counts = np.bincount(top1, minlength=len(expected))
    return float(np.abs(counts - expected).sum())


def _alphas(start: float, stop: float) -> list[float]:
    out, a = [], start
    while a >= stop * (1 - 1e-9):
        out.append(a)
        a /= 2
    return out


def iterative_multipliers(probs: np.ndarray, expected: np.ndarray, *, alpha_start: float = 0.01,
                          alpha_stop: float = 1e-4, steps: int = 3000) -> np.ndarray:
    """float64 [K] per-class multipliers (1st place's search, see the module docstring)."""
    probs = np.asarray(probs, np.float64)
    n, k = probs.shape
    w = np.ones(k)
    top1 = probs.argmax(1)
    counts = np.bincount(top1, minlength=k)
    best, best_w = np.abs(counts - expected).sum(), w.copy()
    for alpha in _alphas(alpha_start, alpha_stop):
        for _ in range(steps):
            c = int(np.argmax(counts - expected))
            w[c] *= 1.0 - alpha
            # Lowering class c changes only the rows whose top-1 is c.
            rows = np.flatnonzero(top1 == c)
            if len(rows):
                new = (probs[rows] * w).argmax(1)
                top1[rows] = new
                counts = np.bincount(top1, minlength=k)
            score = np.abs(counts - expected).sum()
            if score < best - 1e-12:
                best, best_w = score, w.copy()
            if best < 1e-9:
                return best_w
    return best_w


def _caps(n: int, expected: np.ndarray) -> np.ndarray:
    caps = np.ceil(expected - 1e-9).astype(np.int64)
    if caps.sum() < n:
        raise DoodleError(f"the expected counts add up to {expected.sum():g}, fewer than the {n:,} drawings")
    return caps


def greedy_assign(probs: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """int64 [N] class per drawing: 4th place's capped greedy assignment (module docstring)."""
    probs = np.asarray(probs, np.float64)
    n, k = probs.shape
    room = _caps(n, expected).copy()
    order = np.argsort(-probs, axis=1, kind="stable")
    out = np.full(n, -1, np.int64)
    for r in range(k):
        pending = np.flatnonzero(out < 0)
        if not len(pending):
            break
        cls = order[pending, r]
        conf = probs[pending, cls]
        for i in np.argsort(-conf, kind="stable"):
            c = cls[i]
            if room[c] > 0:
                room[c] -= 1
                out[pending[i]] = c
    return out


def flow_assign(probs: np.ndarray, expected: np.ndarray, candidates: int | None = None) -> np.ndarray:
    """int64 [N] class per drawing maximising the total log-probability with at most
    ceil(expected[c]) drawings in class c: an exact minimum-cost flow over each drawing's
    `candidates` best classes (None: all classes)."""
    import networkx as nx

    probs = np.asarray(probs, np.float64)
    n, k = probs.shape
    caps = _caps(n, expected)
    m = k if candidates is None else max(1, min(candidates, k))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :m]
    cost = np.rint(-np.log(np.clip(probs, 1e-30, None)) * COST_SCALE).astype(np.int64)
    g = nx.DiGraph()
    g.add_node("sink", demand=n)
    for c in range(k):
        g.add_edge(("c", c), "sink", capacity=int(caps[c]), weight=0)
    for i in range(n):
        g.add_node(i, demand=-1)
        for c in order[i]:
            g.add_edge(i, ("c", int(c)), capacity=1, weight=int(cost[i, c]))
    try:
        _, flow = nx.network_simplex(g)
    except nx.NetworkXUnfeasible:
        raise DoodleError(f"no assignment fits the class caps using each drawing's {m} best classes; "
                          "raise the number of candidates") from None
    out = np.full(n, -1, np.int64)
    for i in range(n):
        for node, f in flow[i].items():
            if f:
                out[i] = node[1]
    return out


def assignment_scores(probs: np.ndarray, assigned: np.ndarray) -> np.ndarray:
    """float32 [N, K] scores ranking the assigned class first, then the others in the model's order."""
    probs = np.asarray(probs, np.float64)
    scores = probs / 2.0  # every other class below 0.5
    rows = np.arange(len(probs))
    scores[rows, assigned] = 0.5 + probs[rows, assigned] / 2.0
    return (scores / scores.sum(1, keepdims=True)).astype(np.float32)


def balance_probs(probs: np.ndarray, method: str = "iterative", expected: Sequence[float] | np.ndarray | None = None,
                  *, steps: int = 3000, candidates: int | None = None) -> np.ndarray:
    """float32 [N, K] re-ranked scores whose top-1 counts approach `expected` (default uniform)."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or not len(probs):
        raise DoodleError(f"balancing needs predictions of shape [N, K] with N > 0, got {probs.shape}")
    exp = expected_counts(len(probs), probs.shape[1], expected)
    if method == "iterative":
        w = iterative_multipliers(probs, exp, steps=steps)
        out = probs * w
        return (out / out.sum(1, keepdims=True)).astype(np.float32)
    if method == "greedy":
        return assignment_scores(probs, greedy_assign(probs, exp))
    if method == "flow":
        return assignment_scores(probs, flow_assign(probs, exp, candidates))
    raise DoodleError(f"unknown balancing method {method!r}; choose from {', '.join(METHODS)}")


def read_expected(path: str, classes: Sequence[str]) -> np.ndarray:
    """Expected counts from a `class,count` CSV (header optional); every class must appear."""
    import csv

    counts: dict[str, float] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if len(row) < 2 or not row[0].strip():
                continue
            try:
                counts[row[0].strip()] = float(row[1])
            except ValueError:
                if counts:  # only a header may be non-numeric
                    raise DoodleError(f"{path}: bad count {row[1]!r} for {row[0]!r}") from None
    missing = [c for c in classes if c not in counts and c.replace(" ", "_") not in counts]
    if missing:
        raise DoodleError(f"{path} has no expected count for {len(missing)} class(es): {', '.join(missing[:5])}")
    out = [counts.get(c, counts.get(c.replace(" ", "_"), math.nan)) for c in classes]
    return np.array(out, np.float64)
