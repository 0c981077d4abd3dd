"""What the terminal shows of a training run: the progress bar, and the one line it ends with."""

from __future__ import annotations

import io
import logging
import re
import sys

import orjson

from doodle.cli import main
from doodle.config import load_config
from doodle.train.config import TrainConfig
from doodle.train.loop import train
from doodle.train.progress import bar_wanted, done_line, make_bar

TINY = ["input.size=32", "data.batch_size=16", "data.workers=0", "log_every=4", "epochs=2"]  # 8 steps per epoch


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_bar_shows_only_on_a_terminal_with_info_lines(caplog):
    caplog.set_level(logging.INFO, logger="doodle.train")
    assert bar_wanted(Terminal()) and not bar_wanted(io.StringIO())
    caplog.set_level(logging.WARNING, logger="doodle.train")  # what -q sets
    assert not bar_wanted(Terminal())
    assert make_bar(10, stream=Terminal()).disable


def test_the_bar_counts_steps_to_the_total_with_rate_and_eta(caplog):
    caplog.set_level(logging.INFO, logger="doodle.train")
    stream = Terminal()
    with make_bar(40, 10, stream=stream) as bar:  # a resumed run: 10 of its 40 steps done
        assert "10/40" in stream.getvalue()
        bar.update()
        bar.update()
    last = stream.getvalue().split("\r")[-1]  # the final redraw (tqdm redraws at most every 0.1 s)
    assert last.startswith("train:") and "12/40" in last
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, +[\d.]+ ?(step/s|s/step)", last), last  # elapsed<ETA, rate


def test_training_on_a_terminal_draws_the_bar_and_keeps_train_log_as_it_was(synth_store, tmp_path, tiny_net,
                                                                          monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="doodle.train")
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    train(load_config(TrainConfig, None, TINY), synth_store, tmp_path / "run")
    assert "train: " in screen.getvalue() and "16/16" in screen.getvalue() and "loss " in screen.getvalue()
    log = (tmp_path / "run" / "train.log").read_text()
    assert "16/16" not in log and "step 16 epoch 2.00 loss" in log  # the log file has its lines, no bar


SUMMARY = {"steps": 2400, "best_map3": 0.95612, "best_step": 2400, "best_epoch": 12.0, "weights": "ema",
           "seconds": 872.4}


def test_the_final_line_says_time_score_step_epoch_and_weights():
    assert done_line(SUMMARY, "runs/x") == ("done in 14m 32s: best val MAP@3 0.9561 at step 2400 (epoch 12); "
                                            "weights runs/x/best.pt (EMA)")
    mid = {**SUMMARY, "best_epoch": 3.5, "weights": "raw", "stopped_on_clock": True,
           "averaged": {"map3": 0.9570, "weights": "ema", "snapshots": 3}}
    assert done_line(mid, "r") == ("done in 14m 32s: best val MAP@3 0.9561 at step 2400 (epoch 3.5); weights "
                                   "r/best.pt (raw); averaged.pt (ema of 3) MAP@3 0.9570; stopped on the clock "
                                   "after 2400 steps")
    unvalidated = {**SUMMARY, "best_step": -1, "best_map3": -1.0, "best_epoch": -1.0, "seconds": 4.24}
    assert done_line(unvalidated, "r") == "done in 4.2s: 2400 steps, no validation; weights r/best.pt (EMA), the last"


def test_a_run_ends_with_the_line_in_train_log_and_quiet_prints_it(synth_store, tmp_path, tiny_net, capsys):
    run = tmp_path / "run"
    assert main(["-q", "train", "--data", str(synth_store), "--out", str(run), *TINY]) == 0
    printed = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"done in [\dhms. ]+: best val MAP@3 \d\.\d{{4}} at step \d+ \(epoch [\d.]+\); "
                        rf"weights {re.escape(str(run))}/best.pt \(raw\)", printed), printed
    assert (run / "train.log").read_text().splitlines()[-1].endswith(printed)
    summary = orjson.loads((run / "summary.json").read_bytes())
    assert {"steps", "best_map3", "best_step", "best_epoch", "weights", "seconds"} <= set(summary)
