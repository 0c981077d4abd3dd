"""Speed of `doodle.render.render` against the usual Kaggle-kernel cv2 loop, on one core.

    .venv/bin/python benchmarks/render_bench.py [--n 2000] [--repeats 9] [--shared ../shared]

Loads up to --n simplified and --n raw real drawings from shared/quickdraw, then for each data
set and for 64 and 128 px measures, in this one process (so the ratio is fair on a busy
machine), over --repeats interleaved runs (after JIT warm-up), drawings/s (medians) of the
sides below. Every side draws the same drawings, in the same order (`Sides`): the cost of a
drawing grows with its segments, so a side timed on a subset would be timed on different work.

* kaggle: the usual Kaggle-kernel approach, step for step the way the 24th-place team published
  it for this very encoding (shared/seeds, "draw_cv2_color"): per drawing, a Python loop over
  the segments of the strokes as integer lists (the competition's format), the colour computed
  per segment with np.sqrt on Python numbers, cv2.line (width 6, cv2's default LINE_8) on a
  256x256x3 canvas, then cv2.resize (default bilinear) to the target size. The goals
  (>= 50x at 64 px, >= 20x at 128 px) are checked against this loop;
* tight: the same loop written tighter (float lists, math.hypot instead of np.sqrt on numpy
  scalars): about twice as fast, so the stricter yardstick; and the tight loop with anti-aliased
  lines (LINE_AA) and INTER_AREA resizing, closer to our anti-aliased output but slower.
  The loops get their input ready-made, untimed: stroke lists as a parsed CSV gives them (raw
  drawings aligned to the 0..255 frame first), as ours gets packed arrays;
* doodle (packed): `render(packed, "order-speed-accel", size, out=buffer)` (anti-aliased, the
  default) on training-sized batches (--batch, default 256) already packed into flat arrays (the
  renderer's own input layout; the next line adds packing), into a reused output buffer;
* doodle (from Drawing list): the same, packing included;
* doodle hard: the packed render with antialias=False, hard-edged like the loops' LINE_8.

It prints drawings/s for each and the ratios, each the median over repeats of the two rates
timed in the same repeat: packed / kaggle (the goal; the two are timed back to back),
packed / tight, packed / anti-aliased tight and hard / tight (each side with the same kind of
edges).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import glob  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402

from doodle.data.drawing import Drawing, PackedDrawings, drawing_from_record, pack  # noqa: E402
from doodle.render import render  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def load(folder: Path, limit: int) -> list[Drawing]:
    """Up to `limit` drawings, a few from every file (so all categories are represented)."""
    files = sorted(glob.glob(str(folder / "*.ndjson")))
    per_file = max(1, math.ceil(limit / max(len(files), 1)))
    out: list[Drawing] = []
    for path in files:
        with open(path, "rb") as handle:
            for k, line in enumerate(handle):
                if k >= per_file:
                    break
                if line.strip():
                    out.append(drawing_from_record(orjson.loads(line)))
    return out[:limit]


def frame_strokes(d: Drawing) -> list[np.ndarray]:
    """The strokes' x, y; raw screen coordinates aligned to the 0..255 frame, as Google does."""
    strokes = [s[:, :2] for s in d.strokes]
    if d.has_time:
        pts = np.concatenate(strokes)
        lo = pts.min(0)
        ext = float((pts.max(0) - lo).max()) or 1.0
        strokes = [(s - lo) * (255.0 / ext) for s in strokes]
    return strokes


def kaggle_input(d: Drawing) -> list[list[list[int]]]:
    """A drawing the way the competition's CSVs give it once parsed: [[x...], [y...]] per stroke."""
    return [[s[:, 0].astype(int).tolist(), s[:, 1].astype(int).tolist()] for s in frame_strokes(d)]


def tight_input(d: Drawing) -> list[tuple[list[float], list[float]]]:
    """A drawing as float x and y lists per stroke (the tight loop's input)."""
    return [(s[:, 0].tolist(), s[:, 1].tolist()) for s in frame_strokes(d)]


