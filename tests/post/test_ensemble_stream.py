"""Ensembles from streamed predictions files equal the same fits on whole arrays in memory."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import doodle.post.ensemble.files as files_mod
from doodle.cli import main
from doodle.evaluate.metrics import map_at_3
from doodle.infer.probabilities import Predictions, iter_aligned, read_labels, read_predictions, write_predictions
from doodle.post.ensemble import Stacker, blend, fit_weights, holdout_halves
from doodle.post.ensemble.blend import WeightStats
from doodle.post.ensemble.files import ensemble_files, fit_rows
from doodle.post.ensemble.stack import StackConfig
from doodle.preprocess import TIME_FEATURES

CLASSES = [f"class {i}" for i in range(6)]


def timed_case(n: int, seed: int):
    """Labels, two models' probabilities and time features: classes 0 and 1 look alike to the models
    and differ in drawing time (a case where the stacker has something to learn)."""
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    y = rng.integers(0, k, n)
    probs = []
    for strength in (2.5, 1.5):
        logits = rng.normal(0, 0.7, (n, k))
        logits[np.arange(n), y] += strength
        pair = np.isin(y, [0, 1])
        logits[pair, 0] = logits[pair, 1] = logits[pair][:, [0, 1]].max(1)
        p = np.exp(logits)
        probs.append((p / p.sum(1, keepdims=True)).astype(np.float32))
    tf = rng.normal(0, 1, (n, len(TIME_FEATURES))).astype(np.float32)
    tf[:, TIME_FEATURES.index("log_total_s")] = np.where(y == 0, 1.0, np.where(y == 1, 3.0, 2.0)) + rng.normal(
        0, 0.3, n)
    return y, probs, tf


def write_case(tmp_path, name: str, n: int, seed: int, labelled: bool = True):
    """Two models' predictions files of one case (row groups of 97 rows) and the case's arrays."""
    y, probs, tf = timed_case(n, seed)
    keys = (np.arange(n, dtype=np.uint64) * np.uint64(2654435761) + np.uint64(2**63 + seed)).astype(np.uint64)
    words = [CLASSES[c] for c in y] if labelled else []
    paths = []
    for m, p in enumerate(probs):
        paths.append(tmp_path / f"{name}_{m}.parquet")
        write_predictions(Predictions(keys, p, CLASSES, words, tf), paths[-1], rows_per_group=97)
    return paths, keys, y, probs, tf


@pytest.fixture
def small_batches(monkeypatch):
    """Stream in batches of 64 drawings, so every file spans many batches."""
    monkeypatch.setattr(files_mod, "BATCH_ROWS", 64)


@pytest.mark.parametrize("fit", ["score", "score-corr", "inv-loss", "map3"])
def test_streamed_weights_equal_the_in_memory_fit(tmp_path, small_batches, fit):
    hold, _, y_h, p_h, _ = write_case(tmp_path, "hold", 900, 1)
    test, keys, y_t, p_t, _ = write_case(tmp_path, "test", 500, 2)
    summary = ensemble_files(test, tmp_path / "out.parquet", fit=fit, holdout=hold)
    w = fit_weights(p_h, y_h, fit)
    assert summary["weights"] == pytest.approx(list(w), rel=1e-9, abs=1e-12)
    out = read_predictions(tmp_path / "out.parquet")
    assert out.key_ids.tolist() == keys.tolist() and out.words == [CLASSES[c] for c in y_t]
    assert np.allclose(out.probs, blend(p_t, w), atol=1e-7)
    assert summary["map3"] == pytest.approx(map_at_3(blend(p_t, w), y_t))
    assert summary["inputs_map3"] == pytest.approx([map_at_3(p, y_t) for p in p_t])
    assert summary["fit_rows"] == 900


def test_streamed_stacking_equals_the_in_memory_fit(tmp_path, small_batches):
    hold, _, y_h, p_h, tf_h = write_case(tmp_path, "hold", 1200, 3)
    test, keys, y_t, p_t, tf_t = write_case(tmp_path, "test", 400, 4, labelled=False)
    cfg = StackConfig(candidates=4, rounds=30)
    summary = ensemble_files(test, tmp_path / "st.parquet", method="stack", holdout=hold, stack=cfg)
    expected = Stacker(cfg).fit(p_h, y_h, tf_h).predict(p_t, tf_t)
    out = read_predictions(tmp_path / "st.parquet")
    assert out.key_ids.tolist() == keys.tolist() and np.allclose(out.probs, expected, atol=1e-7)
    assert "map3" not in summary  # the test set has no labels
    # the same, as a submission CSV
    ensemble_files(test, tmp_path / "st.csv", method="stack", holdout=hold, stack=cfg)
    rows = list(csv.reader((tmp_path / "st.csv").read_text().splitlines()))[1:]
    firsts = [r[1].split()[0] for r in rows]
    assert [int(r[0]) for r in rows] == keys.tolist()
    assert firsts == [CLASSES[c].replace(" ", "_") for c in np.argsort(-expected, 1, kind="stable")[:, 0]]


def test_max_rows_fits_on_the_lowest_key_id_hashes(tmp_path, small_batches):
    hold, keys_h, y_h, p_h, tf_h = write_case(tmp_path, "hold", 1000, 5)
    test, _, _, p_t, tf_t = write_case(tmp_path, "test", 300, 6)
    cfg = StackConfig(candidates=3, rounds=20)
    summary = ensemble_files(test, tmp_path / "st.parquet", method="stack", holdout=hold, stack=cfg, max_rows=400)
    chosen = fit_rows(keys_h, np.ones(len(keys_h), bool), 400)
    assert summary["fit_rows"] == chosen.sum() == 400
    expected = Stacker(cfg).fit([p[chosen] for p in p_h], y_h[chosen], tf_h[chosen]).predict(p_t, tf_t)
    assert np.allclose(read_predictions(tmp_path / "st.parquet").probs, expected, atol=1e-7)
    # the choice follows the key_ids, not the rows' order
    order = np.random.default_rng(0).permutation(len(keys_h))
    assert np.array_equal(fit_rows(keys_h[order], np.ones(len(keys_h), bool), 400), chosen[order])
    assert fit_rows(keys_h, y_h > 2, 10**6).tolist() == (y_h > 2).tolist()  # fewer than the cap: all


def test_self_holdout_streamed_equals_the_in_memory_halves(tmp_path, small_batches, capsys):
    inputs, keys, y, probs, _ = write_case(tmp_path, "val", 1000, 7)
    summary = ensemble_files(inputs, tmp_path / "f.parquet", fit="map3")
    fit, ev = holdout_halves(keys)
    w = fit_weights([p[fit] for p in probs], y[fit], "map3")
    out = read_predictions(tmp_path / "f.parquet")
    assert out.key_ids.tolist() == keys[ev].tolist() and summary["fit_rows"] == len(fit)
    assert np.allclose(out.probs, blend([p[ev] for p in probs], w), atol=1e-7)
    assert main(["ensemble", *map(str, inputs), "--method", "stack", "--candidates", "3", "--rounds", "10",
                 "--max-rows", "300", "--out", str(tmp_path / "s.parquet")]) == 0
    assert "held-out drawings" in capsys.readouterr().out
    assert read_predictions(tmp_path / "s.parquet").key_ids.tolist() == keys[ev].tolist()


def test_weight_sums_over_batches_equal_one_pass():
    y, probs, _ = timed_case(700, 8)
    whole, parts = WeightStats(2), WeightStats(2)
    whole.update(probs, y)
    for lo in range(0, 700, 128):
        parts.update([p[lo:lo + 128] for p in probs], y[lo:lo + 128])
    assert np.allclose(parts.correlation(), np.corrcoef(np.stack([p.reshape(-1) for p in probs])), atol=1e-12)
    assert np.allclose(parts.map3(), [map_at_3(p, y) for p in probs], atol=1e-12)
    for method in ("score", "score-corr", "inv-loss"):
        assert np.allclose(parts.raw_weights(method, 24.0), whole.raw_weights(method, 24.0), rtol=1e-9)


def test_aligned_batches_and_labels(tmp_path):
    paths, keys, y, probs, _ = write_case(tmp_path, "a", 300, 9)
    rows = np.zeros(300, bool)
    rows[[0, 5, 130, 299]] = True
    got = list(iter_aligned(paths, rows, 128))
    assert [len(parts[0]) for parts in got] == [2, 1, 1]  # the empty middle batch is skipped
    assert np.concatenate([parts[1].key_ids for parts in got]).tolist() == keys[rows].tolist()
    assert np.allclose(np.concatenate([parts[1].probs for parts in got]), probs[1][rows])
    assert read_labels(paths[0]).tolist() == y.tolist()
