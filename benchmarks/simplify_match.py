"""How closely `doodle.data.simplify` reproduces Google's simplified drawings, and how fast it is.

Pairs every drawing present both in ``raw/*.ndjson`` and in ``simplified/*.ndjson`` of the shared
Quick, Draw! folder (same key_id; the first record of a key_id wins), simplifies the raw one and
compares it with Google's.

Printed:
* pairs: how many key_ids are in both versions;
* exact: the fraction of pairs whose output equals Google's exactly (same number of strokes, and
  every stroke has the same points in the same order);
* mean point distance (mismatched pairs only): for each mismatched drawing, the symmetric mean
  nearest-point distance, stroke by stroke: every point of our stroke i is matched to the nearest
  point of Google's stroke i and vice versa, and the mean of all those distances (both directions
  pooled) is the drawing's figure (whole drawings pooled when stroke counts differ); then the mean
  over mismatched drawings, plus the largest one;
* throughput: `simplify(drawing)` over all raw drawings of the pairs, drawings per second, the median
  of several timed runs on one core (numba is single-threaded; the compile happens before timing).

Run: .venv/bin/python benchmarks/simplify_match.py [--quickdraw DIR] [--runs N] [--show K]
"""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from doodle.data.drawing import Drawing, drawing_from_record  # noqa: E402
from doodle.data.simplify import simplify  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def load_by_key(folder: Path) -> dict[int, Drawing]:
    """key_id -> first valid drawing over every ndjson file of a folder (sorted by name)."""
    out: dict[int, Drawing] = {}
    for path in sorted(folder.glob("*.ndjson")):
        with open(path, "rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    drawing = drawing_from_record(orjson.loads(line))
                except (ValueError, orjson.JSONDecodeError):
                    continue
                out.setdefault(drawing.key_id, drawing)
    return out


def pairs(quickdraw: Path) -> list[tuple[Drawing, Drawing]]:
    """(raw, google_simplified) for every key_id in both folders, ordered by key_id."""
    raw = load_by_key(quickdraw / "raw")
    simplified = load_by_key(quickdraw / "simplified")
    return [(raw[k], simplified[k]) for k in sorted(raw.keys() & simplified.keys())]


def same(ours: Drawing, google: Drawing) -> bool:
    if len(ours.strokes) != len(google.strokes):
        return False
    return all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(ours.strokes, google.strokes, strict=True))


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each row of a, the distance to the nearest row of b."""
    d = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    return d.min(axis=1)


def point_distance(ours: Drawing, google: Drawing) -> float:
    """Symmetric mean nearest-point distance (see the module docstring)."""
    if len(ours.strokes) == len(google.strokes):
        pairs_ = list(zip(ours.strokes, google.strokes, strict=True))
    else:
        pairs_ = [(np.concatenate(ours.strokes), np.concatenate(google.strokes))]
    dists = []
    for a, b in pairs_:
        dists.append(_nearest(a[:, :2], b[:, :2]))
        dists.append(_nearest(b[:, :2], a[:, :2]))
    return float(np.concatenate(dists).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quickdraw", type=Path, default=REPO.parent / "shared" / "quickdraw")
    parser.add_argument("--runs", type=int, default=5, help="timed runs for the throughput (median)")
    parser.add_argument("--show", type=int, default=3, help="print this many mismatched key_ids")
    args = parser.parse_args(argv)
    if not (args.quickdraw / "raw").is_dir():
        print(f"no raw/ folder under {args.quickdraw}", file=sys.stderr)
        return 2

    data = pairs(args.quickdraw)
    raws = [r for r, _ in data]
    print(f"pairs: {len(data)} (key_ids in both raw/ and simplified/ of {args.quickdraw})")

    simplify(raws[0])  # compile (or load the numba cache) before anything is timed
    exact = 0
    mismatched: list[tuple[int, float]] = []
    for raw, google in data:
        ours = simplify(raw)
        if same(ours, google):
            exact += 1
        else:
            mismatched.append((raw.key_id, point_distance(ours, google)))
    print(f"exact: {exact}/{len(data)} = {exact / len(data):.4%} identical to Google's simplified drawing")
    if mismatched:
        dists = [d for _, d in mismatched]
        print(
            f"mismatched: {len(mismatched)}; mean point distance {statistics.fmean(dists):.3f} px "
            f"(max {max(dists):.3f} px; symmetric mean nearest-point distance, stroke by stroke, 0..255 space)"
        )
        for key, d in mismatched[: args.show]:
            print(f"  e.g. key_id {key}: {d:.3f} px")

    n_points = sum(r.n_points for r in raws)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        for raw in raws:
            simplify(raw)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(
        f"throughput: {len(raws) / median:,.0f} drawings/s ({n_points / median / 1e6:.2f} M raw points/s; "
        f"median of {args.runs} runs of {len(raws)} drawings, {median:.3f} s each, one core)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
