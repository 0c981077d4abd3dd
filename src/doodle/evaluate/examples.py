"""The drawings a report shows: the worst mistakes and the surest right answers, kept while streaming.

    keeper = ExampleKeeper(12)
    for probs, labels, key_ids, drawings in batches:        # drawings: None for a predictions file
        keeper.update(probs, labels, key_ids, drawings)
    keeper.worst, keeper.best                                # at most 12 each, in report order

The worst mistakes are the drawings whose first guess is wrong, surest wrong guess first (ties: the
lower probability of the right word, then the earlier drawing); the best are the right first
guesses, surest first (ties: the earlier drawing). Memory: at most 2 x k `Example`s (their top-3
guesses and, when the drawings are given, the strokes of only those), whatever the number of
drawings: each batch offers at most k candidates per list and the lists are cut back to k.

`DrawingTap` lets a model's drawings reach the keeper: it remembers each drawing read until its
batch of predictions arrives (a model predicts in input order, one row per drawing), so no second
pass over the data is needed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from doodle.data.drawing import Drawing
from doodle.evaluate.metrics import topk

log = logging.getLogger(__name__)

THUMBNAILS = 12
"""Drawings kept per list (worst mistakes, surest right answers)."""


@dataclass
class Example:
    """One drawing shown in the report, with what the model guessed."""

    position: int
    """Its place among the labelled drawings evaluated (0 = first)."""
    key_id: int | None
    """Its key id (None when the scores came without ids)."""
    label: int
    """The true class index."""
    guesses: list[tuple[int, float]]
    """The top-3 (class index, probability), best first."""
    truth: float
    """The probability given to the true class."""
    strokes: list[np.ndarray] | None = None
    """float32 (n, 2) x, y per stroke; None when the drawing was not available."""

    @property
    def confidence(self) -> float:
        """The probability of the first guess (NaN counted as 0)."""
        return _finite(self.guesses[0][1])


def _finite(p: Any) -> Any:
    """NaN probabilities as 0 (no probability is lower), for sort keys: a float or an array."""
    return np.nan_to_num(p, nan=0.0) if isinstance(p, np.ndarray) else 0.0 if np.isnan(p) else float(p)


def worst_key(e: Example) -> tuple[float, float, int]:
    """Sort key of a mistake: surest wrong guess first, then the lower probability of the truth."""
    return (-e.confidence, _finite(e.truth), e.position)


def best_key(e: Example) -> tuple[float, int]:
    """Sort key of a right answer: surest first, then the earlier drawing."""
    return (-e.confidence, e.position)


def first_guess(probs: np.ndarray) -> np.ndarray:
    """int64 [B] the best class per row, ties to the lower index, NaN last (`doodle.evaluate.metrics.topk`'s
    first column, without sorting the rows)."""
    scores = np.where(np.isnan(probs), -np.inf, probs)
    return scores.argmax(1)


class ExampleKeeper:
    """The k worst mistakes and the k surest right answers of a stream of labelled scores."""

    def __init__(self, k: int = THUMBNAILS):
        self.k = k
        self.worst: list[Example] = []
        self.best: list[Example] = []
        self.seen = 0

    def update(self, probs: np.ndarray, labels: np.ndarray, key_ids: Sequence[int] | None = None,
               drawings: Sequence[Drawing] | None = None) -> None:
        """Offer one batch: scores [B, K], true classes [B], and optionally their key ids and drawings."""
        probs = np.asarray(probs, np.float64)
        labels = np.asarray(labels, np.int64)
        top1 = first_guess(probs)
        rows = np.arange(len(labels))
        conf, truth = _finite(probs[rows, top1]), _finite(probs[rows, labels])  # the sort keys of the lists
        position = self.seen + rows
        wrong = _chosen(top1 != labels, (position, truth, -conf), self.k)
        right = _chosen(top1 == labels, (position, -conf), self.k)
        batch = _Batch(probs, labels, position, key_ids, drawings)
        self.worst = sorted(self.worst + batch.examples(wrong), key=worst_key)[: self.k]
        self.best = sorted(self.best + batch.examples(right), key=best_key)[: self.k]
        self.seen += len(labels)


def _chosen(mask: np.ndarray, keys: tuple[np.ndarray, ...], k: int) -> np.ndarray:
    """The rows of `mask` that come first by `keys` (the last key is the primary one), at most k."""
    rows = np.flatnonzero(mask)
    order = np.lexsort(tuple(key[rows] for key in keys))
    return rows[order[:k]]


@dataclass
class _Batch:
    """One batch's arrays, to build the `Example`s of a few of its rows."""

    probs: np.ndarray
    labels: np.ndarray
    position: np.ndarray
    key_ids: Sequence[int] | None
    drawings: Sequence[Drawing] | None

    def examples(self, rows: np.ndarray) -> list[Example]:
        if not len(rows):
            return []
        guesses = topk(self.probs[rows], 3)
        return [self._example(int(r), g) for r, g in zip(rows, guesses, strict=True)]

    def _example(self, row: int, guesses: np.ndarray) -> Example:
        probs, label = self.probs[row], int(self.labels[row])
        key_id = None if self.key_ids is None else int(self.key_ids[row])
        strokes = None if self.drawings is None else xy_strokes(self.drawings[row])
        return Example(int(self.position[row]), key_id, label, [(int(c), float(probs[c])) for c in guesses],
                       float(probs[label]), strokes)


def xy_strokes(drawing: Drawing) -> list[np.ndarray]:
    """The drawing's strokes as float32 x, y only (time is not drawn), so a kept example stays small."""
    return [np.asarray(s[:, :2], np.float32) for s in drawing.strokes]


class DrawingTap:
    """Remembers the drawings fed to a model until `take` collects those of each predicted batch.

    A model predicts in input order with one row per drawing, so the next predicted batch of B rows is
    the oldest B drawings remembered; their key ids are checked, and on any mismatch the tap gives up
    (the report then says the drawings are not shown). It holds only the drawings read ahead of the
    predictions (the reader's prefetch), which the pipeline holds anyway.
    """

    def __init__(self) -> None:
        self._queue: deque[Drawing] = deque()  # appended by the reader thread, popped by the consumer
        self.broken = False

    def feed(self, drawings: Iterable[Drawing]) -> Iterator[Drawing]:
        """The drawings, unchanged, each remembered as it passes."""
        for drawing in drawings:
            if not self.broken:  # once broken nothing is collected, so nothing may pile up
                self._queue.append(drawing)
            yield drawing

    def take(self, key_ids: Sequence[int]) -> list[Drawing] | None:
        """The drawings of the batch with these key ids (in order), or None once the tap is broken."""
        if self.broken or len(self._queue) < len(key_ids):
            return self._give_up()
        drawings = [self._queue.popleft() for _ in range(len(key_ids))]
        if any(d.key_id != int(k) for d, k in zip(drawings, key_ids, strict=True)):
            return self._give_up()
        return drawings

    def _give_up(self) -> None:
        if not self.broken:
            log.warning("the drawings no longer match the predictions: the report shows no thumbnails")
        self.broken = True
        self._queue.clear()
        return None
