"""time_budget: the duration parser, the plan, a budgeted run that ends in time, and its exact resume."""

from __future__ import annotations

import time

import orjson
import pytest
import torch
import yaml

from doodle.cli import main
from doodle.config import load_config
from doodle.errors import DoodleError
from doodle.runs.checkpoint import read_checkpoint
from doodle.train.budget import Cadence, Costs, fit_steps, format_duration, parse_duration, run_seconds
from doodle.train.config import TrainConfig
from doodle.train.loop import Trainer, resume, train

BASE = ["input.size=32", "data.batch_size=16", "data.workers=0", "log_every=2", "optim.lr=0.05", "epochs=4",
        "checkpoint_every=3", "augment.rotate=5.0"]  # as in test_resume.py: 8 steps per epoch


def cfg(*extra: str) -> TrainConfig:
    return load_config(TrainConfig, None, BASE + list(extra))


def interrupted(config: TrainConfig, store, out, monkeypatch, step: int) -> None:
    """Train `config` until it dies right after optimizer step `step`."""
    original = Trainer._optimizer_step

    def crashing(self):
        original(self)
        if self.state.step == step:
            raise KeyboardInterrupt("simulated crash")

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_optimizer_step", crashing)
        with pytest.raises(KeyboardInterrupt):
            train(config, store, out)


def assert_same_run(a, b) -> None:
    wa, wb = read_checkpoint(a / "last.pt"), read_checkpoint(b / "last.pt")
    assert wa["train_state"]["counters"] == wb["train_state"]["counters"]
    for key, value in wa["model"].items():
        assert torch.equal(value, wb["model"][key]), key


@pytest.mark.parametrize(("text", "seconds"), [
    ("900", 900.0), ("90s", 90.0), ("15m", 900.0), ("1.5h", 5400.0), ("1h30m", 5400.0), (" 2M ", 120.0),
    (".5m", 30.0), ("1d", 86400.0), ("0", 0.0), ("12.25", 12.25), ("1m 30s", 90.0),
])
def test_durations_parse_to_seconds(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "-5", "15x", "1.5.h", "m", "15 minutes", "1e3", "inf", "nan", "5m-"])
def test_a_bad_duration_is_refused(text):
    with pytest.raises(DoodleError, match="is not a duration"):
        parse_duration(text)


def test_a_bad_duration_is_a_one_line_cli_error(tmp_path, capsys):
    (tmp_path / "_manifest.json").write_text("{}")  # passes the command line's store check
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--time-budget", "15x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'15x' is not a duration" in err


def test_the_cli_flag_sets_the_key(capsys):
    assert main(["train", "--time-budget", "1.5h", "--show-config"]) == 0
    assert "time_budget = 5400.0  #" in capsys.readouterr().out


@pytest.mark.parametrize(("seconds", "text"), [
    (4.24, "4.2s"), (42.4, "42s"), (59.6, "1m 00s"), (900, "15m 00s"), (872, "14m 32s"), (5400, "1h 30m"),
])
def test_durations_format_for_people(seconds, text):
    assert format_duration(seconds) == text


COSTS = Costs(step=1.0, validation=2.0, checkpoint=0.5, epoch=0.25, end=3.0)


def test_the_plan_counts_steps_validations_checkpoints_epochs_and_the_end():
    every_epoch = Cadence(steps_per_epoch=10)
    assert run_seconds(COSTS, 10, every_epoch) == 10 + 2 + 0.5 + 0.25 + 3
    assert run_seconds(COSTS, 11, every_epoch) == 11 + 4 + 1 + 0.5 + 3  # a partial epoch validates too
    assert run_seconds(COSTS, 12, Cadence(10, eval_every=5, checkpoint_every=4)) == 12 + 6 + 1.5 + 0.5 + 3
    assert fit_steps(COSTS, 15.75, every_epoch) == 10
    assert fit_steps(COSTS, 15.7, every_epoch) == 9
    assert fit_steps(COSTS, 10**6, every_epoch, limit=50) == 50
    assert fit_steps(COSTS, 6.0, every_epoch) == 0  # not even one step with its validation and end


