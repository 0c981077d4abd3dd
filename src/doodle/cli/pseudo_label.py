"""`doodle pseudo-label`: a training store from a model's confident guesses on unlabelled drawings."""

from __future__ import annotations

import argparse
from pathlib import Path

from doodle.cli.options import existing_path, fraction

EXAMPLES = """\
examples:
  doodle predict runs/a --data test_raw.csv --out test_a.parquet
  doodle pseudo-label test_a.parquet --data test_raw.csv --threshold 0.9 --out stores/pseudo
  doodle train --config runs/a/config.yaml --data stores/main --out runs/a-ft init_from=runs/a/best.pt \\
      'extra_train=[stores/pseudo]' epochs=3 optim.lr=0.0005

Drawings whose top-1 probability reaches --threshold are written, labelled with that class, as a
store (train split only, the predictions' class list). `doodle train` mixes it into every epoch of
the labelled store (`extra_train`), typically fine-tuning from the model's checkpoint (`init_from`).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pseudo-label", help="turn confident predictions on unlabelled drawings into a training store",
        description="Label unlabelled drawings with the top-1 class of saved predictions where its probability "
        "reaches a threshold, and write them as a store that `doodle train` can mix with labelled data.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("predictions", metavar="PREDICTIONS", type=existing_path,
                   help="predictions .parquet of the drawings (doodle predict)")
    p.add_argument("--data", nargs="+", required=True, metavar="SRC", type=existing_path,
                   help="the drawings those predictions are of")
    p.add_argument("--out", required=True, type=Path, help="store folder to write")
    p.add_argument("--threshold", type=fraction(), default=0.9, help="least top-1 probability kept (default 0.9)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from doodle.post.pseudo import pseudo_label

    summary = pseudo_label(args.predictions, args.data, args.out, threshold=args.threshold,
                           overwrite=args.overwrite, progress=not args.quiet)
    print(f"{summary['confident']:,} of {summary['predicted']:,} predictions reach {args.threshold}; "
          f"wrote {args.out}: {summary['kept']:,} drawings")
    return 0
