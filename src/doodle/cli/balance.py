"""`doodle balance`: re-rank predictions so that top-1 class counts match expected counts."""

from __future__ import annotations

import argparse
from pathlib import Path

from doodle.cli.options import at_least, existing_path
from doodle.errors import DoodleError

EXAMPLES = """\
examples:
  doodle balance blend.parquet --out balanced.csv                      # iterative, uniform counts
  doodle balance blend.parquet --method greedy --out balanced.parquet
  doodle balance blend.parquet --method flow --expected counts.csv --out sub.csv

Methods: iterative (1st place: per-class multipliers lowered step by step until the top-1 counts
are as even as they get), greedy (4th place: top-1 up to a cap of ceil(expected) per class, then
top-2, then top-3, ...), flow (11th place: the assignment maximising the total log-probability
under the caps, an exact minimum-cost flow over each drawing's --candidates best classes).
Expected counts: uniform (N / classes) unless --expected gives a `class,count` CSV. Worth doing
when the drawings to predict are known to be balanced (Kaggle's test set was). When the input is
labelled, MAP@3 before and after is printed.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "balance", help="re-rank predictions towards balanced (or given) top-1 class counts",
        description="Post-process saved predictions so that the number of drawings whose first guess is each class "
        "matches expected counts (uniform by default), with the iterative, greedy or min-cost-flow method.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT", type=existing_path, help="predictions .parquet file")
    p.add_argument("--out", required=True, type=Path, help="output .parquet (scores) or .csv (submission)")
    p.add_argument("--method", default="iterative", choices=["iterative", "greedy", "flow"],
                   help="balancing method (default iterative)")
    p.add_argument("--expected", default=None, metavar="CSV",
                   help="class,count CSV of expected counts (default uniform)")
    p.add_argument("--steps", type=at_least(1), default=3000, help="iterative: steps per alpha (default 3000)")
    p.add_argument("--candidates", type=at_least(1), default=None,
                   help="flow: classes per drawing in the flow graph (default all: the exact optimum, seconds "
                   "for Kaggle's test set; fewer may miss it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from doodle.evaluate.metrics import map_at_3
    from doodle.infer.probabilities import read_predictions
    from doodle.post.balance import balance_probs, expected_counts, proxy_score, read_expected
    from doodle.post.ensemble.files import write_output

    if args.steps < 1 or (args.candidates is not None and args.candidates < 1):
        raise DoodleError("--steps and --candidates must be at least 1")
    if Path(args.input).resolve() == args.out.resolve():
        raise DoodleError(f"--out {args.out} is also the input; write somewhere else")
    preds = read_predictions(args.input)
    expected = read_expected(args.expected, preds.classes) if args.expected else None
    exp = expected_counts(len(preds), len(preds.classes), expected)
    scores = balance_probs(preds.probs, args.method, exp, steps=args.steps, candidates=args.candidates)
    print(f"proxy score {proxy_score(preds.probs, exp):.1f} -> {proxy_score(scores, exp):.1f}")
    y = preds.labels()
    if len(y) and (y >= 0).all():
        print(f"MAP@3 {map_at_3(preds.probs, y):.4f} -> {map_at_3(scores, y):.4f}")
    rows = write_output(preds.with_probs(scores, balanced=args.method), args.out)
    print(f"wrote {args.out}: {rows:,} rows")
    return 0
