"""`doodle train` against faults: temporaries a kill -9 left in the run are cleaned on start and
resume, and a run folder that cannot be written is one line before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from doodle.config import load_config
from doodle.data.store import PrepareConfig, prepare
from doodle.data.synth import synth
from doodle.train.config import TrainConfig
from doodle.train.loop import train

TINY = ["model.arch=resnet10t", "input.size=32", "data.batch_size=16", "data.workers=0", "epochs=1",
        "keep_checkpoints=1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("run_safety")
    synth(root / "synth", per_class=20, classes=["circle", "square", "star"])
    prepare([root / "synth"], root / "store", PrepareConfig(val_fraction=0.2, progress=False, workers=1))
    return root / "store"


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def leave_temporaries(run: Path) -> list[Path]:
    """What a kill -9 in the middle of atomic_save leaves (`.NAME.tmpPID`)."""
    pid = dead_pid()
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    files = [run / f".last.pt.tmp{pid}", run / f".best.pt.tmp{pid}", run / "checkpoints" / f".step-0000004.pt.tmp{pid}"]
    for path in files:
        path.write_bytes(b"\0" * 1024)
    return files


def test_stale_checkpoint_temporaries_are_removed_on_start_and_on_resume(store: Path, tmp_path: Path):
    run = tmp_path / "run"
    stale = leave_temporaries(run)
    train(load_config(TrainConfig, None, TINY), store, run)
    assert not any(p.exists() for p in stale)
    stale = leave_temporaries(run)
    train(load_config(TrainConfig, None, TINY), store, run, resume=True)
    assert not any(p.exists() for p in stale)
    assert not list(run.rglob("*.tmp*"))


def test_a_read_only_run_folder_is_one_line_before_any_work(store: Path, read_only_folder):
    out = read_only_folder.folder / "run"
    result = read_only_folder.run([sys.executable, "-m", "doodle", "train", "--data", str(store), "--out", str(out),
                                   *TINY])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"--out {out}: cannot write in {read_only_folder.folder}" in result.stderr
