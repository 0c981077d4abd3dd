"""Test-time augmentation: the arithmetic and geometric means of views, through `--tta-mean`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
import torch
from torch import nn

import doodle.infer.predict as predict_mod
from doodle.cli import main
from doodle.errors import DoodleError
from doodle.infer.probabilities import read_predictions
from doodle.infer.tta import combine
from doodle.preprocess import InputConfig, Preprocessor

CLASSES = ["a", "b", "c"]
LEFT = np.array([0.9, 0.0999, 0.0001])  # a drawing starting at its left edge
RIGHT = np.array([0.0001, 0.5, 0.4999])  # one starting at its right edge
ARITHMETIC = (LEFT + RIGHT) / 2  # [0.45005, 0.29995, 0.25]: "a" first
GEOMETRIC = np.sqrt(LEFT * RIGHT) / np.sqrt(LEFT * RIGHT).sum()  # [0.0396, 0.9309, 0.0295]: "b" first


class EdgeModel(nn.Module):
    """Probabilities LEFT when a drawing's first point is at its left edge (x = 0 in the sequence
    features), RIGHT at its right edge (x = 1), and log-linear in between: a mirrored view swaps them."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, batch):
        x0 = batch["points"][:, 0, :1].double()
        left, right = torch.log(torch.tensor(LEFT)), torch.log(torch.tensor(RIGHT))
        return (left + x0 * (right - left)).float() + self.dummy


@pytest.fixture
def checkpoint(tmp_path: Path, monkeypatch) -> Path:
    def load_model(path, weights="model"):
        return EdgeModel().eval(), Preprocessor(InputConfig(max_points=16), "sequence"), list(CLASSES), {}

    monkeypatch.setattr(predict_mod, "load_model", load_model)
    path = tmp_path / "model.pt"
    path.write_bytes(b"")
    return path


@pytest.fixture
def drawings(tmp_path: Path) -> Path:
    """Two labelled ("a") one-stroke drawings: one starts at its left edge, the other at its right."""
    records = [{"key_id": str(k), "word": "a", "drawing": [[xs, [0, 5, 0]]]}
               for k, xs in ((1, [0, 10, 30]), (2, [30, 10, 0]))]
    path = tmp_path / "a.ndjson"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def test_combine_by_hand():
    views = [np.log([LEFT, RIGHT]), np.log([RIGHT, RIGHT])]
    assert np.allclose(np.exp(combine(views, "prob")), [ARITHMETIC, RIGHT], atol=1e-6)
    assert np.allclose(np.exp(combine(views, "log")), [GEOMETRIC, RIGHT], atol=1e-6)
    assert combine(views[:1], "log").tolist() == np.log([LEFT, RIGHT]).astype(np.float32).tolist()
    with pytest.raises(DoodleError, match="unknown TTA mean 'max'"):
        combine(views, "max")


@pytest.mark.parametrize(("mean", "expected"), [("prob", ARITHMETIC), ("log", GEOMETRIC)])
def test_predict_tta_mean(checkpoint, drawings, tmp_path, mean, expected):
    out = tmp_path / "p.parquet"
    assert main(["-q", "predict", str(checkpoint), "--data", str(drawings), "--tta", "flip", "--tta-mean", mean,
                 "--out", str(out)]) == 0
    preds = read_predictions(out)
    assert preds.key_ids.tolist() == [1, 2] and preds.meta["tta_mean"] == mean
    assert np.allclose(preds.probs, [expected, expected], atol=1e-5)
    plain = tmp_path / "plain.parquet"  # no views: each drawing's own probabilities
    assert main(["-q", "predict", str(checkpoint), "--data", str(drawings), "--tta-mean", mean,
                 "--out", str(plain)]) == 0
    assert np.allclose(read_predictions(plain).probs, [LEFT, RIGHT], atol=1e-5)


def test_evaluate_tta_mean(checkpoint, drawings, tmp_path):
    acc1 = {}
    for mean in ("prob", "log"):
        assert main(["-q", "evaluate", str(checkpoint), "--data", str(drawings), "--tta", "flip",
                     "--tta-mean", mean, "--out", str(tmp_path / mean)]) == 0
        acc1[mean] = orjson.loads((tmp_path / mean / "metrics.json").read_bytes())["acc1"]
    assert acc1 == {"prob": 1.0, "log": 0.0}  # the label "a" is first only under the arithmetic mean


def test_unknown_tta_mean_is_a_usage_error(checkpoint, drawings, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(checkpoint), "--data", str(drawings), "--tta-mean", "max",
              "--out", str(tmp_path / "x.parquet")])
    assert exit_info.value.code == 2
