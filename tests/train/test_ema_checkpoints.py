"""EMA weights in a run: which checkpoint holds which weights, `--checkpoint ema`, and averaging of
the raw or the EMA weights of the snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from doodle.config import load_config
from doodle.errors import DoodleError
from doodle.infer.predict import load_predictor
from doodle.runs.checkpoint import average_state_dicts, read_checkpoint
from doodle.train.config import TrainConfig
from doodle.train.loop import train

SMALL = ["model.arch=resnet10t", "input.size=32", "data.batch_size=16", "data.workers=0", "log_every=50",
         "max_steps=6", "checkpoint_every=2", "eval_every=3", "keep_checkpoints=3"]


@pytest.fixture(scope="module")
def ema_run(synth_store: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ema") / "run"
    train(load_config(TrainConfig, None, SMALL + ["ema_decay=0.5", "average_last=2"]), synth_store, out)
    return out


@pytest.fixture(scope="module")
def raw_run(synth_store: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("raw") / "run"
    train(load_config(TrainConfig, None, SMALL + ["average_last=2"]), synth_store, out)
    return out


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_each_checkpoint_says_which_weights_it_holds(ema_run: Path, raw_run: Path):
    last, best = read_checkpoint(ema_run / "last.pt"), read_checkpoint(ema_run / "best.pt")
    assert last["weights"] == "raw" and last["ema"] is not None and not same(last["model"], last["ema"])
    assert best["weights"] == "ema"  # the validated weights: the EMA
    for snapshot in sorted((ema_run / "checkpoints").glob("step-*.pt")):
        data = read_checkpoint(snapshot)
        assert data["weights"] == "raw" and data["ema"] is not None  # both, so either can be averaged
    assert read_checkpoint(raw_run / "best.pt")["weights"] == "raw"
    assert read_checkpoint(raw_run / "last.pt")["ema"] is None


def test_checkpoint_ema_loads_the_ema_weights_at_the_end_of_training(ema_run: Path, raw_run: Path):
    model, *_ = load_predictor(ema_run, "ema")
    assert same(model.state_dict(), read_checkpoint(ema_run / "last.pt")["ema"])
    model, *_ = load_predictor(ema_run, "last")
    assert same(model.state_dict(), read_checkpoint(ema_run / "last.pt")["model"])
    with pytest.raises(DoodleError, match="no EMA weights .*ema_decay=0"):
        load_predictor(raw_run, "ema")


def test_training_averages_the_ema_snapshots_when_ema_is_on(ema_run: Path):
    snapshots = sorted((ema_run / "checkpoints").glob("step-*.pt"))[-2:]
    averaged = read_checkpoint(ema_run / "averaged.pt")
    assert averaged["weights"] == "ema"
    assert same(averaged["model"], average_state_dicts([read_checkpoint(p)["ema"] for p in snapshots]))
    summary = (ema_run / "summary.json").read_text()
    assert '"weights": "ema"' in summary and '"snapshots": 2' in summary


def test_training_averages_the_raw_snapshots_when_asked(synth_store: Path, tmp_path: Path):
    out = tmp_path / "run"
    train(load_config(TrainConfig, None, SMALL + ["ema_decay=0.5", "average_last=2", "average_weights=raw"]),
          synth_store, out)
    snapshots = sorted((out / "checkpoints").glob("step-*.pt"))[-2:]
    averaged = read_checkpoint(out / "averaged.pt")
    assert averaged["weights"] == "raw"
    assert same(averaged["model"], average_state_dicts([read_checkpoint(p)["model"] for p in snapshots]))


def test_average_weights_ema_without_ema_is_a_config_error():
    with pytest.raises(DoodleError, match="average_weights=ema needs EMA weights"):
        load_config(TrainConfig, None, ["average_weights=ema"])


def test_prediction_averages_raw_or_ema_snapshots(ema_run: Path, raw_run: Path):
    snapshots = sorted((ema_run / "checkpoints").glob("step-*.pt"))[-2:]
    for spec, key in (("last:2", "model"), ("ema:2", "ema")):
        model, _, _, meta, described = load_predictor(ema_run, spec)
        want = average_state_dicts([read_checkpoint(p)[key] for p in snapshots])
        assert same(model.state_dict(), want), spec
        assert meta["weights"] == ("ema" if key == "ema" else "raw") and meta["weights"] in described
    with pytest.raises(DoodleError, match="step-.*no EMA weights"):
        load_predictor(raw_run, "ema:2")
