"""`prepare` against faults and mistakes: the lock, an atomic --overwrite, bad option values and
outputs that cannot be written, each refused up front in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import doodle.data.store as store_mod
import doodle.fs as fs
from doodle.cli import main
from doodle.data.store import PrepareConfig, load_manifest, prepare
from doodle.data.synth import synth
from doodle.errors import DoodleError

QUIET = {"progress": False, "workers": 1}


@pytest.fixture(scope="module")
def drawings(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synth")
    synth(folder, per_class=30, classes=["circle", "square", "star"])
    return folder


@pytest.fixture(scope="module")
def other_drawings(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synth2")
    synth(folder, per_class=10, classes=["moon"])
    return folder


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_a_second_prepare_into_the_same_store_fails_in_one_line(drawings: Path, tmp_path: Path, capsys):
    out = tmp_path / "store"
    with fs.exclusive_lock(out, "prepared"):  # stands for a first run still at work
        assert main(["prepare", str(drawings), "--out", str(out), "--no-progress", "--workers", "1"]) == 2
    assert "is being prepared by another doodle process" in one_error_line(capsys)
    assert not out.exists() and not out.with_name("store.partial").exists()


def test_a_prepare_process_refused_while_another_holds_the_store(drawings: Path, tmp_path: Path):
    """Process-level: a holder process (standing for a first prepare at work) and a real second one."""
    out = tmp_path / "store"
    hold = ("import sys; from doodle.fs import exclusive_lock\n"
            "with exclusive_lock(sys.argv[1], 'prepared'):\n    print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    argv = [sys.executable, "-m", "doodle", "prepare", str(drawings), "--out", str(out), "--overwrite",
            "--no-progress", "--workers", "1"]
    second = subprocess.run(argv, capture_output=True, text=True)
    holder.communicate("")
    assert second.returncode == 2, second.stderr
    assert f"being prepared by another doodle process (pid {holder.pid})" in second.stderr
    assert "Traceback" not in second.stderr and not out.exists()
    after = subprocess.run(argv, capture_output=True, text=True)  # the holder is gone: the store is built
    assert after.returncode == 0, after.stderr
    assert load_manifest(out)["accepted"] == 90


def test_overwrite_keeps_the_old_store_until_the_new_one_is_complete(drawings, other_drawings, tmp_path, monkeypatch):
    out = tmp_path / "store"
    prepare([drawings], out, PrepareConfig(**QUIET))

    def broken(*args, **kwargs):
        raise RuntimeError("the reduce stage died")

    monkeypatch.setattr(store_mod, "_run_reduce", broken)
    with pytest.raises(RuntimeError):
        prepare([other_drawings], out, PrepareConfig(**QUIET), overwrite=True)
    assert load_manifest(out)["classes"] == ["circle", "square", "star"]  # the old store, whole
    assert len(list(store_mod.iter_store(out))) == 90


def test_overwrite_killed_between_its_renames_is_restored_by_the_next_run(drawings, other_drawings, tmp_path,
                                                                          monkeypatch):
    out = tmp_path / "store"
    prepare([drawings], out, PrepareConfig(**QUIET))
    monkeypatch.setattr(fs, "_exchange", lambda a, b: False)  # the two-rename path
    real_rename = os.rename

    def killed(src, dst):
        if Path(src).name == "store.partial":
            raise KeyboardInterrupt  # stands for kill -9 after the old store was moved aside
        real_rename(src, dst)

    monkeypatch.setattr(fs.os, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare([other_drawings], out, PrepareConfig(**QUIET), overwrite=True)
    monkeypatch.setattr(fs.os, "rename", real_rename)
    assert not out.exists() and (tmp_path / "store.old" / "_manifest.json").is_file()
    with pytest.raises(DoodleError, match="already exists"):  # the next run finds the old store back first
        prepare([other_drawings], out, PrepareConfig(**QUIET))
    assert load_manifest(out)["classes"] == ["circle", "square", "star"]
    assert not (tmp_path / "store.old").exists()


def test_kill_9_during_overwrite_leaves_the_old_or_the_new_store(drawings, other_drawings, tmp_path):
    out = tmp_path / "store"
    prepare([drawings], out, PrepareConfig(**QUIET))
    argv = [sys.executable, "-m", "doodle", "prepare", str(other_drawings), "--out", str(out), "--overwrite",
            "--no-progress", "--workers", "1"]
    for delay in (0.5, 1.5, 3.0):
        proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        fs.recover_replaced(out)
        assert load_manifest(out)["classes"] in (["circle", "square", "star"], ["moon"])
        assert len(list(store_mod.iter_store(out))) in (90, 10)


def test_overwrite_of_a_file_is_refused_before_any_work(drawings: Path, tmp_path: Path, capsys, monkeypatch):
    target = tmp_path / "notes.txt"
    target.write_text("precious")

    def no_reading(*args, **kwargs):
        raise AssertionError("inputs were read before the output was checked")

    monkeypatch.setattr("doodle.data.formats.expand_sources", no_reading)
    assert main(["prepare", str(drawings), "--out", str(target), "--overwrite", "--no-progress"]) == 2
    assert "is a file, not a store folder" in one_error_line(capsys)
    assert target.read_text() == "precious"


def test_overwrite_never_replaces_a_folder_that_is_not_a_store(drawings: Path, tmp_path: Path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    assert main(["prepare", str(drawings), "--out", str(home), "--overwrite", "--no-progress"]) == 2
    assert "not a doodle store: refusing to replace it" in one_error_line(capsys)
    assert (home / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize(("flag", "value"), [("--memory-mb", "0"), ("--workers", "-1"), ("--shards", "-1"),
                                             ("--seed", "-1"), ("--val-fraction", "1"), ("--val-fraction", "nan"),
                                             ("--workers", "two")])
def test_bad_option_values_are_one_usage_line(drawings: Path, tmp_path: Path, capsys, flag: str, value: str):
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", str(drawings), "--out", str(tmp_path / "s"), flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {flag}:" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(("option", "value", "message"), [
    ("memory_mb", 0, "memory_mb must be at least 16"), ("workers", -1, "workers must be 0"),
    ("shards", -1, "shards must be 0"), ("shards", 5000, "shards must be 0"), ("seed", -1, "seed must be in"),
    ("val_fraction", 1.0, "val_fraction must be in"), ("chunk_mb", 0, "chunk_mb must be positive"),
    ("row_group_size", 0, "row_group_size must be at least 1")])
def test_the_python_api_checks_the_same_ranges(drawings: Path, tmp_path: Path, option: str, value, message: str):
    config = PrepareConfig(**{**QUIET, option: value})
    with pytest.raises(DoodleError, match=message):
        prepare([drawings], tmp_path / "s", config)
    assert not (tmp_path / "s").exists()


def test_the_cli_memory_minimum_is_the_stores():
    from doodle.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["prepare", "x", "--out", "y", "--memory-mb", str(store_mod.MIN_MEMORY_MB - 1)])
    build_parser().parse_args(["prepare", "x", "--out", "y", "--memory-mb", str(store_mod.MIN_MEMORY_MB)])


def test_a_read_only_output_folder_is_one_line_before_any_work(drawings: Path, read_only_folder):
    out = read_only_folder.folder / "store"
    result = read_only_folder.run([sys.executable, "-m", "doodle", "prepare", str(drawings), "--out", str(out),
                                   "--no-progress"])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"--out {out}: cannot write in {read_only_folder.folder}" in result.stderr


def test_a_class_list_file_with_a_byte_order_mark(drawings: Path, tmp_path: Path):
    classes = tmp_path / "classes.txt"
    classes.write_bytes("\ufeffcircle\r\nsquare\r\nstar\r\n".encode())
    assert main(["prepare", str(drawings), "--out", str(tmp_path / "s"), "--classes", str(classes),
                 "--no-progress", "--workers", "1"]) == 0
    manifest = load_manifest(tmp_path / "s")
    assert manifest["classes"] == ["circle", "square", "star"]
    assert manifest["rejected"] == 0 and manifest["accepted"] == 90
