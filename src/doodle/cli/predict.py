"""`doodle predict`: top-3 guesses of a trained model for every drawing, as a Kaggle submission CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from doodle.cli.options import at_least, existing_path, run_or_checkpoint
from doodle.errors import DoodleError

EXAMPLES = """\
examples:
  doodle predict runs/resnet18 --data test_simplified.csv --out submission.csv
  doodle predict runs/resnet18 --data test_raw.csv --checkpoint last --out last.csv
  doodle predict runs/resnet18 --data test_simplified.csv --fallback-rows --out sub.csv   # a row for bad records too
  doodle predict runs/resnet18/snapshot-3.pt --data quickdraw/simplified/ --out sub.csv --batch-size 1024
  doodle predict runs/resnet18 --data test_raw.csv --tta flip,dropout --out probs.parquet
  doodle predict runs/resnet18 --data val/ --checkpoint last:3 --out avg.parquet   # average the last 3 snapshots
  doodle predict runs/resnet18 --data val/ --average a.pt b.pt c.pt --out avg.csv

The output has one row per drawing, in input order: `key_id,word` with the three best class
names, best first, separated by spaces (spaces inside a name written as underscores, as Kaggle
expects). With `--out X.parquet` the file holds instead every class probability with the key_ids,
the labels where known, the drawings' timing and the class list (for `doodle ensemble`,
`doodle evaluate`, `doodle balance`). The file is written under a temporary name and renamed
when complete.

Records that cannot be read (and bitmap-only drawings): a submission CSV must have a row for every
test drawing, so the first such record is an error naming its file, line and reason, and no CSV is
written; with --fallback-rows each gets a row under its key_id (read from the raw record: a Kaggle
CSV's key_id column, an ndjson record's "key_id") guessing the classes most often first so far,
and their count is printed (a record whose key_id cannot be read is still an error). A .parquet
output skips such records, counts them and reports them, as inputs to ensembles need no row for
them.

TTA: `--tta flip,dropout` also predicts the mirrored drawing and one with 20 % of its strokes
dropped, and averages the probabilities (`--tta-mean log`: geometric mean).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict drawings with a trained model and write a Kaggle submission",
        description="Load a checkpoint of a training run and write its top-3 guesses for every drawing "
        "of the given files or folders (any format doodle reads) as a Kaggle submission CSV.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", type=run_or_checkpoint, help="a training run folder, or a checkpoint file")
    p.add_argument("--data", nargs="+", required=True, metavar="SRC", type=existing_path,
                   help="drawing files or folders to predict")
    p.add_argument("--out", required=True, type=Path,
                   help="submission CSV (.csv) or class probabilities (.parquet) to write")
    p.add_argument("--fallback-rows", action="store_true",
                   help="submission CSV: write a fallback row (the classes most often first so far) for each record "
                   "that cannot be read but whose key_id can, instead of failing; a .parquet output always skips "
                   "such records and counts them")
    add_model_options(p)
    p.set_defaults(func=run)


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The options that pick and run a model: shared by `predict` and `evaluate`."""
    p.add_argument("--checkpoint", default="best", metavar="best|last|averaged|ema|last:K|ema:K|PATH",
                   help="which checkpoint of RUN: best (default: the best validated weights, the EMA when on), "
                   "last, averaged, ema (the EMA weights at the end of training), last:K / ema:K (the average of "
                   "the raw / EMA weights of its last K snapshots), or a file")
    p.add_argument("--average", nargs="+", default=[], metavar="CKPT",
                   help="average the weights of these checkpoint files (one model) instead")
    p.add_argument("--tta", default="", metavar="VIEWS",
                   help="test-time views to average with the original: flip, dropout (comma-separated)")
    p.add_argument("--tta-mean", default="prob", choices=["prob", "log"],
                   help="average TTA views' probabilities (prob, default) or log-probabilities (log)")
    p.add_argument("--batch-size", type=at_least(1), default=256, help="drawings per forward pass (default 256)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")


def check_model_options(args: argparse.Namespace) -> None:
    """Refuse a bad --batch-size or --device before any model is loaded."""
    if args.batch_size < 1:
        raise DoodleError("--batch-size must be at least 1")
    if args.device is not None:
        import torch

        try:
            torch.device(args.device)
        except RuntimeError as err:
            raise DoodleError(f"--device {args.device}: {err}") from None


def run(args: argparse.Namespace) -> int:
    check_model_options(args)
    out: Path = args.out
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise DoodleError(f"--out {out}: expected a .csv (submission) or .parquet (probabilities) file")
    if any(Path(s).is_file() and Path(s).resolve() == out.resolve() for s in args.data):
        raise DoodleError(f"--out {out} is also an input; write somewhere else")

    if args.fallback_rows and out.suffix.lower() == ".parquet":
        raise DoodleError(f"--fallback-rows is for submission CSVs; --out {out} skips unreadable records and counts "
                          "them")

    from doodle.infer.predict import MissingRows, predict
    from doodle.infer.tta import parse_tta

    missing = MissingRows(fallback=args.fallback_rows)
    rows = predict(args.run, args.data, out, checkpoint=args.checkpoint, batch_size=args.batch_size,
                   progress=not args.quiet, device=args.device, tta=parse_tta(args.tta), tta_mean=args.tta_mean,
                   average=args.average, missing=missing)
    extra = f" ({missing.written:,} of them fallback rows for records the model could not take)"
    print(f"wrote {out}: {rows:,} rows{extra if missing.written else ''}")
    return 0
