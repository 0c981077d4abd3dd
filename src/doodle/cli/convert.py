"""`doodle convert`: read drawings in any format, write ndjson, Google's binary or a Kaggle CSV."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from doodle.cli.options import existing_path
from doodle.errors import DoodleError

EXAMPLES = """\
examples:
  doodle convert raw/cat.ndjson --out cat.csv               Kaggle train CSV
  doodle convert simplified/ --out all.ndjson.gz            every file of a folder, gzipped ndjson
  doodle convert simplified/dog.ndjson --out dog.bin        Google's binary format
  doodle convert test.ndjson --out test.csv --test          Kaggle test layout (key_id,countrycode,drawing)
  doodle convert cat.full.npz --out cat.ndjson              Sketch-RNN stroke-3 to ndjson

The output format follows the extension of --out: .ndjson/.jsonl (ndjson), .bin (binary),
.csv (Kaggle CSV); .gz compresses ndjson and CSV. Records that cannot be read are skipped and
summarised at the end (--rejects FILE keeps them all as ndjson). The binary format holds only
simplified drawings (integer coordinates 0..255, no timing): simplify raw drawings first.
"""

WRITERS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".csv": "csv", ".bin": "binary"}
SHOWN_REASONS = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert drawings between formats (ndjson, binary, Kaggle CSV)",
        description="Read Quick, Draw! drawings in any supported format and write them in another.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sources", nargs="+", metavar="SRC", type=existing_path,
                        help="files or folders to read (any format)")
    parser.add_argument("--out", required=True, type=Path, help="output file; its extension picks the format")
    parser.add_argument("--word", help="category for records without one (binary, npz, bitmaps, Kaggle test)")
    parser.add_argument("--test", action="store_true", help="CSV output in Kaggle's test layout")
    parser.add_argument("--rejects", type=Path, metavar="FILE", help="write every rejected record here (ndjson)")
    parser.set_defaults(func=run)


def output_kind(path: Path) -> str:
    name = path.name.lower()
    gz = name.endswith(".gz")
    suffix = Path(name.removesuffix(".gz")).suffix
    kind = WRITERS.get(suffix)
    if kind is None or (gz and kind == "binary"):
        raise DoodleError(f"--out {path}: cannot tell the output format; use .ndjson, .jsonl, .bin or .csv (+.gz)")
    return kind


def run(args: argparse.Namespace) -> int:
    import orjson

    from doodle.data.drawing import Reject
    from doodle.data.formats import read, write_binary, write_kaggle_csv, write_ndjson

    out: Path = args.out
    kind = output_kind(out)
    if args.test and kind != "csv":
        raise DoodleError("--test applies to CSV output only")
    sources = [Path(s) for s in args.sources]
    if any(s.is_file() and s.resolve() == out.resolve() for s in sources):
        raise DoodleError(f"--out {out} is also an input; write somewhere else")
    out.parent.mkdir(parents=True, exist_ok=True)

    reasons: Counter[str] = Counter()
    examples: list[Reject] = []
    reject_file = open(args.rejects, "wb") if args.rejects else None  # noqa: SIM115 (closed below)

    def on_reject(reject: Reject) -> None:
        reasons[reject.reason] += 1
        if len(examples) < SHOWN_REASONS:
            examples.append(reject)
        if reject_file is not None:
            reject_file.write(orjson.dumps(reject.to_json_dict(), option=orjson.OPT_APPEND_NEWLINE))

    try:
        drawings = read(sources, word=args.word, on_reject=on_reject)
        if kind == "ndjson":
            count = write_ndjson(drawings, out)
        elif kind == "binary":
            count = write_binary(drawings, out)
        else:
            count = write_kaggle_csv(drawings, out, test=args.test)
    finally:
        if reject_file is not None:
            reject_file.close()

    total = sum(reasons.values())
    print(f"wrote {count} drawings to {out} ({kind}); {total} records rejected")
    for reason, n in reasons.most_common(SHOWN_REASONS):
        print(f"  {n:>8}  {reason}")
    if len(reasons) > SHOWN_REASONS:
        print(f"  ... and {len(reasons) - SHOWN_REASONS} other reasons")
    for reject in examples:
        print(f"  e.g. {reject.source}:{reject.line}: {reject.reason}")
    return 0
