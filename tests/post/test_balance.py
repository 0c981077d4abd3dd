"""Balancing: exact counts, flow optimality against brute force, MAP@3 gains on balanced data."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from doodle.cli import main
from doodle.errors import DoodleError
from doodle.evaluate.metrics import map_at_3
from doodle.infer.probabilities import Predictions, read_predictions, write_predictions
from doodle.post.balance import (
    balance_probs,
    expected_counts,
    flow_assign,
    greedy_assign,
    iterative_multipliers,
    proxy_score,
    read_expected,
)


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


def network_simplex_cost(cost: np.ndarray, caps: np.ndarray, candidates: int) -> int | None:
    """The least total cost of an assignment under the caps over each row's `candidates` cheapest
    classes, by networkx's network simplex (None: no assignment fits)."""
    import networkx as nx

    n, k = cost.shape
    g = nx.DiGraph()
    g.add_node("sink", demand=n)
    for c in range(k):
        g.add_edge(("c", c), "sink", capacity=int(caps[c]), weight=0)
    for i in range(n):
        g.add_node(i, demand=-1)
        for c in np.argsort(cost[i], kind="stable")[:candidates]:
            g.add_edge(i, ("c", int(c)), capacity=1, weight=int(cost[i, c]))
    try:
        return int(nx.network_simplex(g)[0])
    except nx.NetworkXUnfeasible:
        return None


def test_flow_matches_network_simplex_with_and_without_candidates():
    from doodle.post.balance import COST_SCALE

    rng = np.random.default_rng(3)
    for trial in range(6):
        n, k = int(rng.integers(40, 160)), int(rng.integers(3, 10))
        p = skewed(n, k, seed=trial)
        if trial % 2:
            p = np.round(p, 2) + 1e-6  # many equal costs
        expected = rng.uniform(0.5, 2.0, k)
        expected *= n * rng.uniform(1.0, 1.2) / expected.sum()
        caps = np.ceil(expected - 1e-9).astype(int)
        cost = np.rint(-np.log(p) * COST_SCALE).astype(np.int64)
        for m in (k, 3, 1):
            best = network_simplex_cost(cost, caps, m)
            if best is None:
                with pytest.raises(DoodleError, match="raise the number of candidates"):
                    flow_assign(p, expected, m)
                continue
            got = flow_assign(p, expected, m)
            assert (np.bincount(got, minlength=k) <= caps).all()
            assert (np.argsort(-p, 1, kind="stable")[:, :m] == got[:, None]).any(1).all()
            assert cost[np.arange(n), got].sum() == best, (trial, m)


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


