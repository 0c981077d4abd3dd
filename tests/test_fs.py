"""doodle.fs: the lock, atomic folder replacement, write checks and stale temporaries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import doodle.fs as fs
from doodle.errors import DoodleError


def make_folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "content.txt").write_text(text)
    return path


def test_a_second_lock_on_the_same_output_fails_at_once_naming_the_holder(tmp_path: Path):
    out = tmp_path / "store"
    holder = rf"being prepared by another doodle process \(pid {os.getpid()}\)"
    with fs.exclusive_lock(out, "prepared"):
        second = fs.exclusive_lock(out, "prepared")
        with pytest.raises(DoodleError, match=holder):
            second.__enter__()
    with fs.exclusive_lock(out):  # released: a later run takes it
        pass
    assert not fs.lock_path(out).exists()  # and no lock file is left behind


def test_the_lock_is_held_against_another_process(tmp_path: Path):
    out = tmp_path / "store"
    code = ("import sys; from doodle.fs import exclusive_lock\n"
            "try:\n    exclusive_lock(sys.argv[1]).__enter__()\nexcept Exception as e:\n    print(e); sys.exit(3)")
    with fs.exclusive_lock(out):
        held = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    free = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    assert held.returncode == 3 and "another doodle process" in held.stdout
    assert free.returncode == 0, free.stderr


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_replace_folder_swaps_in_the_new_folder(tmp_path: Path, monkeypatch, exchange: bool):
    if not exchange:
        monkeypatch.setattr(fs, "_exchange", lambda a, b: False)
    out = make_folder(tmp_path / "out", "old")
    new = make_folder(tmp_path / "new", "new")
    fs.replace_folder(new, out)
    assert (out / "content.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_renameat2_is_used_where_linux_has_it(tmp_path: Path):
    if fs._renameat2() is None:
        pytest.fail("this libc has no renameat2: the atomic swap would never be used here")
    a, b = make_folder(tmp_path / "a", "a"), make_folder(tmp_path / "b", "b")
    assert fs._exchange(a, b)
    assert (a / "content.txt").read_text() == "b" and (b / "content.txt").read_text() == "a"


def test_a_kill_between_the_two_renames_keeps_the_old_folder(tmp_path: Path, monkeypatch):
    """The fallback path killed after moving the old folder aside: the old one comes back whole."""
    monkeypatch.setattr(fs, "_exchange", lambda a, b: False)
    out = make_folder(tmp_path / "out", "old")
    new = make_folder(tmp_path / "new", "new")
    real_rename = os.rename

    def killed_at_second(src, dst):
        if Path(src) == new:
            raise KeyboardInterrupt  # stands for the kill
        real_rename(src, dst)

    monkeypatch.setattr(fs.os, "rename", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        fs.replace_folder(new, out)
    monkeypatch.setattr(fs.os, "rename", real_rename)
    assert not out.exists()
    fs.recover_replaced(out)
    assert (out / "content.txt").read_text() == "old"


def test_recover_removes_the_old_folder_once_the_new_one_is_in_place(tmp_path: Path):
    out = make_folder(tmp_path / "out", "new")
    make_folder(tmp_path / ("out" + fs.OLD_SUFFIX), "old")
    fs.recover_replaced(out)
    assert (out / "content.txt").read_text() == "new"
    assert not (tmp_path / ("out" + fs.OLD_SUFFIX)).exists()


def test_check_writable_refuses_a_file_as_parent_and_a_read_only_folder(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DoodleError, match="is a file, not a folder"):
        fs.check_writable(tmp_path / "file" / "sub")
    fs.check_writable(tmp_path / "not" / "yet" / "there")  # created later under a writable parent
    assert not (tmp_path / "not").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]  # the probe file is gone


def test_check_writable_finds_a_read_only_folder_from_an_unprivileged_process(read_only_folder):
    code = f"from doodle.fs import check_writable; check_writable({str(read_only_folder.folder)!r})"
    result = read_only_folder.run([sys.executable, "-c", code])
    assert result.returncode != 0
    assert "cannot write in" in result.stderr


def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path: Path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".last.pt.tmp{dead_pid}"
    live = tmp_path / f".best.pt.tmp{os.getpid()}"
    other = tmp_path / ".notes.tmp"
    for path in (stale, live, other):
        path.write_bytes(b"x")
    assert fs.remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


def test_pid_alive():
    assert fs.pid_alive(os.getpid())
    assert not fs.pid_alive(0)
