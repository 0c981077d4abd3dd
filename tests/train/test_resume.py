"""Resuming from the run itself: the saved config is used, a changed setting is refused, and the
resumed weights equal the uninterrupted run's after find_batch, batch_schedule and grow_on_plateau."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from doodle.cli import main
from doodle.config import load_config
from doodle.errors import DoodleError
from doodle.runs.checkpoint import read_checkpoint
from doodle.train.config import TrainConfig
from doodle.train.loop import Trainer, resume, train

BASE = ["input.size=32", "data.batch_size=16", "data.workers=0", "log_every=2", "optim.lr=0.05", "epochs=4",
        "checkpoint_every=3", "augment.rotate=5.0"]


def cfg(*extra: str) -> TrainConfig:
    return load_config(TrainConfig, None, BASE + list(extra))


def crash_after(monkeypatch, step: int) -> None:
    """Make the next training run die right after optimizer step `step`."""
    original = Trainer._optimizer_step

    def crashing(self):
        original(self)
        if self.state.step == step:
            raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(Trainer, "_optimizer_step", crashing)


def interrupted(config: TrainConfig, store: Path, out: Path, monkeypatch, step: int) -> None:
    with monkeypatch.context() as patch:
        crash_after(patch, step)
        with pytest.raises(KeyboardInterrupt):
            train(config, store, out)
    assert read_checkpoint(out / "last.pt")["train_state"]["counters"]["step"] < step


def assert_same_run(a: Path, b: Path, *, same_snapshots: bool = True) -> None:
    wa, wb = read_checkpoint(a / "last.pt"), read_checkpoint(b / "last.pt")
    ca, cb = wa["train_state"]["counters"], wb["train_state"]["counters"]
    if not same_snapshots:  # keep_checkpoints changed: more snapshots kept, the same weights
        ca, cb = {**ca, "snapshots": None}, {**cb, "snapshots": None}
    assert ca == cb
    for key, value in wa["model"].items():
        assert torch.equal(value, wb["model"][key]), key


def test_resume_needs_no_config_and_equals_the_uninterrupted_run(synth_store, tmp_path, tiny_net, monkeypatch):
    train(cfg(), synth_store, tmp_path / "whole")
    interrupted(cfg(), synth_store, tmp_path / "cut", monkeypatch, 20)
    assert main(["-q", "train", "--resume", str(tmp_path / "cut")]) == 0  # no --config, no --data
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


def test_a_changed_setting_is_refused_and_nothing_is_rewritten(synth_store, tmp_path, tiny_net, monkeypatch, capsys):
    run = tmp_path / "cut"
    interrupted(cfg(), synth_store, run, monkeypatch, 8)
    saved, last = (run / "config.yaml").read_bytes(), (run / "last.pt").read_bytes()
    assert main(["train", "--resume", str(run), "optim.lr=0.1"]) != 0
    err = capsys.readouterr().err
    assert "optim.lr is 0.05 in the run and 0.1 here" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    # a --config that differs from the saved one is refused too, from the CLI and from Python
    preset = tmp_path / "preset.yaml"
    preset.write_text((run / "config.yaml").read_text().replace("epochs: 4", "epochs: 10"))
    assert main(["train", "--resume", str(run), "--config", str(preset)]) != 0
    assert "epochs is 4 in the run and 10 here" in capsys.readouterr().err
    with pytest.raises(DoodleError, match="input.size is 32 in the run and 64 here"):
        train(load_config(TrainConfig), synth_store, run, resume=True)
    assert (run / "config.yaml").read_bytes() == saved and (run / "last.pt").read_bytes() == last


def test_a_changeable_setting_is_applied_saved_and_the_result_is_unchanged(synth_store, tmp_path, tiny_net,
                                                                          monkeypatch, caplog):
    train(cfg(), synth_store, tmp_path / "whole")
    interrupted(cfg(), synth_store, tmp_path / "cut", monkeypatch, 14)
    resume(tmp_path / "cut", ["log_every=1", "keep_checkpoints=5"])
    assert "log_every 2 -> 1" in caplog.text and "keep_checkpoints 3 -> 5" in caplog.text
    saved = yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())
    assert saved["log_every"] == 1 and saved["keep_checkpoints"] == 5
    assert_same_run(tmp_path / "whole", tmp_path / "cut", same_snapshots=False)
    assert len(read_checkpoint(tmp_path / "cut" / "last.pt")["train_state"]["counters"]["snapshots"]) == 5


def test_resume_on_a_store_with_other_classes_is_refused(synth_store, small_synth_store, tmp_path, tiny_net,
                                                         monkeypatch):
    interrupted(cfg(), synth_store, tmp_path / "cut", monkeypatch, 8)
    with pytest.raises(DoodleError, match="is not the store the run trains on .*their classes differ"):
        resume(tmp_path / "cut", data=small_synth_store)


@pytest.fixture(scope="module")
def small_synth_store(tmp_path_factory) -> Path:
    """A store of two synthetic classes: another store than `synth_store`."""
    from doodle.data.store import PrepareConfig, prepare
    from doodle.data.synth import synth

    root = tmp_path_factory.mktemp("other_store")
    synth(root / "synth", per_class=20, classes=["circle", "square"])
    prepare([root / "synth"], root / "store", PrepareConfig(val_fraction=0.2, progress=False, workers=1))
    return root / "store"


LIMIT = 40  # drawings a forward pass holds before the fake device runs out of memory


def fake_device(monkeypatch, tiny_net, tried: list[int]) -> None:
    """A CUDA-like device that runs out of memory past LIMIT drawings (find_batch searches)."""
    def fake_memory(module, args):
        if module.training and args[0]["image"].shape[0] > LIMIT:
            tried.append(args[0]["image"].shape[0])
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        if module.training:
            tried.append(args[0]["image"].shape[0])

    def build(model_cfg, inputs, n):
        model = tiny_net(n)
        model.register_forward_pre_hook(fake_memory)
        return model

    monkeypatch.setattr("doodle.train.loop.create_model", build)
    monkeypatch.setattr(Trainer, "_runs_out_of_memory", lambda self: True)


def test_resume_after_find_batch_keeps_the_found_batch_and_equals_the_uninterrupted_run(
        synth_store, tmp_path, tiny_net, monkeypatch):
    tried: list[int] = []
    fake_device(monkeypatch, tiny_net, tried)
    train(cfg("find_batch=true"), synth_store, tmp_path / "whole")
    assert yaml.safe_load((tmp_path / "whole" / "config.yaml").read_text())["data"]["batch_size"] == 36  # 90 % of 40
    interrupted(cfg("find_batch=true"), synth_store, tmp_path / "cut", monkeypatch, 7)
    tried.clear()
    train(cfg("find_batch=true"), synth_store, tmp_path / "cut", resume=True)  # the preset again, batch 16 in it
    assert tried and set(tried) == {36}  # no search on resume: only training batches of the found size
    assert_same_run(tmp_path / "whole", tmp_path / "cut")
    assert yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())["data"]["batch_size"] == 36


def test_resume_after_a_batch_schedule_change_equals_the_uninterrupted_run(synth_store, tmp_path, tiny_net,
                                                                           monkeypatch):
    settings = cfg("batch_schedule=[[0, 16], [2, 32]]")
    train(settings, synth_store, tmp_path / "whole")
    # 8 steps in each of epochs 0-1, then 4 per epoch: step 19 is inside epoch 3, after the change
    interrupted(cfg("batch_schedule=[[0, 16], [2, 32]]"), synth_store, tmp_path / "cut", monkeypatch, 19)
    resume(tmp_path / "cut")
    assert_same_run(tmp_path / "whole", tmp_path / "cut")
    assert read_checkpoint(tmp_path / "cut" / "last.pt")["train_state"]["counters"]["step"] == 24


def test_resume_after_the_batch_grew_on_plateau_equals_the_uninterrupted_run(synth_store, tmp_path, tiny_net,
                                                                             monkeypatch):
    stale = {"loss": 1.0, "map3": 0.5, "acc1": 0.5, "acc3": 0.5, "n": 21}  # never improves after the first
    monkeypatch.setattr(Trainer, "validate", lambda self, model: dict(stale))
    settings = ("grow_on_plateau=true", "schedule.plateau_patience=1", "schedule.name=onecycle")
    train(cfg(*settings), synth_store, tmp_path / "whole")
    whole = read_checkpoint(tmp_path / "whole" / "last.pt")["train_state"]["counters"]
    assert whole["accumulate"] == 4
    interrupted(cfg(*settings), synth_store, tmp_path / "cut", monkeypatch, 20)  # in epoch 2, at accumulate 2
    assert read_checkpoint(tmp_path / "cut" / "last.pt")["train_state"]["counters"]["accumulate"] == 2
    resume(tmp_path / "cut")
    assert_same_run(tmp_path / "whole", tmp_path / "cut")
