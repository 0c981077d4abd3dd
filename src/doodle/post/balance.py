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
  flow over each drawing's `candidates` best classes (all by default). The flow is a transportation
  problem with unit supplies, solved by an auction with epsilon scaling (numba, integer costs,
  `auction_assign`): a few seconds for Kaggle's 112,199 drawings x 340 classes, where a general
  network simplex over the 38 M arcs does not fit in memory.

Greedy and flow fix a top-1 class; the output scores put it first and keep the model's order for
the other guesses (so top-2 and top-3 stay the model's), which is what MAP@3 needs; these scores
are a ranking, not calibrated probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numba import njit

from doodle.errors import DoodleError

METHODS = ("iterative", "greedy", "flow")
COST_SCALE = 1_000_000
"""flow: -log p is rounded to multiples of 1e-6 (the auction is exact on integers)."""


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
    `candidates` best classes (None: all classes), solved by `auction_assign`."""
    probs = np.asarray(probs, np.float64)
    n, k = probs.shape
    caps = _caps(n, expected)
    m = k if candidates is None else max(1, min(candidates, k))
    benefit = -np.rint(-np.log(np.clip(probs, 1e-30, None)) * COST_SCALE).astype(np.int64)
    cand = np.argsort(-probs, axis=1, kind="stable")[:, :m].astype(np.int32) if m < k else None
    if cand is not None:
        benefit = np.take_along_axis(benefit, cand, axis=1)
        if not _fits(cand, caps):
            raise DoodleError(f"no assignment fits the class caps using each drawing's {m} best classes; "
                              "raise the number of candidates")
    return auction_assign(benefit, caps, cand)


def auction_assign(benefit: np.ndarray, caps: np.ndarray, cand: np.ndarray | None = None) -> np.ndarray:
    """int64 [N] class per row maximising the sum of integer `benefit` [N, M] with at most caps[c] rows
    in class c (sum(caps) >= N), exactly: Bertsekas' auction with epsilon scaling.

    Class c is caps[c] slots, each with its own price; a row bids for the cheapest slot of the class
    worth most to it (benefit - price), raising that slot's price by the margin over its next best
    slot plus epsilon, and evicting the row that held it. Benefits are scaled by the number of
    bidders plus one so that the last phase's epsilon of 1 is below one unit of benefit per bidder:
    the assignment is then optimal, not only near optimal. Unused slots go to dummy bidders that
    value every class alike, which makes it a perfect assignment. `cand` [N, M] int32 names the
    class of each benefit column (None: column c is class c); the caller makes sure an assignment
    within the candidates exists (`_fits`), as none is found otherwise.
    """
    benefit = np.ascontiguousarray(benefit, np.int64)
    caps = np.asarray(caps, np.int64)
    n = len(benefit)
    slots = int(caps.sum())
    if slots < n:
        raise DoodleError(f"the class caps add up to {slots:,}, fewer than the {n:,} rows")
    if n == 0:
        return np.zeros(0, np.int64)
    scale = slots + 1
    span = int(benefit.max() - benefit.min())
    if span * scale >= 2**61:
        raise DoodleError(f"benefits spanning {span:,} are too wide for an exact auction over {slots:,} slots")
    scaled = benefit - benefit.max()  # a fresh array, scaled in place (it can be 112,199 x 340)
    scaled *= scale
    if cand is None:  # every class: bids scan a short list first, the whole row only when it may matter
        top, short = _shortlist(scaled, SHORTLIST)
        full = scaled
    else:
        order = np.argsort(-scaled, axis=1, kind="stable")  # best first, for the scan's early exit
        top = np.ascontiguousarray(np.take_along_axis(scaled, order, axis=1))
        short = np.ascontiguousarray(np.take_along_axis(np.asarray(cand, np.int32), order, axis=1))
        full = np.zeros((0, 0), np.int64)
    owner = _auction(top, short, full, caps, max(1, span * scale // EPS_SHRINK), EPS_SHRINK)
    slot_class = np.repeat(np.arange(len(caps)), caps)
    return slot_class[owner[:n]].astype(np.int64)


SHORTLIST = 32
"""Classes per row a bid looks at first (by benefit); the rest only when one of them may compete."""
EPS_SHRINK = 4
"""Epsilon is divided by this between the auction's phases (measured best among 4, 8, 10, 16)."""


def _shortlist(scaled: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(benefits, classes) [N, m] of each row's m best classes, best first (ties: lower class)."""
    m = min(m, scaled.shape[1])
    idx = np.argpartition(-scaled, m - 1, axis=1)[:, :m] if m < scaled.shape[1] else np.indices(scaled.shape)[1]
    idx.sort(axis=1)
    order = np.argsort(-np.take_along_axis(scaled, idx, axis=1), axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    return np.ascontiguousarray(np.take_along_axis(scaled, idx, axis=1)), np.ascontiguousarray(idx, np.int32)


_NONE = -(1 << 62)  # below any value a bid can have


@njit(cache=True, nogil=True)
def _auction(top, short, full, caps, eps, theta):  # pragma: no cover - compiled
    """The slot of each bidder (rows, then dummies); see `auction_assign`. Slots are numbered class
    by class; each class keeps its slots in a min-heap on price (heap[off[c]:off[c + 1]])."""
    k = len(caps)
    off = np.zeros(k + 1, np.int64)
    for c in range(k):
        off[c + 1] = off[c] + caps[c]
    price = np.zeros(off[k], np.int64)
    heap = np.arange(off[k])
    while True:
        slot_of = _phase(top, short, full, caps, off, price, heap, eps)
        if eps == 1:
            return slot_of
        eps = max(1, eps // theta)
        price -= price.min()  # a uniform shift changes no decision, and keeps the prices far from overflow


@njit(cache=True, nogil=True)
def _phase(top, short, full, caps, off, price, heap, eps):  # pragma: no cover - compiled
    """One auction at a fixed epsilon, from no assignment to a complete one; returns each bidder's slot.

    A row scans its classes in `top`/`short` (benefits and classes, best first) and stops once no
    later class can beat the second best (its benefit minus the lowest price, 0, is no more); it
    scans its row of `full` (every class, by index) when the short list runs out first."""
    n, k = top.shape[0], len(caps)
    bidders = off[k]
    slot_of = np.full(bidders, -1, np.int64)
    holder = np.full(bidders, -1, np.int64)
    queue = np.arange(bidders)  # the unassigned bidders, a ring buffer
    head, size = 0, bidders
    values = np.empty(2, np.int64)  # best, second best value
    pick = np.empty(2, np.int64)  # the best class, its benefit
    indifferent = np.zeros(k, np.int64)  # a dummy bidder's benefits
    while size:
        i = queue[head]
        head = (head + 1) % bidders
        size -= 1
        if i >= n:
            _scan_all(indifferent, caps, price, heap, off, values, pick)
        elif not _scan_short(top[i], short[i], caps, price, heap, off, values, pick) and full.shape[0]:
            _scan_all(full[i], caps, price, heap, off, values, pick)
        evicted = _bid(i, values[0], values[1], pick[0], pick[1], caps, off, price, heap, slot_of, holder, eps)
        if evicted >= 0:
            queue[(head + size) % bidders] = evicted
            size += 1
    return slot_of


@njit(cache=True, nogil=True)
def _bid(i, best, second, c, b, caps, off, price, heap, slot_of, holder, eps):  # pragma: no cover - compiled
    """Bidder i takes the cheapest slot of class c (worth `best` to it, benefit b), raising its price
    to what makes i indifferent to its next best slot, plus eps; returns the evicted bidder (or -1)."""
    lo = off[c]
    if caps[c] > 1:  # the class's next cheapest slot is an alternative too
        nxt = price[heap[lo + 1]]
        if caps[c] > 2 and price[heap[lo + 2]] < nxt:
            nxt = price[heap[lo + 2]]
        second = max(second, b - nxt)
    if second == _NONE:  # no alternative at all: any raise will do
        second = best
    s = heap[lo]
    evicted = holder[s]
    if evicted >= 0:
        slot_of[evicted] = -1
    holder[s] = i
    slot_of[i] = s
    price[s] += best - second + eps
    _sift_down(heap, price, lo, caps[c])
    return evicted


@njit(cache=True, nogil=True)
def _scan_short(benefit, classes, caps, price, heap, off, values, pick):  # pragma: no cover - compiled
    """Best and second best value over a row's short list (best benefit first); False when the list
    ran out while a class beyond it might still beat the second best."""
    best, second = _NONE, _NONE
    for j in range(len(benefit)):
        b = benefit[j]
        if b <= second:  # prices are never below 0: no later class is worth more than its benefit
            values[0], values[1] = best, second
            return True
        c = classes[j]
        if caps[c] == 0:
            continue
        v = b - price[heap[off[c]]]
        if v > best:
            second, best = best, v
            pick[0], pick[1] = c, b
        elif v > second:
            second = v
    values[0], values[1] = best, second
    return False


@njit(cache=True, nogil=True)
def _scan_all(benefit, caps, price, heap, off, values, pick):  # pragma: no cover - compiled
    """Best and second best value over every class (`benefit` by class index)."""
    best, second = _NONE, _NONE
    for c in range(len(caps)):
        if caps[c] == 0:
            continue
        v = benefit[c] - price[heap[off[c]]]
        if v > best:
            second, best = best, v
            pick[0], pick[1] = c, benefit[c]
        elif v > second:
            second = v
    values[0], values[1] = best, second


@njit(cache=True, nogil=True)
def _sift_down(heap, price, lo, size):  # pragma: no cover - compiled
    """Restore the min-heap heap[lo:lo + size] after its root's price rose."""
    h = 0
    while True:
        left = 2 * h + 1
        if left >= size:
            return
        child = left
        if left + 1 < size and price[heap[lo + left + 1]] < price[heap[lo + left]]:
            child = left + 1
        if price[heap[lo + child]] >= price[heap[lo + h]]:
            return
        heap[lo + h], heap[lo + child] = heap[lo + child], heap[lo + h]
        h = child


def _fits(cand: np.ndarray, caps: np.ndarray) -> bool:
    """Whether every row can have one of its candidate classes within the caps (a bipartite
    b-matching: greedy, then an augmenting path for each row left over)."""
    return bool(_fits_kernel(np.ascontiguousarray(cand, np.int32), np.asarray(caps, np.int64)))


@njit(cache=True, nogil=True)
def _fits_kernel(cand, caps):  # pragma: no cover - compiled
    n, m = cand.shape
    k = len(caps)
    room = caps.copy()
    cls = np.full(n, -1, np.int64)
    first = np.full(k, -1, np.int64)  # each class's rows, as doubly linked lists
    nxt = np.full(n, -1, np.int64)
    prv = np.full(n, -1, np.int64)
    for i in range(n):
        for j in range(m):
            c = cand[i, j]
            if room[c] > 0:
                room[c] -= 1
                _link(first, nxt, prv, cls, i, c)
                break
    seen = np.zeros(k, np.bool_)
    via = np.empty(k, np.int64)  # the row that would move into the class
    back = np.empty(k, np.int64)  # the class that row leaves (-1: the row being placed)
    order = np.empty(k, np.int64)
    for u in range(n):
        if cls[u] >= 0:
            continue
        seen[:] = False
        top = 0
        for j in range(m):
            c = cand[u, j]
            if not seen[c]:
                seen[c], via[c], back[c], order[top] = True, u, -1, c
                top += 1
        found, at = -1, 0
        while at < top and found < 0:
            c = order[at]
            at += 1
            if room[c] > 0:
                found = c
                break
            r = first[c]
            while r >= 0 and found < 0:
                for j in range(m):
                    d = cand[r, j]
                    if not seen[d]:
                        seen[d], via[d], back[d], order[top] = True, r, c, d
                        top += 1
                r = nxt[r]
        if found < 0:
            return False  # no augmenting path from u: no assignment places every row
        room[found] -= 1
        c = found
        while c >= 0:
            r = via[c]
            if cls[r] >= 0:
                _unlink(first, nxt, prv, cls, r)
            _link(first, nxt, prv, cls, r, c)
            c = back[c]
    return True


@njit(cache=True, nogil=True)
def _link(first, nxt, prv, cls, r, c):  # pragma: no cover - compiled
    cls[r] = c
    prv[r] = -1
    nxt[r] = first[c]
    if first[c] >= 0:
        prv[first[c]] = r
    first[c] = r


@njit(cache=True, nogil=True)
def _unlink(first, nxt, prv, cls, r):  # pragma: no cover - compiled
    c = cls[r]
    if prv[r] >= 0:
        nxt[prv[r]] = nxt[r]
    else:
        first[c] = nxt[r]
    if nxt[r] >= 0:
        prv[nxt[r]] = prv[r]
    cls[r] = -1


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
