"""The `doodle` command: a thin layer over functions you can also call from Python.

Each subcommand lives in its own module `doodle.cli.<name>` with two functions:
`register(subparsers)` adds its parser (with help, description and examples) and
`run(args) -> int` calls the library. Heavy imports happen inside `run`, so `doodle --help`
stays instant.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys

from doodle.cli.options import Parser
from doodle.errors import DoodleError
from doodle.version import __version__

USER_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})
"""File-system errors that are the environment's, not doodle's: reported in one line."""

# In the order they appear in `doodle --help`: the pipeline's order.
COMMANDS = ["quickstart", "synth", "download", "prepare", "info", "simplify", "convert", "render", "train", "predict",
            "evaluate", "ensemble", "balance", "pseudo_label", "clean", "export", "serve"]

DESCRIPTION = """\
doodle: recognise hand-drawn Quick, Draw! doodles.

Real drawings to a live model in one command (download, prepare, train, evaluate, export, serve):
  doodle quickstart --categories cat dog apple --out work/ --time-budget 15m

The pipeline, one subcommand per stage:
  doodle synth --out data/synth
      write offline drawings (no download needed)
  doodle download --categories cat dog ...
      fetch Google's public files
  doodle prepare data/ --out store/
      build a sharded, shuffled Parquet store
  doodle info store/
      summarise a store
  doodle render data/cat.ndjson --out g.png
      draw a gallery of any stroke encoding
  doodle train --config configs/cpu.yaml --data store/ --out runs/cpu
      train a model
  doodle evaluate runs/cpu --data store/val --out report/
      HTML report of a model
  doodle predict runs/cpu --data test.csv --out sub.csv
      Kaggle submission (.parquet: probabilities)
  doodle ensemble a.parquet b.parquet --out sub.csv
      blend, vote or stack models
  doodle export runs/cpu --out export/
      ONNX model + its preprocessing
  doodle serve runs/cpu
      the live drawing app and HTTP API

Run `doodle COMMAND --help` for the details of each.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(  # its subcommands' parsers are of the same class
        prog="doodle", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"doodle {__version__}")
    _add_verbosity(parser, 0)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:  # every subcommand must import: a missing one is an error, never dropped
        importlib.import_module(f"doodle.cli.{name}").register(sub)
    for command in sub.choices.values():  # `doodle train -q` as well as `doodle -q train`
        if not any("--verbose" in a.option_strings for a in command._actions):
            _add_verbosity(command, argparse.SUPPRESS)
    return parser


def _add_verbosity(parser: argparse.ArgumentParser, default: object) -> None:
    # SUPPRESS on a subcommand: its absence must not reset what was given before the subcommand
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="more log output: -v doodle's debug messages, -vv every library's too")
    parser.add_argument("-q", "--quiet", action="store_true", default=default or False,
                        help="only warnings and errors: no progress bars, no info lines")


def log_levels(verbose: int, quiet: bool) -> tuple[int, int]:
    """(doodle's level, every other library's level) for -v/-vv/-q: by default doodle's info lines
    and other libraries' warnings; -v adds doodle's debug lines and libraries' info, -vv all debug."""
    if quiet:
        return logging.WARNING, logging.WARNING
    levels = [(logging.INFO, logging.WARNING), (logging.DEBUG, logging.INFO), (logging.DEBUG, logging.DEBUG)]
    return levels[min(verbose, 2)]


def _set_up_output(args: argparse.Namespace) -> None:
    ours, others = log_levels(args.verbose, args.quiet)
    logging.basicConfig(level=others, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("doodle").setLevel(ours)
    if args.quiet:  # progress bars are not warnings: every tqdm bar, and the commands' own switch
        os.environ["TQDM_DISABLE"] = "1"
        if hasattr(args, "no_progress"):
            args.no_progress = True


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _set_up_output(args)
    try:
        return int(args.func(args) or 0)
    except DoodleError as err:
        print(f"doodle {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `doodle info STORE | head`: the reader left; stop quietly, like Unix tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return 141
    except OSError as err:
        if err.errno not in USER_ERRNOS:
            raise
        # a folder made read-only, a full disk: the user's to fix, so one line, not a traceback
        where = f": {err.filename}" if err.filename else ""
        print(f"doodle {args.command}: error: {err.strerror}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
