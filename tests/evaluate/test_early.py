"""Early guessing: MAP@3 on the first strokes of real drawings, checked against a model whose
guesses are known exactly (it counts the strokes it is shown)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from doodle.data.formats import read
from doodle.errors import DoodleError
from doodle.evaluate.early import early_guessing, format_table, plot_early, truncated
from doodle.preprocess import InputConfig, Preprocessor

K = 12
CLASSES = [str(n) for n in range(1, K + 1)]  # class c: "a drawing of c + 1 strokes"


class StrokeCounter(nn.Module):
    """Scores class c by -|c + 1 - strokes seen| (pen lifts in the sequence features)."""

    def forward(self, batch):
        seen = batch["points"][..., 5].sum(1)
        return -(torch.arange(1, K + 1)[None, :] - seen[:, None]).abs()


def expected_map3(stroke_counts: list[int], fraction: float) -> float:
    """The MAP@3 StrokeCounter must get: the label is min(n, K), it sees min(ceil(f n), K) strokes,
    and ranks classes by distance, ties to the lower class."""
    total = 0.0
    for n in stroke_counts:
        label = min(n, K)
        seen = min(max(1, math.ceil(fraction * n - 1e-9)), K)
        ranking = sorted(range(1, K + 1), key=lambda c, s=seen: (abs(c - s), c))[:3]
        total += 1.0 / (ranking.index(label) + 1) if label in ranking else 0.0
    return total / len(stroke_counts)


@pytest.fixture(scope="module")
def drawings(quickdraw):
    out = []
    for name in ("cat", "eye", "television", "The Eiffel Tower"):
        out += [d.replace(word=str(min(len(d.strokes), K))) for d in read(quickdraw / "raw" / f"{name}.ndjson")]
    return out


def test_map3_per_fraction_of_strokes(drawings, tmp_path):
    pre = Preprocessor(InputConfig(max_points=4096), "sequence")
    result = early_guessing(StrokeCounter(), pre, CLASSES, drawings, batch_size=16)
    counts = [len(d.strokes) for d in drawings]
    assert result.fractions == [0.25, 0.5, 0.75, 1.0] and result.drawings == len(drawings)
    assert result.map3 == pytest.approx([expected_map3(counts, f) for f in result.fractions], abs=1e-12)
    assert result.map3[-1] == 1.0 and result.acc1[-1] == 1.0
    assert result.map3[0] <= result.map3[1] <= result.map3[2] < 1.0  # real drawings have several strokes
    assert result.map3[0] < result.map3[2]

    table = format_table({"counter": result})
    assert "25%" in table and "100%" in table and f"{result.map3[0]:.4f}" in table
    png = plot_early({"counter": result, "again": result}, tmp_path / "docs" / "early.png")
    assert png.read_bytes().startswith(b"\x89PNG") and not list(png.parent.glob(".*tmp*"))


def test_drawings_outside_the_classes_are_left_out(drawings):
    pre = Preprocessor(InputConfig(max_points=4096), "sequence")
    others = [d.replace(word="not a class") for d in drawings[:5]]
    result = early_guessing(StrokeCounter(), pre, CLASSES, drawings + others, fractions=[0.5])
    assert result.drawings == len(drawings)
    with pytest.raises(DoodleError, match="no drawings"):
        early_guessing(StrokeCounter(), pre, CLASSES, others)


def test_truncated_keeps_the_first_strokes(drawings):
    d = max(drawings, key=lambda d: len(d.strokes))
    n = len(d.strokes)
    for f in (0.01, 0.25, 0.5, 1.0):
        (cut,) = truncated([d], f)
        assert len(cut.strokes) == max(1, math.ceil(f * n - 1e-9))
        assert all(a is b for a, b in zip(cut.strokes, d.strokes, strict=False))
    with pytest.raises(DoodleError):
        truncated([d], 0.0)
