"""The last mile end to end on real drawings: a tiny model trained here, its predictions saved with
TTA and checkpoint averaging, evaluated, blended, stacked, balanced, pseudo-labelled and cleaned."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from doodle.cli import main
from doodle.config import load_config
from doodle.data.store import iter_store, load_manifest
from doodle.errors import DoodleError
from doodle.evaluate.metrics import map_at_3
from doodle.evaluate.report import evaluate_run
from doodle.infer.predict import iter_predictions, load_averaged, load_model, predict, snapshot_files
from doodle.infer.probabilities import read_predictions
from doodle.post.clean import clean_store, score_store, weights_from_scores, write_scores
from doodle.post.pseudo import pseudo_label
from doodle.runs.checkpoint import read_checkpoint
from doodle.train.config import TrainConfig
from doodle.train.loop import train

CLASSES = ("airplane", "eye", "map")
TINY = ["model.arch=resnet10t", "input.size=32", "data.batch_size=16", "data.workers=0", "log_every=50",
        "optim.lr=0.003", "epochs=2", "max_steps=12", "data.limit_val=64", "checkpoint_every=4", "keep_checkpoints=3"]


@pytest.fixture(scope="module")
def store(small_store: Path) -> Path:
    return small_store  # conftest.py: airplane, eye, map


@pytest.fixture(scope="module")
def run(store: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "r"
    train(load_config(TrainConfig, None, TINY), store, out)
    return out


@pytest.fixture(scope="module")
def saved(run: Path, store: Path, tmp_path_factory) -> dict[str, Path]:
    """Predictions of the val split: with TTA, and with the average of the last 3 snapshots."""
    folder = tmp_path_factory.mktemp("preds")
    out = {"tta": folder / "tta.parquet", "avg": folder / "avg.parquet"}
    predict(run, [store / "val"], out["tta"], tta=["flip", "dropout"], progress=False)
    predict(run, [store / "val"], out["avg"], checkpoint="last:3", progress=False)
    return out


def test_saved_predictions_tta_and_averaging(saved, store: Path, run: Path, tmp_path):
    assert main(["-q", "predict", str(run), "--data", str(store / "val"),
                 "--out", str(tmp_path / "plain.parquet")]) == 0
    plain, tta, avg = read_predictions(tmp_path / "plain.parquet"), read_predictions(saved["tta"]), read_predictions(
        saved["avg"])
    val = list(iter_store(store, "val"))
    assert plain.key_ids.tolist() == [d.key_id for d in val] == tta.key_ids.tolist() == avg.key_ids.tolist()
    assert plain.words == [d.word for d in val] and plain.classes == list(CLASSES)
    assert np.allclose(plain.probs.sum(1), 1, atol=1e-4) and np.allclose(tta.probs.sum(1), 1, atol=1e-4)
    assert plain.time_features.shape == (len(val), 6)
    assert not np.allclose(plain.probs, tta.probs) and not np.allclose(plain.probs, avg.probs)
    assert tta.meta["tta"] == ["flip", "dropout"]
    # the dropout view is seeded by key_id: the same drawings give the same probabilities in any batch size
    model, prep, _, _ = load_model(run / "best.pt")
    some = val[:20]
    by7 = np.concatenate([b.log_probs for b in iter_predictions(model, prep, some, batch_size=7, tta=["dropout"])])
    by20 = next(iter_predictions(model, prep, some, batch_size=20, tta=["dropout"])).log_probs
    assert np.allclose(by7, by20, atol=1e-5)
    # last:3 is the mean of the three snapshots' weights
    files = snapshot_files(run, 3)
    model, _, _, meta = load_averaged(files)
    states = [read_checkpoint(f)["model"] for f in files]
    key = next(k for k, v in states[0].items() if v.is_floating_point() and not np.allclose(v, states[1][k]))
    assert np.allclose(model.state_dict()[key], sum(s[key] for s in states) / 3, atol=1e-6)
    with pytest.raises(DoodleError, match="fewer than the 9"):
        snapshot_files(run, 9)
    # --average of those files is last:3; the CSV holds the same first guesses
    assert main(["-q", "predict", str(run), "--data", str(store / "val"), "--average", *map(str, files),
                 "--out", str(tmp_path / "sub.csv")]) == 0
    rows = list(csv.reader((tmp_path / "sub.csv").read_text().splitlines()))[1:]
    top = np.argsort(-avg.probs, 1, kind="stable")[:, 0]
    assert [r[1].split()[0] for r in rows] == [CLASSES[c] for c in top]
    assert main(["-q", "predict", str(run), "--data", str(store / "val"), "--tta", "mirror",
                 "--out", str(tmp_path / "x.csv")]) == 2


def test_evaluate_report_matches_saved_predictions(run: Path, store: Path, saved, tmp_path):
    report = evaluate_run(run, [store / "val"], tmp_path / "rep", tta=["flip", "dropout"], progress=False)
    tta = read_predictions(saved["tta"])
    assert report.metrics["map3"] == pytest.approx(map_at_3(tta.probs, tta.labels()), abs=1e-6)
    assert report.metrics["n"] == len(tta) and report.confusion.sum() == len(tta)
    assert (tmp_path / "rep" / "report.html").stat().st_size > 10_000


def test_ensemble_stack_vote_balance_on_real_predictions(saved, tmp_path, capsys):
    a, b = str(saved["tta"]), str(saved["avg"])
    assert main(["ensemble", a, b, "--fit", "map3", "--out", str(tmp_path / "f.parquet")]) == 0
    assert main(["ensemble", a, b, "--method", "stack", "--rounds", "30", "--out", str(tmp_path / "s.parquet")]) == 0
    out = capsys.readouterr().out
    assert out.count("held-out drawings") == 2
    fitted, stacked = read_predictions(tmp_path / "f.parquet"), read_predictions(tmp_path / "s.parquet")
    assert fitted.key_ids.tolist() == stacked.key_ids.tolist()  # the same evaluation half
    assert 0 < len(stacked) < len(read_predictions(a))
    for name in ("tta", "avg"):
        predict_csv = tmp_path / f"{name}.csv"
        assert main(["balance", str(saved[name]), "--method", "greedy", "--out", str(predict_csv)]) == 0
    assert main(["ensemble", str(tmp_path / "tta.csv"), str(tmp_path / "avg.csv"), "--method", "vote",
                 "--out", str(tmp_path / "v.csv")]) == 0
    assert len(list(csv.reader((tmp_path / "v.csv").read_text().splitlines()))) == len(read_predictions(a)) + 1


def test_pseudo_labels_make_a_store_for_fine_tuning(saved, store: Path, run: Path, tmp_path):
    preds = read_predictions(saved["avg"])
    threshold = float(np.quantile(preds.probs.max(1), 0.5))
    summary = pseudo_label(saved["avg"], [store / "val"], tmp_path / "pl", threshold=threshold, progress=False)
    confident = preds.probs.max(1) >= threshold
    assert summary["kept"] == summary["confident"] == int(confident.sum())
    manifest = load_manifest(tmp_path / "pl")
    assert manifest["classes"] == list(CLASSES) and manifest["splits"]["train"] == summary["kept"]
    guesses = {int(k): CLASSES[int(c)] for k, c, ok in zip(preds.key_ids, preds.probs.argmax(1), confident,
                                                            strict=True) if ok}
    assert {d.key_id: d.word for d in iter_store(tmp_path / "pl", "train")} == guesses
    # fine-tune from the checkpoint with the pseudo-labels mixed in
    cfg = load_config(TrainConfig, None, TINY + ["max_steps=3", "epochs=1", f"init_from={run / 'best.pt'}",
                                                  f"extra_train=[{tmp_path / 'pl'}]"])
    result = train(cfg, store, tmp_path / "ft")
    assert result["steps"] == 3
    with pytest.raises(DoodleError, match="reaches the threshold"):
        pseudo_label(saved["avg"], [store / "val"], tmp_path / "none", threshold=1.0, progress=False)


def test_clean_scores_weights_and_cleaned_store(run: Path, store: Path, tmp_path):
    scores = score_store(run, store, "val", progress=False)
    n = load_manifest(store)["splits"]["val"]
    assert len(scores.key_ids) == n and (scores.loss >= 0).all() and (scores.entropy > 0).all()
    w = weights_from_scores(scores, drop_loss=0.1)
    for c in range(3):  # the highest-loss tenth of each class
        rows = scores.labels == c
        assert (w[rows] == 0).sum() == int(0.1 * rows.sum())
        assert scores.loss[rows][w[rows] == 0].min() >= scores.loss[rows][w[rows] == 1].max()
    write_scores(scores, w, tmp_path / "scores.parquet")
    manifest = clean_store(store, tmp_path / "clean", scores.key_ids[w == 0], "val")
    assert manifest["splits"]["val"] == n - int((w == 0).sum())
    assert manifest["splits"]["train"] == load_manifest(store)["splits"]["train"]
    kept = {d.key_id for d in iter_store(tmp_path / "clean", "val")}
    assert kept == set(scores.key_ids[w == 1].tolist())
    with pytest.raises(SystemExit) as exit_info:  # refused by the option's own check, before any work
        main(["-q", "clean", str(run), "--data", str(store), "--out", str(tmp_path / "s2.parquet"), "--drop", "1.5"])
    assert exit_info.value.code == 2
