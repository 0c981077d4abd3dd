"""Early guessing: MAP@3 on the first 25 / 50 / 75 / 100 % of each drawing's strokes, per run.

    .venv/bin/python benchmarks/early_guess.py /work/runs/cpu-q15-v3 /work/runs/cpu-q15-trunc \\
        --names "cpu.yaml" "cpu.yaml + truncation fine-tune" --data /work/stores/q15 --out docs/early-guessing.png

Prints the table (and top-1 accuracy) and writes the plot. The data is a store's val split (or any
files `doodle.read` takes), scored with each run's own preprocessing (`doodle.evaluate.early`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from doodle.data.formats import read
from doodle.data.store import is_store, iter_store
from doodle.evaluate.early import FRACTIONS, early_guessing, format_table, plot_early
from doodle.infer.predict import load_model, resolve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders or checkpoints")
    parser.add_argument("--names", nargs="+", help="legend names (default: the run folder names)")
    parser.add_argument("--data", type=Path, required=True, help="a store (its val split is used) or drawing files")
    parser.add_argument("--checkpoint", default="best", help="best, last, ema, ...")
    parser.add_argument("--out", type=Path, default=Path("docs/early-guessing.png"))
    parser.add_argument("--fractions", nargs="+", type=float, default=list(FRACTIONS))
    args = parser.parse_args()
    names = args.names or [Path(r).name for r in args.runs]
    if len(names) != len(args.runs):
        parser.error("give one --names entry per run")
    if is_store(args.data):
        drawings = list(iter_store(args.data, "val"))
        print(f"{len(drawings)} drawings from the val split of {args.data}")
    else:
        drawings = list(read(args.data))
        print(f"{len(drawings)} drawings from {args.data}")
    results = {}
    for name, run in zip(names, args.runs, strict=True):
        start = time.perf_counter()
        model, preprocessor, classes, _ = load_model(resolve(run, args.checkpoint),
                                                     weights="ema" if args.checkpoint == "ema" else "model")
        results[name] = early_guessing(model, preprocessor, classes, drawings, fractions=args.fractions,
                                       progress=True)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    print(format_table(results))
    for name, r in results.items():
        pairs = zip(r.fractions, r.acc1, strict=True)
        print(f"{name} top-1 accuracy: " + " ".join(f"{f:.0%} {a:.4f}" for f, a in pairs))
    print(f"wrote {plot_early(results, args.out)}")


if __name__ == "__main__":
    main()
