"""`doodle` itself: every subcommand is there; file-system errors that are the user's to fix are one
line, others propagate."""

from __future__ import annotations

import argparse
import errno
import importlib

import pytest

import doodle.cli as cli
import doodle.cli.info as info
from doodle.cli import COMMANDS, build_parser, main


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_command_registers_a_subparser():
    """Each name of COMMANDS is a module whose subparser is there, spelt with dashes, running that
    module's `run`; and there is no other."""
    choices = subcommands(build_parser())
    assert list(choices) == [name.replace("_", "-") for name in COMMANDS]
    for name in COMMANDS:
        module = importlib.import_module(f"doodle.cli.{name}")
        assert choices[name.replace("_", "-")].get_default("func") is module.run, name


def test_a_command_that_does_not_import_is_an_error(monkeypatch):
    """Never dropped from `doodle --help` in silence: a missing module raises."""
    monkeypatch.setattr(cli, "COMMANDS", [*COMMANDS, "no_such_command"])
    with pytest.raises(ModuleNotFoundError, match="doodle.cli.no_such_command"):
        build_parser()


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
