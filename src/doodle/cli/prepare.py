"""`doodle prepare`: files and folders in any format -> a sharded, shuffled Parquet store."""

from __future__ import annotations

import argparse
from pathlib import Path

from doodle.cli.options import at_least, fraction

EPILOG = """\
examples:
  doodle prepare data/synth --out store/
  doodle prepare ../shared/quickdraw/raw ../shared/quickdraw/simplified --out store/ \\
      --classes ../shared/quickdraw/meta/kaggle_340_classes.txt --val-fraction 0.1
  doodle prepare kaggle/train_simplified kaggle/test_simplified.csv --out store/
  doodle prepare drawings.bin --word "hot dog" --out store/
  doodle prepare data/raw --per-class 2000 --out store/        # a sample: the same drawings whatever else is added
  duckdb -c "select split, word, count(*) from 'store/**/*.parquet' group by all"

The store: STORE/{train,val,test}/part-NNNNN.parquet (test = drawings without a word, e.g. the
rows of Kaggle's test CSV: label -1), STORE/_manifest.json (classes in label order, counts) and
STORE/_rejects.ndjson (every bad record with its file, line and reason). Arrow tools skip the
names starting with "_", so pyarrow, pandas, Polars and DuckDB read STORE as one dataset.
input = accepted + duplicates + rejected (+ sampled out, with --per-class), always. A failed run removes STORE.partial.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="build a sharded, shuffled Parquet store from any mix of files and folders",
        description="Ingest Quick, Draw! files (raw/simplified ndjson, Kaggle CSVs, .bin, .npz, bitmaps)\n"
        "into a deduplicated, shuffled, compressed Parquet store with a train/val split that is a\n"
        "pure function of key_id. Memory stays bounded whatever the input size; all cores are used.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sources", nargs="+", metavar="SRC", help="files or folders (searched recursively)")
    p.add_argument("--out", required=True, metavar="STORE", help="the store folder to create")
    p.add_argument("--classes", metavar="FILE|A,B,...",
                   help="class list in label order: a text file with one name per line, or comma-separated "
                   "names; drawings of other words are rejected (default: every word seen, sorted)")
    p.add_argument("--word", metavar="WORD",
                   help="the category of every drawing in files without a word field (.bin, .npz, bitmaps) "
                   "whose names are not their category (default: guessed from each file name)")
    p.add_argument("--val-fraction", type=fraction(upper_open=True), default=0.05,
                   help="fraction of drawings in val (default 0.05)")
    p.add_argument("--per-class", type=at_least(0), default=0, metavar="N",
                   help="keep at most N drawings of each class, chosen by a hash of key_id and --seed, so adding "
                   "classes later keeps the same drawings of the old ones; the others are counted as sampled "
                   "out (default 0: all)")
    p.add_argument("--simplify", action="store_true",
                   help="also store every drawing's strokes simplified as Google does (raw ones computed once "
                   "here), so that training with input.simplify=true reads them instead of simplifying raw "
                   "drawings every epoch; the raw strokes and timing stay")
    p.add_argument("--seed", type=at_least(0), default=0,
                   help="salt of split, sample, buckets and shuffle (default 0)")
    p.add_argument("--workers", type=at_least(0), default=0, help="processes (default: one per core)")
    p.add_argument("--memory-mb", type=at_least(16), default=2048,
                   help="memory budget of the whole process tree in MB, ~240 per process included (default 2048)")
    p.add_argument("--shards", type=at_least(0), default=0, help="shards per split (default: from input size)")
    p.add_argument("--overwrite", action="store_true", help="replace STORE if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def parse_classes(value: str | None) -> list[str] | None:
    """A class list from a file (one name per line) or a comma-separated string."""
    if not value:
        return None
    path = Path(value)
    if path.is_file():
        # utf-8-sig: a byte-order mark (Windows editors write one) must not become part of the first name
        names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    else:
        names = [name.strip() for name in value.split(",")]
    names = [n for n in names if n]
    if len(set(names)) != len(names):
        from doodle.errors import DoodleError

        raise DoodleError(f"the class list {value!r} names a class twice")
    return names


def run(args: argparse.Namespace) -> int:
    from doodle.data.store import PrepareConfig, describe, prepare

    config = PrepareConfig(
        val_fraction=args.val_fraction,
        seed=args.seed,
        classes=parse_classes(args.classes),
        word=args.word,
        workers=args.workers,
        memory_mb=args.memory_mb,
        shards=args.shards,
        per_class=args.per_class,
        simplify=args.simplify,
        progress=not args.no_progress,
    )
    manifest = prepare(args.sources, args.out, config, overwrite=args.overwrite)
    print(describe(manifest))
    print(f"store written to {args.out}")
    return 0
