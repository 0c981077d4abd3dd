"""`doodle` itself: every subcommand is there; file-system errors that are the user's to fix are one
line, others propagate."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import subprocess
import sys
from pathlib import Path

import pytest

import doodle.cli as cli
import doodle.cli.info as info
from doodle.cli import COMMANDS, build_parser, log_levels, main


def a_store(folder: Path) -> Path:
    """A folder that passes the command line's store check (the commands are replaced in these tests)."""
    (folder / "_manifest.json").write_text("{}")
    return folder


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
def test_a_file_system_error_of_the_environment_is_one_line(monkeypatch, capsys, tmp_path, code: int):
    def fail(args):
        raise OSError(code, "it failed", "/data/store/part-00000.parquet")

    monkeypatch.setattr(info, "run", fail)
    assert main(["info", str(a_store(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err == "doodle info: error: it failed: /data/store/part-00000.parquet\n"


def test_other_os_errors_are_not_hidden(monkeypatch, tmp_path):
    def fail(args):
        raise OSError(errno.EBADF, "bad file descriptor")

    monkeypatch.setattr(info, "run", fail)
    with pytest.raises(OSError, match="bad file descriptor"):
        main(["info", str(a_store(tmp_path))])


MISSING = "/no/such/path"
NOT_A_RUN = f"{MISSING} is neither a checkpoint file nor a run folder"
NOT_A_STORE = f"{MISSING} is not a doodle store (no _manifest.json)"
NO_SUCH = f"{MISSING}: no such file or folder"
PATH_CHECKS = [
    (["info", MISSING], NOT_A_STORE),
    (["predict", MISSING, "--data", "x.csv", "--out", "s.csv"], NOT_A_RUN),
    (["predict", ".", "--data", MISSING, "--out", "s.csv"], NO_SUCH),
    (["export", MISSING, "--out", "e"], NOT_A_RUN),
    (["serve", MISSING], NO_SUCH),
    (["train", "--data", MISSING, "--out", "r"], NOT_A_STORE),
    (["train", "--config", MISSING, "--data", ".", "--out", "r"], NO_SUCH),
    (["train", "--resume", MISSING], f"run {MISSING} not found"),
    (["evaluate", MISSING, "--data", ".", "--out", "r"], NO_SUCH),
    (["evaluate", ".", "--data", MISSING, "--out", "r"], NO_SUCH),
    (["balance", MISSING, "--out", "x.csv"], NO_SUCH),
    (["ensemble", MISSING, "--out", "x.csv"], NO_SUCH),
    (["clean", ".", "--data", MISSING, "--out", "y"], NOT_A_STORE),
    (["convert", MISSING, "--out", "x.csv"], NO_SUCH),
    (["simplify", MISSING, "--out", "x.ndjson"], NO_SUCH),
    (["pseudo-label", MISSING, "--data", ".", "--out", "y"], NO_SUCH),
]


@pytest.mark.parametrize(("argv", "message"), PATH_CHECKS, ids=[a[0] for a, _ in PATH_CHECKS])
def test_a_missing_path_is_one_line_before_any_heavy_import(argv: list[str], message: str, tmp_path):
    """Checked while the command line is read: torch (seconds to import) is never loaded for a typo."""
    code = ("import sys; from doodle.cli import main\n"
            f"try:\n    rc = main({argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('torch' in sys.modules, rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.stderr == f"doodle {argv[0]}: error: {message}\n"
    assert done.stdout.split() == ["False", "2"]


def test_a_bad_option_still_shows_the_usage(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["info", str(a_store(tmp_path)), "--no-such-option"])
    err = capsys.readouterr().err
    assert err.startswith("usage: doodle") and err.endswith("unrecognized arguments: --no-such-option\n")


@pytest.mark.parametrize(("verbose", "quiet", "levels"), [
    (0, False, (logging.INFO, logging.WARNING)),
    (1, False, (logging.DEBUG, logging.INFO)),
    (2, False, (logging.DEBUG, logging.DEBUG)),
    (3, False, (logging.DEBUG, logging.DEBUG)),
    (2, True, (logging.WARNING, logging.WARNING)),
])
def test_verbosity_levels_are_what_help_says(verbose: int, quiet: bool, levels: tuple[int, int]):
    assert log_levels(verbose, quiet) == levels


@pytest.mark.parametrize("argv", [["-q", "info", "S"], ["info", "S", "-q"], ["info", "-q", "S"]])
def test_quiet_and_verbose_go_before_or_after_the_command(argv: list[str], tmp_path):
    store = str(a_store(tmp_path))
    args = build_parser().parse_args([store if a == "S" else a for a in argv])
    assert args.quiet and args.verbose == 0
    assert build_parser().parse_args(["-vv", "info", store]).verbose == 2
    assert build_parser().parse_args(["info", store, "-vv"]).verbose == 2
    assert not build_parser().parse_args(["info", store]).quiet