def kaggle_sized(n: int = 112_199, k: int = 340, seed: int = 11) -> np.ndarray:
    """float32 [N, K] probabilities the size of Kaggle's test set, skewed like a model's: the softmax
    of random logits, a true class raised and a per-class prior bias added."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, (n, k)).astype(np.float32)
    logits[np.arange(n), rng.integers(0, k, n)] += 3.5
    logits += rng.normal(0.0, 0.2, k).astype(np.float32)
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def test_every_method_balances_the_full_test_set():
    p = kaggle_sized()
    n, k = p.shape
    expected = expected_counts(n, k)
    before = proxy_score(p, expected)
    rows = np.random.default_rng(0).choice(n, 200, replace=False)
    order = np.argsort(-p[rows], 1, kind="stable")
    log_p = np.log(p.astype(np.float64))
    totals = {}
    for method in ("iterative", "greedy", "flow"):
        out = balance_probs(p, method)
        assert out.shape == p.shape and out.dtype == np.float32 and np.isfinite(out).all(), method
        assert np.allclose(out.sum(1), 1, atol=1e-4), method
        top1 = out.argmax(1)
        if method == "iterative":  # per-class multipliers: the proxy score never gets worse
            assert proxy_score(top1, expected) < before / 2
            w = out[rows[0]] / p[rows[0]]
            assert np.allclose(out[rows], p[rows] * w / (p[rows] * w).sum(1, keepdims=True), rtol=1e-3, atol=1e-7)
            continue
        counts = np.bincount(top1, minlength=k)
        assert counts.max() <= np.ceil(n / k) and counts.sum() == n, method  # every class capped
        assert proxy_score(top1, expected) < 0.001 * before, method
        rest = np.argsort(-out[rows], 1, kind="stable")[:, 1:]  # the model's order below the assigned class
        for r, row in enumerate(rows):
            assert rest[r].tolist() == [c for c in order[r] if c != top1[row]], method
        totals[method] = log_p[np.arange(n), top1].sum()
    assert totals["flow"] >= totals["greedy"]  # the flow is the optimum under the caps


# Six drawings that all prefer class "a b"; expected counts 3, 2, 1 (uniform would be 2, 2, 2).
SMALL = np.array([[0.9, 0.05, 0.05], [0.8, 0.15, 0.05], [0.7, 0.2, 0.1],
                  [0.6, 0.3, 0.1], [0.5, 0.1, 0.4], [0.4, 0.35, 0.25]])
SMALL_CLASSES = ["a b", "c", "d"]


def best_capped(p: np.ndarray, caps: list[int]) -> tuple[int, ...]:
    """The assignment with the highest total log-probability under the caps, by brute force."""
    fits = (a for a in itertools.product(range(p.shape[1]), repeat=len(p))
            if (np.bincount(a, minlength=p.shape[1]) <= caps).all())
    return max(fits, key=lambda a: np.log(p[np.arange(len(p)), list(a)]).sum())


@pytest.mark.parametrize("method", ["greedy", "flow"])
def test_cli_balance_expected_counts(tmp_path, capsys, method):
    preds = Predictions(np.arange(6, dtype=np.uint64), SMALL.astype(np.float32), SMALL_CLASSES)
    write_predictions(preds, tmp_path / "in.parquet")
    csv = tmp_path / "counts.csv"
    csv.write_text("class,count\nd,1\na_b,3\nc,2\n")  # any order; Kaggle's underscores accepted
    out = tmp_path / "b.parquet"
    assert main(["balance", str(tmp_path / "in.parquet"), "--method", method, "--expected", str(csv),
                 "--out", str(out)]) == 0
    top1 = read_predictions(out).probs.argmax(1)
    assert np.bincount(top1, minlength=3).tolist() == [3, 2, 1]
    # greedy by hand: rows 0-2 take "a b" by confidence; then by second-choice confidence row 4
    # takes "d" (0.4), row 5 "c" (0.35), row 3 "c" (0.3)
    expected = [0, 0, 0, 1, 2, 1] if method == "greedy" else list(best_capped(SMALL, [3, 2, 1]))
    assert top1.tolist() == expected
    assert "-> 0.0" in capsys.readouterr().out  # proxy score against the given counts
    uniform = tmp_path / "u.parquet"
    assert main(["balance", str(tmp_path / "in.parquet"), "--method", method, "--out", str(uniform)]) == 0
    assert np.bincount(read_predictions(uniform).probs.argmax(1)).tolist() == [2, 2, 2]


def test_cli_balance_expected_errors(tmp_path):
    write_predictions(Predictions(np.arange(6, dtype=np.uint64), SMALL.astype(np.float32), SMALL_CLASSES),
                      tmp_path / "in.parquet")
    for name, text in (("missing.csv", "a b,3\nc,3\n"), ("few.csv", "a b,2\nc,2\nd,1\n")):
        (tmp_path / name).write_text(text)  # no count for "d"; counts adding up to 5 < 6 drawings
        assert main(["balance", str(tmp_path / "in.parquet"), "--method", "greedy", "--expected",
                     str(tmp_path / name), "--out", str(tmp_path / "x.parquet")]) == 2
    assert not (tmp_path / "x.parquet").exists()
