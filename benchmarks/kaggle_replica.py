"""Write a replica of the Kaggle "Quick, Draw! Doodle Recognition" files from the real drawings in
../shared/quickdraw, at any size, in Kaggle's exact layout.

    .venv/bin/python benchmarks/kaggle_replica.py --out DIR --rows N [--raw-rows M] [--test-rows T]
                                                  [--seed S] [--quickdraw ../shared/quickdraw]

writes

    DIR/train_simplified/<class>.csv   N rows in all, per class proportional to the full dataset's
                                       counts (meta/category-count-dict.json: some classes 3x others)
    DIR/train_raw/<class>.csv          M rows in all (default min(N, 1,000,000): raw is ~4x larger)
    DIR/test_simplified.csv            T rows (default 112,199, as Kaggle's), class-balanced
    DIR/test_raw.csv                   the same drawings with timing (same key_ids, same order)

Train files: `countrycode,drawing,key_id,recognized,timestamp,word`; test files:
`key_id,countrycode,drawing`. File names are the class names with their spaces
(`The Eiffel Tower.csv`). Rows are written as pandas wrote Kaggle's files: fields quoted only when
needed (the drawing always, having commas), the drawing as Python/JSON lists with a space after
every comma (`[[[167, 109, 80], [140, 194, 227]]]`), `recognized` as True/False, the timestamp as
pandas prints a datetime column (`2017-03-08 21:12:07.266040`: six fraction digits, no " UTC"),
key_id a plain integer, `\\n` line ends. The one public Kaggle row found, airplane 5152802093400064,
reads exactly so (its drawing is in ../shared/quickdraw/simplified/airplane.ndjson).

Every row is a real drawing, copied with a fresh key_id and a small random change so that no two
rows are identical: a random linear map about the drawing's centre (rotation up to 5 degrees, scale
0.93-1.07 per axis, shear up to 0.06) plus Gaussian jitter of 0.6 px per point.
* simplified rows come from simplified/ (or, for a class it lacks, Google's simplification of the
  class's raw drawings, `doodle.simplify`); after the change they are aligned and scaled again as
  Google's are (minimum 0, larger side 255) and rounded to integers in 0..255;
* raw rows come from raw/ (screen pixels, timing kept as is; also shifted by up to 3 % of their
  size); integer-valued sources stay integers, the others are float32 values as Google's are;
* a test drawing is a changed raw copy; its simplified row is `doodle.simplify` of that copy, so
  both test files hold the same drawing, as Kaggle's did.

key_ids: train rows get 2^52 + a keyed bijection of a row counter over 51 bits (real key_ids lie in
2^52 .. 2^52 + 2^51), test rows increase from 9.0e15 by random gaps (Kaggle's sample submission
starts 9000003627287624, 9000010688666847): unique across the whole replica, never a real key_id's
source, and the same for the same --seed. The output is the same bytes for the same arguments.

Streaming: rows are made and written class by class in chunks, so memory does not grow with N
(the real drawings, ~18,000, are held once; the test plan holds T small integers).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from doodle.data.drawing import Drawing
from doodle.data.formats import read
from doodle.data.formats.kaggle_csv import kaggle_timestamp
from doodle.data.simplify import simplify

REPO = Path(__file__).resolve().parents[1]
DEFAULT_QUICKDRAW = REPO.parent / "shared" / "quickdraw"
KAGGLE_TEST_ROWS = 112_199
DEFAULT_RAW_CAP = 1_000_000
TRAIN_COLUMNS = ("countrycode", "drawing", "key_id", "recognized", "timestamp", "word")
TEST_COLUMNS = ("key_id", "countrycode", "drawing")
TRAIN_HEADER = ",".join(TRAIN_COLUMNS) + "\n"
TEST_HEADER = ",".join(TEST_COLUMNS) + "\n"

TRAIN_KEY_BASE = 1 << 52
KEY_BITS = 51
KEY_MASK = (1 << KEY_BITS) - 1
TEST_KEY_BASE = 9_000_000_000_000_000
TEST_KEY_GAP = 7_000_000_000
"""Mean gap between consecutive test key_ids (Kaggle's first two differ by 7.06e9)."""

ROTATE_DEG = 5.0
SCALE = (0.93, 1.07)
SHEAR = 0.06
JITTER_PX = 0.6
RAW_SHIFT = 0.03
CHUNK = 2048
"""Rows made and written at a time: bounds memory, amortises the per-chunk numpy calls."""
RETRIES = 4
"""Fresh draws allowed when a change rounds back to the source exactly (tiny drawings)."""

KIND_SIMPLIFIED, KIND_RAW, KIND_TEST = 0, 1, 2


# -- the real drawings --------------------------------------------------------------------------


@dataclass(slots=True)
class Source:
    """One real drawing, flat, with its CSV metadata already formatted."""

    points: np.ndarray
    """(n, 2) x, y or (n, 3) x, y, t, float64."""
    bounds: list[tuple[int, int]]
    """(start, end) of each stroke in `points`."""
    integer: bool
    """All x, y are whole numbers (mouse input, or simplified)."""
    countrycode: str
    recognized: str
    timestamp: str


@dataclass
class Pools:
    """The sources of every class: raw (timed) and simplified drawings."""

    raw: dict[str, list[Source]] = field(default_factory=dict)
    simplified: dict[str, list[Source]] = field(default_factory=dict)


def kaggle_bool(value: bool | None) -> str:
    return "" if value is None else str(bool(value))


def to_source(drawing: Drawing) -> Source:
    points, offsets = drawing.to_flat()
    bounds = [(int(offsets[i]), int(offsets[i + 1])) for i in range(len(offsets) - 1)]
    xy = points[:, :2]
    return Source(points, bounds, bool(np.all(xy == np.round(xy))), drawing.countrycode or "",
                  kaggle_bool(drawing.recognized), kaggle_timestamp(drawing.timestamp))


def load_pools(quickdraw: Path, classes: Sequence[str]) -> Pools:
    """Every real drawing of `classes` under quickdraw/raw and quickdraw/simplified, by `word`
    (never the file name), each key_id once per kind; a class without simplified drawings gets
    Google's simplification of its raw ones."""
    wanted, pools, seen = set(classes), Pools(), set()
    folders = [p for p in (quickdraw / "raw", quickdraw / "simplified") if p.is_dir()]
    for drawing in read(folders, on_reject=lambda r: None, on_skip=lambda p, r: None):
        if drawing.word not in wanted or not drawing.strokes:
            continue
        kind = "raw" if drawing.has_time else "simplified"
        if (kind, drawing.key_id) in seen:
            continue
        seen.add((kind, drawing.key_id))
        getattr(pools, kind).setdefault(drawing.word, []).append(to_source(drawing))
    missing = [c for c in classes if c not in pools.raw]
    if missing:
        raise SystemExit(f"no raw drawing of {len(missing)} class(es) under {quickdraw}/raw: "
                         f"{', '.join(missing[:10])}")
    for name in classes:
        if name not in pools.simplified:
            pools.simplified[name] = [simplified_source(s) for s in pools.raw[name]]
    return pools


def simplified_source(raw: Source) -> Source:
    """Google's simplification of a raw source, metadata kept."""
    drawing = Drawing(key_id=0, strokes=[raw.points[a:b] for a, b in raw.bounds])
    simple = simplify(drawing)
    points, offsets = simple.to_flat()
    bounds = [(int(offsets[i]), int(offsets[i + 1])) for i in range(len(offsets) - 1)]
    return Source(points, bounds, True, raw.countrycode, raw.recognized, raw.timestamp)


def read_classes(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [n for n in names if n]


# -- row counts and key_ids ---------------------------------------------------------------------


def proportional_counts(total: int, weights: Sequence[int]) -> list[int]:
    """Integer counts proportional to `weights` that sum exactly to `total` (largest remainder;
    ties go to the earlier class)."""
    weight_sum = sum(weights)
    if weight_sum <= 0:
        raise ValueError("weights must have a positive sum")
    exact = [total * w for w in weights]  # exact numerators over weight_sum: integer arithmetic
    counts = [e // weight_sum for e in exact]
    short = total - sum(counts)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] % weight_sum), i))
    for i in order[:short]:
        counts[i] += 1
    return counts


