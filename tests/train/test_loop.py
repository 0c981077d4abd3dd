"""The training loop end to end on a small real store: resume, kill -9, DDP, presets, features."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import torch

from doodle.cli import main
from doodle.config import load_config
from doodle.errors import DoodleError
from doodle.models import create_model
from doodle.render import get_encoding
from doodle.runs.checkpoint import read_checkpoint
from doodle.train.config import TrainConfig
from doodle.train.loop import Trainer, train

REPO = Path(__file__).resolve().parents[2]
CLASSES = ("airplane", "eye", "map")
# A tiny, fast model: resnet10t at 32 px, a few steps.
TINY = ["model.arch=resnet10t", "input.size=32", "data.batch_size=16", "data.workers=0", "log_every=2",
        "optim.lr=0.003", "augment.rotate=5.0"]


@pytest.fixture(scope="module")
def store(small_store: Path) -> Path:
    return small_store  # conftest.py: airplane, eye, map


def tiny(*extra: str) -> TrainConfig:
    return load_config(TrainConfig, None, TINY + list(extra))


def weights(run: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(run / "last.pt")["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_trains_and_writes_a_complete_run(store: Path, tmp_path: Path):
    summary = train(tiny("epochs=2"), store, tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "train.log", "metrics.csv", "curves.png", "last.pt", "best.pt", "summary.json"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").iterdir())
    assert summary["best_map3"] > 0.7  # three easy classes, two short epochs
    rows = (run / "metrics.csv").read_text().splitlines()
    assert sum(",val," in r for r in rows) == 2  # one validation per epoch
    ckpt = read_checkpoint(run / "best.pt")
    assert ckpt["classes"] == list(CLASSES) and ckpt["input_config"]["size"] == 32
    assert ckpt["config"]["model"]["arch"] == "resnet10t" and ckpt["code_version"]
    with pytest.raises(Exception, match="already holds a run"):
        train(tiny("epochs=2"), store, run)


def test_resume_after_interruption_equals_an_uninterrupted_run(store: Path, tmp_path: Path, monkeypatch):
    settings = ("max_steps=12", "checkpoint_every=4", "eval_every=6", "model.dropout=0.3", "augment.dropout=0.1")
    train(tiny(*settings), store, tmp_path / "whole")

    original = Trainer._optimizer_step

    def crash_after_step_9(self):
        original(self)
        if self.state.step == 9:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(Trainer, "_optimizer_step", crash_after_step_9)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(*settings), store, tmp_path / "cut")
    assert read_checkpoint(tmp_path / "cut" / "last.pt")["train_state"]["counters"]["step"] == 8
    monkeypatch.setattr(Trainer, "_optimizer_step", original)
    train(tiny(*settings), store, tmp_path / "cut", resume=True)
    assert_same_weights(weights(tmp_path / "whole"), weights(tmp_path / "cut"))
    whole = read_checkpoint(tmp_path / "whole" / "last.pt")["train_state"]
    cut = read_checkpoint(tmp_path / "cut" / "last.pt")["train_state"]
    assert whole["counters"] == cut["counters"]
    # the metrics log of the resumed run has no duplicated steps
    steps = [r.split(",")[0] for r in (tmp_path / "cut" / "metrics.csv").read_text().splitlines()[1:] if ",train," in r]
    assert len(steps) == len(set(steps))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "doodle", "-q", *args]


@pytest.mark.slow
def test_kill_9_then_resume_finishes_with_the_same_weights(store: Path, tmp_path: Path):
    args = ["train", "--data", str(store), *TINY, "data.workers=1", "max_steps=16", "checkpoint_every=3",
            "eval_every=8"]
    subprocess.run(_cli(*args, "--out", str(tmp_path / "whole")), check=True, timeout=600)
    proc = subprocess.Popen(_cli(*args, "--out", str(tmp_path / "killed")))
    deadline = time.time() + 300
    while not (tmp_path / "killed" / "last.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = read_checkpoint(tmp_path / "killed" / "last.pt")["train_state"]["counters"]["step"]
    assert step < 16, "the run was killed before it finished"
    subprocess.run(_cli(*args, "--out", str(tmp_path / "killed"), "--resume"), check=True, timeout=600)
    summary = orjson.loads((tmp_path / "killed" / "summary.json").read_bytes())
    assert summary["steps"] == 16
    assert_same_weights(weights(tmp_path / "whole"), weights(tmp_path / "killed"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_cpu_processes_stay_in_sync(store: Path, tmp_path: Path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "doodle", "-q", "train", "--data", str(store), "--out", str(run),
           *TINY, "max_steps=6", "checkpoint_every=2", "sync_check=true", "model.dropout=0.2", "accumulate=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, timeout=600, env=env)
    lines = (run / "sync.log").read_text().splitlines()
    assert lines == [f"step {s}: weights in sync across 2 ranks" for s in (2, 4, 6)]
    assert orjson.loads((run / "summary.json").read_bytes())["steps"] == 6


def test_features_ema_averaging_progressive_resizing_batch_growth(store: Path, tmp_path: Path, monkeypatch):
    val_sizes = []  # (epochs finished, image size) of every validation
    batches = Trainer._batches

    def spy(self, epoch, split="train"):
        dataset = batches(self, epoch, split)
        if split == "val":
            val_sizes.append((self.state.epoch, dataset.preprocess.config.size))
        return dataset

    monkeypatch.setattr(Trainer, "_batches", spy)
    cfg = tiny("epochs=3", "ema_decay=0.9", "average_last=2", "size_schedule=[[0, 32], [2, 48]]",
               "batch_schedule=[[0, 16], [1, 24]]", "loss.top3_weight=0.5", "loss.label_smoothing=0.1",
               "schedule.name=onecycle", "accumulate=2", "optim.name=sgd", "optim.lr=0.05")
    summary = train(cfg, store, tmp_path / "run")
    run = tmp_path / "run"
    assert (run / "averaged.pt").is_file() and summary["averaged"]["map3"] > 0
    assert read_checkpoint(run / "last.pt")["input_config"]["size"] == 48  # trained last at 48 px
    # each validation sees the size the weights were trained at, even right after an epoch boundary
    assert val_sizes[:3] == [(1, 32), (2, 32), (3, 48)]
    assert read_checkpoint(run / "last.pt")["ema"] is not None
    assert len(list((run / "checkpoints").glob("step-*.pt"))) == 3  # keep_checkpoints
    # batch growth: epoch 0 takes 16-drawing batches, epochs 1 and 2 take 24; two per optimizer step
    from doodle.train.data import EpochBatches

    expected = sum(len(EpochBatches(store, "train", None, b, 0, e)) // 2 for e, b in ((0, 16), (1, 24), (2, 24)))
    assert summary["steps"] == expected


@pytest.mark.parametrize("preset", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_preset_loads_and_builds(preset: Path):
    cfg = load_config(TrainConfig, preset)
    get_encoding(cfg.input.encoding)  # a known encoding
    model = create_model(cfg.model, cfg.input, 340)
    assert model.num_classes == 340 and model.input_kind in ("image", "sequence")


def test_overrides_reach_the_config(capsys):
    assert main(["train", "--config", str(REPO / "configs" / "cpu.yaml"), "--show-config", "optim.lr=0.123",
                 "model.arch=resnet34"]) == 0
    out = capsys.readouterr().out
    assert "optim.lr = 0.123" in out and "model.arch = 'resnet34'" in out
    assert main(["train", "--config", str(REPO / "configs" / "cpu.yaml"), "--show-config", "optim.lrr=1"]) == 2
    assert "unknown config key optim.lrr" in capsys.readouterr().err


def test_a_batch_larger_than_the_data_is_a_clear_error(store: Path, tmp_path: Path):
    # drop_last would leave no full batch: nothing would train, so training refuses to start.
    with pytest.raises(DoodleError, match="no full batch of 100000 drawings"):
        train(tiny("epochs=1", "data.batch_size=100000"), store, tmp_path / "run")


def test_a_run_stopped_mid_epoch_logs_its_validation_at_the_fractional_epoch(store: Path, tmp_path: Path):
    train(tiny("epochs=3", "max_steps=3"), store, tmp_path / "run")
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    val = [r.split(",") for r in rows if ",val," in r]
    assert len(val) == 1
    step, epoch = int(val[0][0]), float(val[0][1])
    assert step == 3 and 0.0 < epoch < 1.0, val[0]  # 3 batches into the first epoch, not "epoch 0"
