"""Ensembles on constructed cases with known answers: means, fitted weights, voting, stacking."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from doodle.cli import main
from doodle.errors import DoodleError
from doodle.evaluate.metrics import map_at_3
from doodle.infer.probabilities import Predictions, check_aligned, read_predictions, write_predictions
from doodle.post.ensemble import Stacker, blend, fit_weights, holdout_halves, vote
from doodle.post.ensemble.files import ensemble_files
from doodle.post.ensemble.stack import StackConfig, features
from doodle.preprocess import TIME_FEATURES


def test_means_by_hand():
    a = np.array([[0.6, 0.4], [0.5, 0.5]])
    b = np.array([[0.2, 0.8], [0.9, 0.1]])
    assert np.allclose(blend([a, b]), [[0.4, 0.6], [0.7, 0.3]])
    assert np.allclose(blend([a, b], [3, 1]), [[0.5, 0.5], [0.6, 0.4]])
    g = np.sqrt(a * b)
    assert np.allclose(blend([a, b], mean="geom"), g / g.sum(1, keepdims=True), atol=1e-6)
    with pytest.raises(DoodleError, match="1 weight"):
        blend([a, b], [1])
    with pytest.raises(DoodleError, match="not all zero"):
        blend([a, b], [0, 0])


def noisy_models(n: int = 600, k: int = 8, seed: int = 0):
    """Labels and three models: good, weak, and a near copy of the good one."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)

    def model(strength, noise):
        logits = rng.normal(0, noise, (n, k))
        logits[np.arange(n), y] += strength
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True)

    good = model(2.0, 1.0)
    weak = model(0.3, 1.0)
    copy = good * np.exp(rng.normal(0, 0.01, good.shape))
    return y, good, weak, copy / copy.sum(1, keepdims=True)


def test_fitted_weights_favour_the_better_model():
    y, good, weak, copy = noisy_models()
    for method in ("score", "score-corr", "inv-loss", "map3"):
        w = fit_weights([good, weak], y, method)
        assert w.sum() == pytest.approx(1.0) and w[0] > w[1], method
    assert fit_weights([good, weak], y, "inv-loss")[1] < 1e-3  # (1/loss)^24 all but drops the weak one
    # score-corr: the near copy adds nothing new, the weak model something: weak gains relative weight
    w_s = fit_weights([good, copy, weak], y, "score")
    w_c = fit_weights([good, copy, weak], y, "score-corr")
    assert w_c[2] / w_c[0] > w_s[2] / w_s[0]
    w = fit_weights([good, weak], y, "map3")
    assert map_at_3(blend([good, weak], w), y) >= map_at_3(blend([good, weak]), y)
    with pytest.raises(DoodleError, match="known class"):
        fit_weights([good], np.full(len(y), -1), "score")