def balanced_counts(total: int, k: int, rng: np.random.Generator) -> list[int]:
    """`total` spread as evenly as possible over `k` classes; the extra ones go to random classes."""
    counts = [total // k] * k
    for i in rng.permutation(k)[: total % k]:
        counts[int(i)] += 1
    return counts


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & (2**64 - 1)
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return x ^ (x >> 31)


def key_constants(seed: int) -> tuple[np.uint64, np.uint64, np.uint64]:
    """The seed's add and (odd) multiply constants of the 51-bit bijection."""
    a = _splitmix64(seed * 3 + 1) & KEY_MASK
    b = (_splitmix64(seed * 3 + 2) & KEY_MASK) | 1
    c = (_splitmix64(seed * 3 + 3) & KEY_MASK) | 1
    return np.uint64(a), np.uint64(b), np.uint64(c)


def train_key_ids(counters: np.ndarray, seed: int) -> np.ndarray:
    """2^52 + a bijection of [0, 2^51) applied to row counters: distinct counters give distinct,
    random-looking key_ids in the range real ones have. Each step (add, multiply by an odd number,
    xor with a right shift, all mod 2^51) is invertible, so the whole map is."""
    a, b, c = key_constants(seed)
    mask = np.uint64(KEY_MASK)
    x = (counters.astype(np.uint64) + a) & mask
    x = (x * b) & mask  # uint64 products wrap mod 2^64, so their low 51 bits are the product mod 2^51
    x ^= x >> np.uint64(23)
    x = (x * c) & mask
    x ^= x >> np.uint64(29)
    return x + np.uint64(TRAIN_KEY_BASE)


def testset_key_ids(n: int, rng: np.random.Generator) -> np.ndarray:
    """Increasing test key_ids from 9.0e15 (random gaps averaging TEST_KEY_GAP)."""
    gaps = rng.integers(1, 2 * TEST_KEY_GAP, size=n, dtype=np.int64)
    return (TEST_KEY_BASE + np.cumsum(gaps)).astype(np.uint64)


# -- changing a drawing -------------------------------------------------------------------------


def random_linears(rng: np.random.Generator, n: int) -> np.ndarray:
    """n small random 2x2 maps (n, 2, 2): rotation, per-axis scale and shear, drawn in one call
    per chunk because per-row draws cost more than the rest of the change."""
    angle = np.deg2rad(rng.uniform(-ROTATE_DEG, ROTATE_DEG, n))
    scale = rng.uniform(*SCALE, size=(n, 2))
    shear = rng.uniform(-SHEAR, SHEAR, n)
    cos, sin = np.cos(angle), np.sin(angle)
    # rotation @ [[sx, shear], [0, sy]]
    out = np.empty((n, 2, 2))
    out[:, 0, 0] = cos * scale[:, 0]
    out[:, 0, 1] = cos * shear - sin * scale[:, 1]
    out[:, 1, 0] = sin * scale[:, 0]
    out[:, 1, 1] = sin * shear + cos * scale[:, 1]
    return out


def change_simplified(src: Source, linear: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A changed copy of a simplified drawing: int64 (n, 2) in 0..255, aligned and scaled as
    Google's (the alignment is measured before the jitter, so a dot stays a dot)."""
    xy = src.points[:, :2]
    moved = (xy - (xy.min(0) + xy.max(0)) / 2) @ linear.T
    low = moved.min(0)
    extent = float((moved.max(0) - low).max())
    factor = 255.0 / extent if extent > 1.0 else 1.0
    out = (moved + rng.normal(0.0, JITTER_PX, moved.shape) - low) * factor
    return np.rint(np.clip(out, 0.0, 255.0, out=out)).astype(np.int64)


def change_raw(src: Source, linear: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A changed copy of a raw drawing: (n, 3) float64, timing untouched; whole numbers where the
    source had them, else float32 values (what Google's raw floats are)."""
    xy = src.points[:, :2]
    low, high = xy.min(0), xy.max(0)
    centre, size = (low + high) / 2, max(float((high - low).max()), 1.0)
    shift = rng.uniform(-RAW_SHIFT, RAW_SHIFT, size=2) * size
    moved = (xy - centre) @ linear.T + centre + shift + rng.normal(0.0, JITTER_PX, xy.shape)
    moved = np.rint(moved) if src.integer else moved.astype(np.float32).astype(np.float64)
    return np.column_stack([moved, src.points[:, 2]])


def changed(src: Source, linear: np.ndarray, rng: np.random.Generator, change) -> np.ndarray:
    """`change(src)`, drawn again (with a fresh map) when it rounds back to the source exactly."""
    out = change(src, linear, rng)
    for _ in range(RETRIES):
        if not np.array_equal(out, src.points[:, : out.shape[1]]):
            break
        out = change(src, random_linears(rng, 1)[0], rng)
    return out


# -- CSV rows -----------------------------------------------------------------------------------


def csv_field(text: str) -> str:
    """A CSV field quoted only when needed, as pandas' (csv module's) QUOTE_MINIMAL does."""
    if any(ch in text for ch in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _numbers(values: np.ndarray, integer: bool) -> list:
    if integer:
        return values.astype(np.int64).tolist()
    # whole floats print as integers, as Google's raw JSON has them (`[16, 33.507999420166016]`)
    return [int(v) if v.is_integer() else v for v in values.tolist()]


def drawing_json(points: np.ndarray, bounds: Sequence[tuple[int, int]], integer: bool) -> str:
    """The drawing as Kaggle's CSVs hold it: nested lists, a space after every comma."""
    columns = [_numbers(points[:, 0], integer), _numbers(points[:, 1], integer)]
    if points.shape[1] == 3:
        columns.append(points[:, 2].astype(np.int64).tolist())
    strokes = [[col[a:b] for col in columns] for a, b in bounds]
    return json.dumps(strokes)


def train_row(src: Source, drawing: str, key_id: int, word: str) -> str:
    return (f"{csv_field(src.countrycode)},{csv_field(drawing)},{key_id},{src.recognized},"
            f"{src.timestamp},{csv_field(word)}\n")


def testset_row(src: Source, drawing: str, key_id: int) -> str:
    return f"{key_id},{csv_field(src.countrycode)},{csv_field(drawing)}\n"


def simplified_of(points: np.ndarray, bounds: Sequence[tuple[int, int]]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Google's simplification of a changed raw drawing, flat, as integers."""
    simple = simplify(Drawing(key_id=0, strokes=[points[a:b] for a, b in bounds]))
    flat, offsets = simple.to_flat()
    return np.rint(flat).astype(np.int64), [(int(offsets[i]), int(offsets[i + 1])) for i in range(len(offsets) - 1)]


# -- writing ------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What to write: classes with their train counts, and the test class of every test row."""

    classes: list[str]
    simplified_counts: list[int]
    raw_counts: list[int]
    test_rows: int
    seed: int


def make_plan(classes: list[str], weights: list[int], rows: int, raw_rows: int, test_rows: int, seed: int) -> Plan:
    return Plan(classes, proportional_counts(rows, weights), proportional_counts(raw_rows, weights), test_rows, seed)


def chunks(total: int) -> Iterator[int]:
    for start in range(0, total, CHUNK):
        yield min(CHUNK, total - start)


def write_class(path: Path, word: str, pool: list[Source], count: int, first_counter: int, seed: int, kind: int,
                class_index: int, bar: tqdm) -> int:
    """One train CSV: `count` changed copies of random sources of the class. Returns bytes written."""
    rng = np.random.default_rng([seed, kind, class_index])
    change = change_simplified if kind == KIND_SIMPLIFIED else change_raw
    integer_out = kind == KIND_SIMPLIFIED
    counter = first_counter
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(TRAIN_HEADER)
        for size in chunks(count):
            picks = rng.integers(0, len(pool), size=size)
            keys = train_key_ids(np.arange(counter, counter + size, dtype=np.uint64), seed)
            counter += size
            linears = random_linears(rng, size)
            lines = []
            for pick, key, linear in zip(picks.tolist(), keys.tolist(), linears, strict=True):
                src = pool[pick]
                points = changed(src, linear, rng, change)
                text = drawing_json(points, src.bounds, integer_out or src.integer)
                lines.append(train_row(src, text, key, word))
            out.write("".join(lines))
            bar.update(size)
        return out.tell()


def write_train(out: Path, plan: Plan, pools: Pools, bar: tqdm) -> tuple[list[int], list[float]]:
    """Both train folders; returns their byte counts and seconds. Counters: simplified rows take
    0..N-1, raw rows N..N+M-1, so every train key_id is distinct."""
    sizes, seconds = [], []
    n_rows = sum(plan.simplified_counts)
    for kind, folder, counts, pool, base in (
        (KIND_SIMPLIFIED, "train_simplified", plan.simplified_counts, pools.simplified, 0),
        (KIND_RAW, "train_raw", plan.raw_counts, pools.raw, n_rows),
    ):
        (out / folder).mkdir(parents=True, exist_ok=True)
        total, counter, start = 0, base, time.perf_counter()
        for index, (word, count) in enumerate(zip(plan.classes, counts, strict=True)):
            total += write_class(out / folder / f"{word}.csv", word, pool[word], count, counter, plan.seed, kind,
                                 index, bar)
            counter += count
        sizes.append(total)
        seconds.append(time.perf_counter() - start)
    return sizes, seconds


def write_test(out: Path, plan: Plan, pools: Pools, bar: tqdm) -> int:
    """test_simplified.csv and test_raw.csv together: the same drawings, row for row. Returns bytes."""
    rng = np.random.default_rng([plan.seed, KIND_TEST])
    labels = np.repeat(np.arange(len(plan.classes)), balanced_counts(plan.test_rows, len(plan.classes), rng))
    rng.shuffle(labels)  # classes interleaved in key_id order, as a hand-labelled test set would be
    keys = testset_key_ids(plan.test_rows, rng)
    with open(out / "test_simplified.csv", "w", encoding="utf-8", newline="") as simple_out, \
            open(out / "test_raw.csv", "w", encoding="utf-8", newline="") as raw_out:
        simple_out.write(TEST_HEADER)
        raw_out.write(TEST_HEADER)
        for start in range(0, plan.test_rows, CHUNK):
            chunk_labels = labels[start:start + CHUNK].tolist()
            linears = random_linears(rng, len(chunk_labels))
            simple_lines, raw_lines = [], []
            for label, key, linear in zip(chunk_labels, keys[start:start + CHUNK].tolist(), linears, strict=True):
                pool = pools.raw[plan.classes[label]]
                src = pool[int(rng.integers(0, len(pool)))]
                points = changed(src, linear, rng, change_raw)
                raw_lines.append(testset_row(src, drawing_json(points, src.bounds, src.integer), key))
                simple, bounds = simplified_of(points, src.bounds)
                simple_lines.append(testset_row(src, drawing_json(simple, bounds, True), key))
            simple_out.write("".join(simple_lines))
            raw_out.write("".join(raw_lines))
            bar.update(len(raw_lines))
        return simple_out.tell() + raw_out.tell()


@dataclass
class Written:
    rows: int
    seconds: float
    train_simplified_bytes: int
    train_raw_bytes: int
    test_bytes: int
    part_seconds: tuple[float, float, float]
    """Seconds spent on train_simplified, train_raw and the two test files: they scale apart."""

    @property
    def bytes(self) -> int:
        return self.train_simplified_bytes + self.train_raw_bytes + self.test_bytes


def write_replica(out: Path, plan: Plan, pools: Pools, progress: bool = True) -> Written:
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    total = sum(plan.simplified_counts) + sum(plan.raw_counts) + plan.test_rows
    with tqdm(total=total, unit="rows", unit_scale=True, disable=not progress, desc="replica") as bar:
        (simplified_bytes, raw_bytes), (simplified_s, raw_s) = write_train(out, plan, pools, bar)
        test_start = time.perf_counter()
        test_bytes = write_test(out, plan, pools, bar)
        test_s = time.perf_counter() - test_start
    return Written(total, time.perf_counter() - start, simplified_bytes, raw_bytes, test_bytes,
                   (simplified_s, raw_s, test_s))


def clear_outputs(out: Path) -> None:
    """Remove what an earlier replica wrote in `out` (only those paths)."""
    for name in ("train_simplified", "train_raw"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("test_simplified.csv", "test_raw.csv"):
        (out / name).unlink(missing_ok=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the Kaggle layout into")
    parser.add_argument("--rows", type=int, required=True, help="train_simplified rows in all (Kaggle: 49,707,579)")
    parser.add_argument("--raw-rows", type=int, default=None,
                        help=f"train_raw rows in all (default min(--rows, {DEFAULT_RAW_CAP:,}))")
    parser.add_argument("--test-rows", type=int, default=KAGGLE_TEST_ROWS,
                        help=f"rows of each test CSV (default {KAGGLE_TEST_ROWS:,}, as Kaggle's)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed writes the same bytes (default 0)")
    parser.add_argument("--quickdraw", type=Path, default=DEFAULT_QUICKDRAW,
                        help="folder with raw/, simplified/ and meta/ (default ../shared/quickdraw)")
    parser.add_argument("--classes", type=Path, default=None,
                        help="class list, one per line (default QUICKDRAW/meta/kaggle_340_classes.txt)")
    parser.add_argument("--counts", type=Path, default=None,
                        help="drawings per class, a JSON object (default QUICKDRAW/meta/category-count-dict.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier replica in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.rows < 0 or args.test_rows < 0 or (args.raw_rows is not None and args.raw_rows < 0):
        parser.error("row counts must not be negative")
    if args.raw_rows is None:
        args.raw_rows = min(args.rows, DEFAULT_RAW_CAP)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    meta = args.quickdraw / "meta"
    classes = read_classes(args.classes or meta / "kaggle_340_classes.txt")
    counts = json.loads((args.counts or meta / "category-count-dict.json").read_text(encoding="utf-8"))
    unknown = [c for c in classes if c not in counts]
    if unknown:
        raise SystemExit(f"no drawing count for {', '.join(unknown[:10])} in the counts file")
    if args.out.exists() and any(args.out.iterdir()):
        if not args.overwrite:
            raise SystemExit(f"{args.out} is not empty: pass --overwrite to replace a replica there")
        clear_outputs(args.out)
    pools = load_pools(args.quickdraw, classes)
    plan = make_plan(classes, [counts[c] for c in classes], args.rows, args.raw_rows, args.test_rows, args.seed)
    done = write_replica(args.out, plan, pools, progress=not args.no_progress)
    print(f"wrote {args.out}: {len(classes)} classes; train_simplified {args.rows:,} rows "
          f"({done.train_simplified_bytes / 1e6:,.1f} MB), train_raw {args.raw_rows:,} rows "
          f"({done.train_raw_bytes / 1e6:,.1f} MB), test_simplified.csv + test_raw.csv {args.test_rows:,} rows each "
          f"({done.test_bytes / 1e6:,.1f} MB)")
    print(f"{done.rows:,} rows in {done.seconds:,.1f} s: {done.rows / max(done.seconds, 1e-9):,.0f} rows/s, "
          f"{done.bytes:,} bytes written")
    parts = zip(("train_simplified", "train_raw", "test"), (args.rows, args.raw_rows, args.test_rows),
                done.part_seconds, strict=True)
    print("parts: " + ", ".join(f"{name} {rows:,} rows in {sec:,.2f} s" for name, rows, sec in parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
