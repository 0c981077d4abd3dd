"""`doodle` itself: file-system errors that are the user's to fix are one line, others propagate."""

from __future__ import annotations

import errno

import pytest

import doodle.cli.info as info
from doodle.cli import main


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC])
def test_a_file_system_error_of_the_environment_is_one_line(monkeypatch, capsys, code: int):
    def fail(args):
        raise OSError(code, "it failed", "/data/store/part-00000.parquet")

    monkeypatch.setattr(info, "run", fail)
    assert main(["info", "somewhere"]) == 2
    err = capsys.readouterr().err
    assert err == "doodle info: error: it failed: /data/store/part-00000.parquet\n"


def test_other_os_errors_are_not_hidden(monkeypatch):
    def fail(args):
        raise OSError(errno.EBADF, "bad file descriptor")

    monkeypatch.setattr(info, "run", fail)
    with pytest.raises(OSError, match="bad file descriptor"):
        main(["info", "somewhere"])
