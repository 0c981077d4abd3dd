"""`doodle evaluate`: MAP@3, per-class accuracy, the worst mistakes drawn, confusion, reliability and proxy
score in one HTML report written for people."""

from __future__ import annotations

import argparse
from pathlib import Path

from doodle.cli.options import existing_path
from doodle.cli.predict import add_model_options, check_model_options
from doodle.errors import DoodleError

EXAMPLES = """\
examples:
  doodle evaluate runs/resnet18 --data store/val --out reports/resnet18
  doodle evaluate runs/resnet18 --data store/val --tta flip --checkpoint last:3 --out reports/avg-tta
  doodle evaluate blend.parquet --out reports/blend        # saved (labelled) predictions, no model

RUN is a run folder or checkpoint (then --data is required), or a predictions file written by
`doodle predict/ensemble/balance --out X.parquet` (its drawings must carry labels). The folder
--out receives report.html (self-contained: open it in any browser, offline), metrics.json,
per_class.csv, confusion.png, confused_pairs.png and reliability.png.

report.html opens with one sentence ("The right word is the first guess for 93 % of 1,083
drawings and in the top three for 98 %"), each number explained in a line, then the 12 worst
mistakes and the 12 surest right answers drawn with their top-3 guesses (from a model only: a
predictions file holds no drawings, so it lists their key ids), accuracy bars per class (the 20
hardest and 20 easiest when there are more than 40), the figures and the full table. The proxy
score is the sum over classes of |top-1 count - N/K|, the distance of the guesses from a balanced
distribution. Every figure is accumulated batch by batch, from the model or the file: memory does
not grow with the number of drawings (the examples add a fixed 24 drawings).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="evaluate a model or saved predictions on labelled drawings (HTML report)",
        description="Score a trained model (or a saved predictions file) on labelled drawings: MAP@3, acc@1, "
        "acc@3, a per-class table and chart, the worst mistakes and surest right answers drawn, the confusion "
        "matrix and most-confused pairs, a reliability diagram and the proxy score, bundled in one HTML report "
        "that explains each number in plain words.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", type=existing_path,
                   help="run folder, checkpoint file, or predictions .parquet")
    p.add_argument("--data", nargs="+", default=[], metavar="SRC", type=existing_path,
                   help="labelled drawings (files, folders, STORE/val)")
    p.add_argument("--out", required=True, type=Path, help="report folder to write")
    add_model_options(p)  # --checkpoint, --average, --tta, --tta-mean, --batch-size, --device
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from doodle.evaluate.report import evaluate_file, evaluate_run
    from doodle.evaluate.report_html import headline
    from doodle.fs import check_writable
    from doodle.infer.tta import parse_tta

    check_model_options(args)
    check_writable(args.out)
    if str(args.run).lower().endswith(".csv"):
        raise DoodleError(f"{args.run}: a submission CSV has no probabilities or labels; evaluate a model, or "
                          "predictions written with --out X.parquet")
    if str(args.run).endswith(".parquet"):
        if args.data:
            raise DoodleError("--data is for models; a predictions file is evaluated on its own drawings")
        report = evaluate_file(args.run, args.out, progress=not args.quiet)
    else:
        if not args.data:
            raise DoodleError("--data is required to evaluate a model (e.g. --data store/val)")
        report = evaluate_run(args.run, args.data, args.out, checkpoint=args.checkpoint, average=args.average,
                              tta=parse_tta(args.tta), tta_mean=args.tta_mean, batch_size=args.batch_size,
                              device=args.device, progress=not args.quiet)
    m = report.metrics
    print(f"MAP@3 {m['map3']:.4f}  acc@1 {m['acc1']:.4f}  acc@3 {m['acc3']:.4f}  on {m['n']:,} drawings; "
          f"proxy score {m['proxy_score']:.1f}")
    print(headline(m))
    print(f"wrote {report.files['html']}")
    return 0
