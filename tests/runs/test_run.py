"""`Run`: the layout of a run folder, opening and creating one, and finding its checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest

from doodle.config import save_config
from doodle.errors import DoodleError
from doodle.runs import Run, resolve_checkpoint
from doodle.train.config import TrainConfig


def a_run(root: Path, *checkpoints: str) -> Run:
    root.mkdir(parents=True)
    save_config(TrainConfig(), root / "config.yaml")
    for name in checkpoints:
        (root / name).write_bytes(b"weights")
    return Run(root)


def test_create_refuses_a_folder_holding_a_resumable_run(tmp_path: Path):
    a_run(tmp_path / "r", "last.pt")
    with pytest.raises(DoodleError, match=r"already holds a run; resume it with `doodle train --resume .*r`"):
        Run.create(tmp_path / "r")


def test_create_accepts_a_run_that_died_before_its_first_checkpoint(tmp_path: Path):
    a_run(tmp_path / "r")  # config.yaml, no last.pt
    assert Run.create(tmp_path / "r").root == tmp_path / "r"
    assert Run.create(tmp_path / "new").root == tmp_path / "new"


def test_open_needs_a_folder_with_a_saved_config(tmp_path: Path):
    with pytest.raises(DoodleError, match="run .*missing not found"):
        Run.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DoodleError, match="not a run folder \\(no config.yaml\\)"):
        Run.open(tmp_path / "plain")
    run = a_run(tmp_path / "r")
    assert Run.open(tmp_path / "r") == run and not run.resumable
    assert run.config() == TrainConfig()


def test_checkpoints_by_name_and_a_missing_one_lists_those_present(tmp_path: Path):
    run = a_run(tmp_path / "r", "best.pt", "last.pt")
    assert run.checkpoint() == run.best and run.checkpoint("last") == run.last
    assert run.checkpoint("ema") == run.last  # the EMA weights at the end of training
    assert run.checkpoint("best.pt") == run.best
    with pytest.raises(DoodleError, match=r"no checkpoint 'averaged.pt' in .* \(checkpoints there: best.pt, last.pt\)"):
        run.checkpoint("averaged")


def test_resolve_checkpoint_takes_a_file_a_run_or_a_path(tmp_path: Path):
    run = a_run(tmp_path / "r", "best.pt")
    other = tmp_path / "elsewhere.pt"
    other.write_bytes(b"w")
    assert resolve_checkpoint(run.best) == run.best
    assert resolve_checkpoint(run.root) == run.best
    assert resolve_checkpoint(run.root, str(other)) == other
    with pytest.raises(DoodleError, match="neither a checkpoint file nor a run folder"):
        resolve_checkpoint(tmp_path / "nothing")


def test_info_records_the_store_and_keeps_earlier_facts(tmp_path: Path):
    run = a_run(tmp_path / "r")
    assert run.info() == {} and run.data() is None and run.summary() is None
    run.write_info(tmp_path / "store", found_batch=[16, 90])
    run.write_info(tmp_path / "store")
    info = run.info()
    assert info["data"] == str((tmp_path / "store").resolve()) and info["found_batch"] == [16, 90]
    assert info["code_version"] and run.data() == (tmp_path / "store").resolve()
    assert not list(run.root.glob(".*tmp*"))


def test_snapshots_are_listed_oldest_first(tmp_path: Path):
    run = a_run(tmp_path / "r")
    run.snapshot_dir.mkdir()
    for step in (30, 4, 12):
        (run.snapshot_dir / f"step-{step:07d}.pt").write_bytes(b"w")
    assert [p.name for p in run.snapshots()] == ["step-0000004.pt", "step-0000012.pt", "step-0000030.pt"]
