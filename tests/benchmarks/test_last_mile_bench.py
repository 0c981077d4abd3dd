"""benchmarks/last_mile_bench.py: which drawings, classes and expected counts each balancing table
is measured on, on tiny synthetic predictions (the benchmark itself needs trained runs)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("last_mile_bench")


# 5 classes: class 0 has 3 drawings, 1 has 2, 2 has 1, 3 has 3, 4 has none; one row is unlabelled
LABELS = np.array([0, 1, 3, 0, 2, 3, -1, 1, 0, 3])
KEY_IDS = np.array([50, 11, 32, 20, 40, 31, 99, 10, 30, 33], np.uint64)


def test_oracle_subset_keeps_the_classes_with_enough_drawings(bench):
    s = bench.oracle_subset(LABELS, KEY_IDS, 5, per_class=2)
    assert list(s.columns) == [0, 1, 3]  # class 2 (one drawing) and class 4 (none) are left out
    # the two lowest key_ids of each kept class, in row order
    assert list(s.rows) == [1, 2, 3, 5, 7, 8]
    assert list(s.columns[s.labels]) == list(LABELS[s.rows])
    assert list(s.expected) == [2.0, 2.0, 2.0]  # the subset's true counts: an oracle
    probs = np.full((len(LABELS), 5), 0.2)
    scores = s.scores(probs)
    assert scores.shape == (6, 3)
    np.testing.assert_allclose(scores.sum(1), 1.0)  # renormalised over the kept classes


def test_no_oracle_uses_every_class_and_ignores_the_counts(bench):
    s = bench.all_classes_uniform(LABELS, 5)
    assert list(s.rows) == [0, 1, 2, 3, 4, 5, 7, 8, 9]  # every labelled drawing
    assert list(s.columns) == [0, 1, 2, 3, 4]  # every class, the empty one too
    assert list(s.labels) == list(LABELS[s.rows])
    np.testing.assert_allclose(s.expected, [9 / 5] * 5)
    # other labels, as many drawings: the same expected counts (nothing learnt from the labels)
    other = bench.all_classes_uniform(np.array([4] * 9 + [-1]), 5)
    np.testing.assert_array_equal(other.expected, s.expected)
    probs = np.random.default_rng(0).dirichlet(np.ones(5), len(LABELS)).astype(np.float32)
    np.testing.assert_array_equal(s.scores(probs), probs[s.rows])  # scores as predicted


def test_the_tables_print_every_method(bench, capsys):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(6), [7, 6, 5, 5, 2, 0])
    probs = rng.dirichlet(np.ones(6) * 0.3, len(labels))
    probs[np.arange(len(labels)), labels] += 0.5
    probs /= probs.sum(1, keepdims=True)
    bench.print_balancing("oracle", probs, bench.oracle_subset(labels, np.arange(len(labels)), 6, 5))
    bench.print_balancing("no oracle", probs, bench.all_classes_uniform(labels, 6))
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith(("single model", "+ balancing"))]
    assert len(rows) == 8
    # greedy and flow meet the caps exactly when the expected counts are whole: proxy 0 on the oracle subset
    assert all(float(r.split()[-1]) == 0.0 for r in rows[2:4])
    assert all(0 <= float(r.split()[-2]) <= 1 for r in rows)


def test_flow_falls_back_to_all_classes_when_the_candidates_cannot_fill_the_caps(bench):
    # every drawing's best two classes are 0 and 1, whose caps (1 each) cannot take four drawings
    probs = np.array([[0.5, 0.4, 0.05, 0.05]] * 4)
    out = bench.balance(probs, "flow", np.ones(4), candidates=2)
    assert sorted(out.argmax(1)) == [0, 1, 2, 3]
