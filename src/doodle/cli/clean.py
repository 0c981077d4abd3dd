"""`doodle clean`: score training drawings by model loss and image entropy; write weights or a cleaned store."""

from __future__ import annotations

import argparse
from pathlib import Path

from doodle.cli.options import at_least, fraction, non_negative_float, run_or_checkpoint, store_folder
from doodle.errors import DoodleError

EXAMPLES = """\
examples:
  doodle clean runs/a --data stores/main --out scores.parquet --drop 0.05
  doodle clean runs/a --data stores/main --out scores.parquet --drop 0.05 --min-entropy 0.3 --store-out stores/clean
  doodle train --config configs/cpu.yaml --data stores/main --out runs/b sample_weights=scores.parquet
  doodle train --config configs/cpu.yaml --data stores/main --out runs/c curriculum=scores.parquet curriculum_start=0.5

Every labelled drawing of the split gets its loss under the model (-log p(label)) and the entropy
(bits) of its 32-px grey image's histogram. --out receives key_id, label, loss, entropy and weight:
0 for the --drop fraction with the highest loss in each class and for entropy below
--min-entropy, else 1. --store-out also writes a copy of the store without those drawings. For a
curriculum, training ranks each class's drawings by loss and admits the easiest fraction of every
class (curriculum_start in the first epoch, all of them by the last), so a hard class is not left out.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "clean", help="score training drawings (model loss, image entropy) and write weights or a cleaned store",
        description="Find suspicious training drawings: score each by a trained model's loss and by image "
        "entropy, then write per-drawing weights (for training or a curriculum) and optionally a cleaned store.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", type=run_or_checkpoint,
                   help="run folder or checkpoint trained on the store's classes")
    p.add_argument("--data", required=True, type=store_folder, metavar="STORE", help="the store to score")
    p.add_argument("--split", default="train", choices=["train", "val"], help="split to score (default train)")
    p.add_argument("--out", required=True, type=Path, help="scores .parquet to write")
    p.add_argument("--drop", type=fraction(upper_open=True), default=0.0,
                   help="fraction of highest-loss drawings per class weighted 0")
    p.add_argument("--min-entropy", type=non_negative_float, default=0.0,
                   help="weight 0 below this image entropy (bits)")
    p.add_argument("--store-out", type=Path, default=None, help="also write the store without the dropped drawings")
    p.add_argument("--checkpoint", default="best", help="best (default), last, averaged, ema, last:K, ema:K, or a file "
                   "(as for `doodle predict --checkpoint`)")
    p.add_argument("--batch-size", type=at_least(1), default=256, help="drawings per forward pass (default 256)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from doodle.post.clean import clean_store, score_store, weights_from_scores, write_scores

    if args.out.suffix.lower() != ".parquet":
        raise DoodleError(f"--out {args.out}: expected a .parquet file")
    if args.store_out is not None and args.store_out.exists():  # before scoring, which can take hours
        raise DoodleError(f"--store-out {args.store_out} already exists")
    scores = score_store(args.run, args.data, args.split, checkpoint=args.checkpoint, batch_size=args.batch_size,
                         progress=not args.quiet)
    weights = weights_from_scores(scores, args.drop, args.min_entropy)
    write_scores(scores, weights, args.out)
    dropped = int((weights == 0).sum())
    print(f"scored {len(weights):,} drawings (median loss {float(sorted(scores.loss)[len(weights) // 2]):.3f}, "
          f"median entropy {float(sorted(scores.entropy)[len(weights) // 2]):.2f} bits); {dropped:,} weighted 0")
    print(f"wrote {args.out}")
    if args.store_out is not None:
        manifest = clean_store(args.data, args.store_out, scores.key_ids[weights == 0], args.split)
        print(f"wrote {args.store_out}: {manifest['splits'][args.split]:,} {args.split} drawings")
    return 0