def test_vote_by_hand(tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    a.write_text("key_id,word\n1,x y z\n2,p q r\n")
    b.write_text("key_id,word\n2,q p r\n1,y x w\n")  # another row order
    c.write_text("key_id,word\n1,w y x\n2,r q p\n")
    # key 1: x = 1 + 1/2 + 1/3, y = 1/2 + 1 + 1/2, w = 1/3 + 1, z = 1/3 -> y, x, w
    # key 2 weighted 1, 1, 3: p = 1 + 1/2 + 1, q = 1/2 + 1 + 3/2, r = 1/3 + 1/3 + 3 -> r, q, p
    assert vote([a, b, c], tmp_path / "v.csv", [1, 1, 1]) == 2
    rows = list(csv.reader((tmp_path / "v.csv").read_text().splitlines()))
    assert rows[1] == ["1", "y x w"]
    vote([a, b, c], tmp_path / "v.csv", [1, 1, 3])
    assert list(csv.reader((tmp_path / "v.csv").read_text().splitlines()))[2] == ["2", "r q p"]
    (tmp_path / "d.csv").write_text("key_id,word\n1,x y z\n3,p q r\n")
    with pytest.raises(DoodleError, match="different key_ids"):
        vote([a, tmp_path / "d.csv"], tmp_path / "v2.csv")


def timed_case(n: int = 4000, seed: int = 0):
    """Classes 0 and 1 look alike to both models (equal probabilities) but differ in drawing time;
    classes 2..5 are recognised. Only a stacker that reads the time features can split 0 from 1."""
    rng = np.random.default_rng(seed)
    k = 6
    y = rng.integers(0, k, n)
    probs = []
    for _ in range(2):
        logits = rng.normal(0, 0.5, (n, k))
        logits[np.arange(n), y] += 2.5
        pair = np.isin(y, [0, 1])
        both = logits[pair][:, [0, 1]].max(1)
        logits[pair, 0] = logits[pair, 1] = both  # indistinguishable
        p = np.exp(logits)
        probs.append(p / p.sum(1, keepdims=True))
    tf = np.zeros((n, len(TIME_FEATURES)), np.float32)
    tf[:, 0] = 1.0
    tf[:, TIME_FEATURES.index("log_total_s")] = np.where(y == 0, 1.0, np.where(y == 1, 3.0, 2.0)) + rng.normal(
        0, 0.3, n)
    return y, probs, tf


def test_stacking_beats_its_best_input_with_time_features():
    y, probs, tf = timed_case()
    keys = np.arange(len(y), dtype=np.uint64) * 7919 + 13
    fit, ev = holdout_halves(keys)
    assert abs(len(fit) - len(ev)) < 0.1 * len(y) and not set(fit) & set(ev)
    stacker = Stacker(StackConfig(candidates=4, rounds=100)).fit([p[fit] for p in probs], y[fit], tf[fit])
    stacked = stacker.predict([p[ev] for p in probs], tf[ev])
    best_input = max(map_at_3(p[ev], y[ev]) for p in probs)
    assert map_at_3(stacked, y[ev]) > best_input + 0.05
    assert map_at_3(stacked, y[ev]) > map_at_3(blend([p[ev] for p in probs]), y[ev]) + 0.05
    x, cand, names = features([p[:5] for p in probs], tf[:5], 4)
    assert x.shape == (20, len(names)) and cand.shape == (5, 4)
    assert names.index("time_log_total_s") == names.index("class") + 1  # total time first of the time features
    lam = Stacker(StackConfig(candidates=4, rounds=60, objective="lambdarank")).fit(
        [p[fit] for p in probs], y[fit], tf[fit])
    assert map_at_3(lam.predict([p[ev] for p in probs], tf[ev]), y[ev]) > best_input + 0.03


def _write(tmp_path, name, keys, probs, classes, words=None, tf=None):
    path = tmp_path / name
    write_predictions(Predictions(keys, probs.astype(np.float32), classes, words or [], tf), path)
    return path


def test_files_aligned_streamed_and_self_holdout(tmp_path, capsys):
    y, probs, tf = timed_case(n=1200)
    classes = [f"class {i}" for i in range(6)]
    keys = np.arange(len(y), dtype=np.uint64) + np.uint64(2**64 - 5000)  # ids past 2**63
    words = [classes[i] for i in y]
    a = _write(tmp_path, "a.parquet", keys, probs[0], classes, words, tf)
    b = _write(tmp_path, "b.parquet", keys, probs[1], classes, words, tf)
    assert check_aligned([a, b]) == (classes, len(y))
    summary = ensemble_files([a, b], tmp_path / "m.parquet", weights=[1, 3])
    m = read_predictions(tmp_path / "m.parquet")
    assert np.allclose(m.probs, (probs[0] + 3 * probs[1]) / 4, atol=1e-6)
    assert m.key_ids.tolist() == keys.tolist() and summary["rows"] == len(y)
    assert main(["ensemble", str(a), str(b), "--method", "stack", "--candidates", "4", "--out",
                 str(tmp_path / "s.csv")]) == 0
    out = capsys.readouterr().out
    assert "held-out drawings" in out
    rows = list(csv.reader((tmp_path / "s.csv").read_text().splitlines()))
    assert rows[0] == ["key_id", "word"] and 0.3 * len(y) < len(rows) - 1 < 0.7 * len(y)
    assert all(int(r[0]) >= 2**64 - 5000 for r in rows[1:])
    # mismatches are named
    c = _write(tmp_path, "c.parquet", keys[::-1].copy(), probs[1], classes)
    with pytest.raises(DoodleError, match="differ in key_id at row 0"):
        check_aligned([a, c])
    d = _write(tmp_path, "d.parquet", keys, probs[1], [f"other {i}" for i in range(6)])
    assert main(["ensemble", str(a), str(d), "--out", str(tmp_path / "x.parquet")]) == 2
    assert "other classes" in capsys.readouterr().err
    e = _write(tmp_path, "e.parquet", keys, probs[1], classes)  # unlabelled
    with pytest.raises(DoodleError, match="labelled"):
        ensemble_files([e, e], tmp_path / "y.parquet", fit="map3")
