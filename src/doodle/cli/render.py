"""`doodle render`: a labelled gallery PNG of drawings in any stroke encoding, or the list of them."""

from __future__ import annotations

import argparse
import sys

from doodle.cli.options import at_least, non_negative_float, positive_float
from doodle.errors import DoodleError

EXAMPLES = """\
examples:
  doodle render --list
  doodle render data/raw/cat.ndjson --encoding order-speed-accel-time --size 128 --out cat.png
  doodle render data/raw/ --sample --n 16 --cols 4 --encoding thirds --out thirds.png
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "render",
        help="draw a gallery of drawings in a stroke encoding",
        description="Render drawings from any Quick, Draw! file or folder in one encoding and save a "
        "gallery PNG: each drawing with its word, every channel as a tile (3-channel encodings also "
        "as RGB).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("src", nargs="?", help="a drawing file or folder (any format doodle reads)")
    p.add_argument("--list", action="store_true", help="list the encodings, one line each, and exit")
    p.add_argument("--encoding", default="order-speed-accel", help="encoding name (see --list)")
    p.add_argument("--size", type=at_least(8), default=128, help="image side in pixels (default 128)")
    p.add_argument("--out", default="gallery.png", help="PNG to write (default gallery.png)")
    p.add_argument("--n", type=at_least(1), default=16, help="number of drawings (default 16)")
    p.add_argument("--cols", type=at_least(1), default=4, help="drawings per gallery row (default 4)")
    p.add_argument("--sample", action="store_true", help="a seeded random sample instead of the first n")
    p.add_argument("--seed", type=at_least(0), default=0, help="seed for --sample and --augment (default 0)")
    p.add_argument("--line-width", type=positive_float, default=6.0, help="line width in 256-px units (default 6)")
    p.add_argument("--padding", type=non_negative_float, default=4.0, help="blank border in 256-px units (default 4)")
    p.add_argument("--no-antialias", action="store_true", help="hard pixel edges")
    p.add_argument("--placement", choices=("fit", "frame"), default="fit", help="fit the bbox, or Google's frame")
    p.add_argument("--augment", action="store_true", help="apply the default vector augmentation first")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from doodle.render import list_encodings

    if args.list:
        for enc in list_encodings():
            print(enc.describe())
        return 0
    if not args.src:
        raise DoodleError("give a drawing file or folder (or --list)")
    if args.n < 1 or args.cols < 1:
        raise DoodleError("--n and --cols must be at least 1")

    import numpy as np

    from doodle.data.formats import read
    from doodle.render import augment_batch, get_encoding, save_gallery

    get_encoding(args.encoding)  # unknown names fail before any reading
    drawings = []
    rng = np.random.default_rng(args.seed)
    for k, d in enumerate(d for d in read(args.src) if d.strokes):
        if not args.sample:
            drawings.append(d)
            if len(drawings) >= args.n:
                break
        elif len(drawings) < args.n:  # reservoir sampling: a uniform sample in one pass
            drawings.append(d)
        else:
            j = int(rng.integers(k + 1))
            if j < args.n:
                drawings[j] = d
    if not drawings:
        raise DoodleError(f"no drawings with strokes found in {args.src}")
    if args.augment:
        drawings = augment_batch(drawings, seed=args.seed)
    try:
        path = save_gallery(
            drawings,
            args.out,
            encoding=args.encoding,
            size=args.size,
            cols=args.cols,
            line_width=args.line_width,
            padding=args.padding,
            antialias=not args.no_antialias,
            placement=args.placement,
        )
    except ValueError as err:
        raise DoodleError(str(err)) from None
    print(f"wrote {path} ({len(drawings)} drawings, encoding {args.encoding}, {args.size}px)", file=sys.stderr)
    return 0
