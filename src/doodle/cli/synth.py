"""`doodle synth`: write synthetic hand-drawn doodles, so nothing needs downloading."""

from __future__ import annotations

import argparse
from pathlib import Path

from doodle.cli.options import at_least

EXAMPLES = """\
examples:
  doodle synth --out data/synth
  doodle synth --out data/small --per-class 50 --seed 1 --classes circle square "smiley face"
"""

DESCRIPTION = """\
Write synthetic drawings as Quick, Draw! raw ndjson files (one <class>.ndjson per class, x/y in
screen pixels, t in milliseconds), for trying the whole pipeline offline. The drawings vary like
human ones: size, position, rotation, wobbly strokes, stroke count, order and direction, speed;
a few are sloppy and marked recognized=false. The same seed always gives the same files.

Classes (Quick, Draw! names): circle, square, triangle, line, zigzag, squiggle, star, hexagon,
octagon, diamond, smiley face, house, moon, envelope, sun.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write synthetic drawings (no download needed)",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write the files to")
    parser.add_argument("--per-class", type=at_least(1), default=200, metavar="N", help="drawings per class (200)")
    parser.add_argument("--seed", type=at_least(0), default=0, metavar="S", help="random seed, >= 0 (default 0)")
    parser.add_argument(
        "--classes", nargs="+", metavar="NAME", help="only these classes (quote names with spaces; default all)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from doodle.data.synth import synth

    paths = synth(args.out, per_class=args.per_class, seed=args.seed, classes=args.classes)
    if not getattr(args, "quiet", False):
        print(f"{len(paths)} class(es) x {args.per_class} drawings in {args.out}")
    return 0
