"""LightGBM stacking over each drawing's top candidate classes (1st and 21st place).

For every drawing, the `candidates` best classes of the models' average become one row each
(group = the drawing). Features of a (drawing, candidate) row:

* per model: its probability of the candidate, the candidate's rank in that model, and the
  probability relative to the model's top probability;
* the blend: the average probability and the candidate's rank in it;
* the candidate's class index (categorical), so that timing can speak for some classes only;
* the drawing's timing from its raw strokes (`doodle.preprocess.time_features`), total drawing time
  first (the strongest single feature of 1st place), then the others.

Objective "binary" (is this the true class?) or "lambdarank" (rank the true class first within
the group). Prediction re-ranks the candidates by the booster's score; the other classes keep the
blend's order below them. Fit on one labelled holdout, evaluate on another (`holdout_halves`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from doodle.errors import DoodleError
from doodle.preprocess import TIME_FEATURES

TIME_ORDER = [TIME_FEATURES.index("log_total_s")] + [i for i, n in enumerate(TIME_FEATURES) if n != "log_total_s"]
"""Time feature columns, total drawing time first."""


@dataclass
class StackConfig:
    """How the stacker is built."""

    candidates: int = 10
    """Candidate classes per drawing (the blend's best)."""
    objective: str = "binary"
    """binary or lambdarank."""
    rounds: int = 200
    """Boosting rounds."""
    learning_rate: float = 0.05
    """Shrinkage per round."""
    num_leaves: int = 15
    """Leaves per tree."""
    min_data_in_leaf: int = 20
    """Least rows in a leaf (regularises small holdouts)."""
    seed: int = 0
    """LightGBM's seed (bagging, feature sampling)."""


def _candidate_ranks(p: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """int [N, C] rank of each candidate class in each row of p (0 = best, ties to the lower index):
    the classes scoring higher plus the equal ones of lower index, without sorting whole rows."""
    pc = np.take_along_axis(p, cand, axis=1)[:, :, None]
    higher = (p[:, None, :] > pc).sum(-1)
    index = np.arange(p.shape[1])
    tied = ((p[:, None, :] == pc) & (index[None, None, :] < cand[:, :, None])).sum(-1)
    return higher + tied


def features(probs: Sequence[np.ndarray], time_features: np.ndarray | None, candidates: int
             ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X float32 [N*C, F], candidate classes int64 [N, C], feature names) for the stacker."""
    probs = [np.asarray(p, np.float32) for p in probs]
    n, k = probs[0].shape
    c = max(1, min(candidates, k))
    mean = np.mean(probs, axis=0)
    cand = np.argsort(-mean, axis=1, kind="stable")[:, :c]
    rows = np.arange(n)[:, None]
    cols, names = [], []
    for m, p in enumerate(probs):
        pc = p[rows, cand]
        cols += [pc, _candidate_ranks(p, cand).astype(np.float32), pc / np.maximum(p.max(1, keepdims=True), 1e-12)]
        names += [f"p{m}", f"rank{m}", f"rel{m}"]
    cols += [mean[rows, cand], np.broadcast_to(np.arange(c, dtype=np.float32), (n, c)), cand.astype(np.float32)]
    names += ["p_mean", "rank_mean", "class"]
    tf = np.zeros((n, len(TIME_FEATURES)), np.float32) if time_features is None else np.asarray(time_features)
    for j in TIME_ORDER:
        cols.append(np.broadcast_to(tf[:, j:j + 1], (n, c)))
        names.append(f"time_{TIME_FEATURES[j]}")
    x = np.stack([np.asarray(col, np.float32).reshape(-1) for col in cols], axis=1)
    return x, cand, names


class TrainingMatrix:
    """The stacker's training rows, filled batch by batch into one preallocated float32 array:
    drawings x candidates rows of `features` columns, the only copy of the holdout kept."""

    def __init__(self, rows: int, columns: int, names: list[str]):
        self.x: np.ndarray | None = np.empty((rows, columns), np.float32)
        self.y = np.empty(rows, np.float32)
        self.names = names
        self.filled = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        if self.x is None or self.filled + len(x) > len(self.x):
            raise ValueError(f"more training rows than the {len(self.y):,} planned")
        self.x[self.filled:self.filled + len(x)] = x
        self.y[self.filled:self.filled + len(x)] = y
        self.filled += len(x)

    def release(self) -> None:
        """Drop the features (LightGBM keeps its own binned copy once its dataset is built)."""
        self.x = None


StackBatch = tuple[Sequence[np.ndarray], np.ndarray, np.ndarray | None]
"""One batch of a labelled holdout: [B, K] probabilities per model, labels [B], time features [B, 6] or None."""


class Stacker:
    """A LightGBM re-ranker of the models' candidate classes (see the module docstring)."""

    def __init__(self, config: StackConfig | None = None):
        self.config = config or StackConfig()
        self.booster = None
        self.n_models = 0
        self.n_classes = 0

    def fit(self, probs: Sequence[np.ndarray], labels: np.ndarray, time_features: np.ndarray | None = None
            ) -> Stacker:
        """Train on a labelled holdout: `probs` one [N, K] array per model, `labels` int [N]."""
        return self.fit_batches([(probs, labels, time_features)], len(labels))

    def fit_batches(self, batches: Iterable[StackBatch], drawings: int) -> Stacker:
        """Train on a labelled holdout of `drawings` drawings given batch by batch (`StackBatch`):
        the features of each batch go into the training matrix (`TrainingMatrix`, drawings x
        candidates rows) and the batch is let go, so memory is that matrix, whatever the holdout's size."""
        matrix = None
        for probs, labels, time_features in batches:
            labels = np.asarray(labels, np.int64)
            if not len(labels) or (labels < 0).any():
                raise DoodleError("stacking needs a holdout whose every drawing has a known class")
            x, cand, names = features(probs, time_features, self.config.candidates)
            if matrix is None:
                matrix = TrainingMatrix(drawings * cand.shape[1], x.shape[1], names)
                self.n_models, self.n_classes = len(probs), probs[0].shape[1]
            matrix.add(x, (cand == labels[:, None]).astype(np.float32).reshape(-1))
        if matrix is None:
            raise DoodleError("stacking needs a holdout whose every drawing has a known class")
        return self._train(matrix, cand.shape[1])

    def _train(self, matrix: TrainingMatrix, candidates: int) -> Stacker:
        import lightgbm as lgb

        cfg = self.config
        y = matrix.y[:matrix.filled]
        if y.sum() == 0 or y.sum() == len(y):
            raise DoodleError("stacking: the holdout's true classes are never (or always) among the candidates")
        params = {"objective": cfg.objective, "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves,
                  "min_data_in_leaf": cfg.min_data_in_leaf, "seed": cfg.seed, "verbose": -1, "num_threads": 2,
                  "deterministic": True, "force_row_wise": True}
        group = None
        if cfg.objective == "lambdarank":
            params["eval_at"] = [3]
            group = np.full(len(y) // candidates, candidates)
        elif cfg.objective != "binary":
            raise DoodleError(f"unknown stacking objective {cfg.objective!r}; choose binary or lambdarank")
        data = lgb.Dataset(matrix.x[:matrix.filled], y, group=group, feature_name=matrix.names,
                           categorical_feature=["class"], free_raw_data=True, params=params).construct()
        matrix.release()
        self.booster = lgb.train(params, data, num_boost_round=cfg.rounds)
        return self

    def predict(self, probs: Sequence[np.ndarray], time_features: np.ndarray | None = None) -> np.ndarray:
        """float32 [N, K] scores: candidates re-ranked by the booster, above the other classes."""
        if self.booster is None:
            raise RuntimeError("fit the stacker first")
        if len(probs) != self.n_models or probs[0].shape[1] != self.n_classes:
            raise DoodleError(f"the stacker was fitted on {self.n_models} model(s) over {self.n_classes} classes")
        x, cand, _ = features(probs, time_features, self.config.candidates)
        score = self.booster.predict(x).reshape(cand.shape)
        if self.config.objective == "lambdarank":
            score = 1.0 / (1.0 + np.exp(-score))
        mean = np.mean([np.asarray(p, np.float64) for p in probs], axis=0)
        out = mean * 1e-6  # the non-candidates, in the blend's order, below every candidate
        np.put_along_axis(out, cand, 1e-3 + score, axis=1)
        return (out / out.sum(1, keepdims=True)).astype(np.float32)