def kaggle_loop(drawings: list[list[list[list[int]]]], size: int) -> np.ndarray:
    """The usual Kaggle-kernel way, step for step as the 24th-place team published it for this
    encoding (shared/seeds: per segment the order colour, speed = length / sqrt(size^2) and
    acceleration = distance from the inertia point 2 * p1 - p0 (starting at the origin for each
    stroke) / sqrt(4 size^2), each with np.sqrt on Python numbers; a cv2.line at 256 px; one
    resize at the end), on `kaggle_input` drawings. Written for this benchmark from that
    description; only its cost matters here, its colours are theirs, not this encoding's."""
    out = np.empty((len(drawings), size, size, 3), np.uint8)
    for k, strokes in enumerate(drawings):
        canvas = np.zeros((256, 256, 3), np.uint8)
        for t, (xs, ys) in enumerate(strokes):
            inertia_x = inertia_y = 0
            for i in range(len(xs) - 1):
                order = int(255 - 245 * (float(t) / len(strokes)))
                x0, y0, x1, y1 = xs[i], ys[i], xs[i + 1], ys[i + 1]
                speed = (np.sqrt((x0 - x1) * (x0 - x1) + (y0 - y1) * (y0 - y1)) / np.sqrt(size * size)) * 255
                dist = np.sqrt((inertia_x - x1) * (inertia_x - x1) + (inertia_y - y1) * (inertia_y - y1))
                accel = (dist / np.sqrt(size * size * 4)) * 255
                cv2.line(canvas, (x0, y0), (x1, y1), (order, speed, accel), 6)
                inertia_x = 2 * x1 - x0
                inertia_y = 2 * y1 - y0
        out[k] = cv2.resize(canvas, (size, size))
    return out


def tight_loop(drawings: list[list[tuple[list[float], list[float]]]], size: int, aa: bool = False) -> np.ndarray:
    """The same loop written tighter, on `tight_input` drawings: math.hypot on floats, this
    encoding's colours, no numpy scalars per segment."""
    line_type = cv2.LINE_AA if aa else cv2.LINE_8
    interpolation = cv2.INTER_AREA if aa else cv2.INTER_LINEAR
    out = np.empty((len(drawings), size, size, 3), np.uint8)
    for k, strokes in enumerate(drawings):
        img = np.zeros((256, 256, 3), np.uint8)
        n = len(strokes)
        for i, (xs, ys) in enumerate(strokes):
            order = 255 - 245 * i / n
            for j in range(len(xs) - 1):
                x0, y0, x1, y1 = xs[j], ys[j], xs[j + 1], ys[j + 1]
                speed = min(255.0, math.hypot(x1 - x0, y1 - y0) * 255.0 / 64.0)
                accel = 0.0
                if j > 0:
                    accel = min(255.0, math.hypot(x1 - 2 * x0 + xs[j - 1], y1 - 2 * y0 + ys[j - 1]) * 255.0 / 64.0)
                cv2.line(img, (int(x0), int(y0)), (int(x1), int(y1)), (order, speed, accel), 6, line_type)
        out[k] = cv2.resize(img, (size, size), interpolation=interpolation)
    return out


@dataclass(frozen=True)
class Sides:
    """One set of drawings in every side's own input layout, made ready before timing (parsed CSV
    lists for the loops, packed arrays or Drawing batches for ours), so that no side is charged
    for converting another's and every side draws exactly the same drawings."""

    drawings: list[Drawing]
    """The drawings every side renders, in this order."""
    kaggle: list[list[list[list[int]]]]
    """`kaggle_input` of each drawing."""
    tight: list[list[tuple[list[float], list[float]]]]
    """`tight_input` of each drawing."""
    chunks: list[list[Drawing]]
    """The drawings in render batches (ours, packing included)."""
    packed: list[PackedDrawings]
    """The same batches packed (ours, the renderer's own input)."""

    @property
    def n(self) -> int:
        """Drawings per side: the count every rate is computed with."""
        return len(self.drawings)


def prepare_sides(drawings: list[Drawing], batch: int) -> Sides:
    """`drawings` in every side's input layout (see `Sides`)."""
    chunks = [drawings[k : k + batch] for k in range(0, len(drawings), batch)]
    return Sides(
        drawings=drawings,
        kaggle=[kaggle_input(d) for d in drawings],
        tight=[tight_input(d) for d in drawings],
        chunks=chunks,
        packed=[pack(c) for c in chunks],
    )


