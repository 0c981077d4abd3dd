"""Time each balancing method on a synthetic input the size of Kaggle's test set.

    .venv/bin/python benchmarks/balance_bench.py                       # 112,199 x 340, 3 repeats
    .venv/bin/python benchmarks/balance_bench.py --n 20000 --methods flow --repeats 1

The input is seeded and skewed like real predictions: a class-balanced set (the test set was
balanced) scored by the softmax of random logits, the true class raised (about 70 % top-1
accuracy) and a per-class bias added (a model whose prior favours some classes), so the top-1
counts are uneven before balancing. Each method runs `--repeats` times; the median seconds are
printed with the proxy score (sum over classes of |top-1 count - N/K|) before and after, and
MAP@3 before and after (the labels are known here). The first run of a method includes numba's
compilation when its cache is cold; the median hides it from three repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from doodle.evaluate.metrics import map_at_3
from doodle.post.balance import METHODS, balance_probs, expected_counts, proxy_score


def synthetic(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [N, K] probabilities, int64 [N] labels): see the module docstring."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k
    rng.shuffle(labels)
    logits = rng.normal(0.0, 1.0, (n, k)).astype(np.float32)
    logits[np.arange(n), labels] += 3.5
    logits += rng.normal(0.0, 0.2, k).astype(np.float32)[None, :]  # the per-class prior bias
    logits -= logits.max(1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(1, keepdims=True)
    return probs, labels


def time_method(probs: np.ndarray, method: str, repeats: int, candidates: int | None) -> tuple[float, np.ndarray]:
    """(median seconds, the scores of the last run)."""
    seconds, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = balance_probs(probs, method, candidates=candidates)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=112_199, help="drawings (default 112,199: Kaggle's test set)")
    parser.add_argument("--k", type=int, default=340, help="classes (default 340)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method; the median is shown (default 3)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="methods to time")
    parser.add_argument("--candidates", type=int, default=None, help="flow: classes per drawing (default all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic input")
    args = parser.parse_args()
    probs, labels = synthetic(args.n, args.k, args.seed)
    expected = expected_counts(args.n, args.k)
    print(f"input: {args.n:,} x {args.k} (seed {args.seed}), proxy score {proxy_score(probs, expected):.1f}, "
          f"MAP@3 {map_at_3(probs, labels):.4f}; median of {args.repeats} run(s)")
    print(f"{'method':<10} {'seconds':>8} {'proxy before':>13} {'proxy after':>12} {'MAP@3 after':>12}")
    for method in args.methods:
        seconds, out = time_method(probs, method, args.repeats, args.candidates)
        print(f"{method:<10} {seconds:8.2f} {proxy_score(probs, expected):13.1f} {proxy_score(out, expected):12.1f} "
              f"{map_at_3(out, labels):12.4f}", flush=True)


if __name__ == "__main__":
    main()
