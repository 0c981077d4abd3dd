"""`doodle ensemble`: blend, stack or vote several models' saved predictions."""

from __future__ import annotations

import argparse
from pathlib import Path

from doodle.cli.options import at_least, existing_path, non_negative_float
from doodle.errors import DoodleError

EXAMPLES = """\
examples:
  doodle ensemble cnn.parquet seq.parquet --out blend.parquet                 # equal-weight mean
  doodle ensemble cnn.parquet seq.parquet --method geom --weights 0.7 0.3 --out sub.csv
  doodle ensemble cnn.parquet seq.parquet --fit map3 --holdout cnn_val.parquet seq_val.parquet --out sub.csv
  doodle ensemble cnn.parquet seq.parquet --method stack --holdout cnn_val.parquet seq_val.parquet --out st.parquet
  doodle ensemble cnn_val.parquet seq_val.parquet --method stack --out st.parquet   # self-holdout: half/half
  doodle ensemble a.csv b.csv c.csv --method vote --weights 3 2 1 --out vote.csv

Inputs are predictions files (`doodle predict ... --out X.parquet`) of the same drawings in the
same order and the same classes (checked), or submission CSVs for --method vote. --fit chooses
weights on a labelled holdout: score (1 / error rate), score-corr (also favours models that
disagree with the others, 24th place), inv-loss ((1/log-loss)^24, 8th place) or map3 (search for
the best blend MAP@3). --method stack trains LightGBM over each drawing's top-10 candidate classes
(one probability and rank feature per model, plus drawing time features, total time first).
Without --holdout, fitting splits the (labelled) inputs in two halves by key_id and writes and
scores only the half it did not fit on. Output: .parquet (probabilities) or .csv (submission).

Memory: every file is streamed batch by batch, so a 1,000,000-drawing holdout fits in a few GB.
score, score-corr and inv-loss add up sums over the whole holdout; map3 searches on at most
200,000 holdout drawings held in memory; stack trains on at most --max-rows. Where a fit takes
fewer drawings than the holdout has, it takes those whose key_id hashes lowest (a fixed
pseudo-random subset, whatever the files' row order).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ensemble", help="blend, stack (LightGBM) or vote saved predictions of several models",
        description="Combine several models' predictions: arithmetic or geometric weighted means (weights given "
        "or fitted on a labelled holdout), LightGBM stacking over candidate classes, or the rank-weighted vote "
        "of submission CSVs.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", type=existing_path,
                   help="predictions .parquet files (submission CSVs for vote)")
    p.add_argument("--out", required=True, type=Path, help="output .parquet (probabilities) or .csv (submission)")
    p.add_argument("--method", default="mean", choices=["mean", "geom", "vote", "stack"],
                   help="mean (arithmetic, default), geom (geometric), vote (submission CSVs), stack (LightGBM)")
    p.add_argument("--weights", nargs="+", type=non_negative_float, default=None, metavar="W",
                   help="one weight per input")
    p.add_argument("--fit", default=None, choices=["score", "score-corr", "inv-loss", "map3"],
                   help="fit the blend weights on a labelled holdout")
    p.add_argument("--holdout", nargs="+", default=[], metavar="HOLDOUT",
                   help="the same models' predictions on labelled drawings (one per input, same order)")
    p.add_argument("--candidates", type=at_least(1), default=10,
                   help="stack: candidate classes per drawing (default 10)")
    p.add_argument("--objective", default="binary", choices=["binary", "lambdarank"], help="stack: LightGBM objective")
    p.add_argument("--rounds", type=at_least(1), default=200, help="stack: boosting rounds (default 200)")
    p.add_argument("--max-rows", type=at_least(1), default=1_000_000,
                   help="stack: the most labelled holdout drawings it trains on, those whose key_id hashes lowest "
                   "(default 1,000,000; its matrix is rows x candidates x (3 x models + 9) float32, 0.6 GB for "
                   "1,000,000 rows of 2 models)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from doodle.post.ensemble.files import ensemble_files
    from doodle.post.ensemble.stack import StackConfig

    if args.candidates < 1 or args.rounds < 1:
        raise DoodleError("--candidates and --rounds must be at least 1")
    if any(Path(i).resolve() == args.out.resolve() for i in args.inputs + args.holdout):
        raise DoodleError(f"--out {args.out} is also an input; write somewhere else")
    stack = StackConfig(candidates=args.candidates, objective=args.objective, rounds=args.rounds)
    summary = ensemble_files(args.inputs, args.out, method=args.method, weights=args.weights, fit=args.fit,
                             holdout=args.holdout, max_rows=args.max_rows, stack=stack)
    if "weights" in summary:
        print("weights: " + " ".join(f"{w:.4f}" for w in summary["weights"]))
    if "map3" in summary:
        print(f"MAP@3 {summary['map3']:.4f} on {summary['rows']:,} held-out drawings "
              f"(inputs: {', '.join(f'{m:.4f}' for m in summary['inputs_map3'])})")
    print(f"wrote {args.out}: {summary['rows']:,} rows")
    return 0
