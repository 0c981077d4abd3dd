"""`doodle predict` / `evaluate` against inputs a model cannot take and outputs that cannot be
written: bitmap-only drawings, read-only folders, a folder as --out, temporaries of killed runs."""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from doodle.cli import main
from doodle.data.synth import synth
from doodle.errors import DoodleError
from doodle.evaluate.report import predict_in_memory
from doodle.infer.predict import BITMAP_ONLY, MissingRows, predict
from doodle.models import ModelConfig, create_model
from doodle.preprocess import InputConfig
from doodle.runs.checkpoint import atomic_save, make_checkpoint

CLASSES = ["circle", "square", "star"]
FAMILIES = {
    "cnn": (ModelConfig(family="cnn", arch="resnet10t"), InputConfig(size=32), "image"),
    "sequence": (ModelConfig(family="sequence", conv_channels=[8], conv_kernels=[3], rnn_hidden=8, rnn_layers=1),
                 InputConfig(max_points=64), "sequence"),
}


def checkpoint(tmp_path: Path, family: str) -> Path:
    model_cfg, inputs, kind = FAMILIES[family]
    torch.manual_seed(0)
    model = create_model(model_cfg, inputs, len(CLASSES))
    path = tmp_path / f"{family}.pt"
    atomic_save(make_checkpoint(model_config=asdict(model_cfg), input_config=asdict(inputs), input_kind=kind,
                                classes=CLASSES, config={}, model_state=model.state_dict()), path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Stroke drawings (3 classes x 4) beside a file of 5 bitmaps."""
    folder = tmp_path_factory.mktemp("inputs")
    synth(folder, per_class=4, classes=CLASSES)
    np.save(folder / "full_numpy_bitmap_circle.npy", np.zeros((5, 784), np.uint8))
    return folder


def rows_of(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))[1:]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_bitmap_only_drawings_are_skipped_and_counted_not_guessed(data: Path, tmp_path: Path, family: str, caplog):
    out = tmp_path / "probs.parquet"
    with caplog.at_level(logging.WARNING):
        rows = predict(checkpoint(tmp_path, family), [data], out, progress=False, batch_size=4)
    assert rows == 12  # the stroke drawings only
    assert f"5 record(s) rejected and skipped: {BITMAP_ONLY} (5)" in caplog.text


def test_a_submission_refuses_bitmap_only_drawings_or_writes_fallback_rows(data: Path, tmp_path: Path):
    ckpt = checkpoint(tmp_path, "cnn")
    with pytest.raises(DoodleError, match=r"drawing \d+ is a 28x28 bitmap without strokes.*--fallback-rows"):
        predict(ckpt, [data], tmp_path / "sub.csv", progress=False)
    assert not (tmp_path / "sub.csv").exists()
    missing = MissingRows(fallback=True)
    assert predict(ckpt, [data], tmp_path / "sub.csv", progress=False, missing=missing) == 17
    assert missing.written == 5 and len({r[0] for r in rows_of(tmp_path / "sub.csv")}) == 17


def test_bitmap_files_alone_are_refused_before_the_model_loads(data: Path, tmp_path: Path, capsys):
    bitmaps = data / "full_numpy_bitmap_circle.npy"
    argv = ["predict", str(tmp_path / "missing.pt"), "--data", str(bitmaps), "--out", str(tmp_path / "s.csv")]
    with pytest.raises(DoodleError, match="28x28 bitmap files hold no strokes"):
        predict(checkpoint(tmp_path, "cnn"), [bitmaps], tmp_path / "s.csv", progress=False)
    argv[1] = str(checkpoint(tmp_path, "cnn"))
    assert main(argv) == 2
    assert "28x28 bitmap files hold no strokes" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_evaluate_skips_bitmaps_too(data: Path, tmp_path: Path):
    preds = predict_in_memory(checkpoint(tmp_path, "cnn"), [data], progress=False)
    assert len(preds.key_ids) == 12


def test_a_folder_as_out_is_refused(data: Path, tmp_path: Path):
    (tmp_path / "sub.csv").mkdir()
    with pytest.raises(DoodleError, match="is a folder; give a file name"):
        predict(checkpoint(tmp_path, "cnn"), [data], tmp_path / "sub.csv", progress=False)


def test_a_read_only_output_folder_is_one_line_before_the_model_loads(data: Path, tmp_path: Path, read_only_folder):
    ckpt = checkpoint(tmp_path, "cnn")
    out = read_only_folder.folder / "sub.csv"
    result = read_only_folder.run([sys.executable, "-m", "doodle", "predict", str(ckpt), "--data", str(data),
                                   "--out", str(out)])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"--out {out}: cannot write in {read_only_folder.folder}" in result.stderr


def test_temporaries_of_a_killed_predict_are_removed(data: Path, tmp_path: Path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".sub.csv.tmp{int(dead.stdout)}"
    unrelated = tmp_path / f".other.csv.tmp{int(dead.stdout)}"
    stale.write_bytes(b"half a submission")
    unrelated.write_bytes(b"not ours")
    predict(checkpoint(tmp_path, "cnn"), [data], tmp_path / "sub.csv", progress=False,
            missing=MissingRows(fallback=True))
    assert not stale.exists() and unrelated.exists()
