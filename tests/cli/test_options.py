"""Every range-checked option of every command, generated from the parser: an out-of-range value
is one usage line with exit status 2, never a traceback, and the documented default is valid."""

from __future__ import annotations

import argparse

import pytest

from doodle.cli import build_parser
from doodle.cli.options import (
    at_least,
    existing_path,
    fraction,
    non_negative_float,
    positive_float,
    run_or_checkpoint,
    store_folder,
)

PATHS = (existing_path, run_or_checkpoint, store_folder)


def checked_options() -> list[tuple[str, argparse.Action]]:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(name, action) for name, sub in commands.choices.items() for action in sub._actions
            if hasattr(action.type, "invalid")]


CHECKED = checked_options()


def test_the_commands_that_write_data_check_their_numbers():
    names = {(command, action.option_strings[0]) for command, action in CHECKED}
    for expected in [("prepare", "--workers"), ("prepare", "--memory-mb"), ("prepare", "--shards"),
                     ("prepare", "--seed"), ("prepare", "--val-fraction"), ("predict", "--batch-size"),
                     ("render", "--size"), ("synth", "--per-class"), ("download", "--timeout")]:
        assert expected in names


@pytest.mark.parametrize(("command", "action"), CHECKED,
                         ids=[f"{c}{a.option_strings[0]}" for c, a in CHECKED])
def test_an_out_of_range_value_is_one_usage_line(command: str, action: argparse.Action, capsys, tmp_path):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    required = [a for a in sub._actions if a.required or not a.option_strings]
    argv = [command]
    (tmp_path / "_manifest.json").write_text("{}")  # a path that passes every path check
    for other in required:
        if other.dest != "help":
            value = str(list(other.choices)[0]) if other.choices else str(tmp_path) if other.type in PATHS else "x"
            argv += ([other.option_strings[0]] if other.option_strings else []) + [value]
    flag = action.option_strings[0]
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([*argv, flag, action.type.invalid])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {flag}:" in err and "Traceback" not in err
    if action.default is not None and not isinstance(action.default, list):
        action.type(str(action.default))  # the default itself passes the check


@pytest.mark.parametrize(("check", "good", "bad"), [
    (at_least(1), ["1", "7"], ["0", "-3", "1.5", "x", ""]),
    (fraction(upper_open=True), ["0", "0.5", "0.999"], ["1", "-0.1", "nan", "inf"]),
    (fraction(), ["0", "1"], ["1.01", "nan"]),
    (positive_float, ["0.001", "60"], ["0", "-1", "inf", "nan"]),
    (non_negative_float, ["0", "2.5"], ["-0.5", "nan"]),
])
def test_the_checks(check, good: list[str], bad: list[str]):
    for text in good:
        check(text)
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            check(text)
