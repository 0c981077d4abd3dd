"""`doodle render` through the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from doodle.cli import main
from doodle.render import list_encodings


def test_list_prints_every_encoding(capsys):
    assert main(["render", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(list_encodings())
    for enc, line in zip(list_encodings(), lines, strict=True):
        assert line.startswith(enc.name)


def test_gallery_png_written(quickdraw: Path, tmp_path: Path):
    import matplotlib.image

    out = tmp_path / "g.png"
    src = quickdraw / "raw" / "cat.ndjson"
    code = main(["render", str(src), "--encoding", "order-speed-accel-time", "--size", "32", "--n", "3",
                 "--cols", "2", "--out", str(out)])  # fmt: skip
    assert code == 0 and out.stat().st_size > 1000
    img = matplotlib.image.imread(out)
    assert img.ndim == 3 and img.shape[1] > 2 * 4 * 32  # two panels of RGB + 3 channel tiles


def test_errors_are_reported(tmp_path: Path, capsys):
    assert main(["render", "--encoding", "nope", str(tmp_path)]) == 2
    assert "unknown encoding" in capsys.readouterr().err
    assert main(["render"]) == 2


@pytest.mark.parametrize("flag", ["--sample", "--augment"])
def test_sample_and_augment(quickdraw: Path, tmp_path: Path, flag):
    out = tmp_path / "s.png"
    assert main(["render", str(quickdraw / "simplified" / "cat.ndjson"), flag, "--n", "2", "--size", "32",
                 "--encoding", "grey", "--out", str(out)]) == 0  # fmt: skip
    assert out.exists()
