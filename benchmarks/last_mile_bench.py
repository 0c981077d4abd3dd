"""The last mile on real data: MAP@3 of a single model, + TTA, + checkpoint averaging, + a second
model family, + LightGBM stacking, + balancing, all on the same held-out drawings.

    .venv/bin/python benchmarks/last_mile_bench.py                 # defaults: /work/runs, /work/stores/q15
    .venv/bin/python benchmarks/last_mile_bench.py --help

The held-out drawings: the store's val split is cut in two halves by a hash of key_id
(`doodle.post.ensemble.holdout_halves`); ensemble weights and the stacker are fitted on the "fit" half,
and every figure is measured on the "evaluate" half, subsampled to the same number of drawings per
class (the size of its smallest class) because balancing assumes a balanced test set, as Kaggle's
was.

Two more tables measure balancing alone with the model of a 345-class store (few drawings per
class, a weak model: closer to Kaggle's 340 classes):

* oracle subset (`oracle_subset`): --per-class345 val drawings of each class that has at least
  as many, the scores restricted to those classes and renormalised, and as expected counts the
  subset's own true counts. Both the class list and the counts come from the labels: an upper
  bound of what balancing can add, not a figure a submission could reach;
* no oracle (`all_classes_uniform`): every labelled val drawing, every class of the model with
  its scores as predicted, and uniform expected counts (drawings / classes each) that use nothing
  of the labels: what balancing does when, as on Kaggle, only the test set's size is known.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from doodle.errors import DoodleError
from doodle.evaluate.metrics import map_at_3
from doodle.evaluate.report import predict_in_memory
from doodle.infer.probabilities import Predictions
from doodle.post.balance import balance_probs, proxy_score
from doodle.post.ensemble import Stacker, blend, fit_weights, holdout_halves


def balanced_rows(labels: np.ndarray, key_ids: np.ndarray, per_class: int | None = None,
                  n_classes: int | None = None) -> np.ndarray:
    """Row indices taking the same number of drawings of every class (by key_id order, so the
    choice does not depend on the file's order); classes with fewer drawings are left out."""
    k = n_classes or labels.max() + 1
    counts = np.bincount(labels, minlength=k)
    n = int(per_class or counts[counts > 0].min())
    rows = []
    for c in range(k):
        idx = np.flatnonzero(labels == c)
        if len(idx) >= n:
            rows.append(idx[np.argsort(key_ids[idx], kind="stable")[:n]])
    return np.sort(np.concatenate(rows)) if rows else np.zeros(0, np.int64)


@dataclass(frozen=True)
class BalancingSet:
    """What one balancing table is measured on: rows of the predictions, the class columns kept,
    the labels as indices into those columns, and the expected top-1 count of each."""

    rows: np.ndarray
    columns: np.ndarray
    labels: np.ndarray
    expected: np.ndarray

    def scores(self, probs: np.ndarray) -> np.ndarray:
        """The scores of the rows over the kept classes, renormalised when some were dropped."""
        out = probs[self.rows][:, self.columns]
        return out / out.sum(1, keepdims=True) if len(self.columns) < probs.shape[1] else out


def oracle_subset(labels: np.ndarray, key_ids: np.ndarray, n_classes: int, per_class: int) -> BalancingSet:
    """`per_class` drawings of each class with at least as many (`balanced_rows`), only those
    classes, and their true counts as expected counts: chosen with the labels (an oracle)."""
    labelled = np.flatnonzero(labels >= 0)
    rows = labelled[balanced_rows(labels[labelled], key_ids[labelled], per_class, n_classes)]
    kept = np.unique(labels[rows])
    return BalancingSet(rows, kept, np.searchsorted(kept, labels[rows]), np.full(len(kept), float(per_class)))


def all_classes_uniform(labels: np.ndarray, n_classes: int) -> BalancingSet:
    """Every labelled drawing, every class, expected counts N / K each: the labels pick the
    drawings that can be scored and nothing else (the expected counts ignore them)."""
    rows = np.flatnonzero(labels >= 0)
    return BalancingSet(rows, np.arange(n_classes), labels[rows], np.full(n_classes, len(rows) / n_classes))


def balance(probs: np.ndarray, method: str, expected: np.ndarray, candidates: int = 10) -> np.ndarray:
    """`balance_probs` toward `expected`; flow over each drawing's `candidates` best classes, or
    over all of them when those cannot fill the class caps."""
    if method != "flow":
        return balance_probs(probs, method, expected)
    try:
        return balance_probs(probs, method, expected, candidates=candidates)
    except DoodleError:
        return balance_probs(probs, method, expected)


def print_balancing(title: str, probs: np.ndarray, s: BalancingSet) -> None:
    """One balancing table: the model's MAP@3 and proxy score on `s`, then each method's."""
    scores = s.scores(probs)
    print(f"\n{title}")
    print(f"{'pipeline':<78} {'MAP@3':>7} {'proxy':>7}")
    print(f"{'single model':<78} {map_at_3(scores, s.labels):7.4f} {proxy_score(scores, s.expected):7.1f}")
    for method in ("iterative", "greedy", "flow"):
        out = balance(scores, method, s.expected)
        name = f"+ balancing ({method})"
        print(f"{name:<78} {map_at_3(out, s.labels):7.4f} {proxy_score(out, s.expected):7.1f}")


def predict(run: Path, data: Path, **options) -> Predictions:
    """In-memory predictions of a run on a store split (options as `predict_in_memory`'s)."""
    return predict_in_memory(run, [data], progress=False, **options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=Path("/work/runs"), help="folder of trained runs")
    parser.add_argument("--store", type=Path, default=Path("/work/stores/q15"), help="store whose val split is used")
    parser.add_argument("--cnn", default="cpu10t-q15", help="image model run (in --runs), with snapshots")
    parser.add_argument("--seq", default="seq-q15", help="second family: the stroke-sequence run (in --runs)")
    parser.add_argument("--average", type=int, default=3, help="average the CNN's last K snapshots (default 3)")
    parser.add_argument("--store345", default="/work/stores/q345", help="345-class store ('' skips)")
    parser.add_argument("--run345", default="cpu10t-q345", help="model of the 345-class store (in --runs)")
    parser.add_argument("--per-class345", type=int, default=5, help="drawings per class of the 345-class subset")
    args = parser.parse_args()
    started = time.time()
    val = args.store / "val"
    cnn, seq = args.runs / args.cnn, args.runs / args.seq

    base = predict(cnn, val)
    flip = predict(cnn, val, tta=["flip"])
    flip_log = predict(cnn, val, tta=["flip"], tta_mean="log")
    flip_drop = predict(cnn, val, tta=["flip", "dropout"])
    avg = predict(cnn, val, checkpoint=f"last:{args.average}", tta=["flip"])
    seq_flip = predict(seq, val, tta=["flip"])
    for p in (flip, flip_log, flip_drop, avg, seq_flip):
        assert np.array_equal(p.key_ids, base.key_ids)
    y = base.labels()
    fit, ev = holdout_halves(base.key_ids)
    bal = ev[balanced_rows(y[ev], base.key_ids[ev])]
    y_fit, y_ev = y[fit], y[bal]
    per_class = np.bincount(y_ev).max()

    # the better CNN input for the ensemble, chosen on the fit half only
    cnn_best = max((flip, avg), key=lambda p: map_at_3(p.probs[fit], y_fit))
    models = [cnn_best.probs, seq_flip.probs]
    w = fit_weights([m[fit] for m in models], y_fit, "map3")
    blended = blend([m[bal] for m in models], w)
    equal = blend([m[bal] for m in models])
    stacker = Stacker().fit([m[fit] for m in models], y_fit, base.time_features[fit])
    stacked = stacker.predict([m[bal] for m in models], base.time_features[bal])

    rows = [
        ("single model (CNN best.pt)", base.probs[bal]),
        ("+ TTA (flip)", flip.probs[bal]),
        ("  (TTA flip, geometric mean of the views)", flip_log.probs[bal]),
        ("  (TTA flip + stroke dropout)", flip_drop.probs[bal]),
        (f"+ checkpoint averaging (last {args.average} snapshots, TTA flip)", avg.probs[bal]),
        ("  (sequence model alone, TTA flip)", seq_flip.probs[bal]),
        ("  (two families, equal weights)", equal),
        (f"two-family ensemble (CNN + sequence, weights {w[0]:.2f}/{w[1]:.2f} fitted for MAP@3)", blended),
        ("+ LightGBM stacking (top-10 candidates, time features)", stacked),
    ]
    for method in ("iterative", "greedy", "flow"):
        rows.append((f"+ balancing ({method}) of the stacked output", balance_probs(stacked, method)))
    print(f"held-out: {len(bal)} drawings of {args.store}/val ({per_class} per class, {y.max() + 1} classes; "
          f"fit half: {len(fit)} drawings)")
    print(f"{'pipeline':<78} {'MAP@3':>7} {'proxy':>7}")
    expected = np.full(y.max() + 1, len(bal) / (y.max() + 1))
    for name, probs in rows:
        print(f"{name:<78} {map_at_3(probs, y_ev):7.4f} {proxy_score(probs, expected):7.1f}")
    print("(the CNN input of the ensemble: "
          f"{'checkpoint averaging' if cnn_best is avg else 'best.pt'} + TTA flip, chosen on the fit half)")

    if args.store345:
        p345 = predict(args.runs / args.run345, Path(args.store345) / "val")
        y345, k345 = p345.labels(), len(p345.classes)
        oracle = oracle_subset(y345, p345.key_ids, k345, args.per_class345)
        print_balancing(
            f"balancing, oracle subset of {args.store345}/val (model {args.run345}, {k345} classes): "
            f"{len(oracle.rows)} drawings, {args.per_class345} per class of the {len(oracle.columns)} classes "
            f"with at least {args.per_class345} val drawings, scores renormalised over those classes, expected "
            f"counts their true {args.per_class345} each (oracle)", p345.probs, oracle)
        honest = all_classes_uniform(y345, k345)
        print_balancing(
            f"balancing, no oracle, on {args.store345}/val (model {args.run345}): all {len(honest.rows)} labelled "
            f"drawings, all {k345} classes of the model, expected counts uniform "
            f"({len(honest.rows)}/{k345} = {honest.expected[0]:.2f} each)", p345.probs, honest)
    print(f"\n({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
