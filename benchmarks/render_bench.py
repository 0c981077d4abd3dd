"""Speed of `doodle.render.render` against the usual Kaggle-kernel cv2 loop, on one core.

    .venv/bin/python benchmarks/render_bench.py [--n 2000] [--repeats 7] [--shared ../shared]

Loads up to --n simplified and --n raw real drawings from shared/quickdraw, then for each data
set and for 64 and 128 px measures, in this one process (so the ratio is fair on a busy
machine), the median over --repeats interleaved runs (after JIT warm-up) of:

* baseline: the usual Kaggle-kernel approach: per drawing, a Python loop over segments computing
  the colour (order, speed, accel) and calling cv2.line (width 6, cv2's default LINE_8) on a
  256x256x3 canvas, then cv2.resize (default bilinear) to the target size; raw drawings are first
  aligned to the 0..255 frame with numpy. The same loop with anti-aliased lines (LINE_AA) and
  INTER_AREA resizing, closer to our anti-aliased output but slower, is reported beside it;
* doodle (packed): `render(packed, "order-speed-accel", size, out=buffer)` on training-sized
  batches (--batch, default 256) already packed into flat arrays (the renderer's own input layout;
  the next line adds packing), into a reused output buffer;
* doodle (from Drawing list): the same, packing included;
* doodle hard: the packed render with antialias=False, hard-edged like the baseline's LINE_8.

It prints drawings/s for each and the ratios: packed / baseline (the targets: >= 50x at 64 px,
>= 20x at 128 px, checked on this, the strictest pairing), packed / anti-aliased baseline and
hard / baseline (each side with the same kind of edges).
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
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402

from doodle.data.drawing import (  # noqa: E402
    Drawing,
    drawing_from_record,
    pack,  # noqa: E402
)
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


def baseline(drawings: list[Drawing], size: int, aa: bool = False) -> np.ndarray:
    """The Kaggle-kernel way: cv2.line per segment at 256 px, colour per segment, then resize."""
    line_type = cv2.LINE_AA if aa else cv2.LINE_8
    interpolation = cv2.INTER_AREA if aa else cv2.INTER_LINEAR
    out = np.empty((len(drawings), size, size, 3), np.uint8)
    for k, d in enumerate(drawings):
        strokes = d.strokes
        if d.has_time:  # align raw screen coordinates to the 0..255 frame, as Google does
            pts = np.concatenate(strokes)[:, :2]
            lo = pts.min(0)
            ext = float((pts.max(0) - lo).max()) or 1.0
            strokes = [(s[:, :2] - lo) * (255.0 / ext) for s in strokes]
        img = np.zeros((256, 256, 3), np.uint8)
        n = len(strokes)
        for i, stroke in enumerate(strokes):
            order = 255 - 245 * i / n
            xs = stroke[:, 0].tolist()
            ys = stroke[:, 1].tolist()
            for j in range(len(xs) - 1):
                x0, y0, x1, y1 = xs[j], ys[j], xs[j + 1], ys[j + 1]
                speed = min(255.0, math.hypot(x1 - x0, y1 - y0) * 255.0 / 64.0)
                accel = 0.0
                if j > 0:
                    accel = min(255.0, math.hypot(x1 - 2 * x0 + xs[j - 1], y1 - 2 * y0 + ys[j - 1]) * 255.0 / 64.0)
                cv2.line(img, (int(x0), int(y0)), (int(x1), int(y1)), (order, speed, accel), 6, line_type)
        out[k] = cv2.resize(img, (size, size), interpolation=interpolation)
    return out


def interleaved_rates(fns: list, n_items: list[int], repeats: int) -> list[float]:
    """Median items/s of each function, timed in turn in every repeat so load changes on a
    shared machine hit them all alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return [n / statistics.median(t) for n, t in zip(n_items, times, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="drawings per data set (default 2000)")
    parser.add_argument("--baseline-n", type=int, default=300, help="drawings the slow baseline draws")
    parser.add_argument("--batch", type=int, default=256, help="drawings per render call (default 256)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats; the median is kept")
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
    header = f"{'data':<11}{'size':>5}{'baseline/s':>12}{'AA base/s':>11}{'packed/s':>11}{'drawings/s':>12}"
    print(header + f"{'hard/s':>11}{'ratio':>8}{'vs AA':>8}{'hard':>8}")
    print("  (ratio = packed / baseline; vs AA = packed / anti-aliased baseline; hard = hard-edged packed /")
    print("   baseline; drawings/s = from a Drawing list, packing included)")
    ok = True
    for kind in ("simplified", "raw"):
        drawings = load(quickdraw / kind, args.n)
        base_set = drawings[: args.baseline_n]
        chunks = [drawings[k : k + args.batch] for k in range(0, len(drawings), args.batch)]
        packed = [pack(c) for c in chunks]
        n_pts = sum(len(p.points) for p in packed)
        for size in (64, 128):
            for antialias in (True, False):  # JIT warm-up
                render(drawings[:4], "order-speed-accel", size, antialias=antialias)
            baseline(base_set[:4], size)
            baseline(base_set[:4], size, aa=True)
            out = np.zeros((args.batch, 3, size, size), np.uint8)

            def ours(batches, antialias=True, s=size, o=out):
                for batch in batches:
                    render(batch, "order-speed-accel", s, antialias=antialias, out=o[: len(batch)])

            r_base, r_aa, r_ours, r_list, r_hard = interleaved_rates(
                [
                    lambda s=size, b=base_set: baseline(b, s),
                    lambda s=size, b=base_set: baseline(b, s, aa=True),
                    lambda p=packed: ours(p),
                    lambda c=chunks: ours(c),
                    lambda p=packed: ours(p, antialias=False),
                ],
                [len(base_set), len(base_set)] + [len(drawings)] * 3,
                args.repeats,
            )
            ratio = r_ours / r_base
            target = 50 if size == 64 else 20
            ok &= ratio >= target
            print(
                f"{kind:<11}{size:>5}{r_base:>12,.0f}{r_aa:>11,.0f}{r_ours:>11,.0f}{r_list:>12,.0f}{r_hard:>11,.0f}"
                f"{ratio:>7.1f}x{r_ours / r_aa:>7.1f}x{r_hard / r_base:>7.1f}x   (target {target}x; "
                f"{len(drawings)} drawings, {n_pts / len(drawings):.0f} points each)"
            )
    print("targets met" if ok else "targets NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
