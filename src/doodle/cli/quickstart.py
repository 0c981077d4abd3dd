"""`doodle quickstart`: Google's categories to a served model in one command, within a time budget."""

from __future__ import annotations

import argparse
from pathlib import Path

from doodle.cli.options import at_least, fraction

EPILOG = """\
examples:
  doodle quickstart --categories cat dog fish --out real                 # Google's bucket, 15 minutes
  doodle quickstart --categories cat dog --time-budget 5m --per-class 500 --out real --no-serve
  python -m doodle.data.mirror ../shared/quickdraw --port 8765 &         # no network: a local mirror
  doodle quickstart --categories cat eye map --base-url http://127.0.0.1:8765/ --out real

Stages: download (one file per category, resumed if interrupted) -> prepare (at most --per-class
drawings of each category, the same ones whatever other categories you add) -> train
(configs/cpu.yaml, sized to the time budget) -> evaluate (OUT/report/report.html) -> export
(ONNX, checked against PyTorch) -> serve (the drawing page and POST /predict). Each stage's wall
time is printed, then the val MAP@3 of the served model. Run it again and it reuses what is
already built with the same settings (and resumes an interrupted training run); a stage whose
inputs or settings changed is rebuilt with every stage after it.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quickstart",
        help="real data in one sitting: download, prepare, train, evaluate, export and serve",
        description="Download Google's Quick, Draw! files of the categories given, build a per-class sample store,\n"
        "train the CPU recipe within a time budget, evaluate, export to ONNX and serve it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--categories", nargs="+", required=True, metavar="NAME",
                   help='category names (quote names with spaces, or separate with commas), or "all"')
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the data, store, run and export")
    p.add_argument("--base-url", metavar="URL", help="mirror to fetch from (default: $DOODLE_BASE_URL or Google's)")
    p.add_argument("--format", dest="fmt", default="simplified", choices=["simplified", "raw"],
                   help="simplified (smaller downloads, the default) or raw (with timing)")
    p.add_argument("--per-class", type=at_least(0), default=2000, metavar="N",
                   help="drawings kept per category (default 2000; 0: all)")
    p.add_argument("--time-budget", default="15m", metavar="DURATION",
                   help="from start to a served model: 900, 90s, 15m, 1h (default 15m; 0: the config's epochs)")
    p.add_argument("--config", default="configs/cpu.yaml", metavar="FILE", help="training preset (configs/cpu.yaml)")
    p.add_argument("--val-fraction", type=fraction(upper_open=True), default=0.1,
                   help="fraction of each category for validation (default 0.1)")
    p.add_argument("--seed", type=at_least(0), default=0, help="salt of the sample and the split (default 0)")
    p.add_argument("--serve", action=argparse.BooleanOptionalAction, default=True,
                   help="serve the model at the end (default; --no-serve stops after the export)")
    p.add_argument("--host", default="127.0.0.1", help="interface to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=at_least(0), default=8000, help="port to serve on (default 8000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="training overrides, e.g. max_steps=100")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from doodle.quickstart import QuickstartConfig, quickstart, serve
    from doodle.train.budget import parse_duration

    budget = parse_duration(args.time_budget)
    cfg = QuickstartConfig(categories=args.categories, out=args.out, base_url=args.base_url, fmt=args.fmt,
                           per_class=args.per_class, time_budget=budget or None, config=args.config,
                           train_overrides=list(args.overrides), val_fraction=args.val_fraction, seed=args.seed,
                           progress=not (args.no_progress or getattr(args, "quiet", False)))
    result = quickstart(cfg)
    print(result.table(), flush=True)
    if args.serve:
        serve(result.export, args.host, args.port)
    else:
        print(f"not serving (--no-serve); run: doodle serve {result.export}")
    return 0
