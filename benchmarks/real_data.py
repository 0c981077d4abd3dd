"""Real data in one sitting, measured: the mirror of ../shared/quickdraw on 127.0.0.1, then
`doodle quickstart` for the categories with at least 400 distinct simplified drawings there (15:
the JulienDuranleau files plus the smaller files of the same categories), within a time budget.

    .venv/bin/python benchmarks/real_data.py                       # 15 minutes, the default budget
    .venv/bin/python benchmarks/real_data.py --time-budget 2m      # a short check of the whole path
    .venv/bin/python benchmarks/real_data.py --serve --port 8000   # and serve the model at the end

It prints the categories, each stage's wall time (download, prepare, train, evaluate, export) and
the val MAP@3 of the exported model, then one JSON line of the same figures. Training overrides
(`key=value`) are passed on, e.g. `max_steps=20` for a test of the path in seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import orjson

from doodle.data.formats import read
from doodle.data.mirror import Mirror, catalogue
from doodle.quickstart import QuickstartConfig, quickstart, serve
from doodle.train.budget import parse_duration

MIN_DRAWINGS = 400


def default_shared() -> Path:
    return Path(os.environ.get("DOODLE_SHARED", Path.cwd().parent / "shared")) / "quickdraw"


def big_categories(root: Path, fmt: str = "simplified", least: int = MIN_DRAWINGS) -> list[str]:
    """The categories of `root` with at least `least` distinct drawings (key_ids) in format `fmt`."""
    keys: dict[str, set[int]] = defaultdict(set)
    for (file_fmt, category), files in catalogue(root).items():
        if file_fmt == fmt:
            keys[category].update(d.key_id for d in read(files))
    return sorted(c for c, k in keys.items() if len(k) >= least)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", type=Path, default=default_shared(), help="the Quick, Draw! folder to mirror")
    p.add_argument("--time-budget", default="15m", help="from start to a served model (default 15m)")
    p.add_argument("--out", type=Path, default=Path("bench-real"), help="quickstart's folder (default bench-real)")
    p.add_argument("--per-class", type=int, default=2000, help="drawings kept per category (default 2000)")
    p.add_argument("--format", dest="fmt", default="simplified", choices=["simplified", "raw"])
    p.add_argument("--serve", action="store_true", help="serve the model at the end")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="training overrides")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.monotonic()
    categories = big_categories(args.shared, args.fmt)
    print(f"{len(categories)} categories with {MIN_DRAWINGS}+ {args.fmt} drawings in {args.shared} "
          f"(found in {time.monotonic() - started:.1f} s): {', '.join(categories)}", flush=True)
    with Mirror(args.shared) as mirror:
        cfg = QuickstartConfig(categories, args.out, base_url=mirror.url, fmt=args.fmt, per_class=args.per_class,
                               time_budget=parse_duration(args.time_budget) or None,
                               train_overrides=list(args.overrides))
        result = quickstart(cfg)
    print(result.table(), flush=True)
    figures = {"categories": len(categories), "time_budget": args.time_budget, "map3": round(result.map3, 4),
               "stages": {s.name: round(s.seconds, 1) for s in result.stages}}
    print(orjson.dumps(figures).decode(), flush=True)
    if args.serve:
        serve(result.export, port=args.port)
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
