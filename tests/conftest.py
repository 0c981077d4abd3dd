"""Shared test fixtures: where the real Quick, Draw! files are, and small loaders for them.

Two tiers of real data:

* `quickdraw`: tests/fixtures/quickdraw, a few MB of real drawings committed with the tests (its
  README.md says which files, which rows, and their licence). Always there: the core tests use it.
* `shared_quickdraw`: the whole ../shared/quickdraw (set DOODLE_SHARED to point at a shared/ folder
  elsewhere), for the tests marked `breadth` only: every file, every category, manifest.csv, the full
  counts. Where the folder is absent those tests are deselected with the reason printed.

No test is ever skipped: tests/suite_rules.py (loaded below) fails a run with a skip or an xfail.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from doodle.data.drawing import Drawing, drawing_from_record

pytest_plugins = ["pytester", "suite_rules"]  # suite_rules.py: no skips; the breadth tier

REPO = Path(__file__).resolve().parents[1]
SAMPLE_QUICKDRAW = REPO / "tests" / "fixtures" / "quickdraw"


@pytest.fixture(scope="session")
def quickdraw() -> Path:
    """tests/fixtures/quickdraw: the committed sample, laid out as ../shared/quickdraw."""
    assert SAMPLE_QUICKDRAW.is_dir(), f"the committed sample of real drawings is missing: {SAMPLE_QUICKDRAW}"
    return SAMPLE_QUICKDRAW


@pytest.fixture(scope="session")
def shared_quickdraw() -> Path:
    """The whole ../shared/quickdraw (or $DOODLE_SHARED/quickdraw), for tests marked `breadth`
    (which are deselected where it is absent; suite_rules refuses an unmarked test taking this)."""
    from suite_rules import shared_quickdraw_folder  # imported here: pytest_plugins imports it first

    folder = shared_quickdraw_folder()
    if not folder.is_dir():
        pytest.fail(f"no shared Quick, Draw! folder at {folder}: only tests marked breadth may take it")
    return folder


TIERS = ["sample", pytest.param("shared", marks=pytest.mark.breadth)]
"""Parameters of a check that holds on both tiers: on the sample (core), then on the whole shared
folder (breadth); `tier_folder(request, tier)` gives the folder."""


def tier_folder(request: pytest.FixtureRequest, tier: str) -> Path:
    return request.getfixturevalue("quickdraw" if tier == "sample" else "shared_quickdraw")


def load_benchmark(name: str) -> ModuleType:
    """benchmarks/NAME.py imported as the module NAME (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_ndjson(path: Path, limit: int | None = None) -> list[Drawing]:
    """Every valid drawing of one ndjson file (a plain loader, independent of doodle.read)."""
    out = []
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                out.append(drawing_from_record(orjson.loads(line)))
                if limit and len(out) >= limit:
                    break
    return out


@pytest.fixture(scope="session")
def raw_cats(quickdraw: Path) -> list[Drawing]:
    """Real raw drawings with timing (the cat file)."""
    return load_ndjson(quickdraw / "raw" / "cat.ndjson")


@pytest.fixture(scope="session")
def simplified_cats(quickdraw: Path) -> list[Drawing]:
    """Real simplified drawings (0..255, no timing)."""
    return load_ndjson(quickdraw / "simplified" / "cat.ndjson")


SMALL_STORE_CLASSES = ("airplane", "eye", "map")


@pytest.fixture(scope="session")
def small_store(quickdraw: Path, tmp_path_factory) -> Path:
    """A store of three real simplified classes (airplane, eye, map; 20 % val, row groups of 128):
    the training data of the tests that train a tiny model. Read-only: tests must not modify it."""
    from doodle.data.store import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("small_store") / "s"
    files = [quickdraw / "simplified" / f"JulienDuranleau_{c}.ndjson" for c in SMALL_STORE_CLASSES]
    prepare(files, out, PrepareConfig(val_fraction=0.2, progress=False, workers=1, row_group_size=128))
    return out


class ReadOnlyFolder:
    """A folder that commands run through `run` cannot write in, whoever runs the tests.

    Root ignores permission bits, so as root the command runs in a private mount namespace where
    the folder is bind-mounted read-only (a real read-only file system: EROFS); otherwise the
    folder is simply made read-only (EACCES).
    """

    REMOUNT = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'

    def __init__(self, root: Path):
        self.root = root
        self.folder = root / "read-only"
        self.folder.mkdir()
        self.folder.chmod(0o555)

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:
            argv = ["unshare", "--mount", "sh", "-c", self.REMOUNT, str(self.folder), *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture
def read_only_folder(tmp_path: Path):
    """A `ReadOnlyFolder` under tmp_path."""
    yield ReadOnlyFolder(tmp_path)
    (tmp_path / "read-only").chmod(0o755)
