"""Balancing: exact counts, flow optimality against brute force, MAP@3 gains on balanced data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from doodle.balance import (
    balance_probs,
    expected_counts,
    flow_assign,
    greedy_assign,
    iterative_multipliers,
    proxy_score,
    read_expected,
)
from doodle.cli import main
from doodle.errors import DoodleError
from doodle.metrics import map_at_3
from doodle.predictions_io import Predictions, read_predictions, write_predictions


def skewed(n: int = 60, k: int = 3, seed: int = 0) -> np.ndarray:
    """Random probabilities with class 0 favoured three times over."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k) * 0.7, size=n)
    p[:, 0] *= 3
    return p / p.sum(1, keepdims=True)


def biased_balanced_set(n_per_class: int = 40, k: int = 6, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A class-balanced labelled set scored by a model whose prior over-weights class 0 (as a model
    trained on data with too many cats would): balancing should undo the bias."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n_per_class)
    logits = rng.normal(0, 1.0, size=(len(y), k))
    logits[np.arange(len(y)), y] += 1.5
    logits[:, 0] += 1.2  # the prior shift
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), y


def test_proxy_score_by_hand():
    top1 = np.array([0, 0, 0, 1])
    assert proxy_score(top1, np.array([2.0, 2.0])) == 2.0  # |3-2| + |1-2|
    assert proxy_score(np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([1.0, 1.0])) == 0.0


@pytest.mark.parametrize("method", ["iterative", "greedy", "flow"])
def test_each_method_reaches_exact_counts(method):
    p = skewed()
    assert np.bincount(p.argmax(1), minlength=3)[0] > 30  # unbalanced before
    out = balance_probs(p, method, [20, 20, 20])
    assert np.bincount(out.argmax(1), minlength=3).tolist() == [20, 20, 20]
    # the model's order of the other guesses is kept for greedy and flow
    if method != "iterative":
        second = np.argsort(-out, 1, kind="stable")[:, 1:]
        rows = np.arange(len(p))
        for i in rows:
            rest = [c for c in np.argsort(-p[i], kind="stable") if c != out[i].argmax()]
            assert second[i].tolist() == rest


def test_uneven_expected_counts_and_many_classes():
    p = skewed(n=300, k=12, seed=3)
    expected = np.array([60, 40, 30, 30, 20, 20, 20, 20, 20, 20, 10, 10], float)
    for method in ("greedy", "flow"):
        counts = np.bincount(balance_probs(p, method, expected).argmax(1), minlength=12)
        assert counts.tolist() == expected.astype(int).tolist(), method
    w = iterative_multipliers(p, expected)
    assert proxy_score((p * w).argmax(1), expected) <= 4  # iterative gets (close to) exact


def test_greedy_known_answer():
    # caps 1 each. Top-1 round: all want class 0, drawing 0 is the most confident and takes it.
    # Top-2 round: drawings 1 and 2 both want class 1; drawing 2 is more confident (0.3 > 0.15)
    # and takes it. Top-3 round: drawing 1 gets class 2.
    p = np.array([[0.9, 0.05, 0.05], [0.8, 0.15, 0.05], [0.6, 0.3, 0.1]])
    assert greedy_assign(p, np.ones(3)).tolist() == [0, 2, 1]


def test_flow_is_optimal_against_brute_force():
    rng = np.random.default_rng(7)
    for trial in range(5):
        n, k = 7, 3
        p = rng.dirichlet(np.ones(k), size=n)
        caps = np.array([3, 2, 2]) if trial % 2 else np.array([4, 2, 1])
        cost = -np.log(p)
        best = min(sum(cost[i, a[i]] for i in range(n)) for a in itertools.product(range(k), repeat=n)
                   if (np.bincount(a, minlength=k) <= caps).all())
        got = flow_assign(p, caps.astype(float))
        assert (np.bincount(got, minlength=k) <= caps).all()
        assert sum(cost[i, got[i]] for i in range(n)) == pytest.approx(best, abs=1e-4)


@pytest.mark.parametrize("method", ["iterative", "greedy", "flow"])
def test_balancing_raises_map3_on_a_balanced_set(method):
    p, y = biased_balanced_set()
    before = map_at_3(p, y)
    after = map_at_3(balance_probs(p, method), y)
    assert after > before + 0.01, (before, after)


def test_errors_and_expected_csv(tmp_path):
    with pytest.raises(DoodleError, match="fewer than"):
        greedy_assign(skewed(), np.array([10.0, 10.0, 10.0]))
    with pytest.raises(DoodleError, match="unknown balancing"):
        balance_probs(skewed(), "magic")
    with pytest.raises(DoodleError, match="2 values for 3"):
        expected_counts(60, 3, [1, 2])
    csv = tmp_path / "e.csv"
    csv.write_text("class,count\nThe_Eiffel_Tower,5\ncat,7\n")
    assert read_expected(str(csv), ["The Eiffel Tower", "cat"]).tolist() == [5.0, 7.0]
    with pytest.raises(DoodleError, match="dog"):
        read_expected(str(csv), ["cat", "dog"])


def test_cli_balance(tmp_path, capsys):
    p, y = biased_balanced_set()
    classes = [f"c{i}" for i in range(p.shape[1])]
    preds = Predictions(np.arange(len(y), dtype=np.uint64) + 2**63, p.astype(np.float32), classes,
                        [classes[i] for i in y])
    write_predictions(preds, tmp_path / "in.parquet")
    assert main(["balance", str(tmp_path / "in.parquet"), "--method", "flow",
                 "--out", str(tmp_path / "b.parquet")]) == 0
    out = read_predictions(tmp_path / "b.parquet")
    assert np.bincount(out.probs.argmax(1)).tolist() == [40] * 6
    assert out.key_ids.tolist() == preds.key_ids.tolist() and out.words == preds.words
    assert "MAP@3" in capsys.readouterr().out
    assert main(["balance", str(tmp_path / "in.parquet"), "--out", str(tmp_path / "b.txt")]) == 2
