"""RunLogger: train.log, metrics.csv, TensorBoard scalars and curves.png, resume and ranks."""

from __future__ import annotations

import csv
import logging
import struct
import time
from pathlib import Path

import pytest

from doodle.train.logger import CSV_COLUMNS, PLOT_DPI, PLOT_SIZE, RunLogger


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def fake_run(logger: RunLogger, steps: range, every_val: int = 4) -> None:
    for step in steps:
        logger.log_train(step, step / 10, loss=5.0 / step, lr=1e-3, images_per_s=1234.5)
        if step % every_val == 0:
            logger.log_val(step, step / 10, {"map3": step / 100, "acc1": step / 200, "acc3": step / 80,
                                              "n": 500, "loss": 4.0 / step})


def test_files_and_contents(tmp_path, caplog):
    run = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="doodle.train"), RunLogger(run) as logger:
        fake_run(logger, range(1, 9))
        logger.log_val(9, 0.9, {"map3": 0.5, "note": "not a number", "per_class": [1, 2], "extra": None})
        logger.info("hello there")
    header, rows = read_csv(run / "metrics.csv")
    assert header == list(CSV_COLUMNS)
    assert [(r["step"], r["split"]) for r in rows] == [
        ("1", "train"), ("2", "train"), ("3", "train"), ("4", "train"), ("4", "val"),
        ("5", "train"), ("6", "train"), ("7", "train"), ("8", "train"), ("8", "val"), ("9", "val"),
    ]
    train, val = rows[0], rows[4]
    assert float(train["loss"]) == 5.0 and float(train["lr"]) == 1e-3 and float(train["images_per_s"]) == 1234.5
    assert float(train["epoch"]) == pytest.approx(0.1)
    assert train["map3"] == train["acc1"] == train["acc3"] == ""  # a train row has no metrics
    assert float(val["map3"]) == 0.04 and float(val["acc1"]) == 0.02 and float(val["acc3"]) == 0.05
    assert float(val["loss"]) == 1.0 and val["lr"] == "" and val["images_per_s"] == ""
    assert all(float(r["seconds"]) >= 0 for r in rows)

    text = (run / "train.log").read_text()
    lines = text.splitlines()
    assert "run started" in lines[0]
    assert any("step 3 epoch 0.30 loss 1.6667 lr 0.001 1,234 img/s" in line for line in lines)
    assert any("val step 8 epoch 0.80 loss 0.5000 map3 0.0800 acc1 0.0400 acc3 0.1000 (n=500)" in line
               for line in lines)
    assert lines[-1].endswith("hello there")
    assert lines[-1][:4].isdigit() and "[0:00:" in lines[-1]  # wall-clock and elapsed time
    assert "hello there" in caplog.text and "val step 8" in caplog.text  # echoed through logging

    tb = scalars(run)
    assert [s for s, _ in tb["loss/train"]] == list(range(1, 9))
    assert tb["loss/train"][1][1] == pytest.approx(2.5)
    assert tb["map3/val"] == [(4, pytest.approx(0.04)), (8, pytest.approx(0.08)), (9, 0.5)]
    assert {"lr/train", "images_per_s/train", "loss/val", "acc1/val", "acc3/val"} <= set(tb)
    assert "n/val" not in tb

    png = run / "curves.png"
    assert png.stat().st_size > 20_000
    assert png_size(png) == (int(PLOT_SIZE[0] * PLOT_DPI), int(PLOT_SIZE[1] * PLOT_DPI))


def test_plot_redraws_and_handles_only_train_rows(tmp_path):
    logger = RunLogger(tmp_path, tensorboard=False)
    logger.log_train(1, 0.0, 2.0, 0.1)
    first = logger.plot()
    assert first == tmp_path / "curves.png" and first.stat().st_size > 5_000
    size_before = first.stat().st_size
    fake_run(logger, range(2, 60), every_val=10)
    logger.plot()
    assert (tmp_path / "curves.png").stat().st_size != size_before
    assert not list(tmp_path.glob(".*tmp"))
    logger.close()
    logger.close()  # twice is fine
    logger.log_train(99, 1.0, 1.0, 0.1)  # after close: a no-op, no error
    assert not (tmp_path / "tensorboard").exists()


def test_resume_keeps_earlier_rows_and_drops_later_ones(tmp_path):
    with RunLogger(tmp_path) as logger:
        fake_run(logger, range(1, 11))  # val at 4, 8
    # the run crashed after step 10, its last checkpoint was at step 6: resume from there. A real
    # resume is a later process; here the same process writes again, and TensorBoard orders event
    # files by (second, host, pid, a per-process counter compared as text: "10" < "9"), so wait for
    # the next second to give the resumed file the later name, as a resume in its own process has.
    time.sleep(1.0 - time.time() % 1.0 + 0.01)
    with RunLogger(tmp_path, resume_step=6) as logger:
        fake_run(logger, range(7, 13))  # val at 8, 12
    header, rows = read_csv(tmp_path / "metrics.csv")
    assert header == list(CSV_COLUMNS)
    keys = [(int(r["step"]), r["split"]) for r in rows]
    assert len(keys) == len(set(keys))  # no duplicates
    assert [s for s, split in keys if split == "train"] == list(range(1, 13))
    assert [s for s, split in keys if split == "val"] == [4, 8, 12]
    log_text = (tmp_path / "train.log").read_text()
    assert "run started" in log_text and "run resumed at step 6 (7 metric rows kept)" in log_text
    assert log_text.count("step 2 epoch") == 1  # the log is appended, not rewritten
    tb = scalars(tmp_path)
    assert [s for s, _ in tb["loss/train"]] == list(range(1, 13))  # purged, then rewritten
    assert [s for s, _ in tb["map3/val"]] == [4, 8, 12]


def test_resume_upgrades_an_old_header(tmp_path):
    (tmp_path / "metrics.csv").write_text("step,split,loss\n1,train,2.5\n5,train,1.5\n")
    with RunLogger(tmp_path, resume_step=3, tensorboard=False) as logger:
        logger.log_train(4, 0.4, 2.0, 0.01)
    header, rows = read_csv(tmp_path / "metrics.csv")
    assert header == list(CSV_COLUMNS)
    assert [(r["step"], r["loss"], r["epoch"]) for r in rows] == [("1", "2.5", ""), ("4", "2", "0.4")]


def test_fresh_run_replaces_metrics(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as logger:
        fake_run(logger, range(1, 4))
    with RunLogger(tmp_path, tensorboard=False) as logger:
        logger.log_train(1, 0.0, 9.0, 0.1)
    _, rows = read_csv(tmp_path / "metrics.csv")
    assert [r["loss"] for r in rows] == ["9"]


def test_other_ranks_write_nothing(tmp_path):
    run = tmp_path / "run"
    logger = RunLogger(run, rank=1)
    fake_run(logger, range(1, 9))
    logger.info("not written")
    assert logger.plot() is None
    logger.close()
    assert not run.exists()
