"""argparse types that check a value's range, so a bad option is one usage line, never a traceback.

    p.add_argument("--workers", type=at_least(0), default=0)
    p.add_argument("--val-fraction", type=fraction(upper_open=True), default=0.05)

argparse turns the ArgumentTypeError into `doodle prepare: error: argument --workers: must be 0
or more, got -1` with exit status 2, before any work starts.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from typing import NoReturn


def at_least(minimum: int) -> Callable[[str], int]:
    """An int option of at least `minimum`."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in "invalid integer value"
    parse.invalid = str(minimum - 1)  # type: ignore[attr-defined]  # for the tests generated from the parser
    return parse


def positive_float(text: str) -> float:
    """A finite float above 0."""
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite float of 0 or more."""
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def fraction(upper_open: bool = False) -> Callable[[str], float]:
    """A float in [0, 1] (or [0, 1) with `upper_open`)."""

    def parse(text: str) -> float:
        value = _number(text, float)
        if value < 0 or value > 1 or (upper_open and value == 1):
            raise argparse.ArgumentTypeError(f"must be in [0, {'1)' if upper_open else '1]'}, got {text}")
        return value

    parse.__name__ = "fraction"
    parse.invalid = "1" if upper_open else "1.5"  # type: ignore[attr-defined]
    return parse


positive_float.invalid = "0"  # type: ignore[attr-defined]
non_negative_float.invalid = "-1"  # type: ignore[attr-defined]


def _number(text: str, kind: type) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


# -- paths: checked when the command line is read, before any heavy import (torch takes seconds to
# load), so a typo in a path is answered at once. The messages are those the library raises later.
PATH_ERRORS: set[str] = set()
"""Messages of the path checks below: the parser prints these as one line, without the usage."""


def _path_error(message: str) -> argparse.ArgumentTypeError:
    PATH_ERRORS.add(message)
    return argparse.ArgumentTypeError(message)


def existing_path(text: str) -> str:
    """A file or folder that exists."""
    if not os.path.exists(text):
        raise _path_error(f"{text}: no such file or folder")
    return text


def run_or_checkpoint(text: str) -> str:
    """A training run folder or a checkpoint file (which checkpoint of a run is the command's choice)."""
    if not (os.path.isfile(text) or os.path.isdir(text)):
        raise _path_error(f"{text} is neither a checkpoint file nor a run folder")
    return text


def store_folder(text: str) -> str:
    """A store made by `doodle prepare` (a folder with _manifest.json)."""
    if not os.path.isfile(os.path.join(text, "_manifest.json")):
        raise _path_error(f"{text} is not a doodle store (no _manifest.json)")
    return text


class Parser(argparse.ArgumentParser):
    """argparse's parser, except that a path that does not exist is one line, not usage + line."""

    def error(self, message: str) -> NoReturn:
        known = next((m for m in PATH_ERRORS if message.endswith(m)), None)
        if known:
            self.exit(2, f"{self.prog}: error: {known}\n")
        super().error(message)
