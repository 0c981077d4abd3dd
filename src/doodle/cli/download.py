"""`doodle download`: fetch Google's public Quick, Draw! files, one per category."""

from __future__ import annotations

import argparse
from pathlib import Path

from doodle.cli.options import at_least, positive_float

EXAMPLES = """\
examples:
  doodle download --categories cat dog "paint can" --format simplified --out data/simplified
  doodle download --categories all --format raw --out data/raw
  doodle download --categories circle,square --format bitmap --out data/bitmap \\
      --base-url http://127.0.0.1:8000/quickdraw_dataset/
"""

DESCRIPTION = """\
Download one file per category from Google's public Quick, Draw! bucket
(https://storage.googleapis.com/quickdraw_dataset/) or a mirror of it.

Formats and the files they fetch:
  raw         full/raw/<category>.ndjson         strokes in screen pixels with timing
  simplified  full/simplified/<category>.ndjson  strokes simplified to 0..255
  binary      full/binary/<category>.bin         the simplified drawings, packed
  npz         sketchrnn/<category>.npz           Sketch-RNN stroke-3 train/valid/test
  bitmap      full/numpy_bitmap/<category>.npy   28x28 grey images

Files are written as <name>.part and renamed when complete; an interrupted download resumes
where it stopped, failed transfers are retried with backoff, and complete files are skipped.
The base URL may also be set with the environment variable DOODLE_BASE_URL.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from doodle.data.download import FORMATS  # light: no network or tqdm import

    parser = subparsers.add_parser(
        "download",
        help="fetch Google's public Quick, Draw! files",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--categories",
        nargs="+",
        required=True,
        metavar="NAME",
        help='category names (quote names with spaces, or separate with commas), or "all" for all 345',
    )
    parser.add_argument("--format", dest="fmt", required=True, choices=list(FORMATS), help="which files to fetch")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write the files to")
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="mirror to fetch from (default: $DOODLE_BASE_URL or Google's bucket)",
    )
    parser.add_argument("--retries", type=at_least(0), default=5,
                        help="retries per file on transient errors (default 5)")
    parser.add_argument("--timeout", type=positive_float, default=60,
                        help="seconds to wait for the network (default 60)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from doodle.data.download import download

    paths = download(
        args.categories,
        args.fmt,
        args.out,
        base_url=args.base_url,
        retries=args.retries,
        timeout=args.timeout,
        progress=not (args.no_progress or getattr(args, "quiet", False)),
    )
    if not getattr(args, "quiet", False):
        print(f"{len(paths)} {args.fmt} file(s) in {args.out}")
    return 0