def interleaved_rates(fns: list, n_items: list[int], repeats: int) -> list[list[float]]:
    """Items/s of each function in every repeat, the functions timed in turn within a repeat so
    that load changes on a shared machine hit them all alike."""
    rates: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            rates[k].append(n_items[k] / (time.perf_counter() - start))
    return rates


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """Median over repeats of ours / theirs timed in the same repeat (a paired comparison: the
    machine's slow drift cancels out of each ratio)."""
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="drawings per data set, drawn by every side (default 2000)")
    parser.add_argument("--batch", type=int, default=256, help="drawings per render call (default 256)")
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats; medians are kept")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="the shared/ folder")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    quickdraw = args.shared / "quickdraw"
    if not quickdraw.is_dir():
        print(f"no data at {quickdraw}", file=sys.stderr)
        return 1
    print(f"one core: NUMBA_NUM_THREADS={os.environ['NUMBA_NUM_THREADS']}, cv2 threads={cv2.getNumThreads()}")
    print(
        f"encoding order-speed-accel, line width 6 (in 256-px units), anti-aliased; batches of {args.batch}; "
        f"median of {args.repeats} interleaved repeats"
    )
    header = f"{'data':<11}{'size':>5}{'kaggle/s':>10}{'tight/s':>9}{'AA tight/s':>11}{'packed/s':>10}"
    print(header + f"{'drawings/s':>11}{'hard/s':>9}{'ratio':>8}{'vs tight':>9}{'vs AA':>7}{'hard':>7}")
    print("  (ratio = packed / kaggle, the goal; vs tight = packed / tight loop; vs AA = packed /")
    print("   anti-aliased tight loop; hard = hard-edged packed / tight loop; drawings/s = from a")
    print("   Drawing list, packing included)")
    ok = True
    for kind in ("simplified", "raw"):
        sides = prepare_sides(load(quickdraw / kind, args.n), args.batch)
        drawings = sides.drawings
        n_pts = sum(len(p.points) for p in sides.packed)
        for size in (64, 128):
            for antialias in (True, False):  # JIT warm-up
                render(drawings[:4], "order-speed-accel", size, antialias=antialias)
            kaggle_loop(sides.kaggle[:4], size)
            tight_loop(sides.tight[:4], size)
            tight_loop(sides.tight[:4], size, aa=True)
            out = np.zeros((args.batch, 3, size, size), np.uint8)

            def ours(batches, antialias=True, s=size, o=out):
                for batch in batches:
                    render(batch, "order-speed-accel", s, antialias=antialias, out=o[: len(batch)])

            # the target pair (kaggle, packed) is timed back to back in every repeat
            r_kaggle, r_ours, r_tight, r_hard, r_aa, r_list = interleaved_rates(
                [
                    lambda s=size, b=sides.kaggle: kaggle_loop(b, s),
                    lambda p=sides.packed: ours(p),
                    lambda s=size, b=sides.tight: tight_loop(b, s),
                    lambda p=sides.packed: ours(p, antialias=False),
                    lambda s=size, b=sides.tight: tight_loop(b, s, aa=True),
                    lambda c=sides.chunks: ours(c),
                ],
                [sides.n] * 6,
                args.repeats,
            )
            ratio = paired_ratio(r_ours, r_kaggle)
            target = 50 if size == 64 else 20
            ok &= ratio >= target
            rates = (r_kaggle, r_tight, r_aa, r_ours, r_list, r_hard)
            k_s, t_s, aa_s, o_s, l_s, h_s = (statistics.median(r) for r in rates)
            print(
                f"{kind:<11}{size:>5}{k_s:>10,.0f}{t_s:>9,.0f}{aa_s:>11,.0f}{o_s:>10,.0f}{l_s:>11,.0f}{h_s:>9,.0f}"
                f"{ratio:>7.1f}x{paired_ratio(r_ours, r_tight):>8.1f}x{paired_ratio(r_ours, r_aa):>6.1f}x"
                f"{paired_ratio(r_hard, r_tight):>6.1f}x   (goal {target}x; the same {sides.n} drawings for "
                f"every side, {n_pts / sides.n:.0f} points each)"
            )
    print("goals met" if ok else "goals NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