def test_a_budgeted_run_ends_in_its_budget_and_saves_its_plan(synth_store, tmp_path, tiny_net):
    budget, run = 12.0, tmp_path / "run"
    # a first run in a fresh process imports torch._dynamo, TensorBoard and matplotlib (seconds on a busy
    # machine), which the budget would count as set-up; warm the process first to test the plan, not imports
    train(cfg("max_steps=1", "checkpoint_every=0"), synth_store, tmp_path / "warm")
    start = time.monotonic()
    summary = train(cfg("time_budget=12", "checkpoint_every=0"), synth_store, run)
    took = time.monotonic() - start
    assert took < budget + 5.0, f"{took:.1f} s for a budget of {budget} s"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    record = orjson.loads((run / "run.json").read_bytes())["time_budget"]
    assert saved["max_steps"] == record["max_steps"][1] > 8 and record["max_steps"][0] == 0
    assert saved["epochs"] == record["epochs"][1] == -(-saved["max_steps"] // 8)  # 8 steps per epoch
    assert summary["steps"] == saved["max_steps"] or summary.get("stopped_on_clock")
    assert set(record["costs"]) == {"step", "validation", "checkpoint", "epoch", "end"}
    log = (run / "train.log").read_text()
    assert f"time budget 12s: {saved['max_steps']} steps of ~" in log and "(+ validation ~" in log


FIXED = Costs(step=0.1, validation=0.25, checkpoint=0.0, epoch=0.0, end=0.5)
"""Calibration's result in the tests below: with time_budget=4.2, 24 steps (3 epochs of 8) fit in 4.2 s less 10 %
(3.78 s): 2.4 + 3 * 0.25 + 0.5 = 3.65 s, where 25 would need 4.0 s."""


def fixed_clock(monkeypatch) -> None:
    """A calibration that returns FIXED and a clock that never moves: the same plan every time."""
    monkeypatch.setattr(Trainer, "_calibrate", lambda self: FIXED)
    monkeypatch.setattr(Trainer, "_elapsed", lambda self: 0.0)


def test_resume_of_a_budgeted_run_is_exact_and_measures_nothing(synth_store, tmp_path, tiny_net, monkeypatch):
    fixed_clock(monkeypatch)
    train(cfg("time_budget=4.2"), synth_store, tmp_path / "whole")
    assert yaml.safe_load((tmp_path / "whole" / "config.yaml").read_text())["max_steps"] == 24
    interrupted(cfg("time_budget=4.2"), synth_store, tmp_path / "cut", monkeypatch, 14)
    interrupted(cfg("time_budget=4.2"), synth_store, tmp_path / "again", monkeypatch, 10)

    def no_calibration(self):
        raise AssertionError("a resume measured again")

    monkeypatch.setattr(Trainer, "_calibrate", no_calibration)
    resume(tmp_path / "cut")
    assert_same_run(tmp_path / "whole", tmp_path / "cut")
    train(cfg("time_budget=4.2"), synth_store, tmp_path / "again", resume=True)  # the preset again: epochs=4 in it
    assert_same_run(tmp_path / "whole", tmp_path / "again")


def test_calibration_is_undone_so_the_saved_config_trains_the_same_run(synth_store, tmp_path, tiny_net, monkeypatch):
    # the real calibration steps (the end's parts fixed, for a short run on a busy disk); no clock stop
    monkeypatch.setattr(Trainer, "_time_end_parts", lambda self: (0.1, 0.05, 0.1))
    monkeypatch.setattr(Trainer, "_elapsed", lambda self: 0.0)
    train(cfg("time_budget=2", "model.dropout=0.3", "augment.dropout=0.1"), synth_store, tmp_path / "budgeted")
    again = load_config(TrainConfig, tmp_path / "budgeted" / "config.yaml", ["time_budget=0"])
    train(again, synth_store, tmp_path / "plain")
    assert_same_run(tmp_path / "budgeted", tmp_path / "plain")


def test_a_run_late_on_its_estimate_stops_on_the_clock_and_still_validates(synth_store, tmp_path, tiny_net,
                                                                         monkeypatch, caplog):
    monkeypatch.setattr(Trainer, "_calibrate", lambda self: FIXED)
    clock = iter(range(10**6))  # every reading of the run's clock: 0.25 s later than the last
    monkeypatch.setattr(Trainer, "_elapsed", lambda self: next(clock) * 0.25)
    summary = train(cfg("time_budget=4.2", "checkpoint_every=0"), synth_store, tmp_path / "run")
    assert summary["stopped_on_clock"] and 0 < summary["steps"] < 24
    assert "stopping on the clock at step" in caplog.text
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[-1].split(",")[0] == str(summary["steps"]) and ",val," in rows[-1]  # validated at the stop
    assert (tmp_path / "run" / "last.pt").is_file()


def test_a_budget_too_short_for_one_step_is_a_clear_error(synth_store, tmp_path, tiny_net, monkeypatch):
    monkeypatch.setattr(Trainer, "_calibrate", lambda self: FIXED)
    with pytest.raises(DoodleError, match="too short for one step"):
        train(cfg("time_budget=0.5"), synth_store, tmp_path / "run")
