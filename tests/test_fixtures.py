"""The committed sample of real drawings (tests/fixtures/quickdraw) is what its README and manifest say,
stays small, and (breadth) is exactly what tests/fixtures/make_quickdraw_sample.py makes of ../shared."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
HAND_WRITTEN = {"README.md", "kaggle/README.md"}


def files_of(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def builder():
    spec = importlib.util.spec_from_file_location("make_quickdraw_sample", FIXTURES / "make_quickdraw_sample.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def test_the_sample_holds_its_manifest_s_files_and_stays_small(quickdraw: Path):
    with open(quickdraw / "manifest.csv", newline="") as handle:
        listed = {row["file"] for row in csv.DictReader(handle)}
    assert files_of(quickdraw) == listed | HAND_WRITTEN | {"manifest.csv"}
    make = builder()
    assert listed == set(make.WHOLE) | set(make.FIRST)
    assert sum((quickdraw / name).stat().st_size for name in files_of(quickdraw)) < 3 * 2**20  # a few MB at most
    readme = (quickdraw / "README.md").read_text()
    assert "Creative Commons Attribution 4.0 International (CC BY 4.0)" in readme
    assert "https://github.com/googlecreativelab/quickdraw-dataset" in readme


@pytest.mark.breadth
def test_the_sample_is_rebuilt_exactly_from_shared(shared_quickdraw: Path, quickdraw: Path, tmp_path: Path):
    """Whole files byte for byte, cut ones the first records of the shared file, manifest.csv its rows."""
    written = builder().build(shared_quickdraw, tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == files_of(quickdraw) - HAND_WRITTEN
    for path in written:
        name = path.relative_to(tmp_path).as_posix()
        assert path.read_bytes() == (quickdraw / name).read_bytes(), name
