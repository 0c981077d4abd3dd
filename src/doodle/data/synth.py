"""Synthetic hand-drawn doodles, so the whole project runs offline with no download.

`synth(out_dir)` writes one Quick, Draw! raw ndjson file per category (`circle.ndjson`, ...): the
same layout as Google's `full/raw/` files (key_id as a string, word, countrycode, timestamp,
recognized, drawing = [[x...], [y...], [t...]] per stroke, x/y in screen pixels, t in ms since the
drawing's first point), so every reader and pipeline stage can be tried on them.

How a drawing is made:

1. A small generator per category (the `SHAPES` registry) returns the template strokes in unit
   coordinates (y down, shape within about [-1, 1]) in drawing order: it decides, as a person
   would, how many strokes to use, where to start, which way to go, and how far to over- or
   undershoot at the ends.
2. `humanize` resamples each stroke, bends it with smooth low-frequency noise (a hand, not white
   noise), and places the whole drawing on a screen-sized canvas with a random size, position,
   aspect and small rotation.
3. `timed` gives each stroke a speed profile (slow at the ends and at corners, fast in between),
   samples it at irregular 10-30 ms intervals, and strokes are separated by pauses of a few
   hundred ms.

A few drawings per class are sloppy (more wobble, a stroke missing or cut short) and marked
recognized=false, as the game does. Everything is deterministic under `seed`; each drawing has its
own random stream derived from (seed, category, index), so a drawing does not depend on which other
categories or how many drawings were asked for.
"""

from __future__ import annotations

import hashlib
import itertools
import zlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from doodle.data.drawing import Drawing
from doodle.errors import DoodleError

Rng = np.random.Generator
Strokes = list[np.ndarray]

STEP = 0.01
"""Resampling step of template strokes, in unit coordinates."""
SLOPPY_RATE = 0.06
"""Share of drawings that come out sloppy and unrecognised."""


# -- path helpers (unit coordinates, y pointing down) ---------------------------------------------


def pick(rng: Rng, weights: dict) -> object:
    """One key of `weights`, drawn with probability proportional to its value."""
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[rng.choice(len(keys), p=p / p.sum())]


def arc(cx: float, cy: float, r: float, a0: float, a1: float, n: int = 48) -> np.ndarray:
    """Points on a circle of radius r from angle a0 to a1 (radians; y down, so + is clockwise)."""
    a = np.linspace(a0, a1, n)
    return np.column_stack([cx + r * np.cos(a), cy + r * np.sin(a)])


def regular_polygon(n: int, phase: float, r: float = 1.0) -> np.ndarray:
    return arc(0, 0, r, phase, phase + 2 * np.pi, n + 1)[:-1]


def arclength(pts: np.ndarray) -> np.ndarray:
    """Cumulative length along a polyline, starting at 0."""
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])


def resample(pts: np.ndarray, step: float) -> np.ndarray:
    """The polyline at evenly spaced points `step` apart (at least its two ends)."""
    s = arclength(pts)
    if s[-1] == 0:
        return pts[:1].copy()
    u = np.linspace(0, s[-1], max(2, int(np.ceil(s[-1] / step)) + 1))
    return np.column_stack([np.interp(u, s, pts[:, 0]), np.interp(u, s, pts[:, 1])])


def cut(pts: np.ndarray, length: float) -> np.ndarray:
    """The first `length` of a polyline."""
    s = arclength(pts)
    keep = s < length
    end = np.array([np.interp(length, s, pts[:, 0]), np.interp(length, s, pts[:, 1])])
    return np.vstack([pts[keep], end])


def extend(pts: np.ndarray, start: float, end: float) -> np.ndarray:
    """Lengthen (positive) or shorten (negative) both ends: overshoots and gaps at corners."""
    pts = np.asarray(pts, float)
    if end > 0:
        d = pts[-1] - pts[-2]
        pts = np.vstack([pts, pts[-1] + d / np.hypot(*d) * end])
    elif end < 0:
        pts = cut(pts, arclength(pts)[-1] + end)
    if start != 0:
        pts = extend(pts[::-1], 0, start)[::-1]
    return pts


def loose(pts: np.ndarray, rng: Rng, lo: float = -0.04, hi: float = 0.1) -> np.ndarray:
    return extend(pts, rng.uniform(lo, hi), rng.uniform(lo, hi))


def maybe_reverse(pts: np.ndarray, rng: Rng, p: float = 0.5) -> np.ndarray:
    return pts[::-1] if rng.random() < p else pts


def closed_loop(vertices: np.ndarray, rng: Rng, start: int | None = None, close=(-0.1, 0.25)) -> np.ndarray:
    """Round a closed polygon in one stroke, from a vertex, either way, ending a bit short or long.

    `close` bounds how far past (or short of) the starting point the stroke ends, in unit lengths.
    """
    ring = maybe_reverse(np.asarray(vertices, float), rng)
    ring = np.roll(ring, -(rng.integers(len(ring)) if start is None else start), axis=0)
    laps = np.vstack([ring, ring, ring[:1]])
    perimeter = arclength(np.vstack([ring, ring[:1]]))[-1]
    return cut(laps, perimeter + rng.uniform(*close))


def split_loop(vertices: np.ndarray, rng: Rng, counts: dict[int, float]) -> Strokes:
    """A closed polygon in k strokes (k drawn from `counts`), each a run of its sides."""
    k = min(int(pick(rng, counts)), len(vertices))
    if k == 1:
        return [closed_loop(vertices, rng)]
    n = len(vertices)
    ring = np.roll(np.asarray(vertices, float), -rng.integers(n), axis=0)
    ring = np.vstack([ring, ring[:1]])
    bounds = [0, *sorted(rng.choice(np.arange(1, n), k - 1, replace=False)), n]
    strokes = [maybe_reverse(loose(ring[a : b + 1], rng), rng, 0.3) for a, b in itertools.pairwise(bounds)]
    if rng.random() < 0.3:
        strokes = [strokes[i] for i in rng.permutation(k)]
    return strokes


def dot(x: float, y: float, rng: Rng) -> np.ndarray:
    """An eye or a full stop: a tap, a tiny dash or a tiny circle."""
    kind = pick(rng, {"tap": 0.5, "dash": 0.25, "ring": 0.25})
    if kind == "tap":
        return np.array([[x, y], [x + 0.004, y + 0.004]])
    if kind == "dash":
        return np.array([[x, y - 0.05], [x, y + 0.05]])
    return closed_loop(arc(x, y, 0.07, 0, 2 * np.pi, 13)[:-1], rng, close=(-0.02, 0.05))


# -- one small generator per category ---------------------------------------------------------------


def circle(rng: Rng) -> Strokes:
    ring = arc(0, 0, 1, 0, 2 * np.pi, 73)[:-1]
    start = (54 + rng.integers(-10, 11)) % 72 if rng.random() < 0.6 else None  # often from the top
    if rng.random() < 0.9:
        return [closed_loop(ring, rng, start, close=(-0.3, 0.7))]
    top = -np.pi / 2 + rng.normal(0, 0.1)  # two halves, both drawn downwards from the top
    return [loose(arc(0, 0, 1, top, top - np.pi), rng), loose(arc(0, 0, 1, top, top + np.pi), rng)]


def square(rng: Rng) -> Strokes:
    return split_loop(np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]), rng, {1: 0.45, 2: 0.25, 3: 0.1, 4: 0.2})


def triangle(rng: Rng) -> Strokes:
    apex = [rng.uniform(-0.25, 0.25), -1]
    return split_loop(np.array([apex, [1, 0.8], [-1, 0.8]]), rng, {1: 0.6, 2: 0.25, 3: 0.15})


def hexagon(rng: Rng) -> Strokes:
    return split_loop(regular_polygon(6, rng.choice([0, np.pi / 6])), rng, {1: 0.8, 2: 0.2})


def octagon(rng: Rng) -> Strokes:
    return split_loop(regular_polygon(8, np.pi / 8), rng, {1: 0.85, 2: 0.15})


def diamond(rng: Rng) -> Strokes:
    return split_loop(np.array([[0, -1], [0.7, 0], [0, 1], [-0.7, 0]]), rng, {1: 0.55, 2: 0.35, 4: 0.1})


def line(rng: Rng) -> Strokes:
    angle = {"flat": 0.0, "upright": np.pi / 2, "slant": rng.choice([-1, 1]) * np.pi / 4}
    a = angle[pick(rng, {"flat": 0.5, "upright": 0.2, "slant": 0.3})] + rng.normal(0, 0.06)
    end = np.array([np.cos(a), np.sin(a)])
    bow = np.array([-end[1], end[0]]) * rng.normal(0, 0.03)
    return [maybe_reverse(np.array([-end, bow, end]), rng, 0.2)]


def zigzag(rng: Rng) -> Strokes:
    m = int(rng.integers(5, 10))
    x = np.linspace(-1, 1, m) + rng.normal(0, 0.03, m)
    h = rng.uniform(0.25, 0.5)
    y = h * np.where(np.arange(m) % 2 == 0, 1, -1) * rng.uniform(0.8, 1.2, m) * rng.choice([-1, 1])
    return [maybe_reverse(np.column_stack([x, y]), rng, 0.2)]


def squiggle(rng: Rng) -> Strokes:
    x = np.linspace(-1, 1, 160)
    cycles = rng.uniform(1.5, 3.5)
    amplitude = rng.uniform(0.2, 0.4) * (1 + 0.3 * np.sin(rng.uniform(1, 3) * x + rng.uniform(0, 6)))
    y = amplitude * np.sin(np.pi * cycles * x + rng.uniform(0, 2 * np.pi))
    return [maybe_reverse(np.column_stack([x, y]), rng, 0.2)]


def star(rng: Rng) -> Strokes:
    tips = regular_polygon(5, -np.pi / 2)
    if rng.random() < 0.5:  # the pentagram, lines crossing in the middle
        return split_loop(tips[[0, 2, 4, 1, 3]], rng, {1: 0.7, 2: 0.1, 5: 0.2})
    inner = regular_polygon(5, -np.pi / 2 + np.pi / 5, rng.uniform(0.38, 0.5))
    outline = np.stack([tips, inner], axis=1).reshape(10, 2)
    return split_loop(outline, rng, {1: 0.75, 2: 0.25})


def smiley_face(rng: Rng) -> Strokes:
    face = closed_loop(arc(0, 0, 1, 0, 2 * np.pi, 73)[:-1], rng, close=(-0.25, 0.6))
    eyes = [dot(x + rng.normal(0, 0.03), -0.3 + rng.normal(0, 0.04), rng) for x in (-0.35, 0.35)]
    eyes = eyes if rng.random() < 0.7 else eyes[::-1]
    a = rng.uniform(0.2, 0.5)
    mouth = maybe_reverse(arc(0, 0.05, 0.55, a, np.pi - a, 24), rng, 0.3)
    features = [*eyes, mouth] if rng.random() < 0.75 else [mouth, *eyes]
    return [face, *features] if rng.random() < 0.85 else [*features, face]


def house(rng: Rng) -> Strokes:
    eave = rng.uniform(-0.3, 0.0)
    body = split_loop(np.array([[-0.8, eave], [0.8, eave], [0.8, 1], [-0.8, 1]]), rng, {1: 0.4, 2: 0.3, 4: 0.3})
    roof_line = np.array([[-0.95, eave], [rng.normal(0, 0.05), -1], [0.95, eave]])
    roof = [roof_line] if rng.random() < 0.7 else [roof_line[:2], roof_line[1:]]
    roof = [loose(maybe_reverse(s, rng, 0.3), rng) for s in roof]
    parts = [*body, *roof] if rng.random() < 0.75 else [*roof, *body]
    if rng.random() < 0.6:
        x, w = rng.uniform(-0.4, 0.3), rng.uniform(0.25, 0.35)
        parts.append(np.array([[x, 1], [x, 0.45], [x + w, 0.45], [x + w, 1]]))
    return parts


def moon(rng: Rng) -> Strokes:
    horn = rng.uniform(1.0, 1.3)  # angle of the horns from the crescent's back
    outer = arc(0, 0, 1, np.pi - horn, np.pi + horn)
    tip = outer[-1]
    cx = rng.uniform(0.9, 1.5)  # the inner arc: a bigger circle through both horns
    r = np.hypot(tip[0] - cx, tip[1])
    back = np.arctan2(tip[1], tip[0] - cx) % (2 * np.pi)
    inner = arc(cx, 0, r, back, 2 * np.pi - back)
    shape = [np.vstack([outer, inner[1:]])] if rng.random() < 0.85 else [outer, inner]
    flip = rng.choice([-1, 1])
    return [maybe_reverse(s * [flip, 1], rng, 0.3) for s in shape]


def envelope(rng: Rng) -> Strokes:
    corners = np.array([[-1, -0.65], [1, -0.65], [1, 0.65], [-1, 0.65]])
    box = split_loop(corners, rng, {1: 0.5, 2: 0.3, 4: 0.2})
    flap = np.array([corners[0], [rng.normal(0, 0.05), rng.uniform(0.0, 0.25)], corners[1]])
    flaps = [flap] if rng.random() < 0.8 else [flap[:2], flap[1:][::-1]]
    return box + [loose(maybe_reverse(f, rng, 0.3), rng, -0.03, 0.05) for f in flaps]


def sun(rng: Rng) -> Strokes:
    disc = closed_loop(arc(0, 0, 0.5, 0, 2 * np.pi, 49)[:-1], rng)
    n = int(rng.integers(6, 13))
    angles = rng.uniform(0, 2 * np.pi) + np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.normal(0, 0.06, n)
    rays = []
    for a in angles * rng.choice([-1, 1]):
        ray = np.array([[np.cos(a), np.sin(a)]]) * [[rng.uniform(0.6, 0.7)], [rng.uniform(0.9, 1.05)]]
        rays.append(maybe_reverse(ray, rng, 0.2))
    return [disc, *rays] if rng.random() < 0.9 else [*rays, disc]


SHAPES: dict[str, Callable[[Rng], Strokes]] = {
    "circle": circle,
    "square": square,
    "triangle": triangle,
    "line": line,
    "zigzag": zigzag,
    "squiggle": squiggle,
    "star": star,
    "hexagon": hexagon,
    "octagon": octagon,
    "diamond": diamond,
    "smiley face": smiley_face,
    "house": house,
    "moon": moon,
    "envelope": envelope,
    "sun": sun,
}
"""Category name (Quick, Draw!'s own) -> generator of template strokes."""

CLASSES: tuple[str, ...] = tuple(SHAPES)


# -- from template to a human drawing -------------------------------------------------------------


def wobble(pts: np.ndarray, rng: Rng, amount: float) -> np.ndarray:
    """Bend a resampled stroke with smooth noise: a few random sinusoids of its arc length."""
    s = arclength(pts)[:, None]
    wavelengths = rng.uniform(0.6, 2.5, (1, 3)) / np.arange(1, 4)
    amps = amount * rng.uniform(0.4, 1.0, (2, 3)) / np.arange(1, 4) ** 2
    phases = rng.uniform(0, 2 * np.pi, (2, 3))
    dx = (amps[0] * np.sin(2 * np.pi * s / wavelengths + phases[0])).sum(1)
    dy = (amps[1] * np.sin(2 * np.pi * s / wavelengths + phases[1])).sum(1)
    return pts + np.column_stack([dx, dy]) + rng.normal(0, amount / 2, 2)


def make_sloppy(strokes: Strokes, rng: Rng) -> Strokes:
    """Lose a stroke or stop one early: what an unrecognised drawing often looks like."""
    if len(strokes) > 2 and rng.random() < 0.5:
        drop = rng.integers(len(strokes))
        strokes = [s for i, s in enumerate(strokes) if i != drop]
    elif len(strokes[-1]) > 4:
        strokes[-1] = strokes[-1][: max(2, int(len(strokes[-1]) * rng.uniform(0.4, 0.8)))]
    return strokes


def humanize(template: Strokes, rng: Rng, sloppy: bool) -> Strokes:
    """Template strokes -> wobbly strokes in screen pixels on a random canvas (x, y only)."""
    amount = rng.uniform(0.012, 0.03) * (3 if sloppy else 1)
    strokes = [wobble(resample(np.asarray(s, float), STEP), rng, amount) for s in template]
    if sloppy:
        strokes = make_sloppy(strokes, rng)
    angle = rng.normal(0, 0.15 if sloppy else 0.08)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    aspect = np.exp(rng.normal(0, 0.12))
    strokes = [(s @ rot.T) * [np.sqrt(aspect), 1 / np.sqrt(aspect)] for s in strokes]
    lo = np.min([s.min(0) for s in strokes], axis=0)
    hi = np.max([s.max(0) for s in strokes], axis=0)
    canvas = np.array([rng.uniform(500, 1100), rng.uniform(400, 900)])
    longest = rng.uniform(160, 640)  # pixels, the drawing's longer side
    scale = min(longest / (hi - lo).max(), ((canvas - 20) / np.maximum(hi - lo, 1e-9)).min())
    low = 10 - lo * scale
    offset = rng.uniform(low, np.maximum(low, canvas - 10 - hi * scale))
    return [s * scale + offset for s in strokes]


def speed_profile(pts: np.ndarray) -> np.ndarray:
    """Relative pen speed at each point: slow at both ends and at sharp corners."""
    s = arclength(pts)
    u = s / s[-1]
    ends = 0.12 + 0.88 * np.sin(np.pi * u) ** 0.6
    k = 3
    d = np.diff(pts, axis=0)
    heading = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
    turn = np.zeros(len(pts))
    if len(heading) > 2 * k:
        turn[k : len(heading) - k + 1] = np.abs(heading[2 * k - 1 :] - heading[: len(heading) - 2 * k + 1])
    corner = np.convolve(turn, np.ones(7) / 7, mode="same")
    return ends * (1 - 0.75 * np.clip(corner / (np.pi / 3), 0, 1))


def sample_intervals(rng: Rng, total: float) -> np.ndarray:
    """Times (ms) at which the screen sampled the pen: irregular, mostly 12-20 ms, some 25-35."""
    n = int(total / 10) + 2
    dt = np.where(rng.random(n) < 0.85, rng.uniform(12, 20, n), rng.uniform(25, 35, n))
    t = np.concatenate([[0.0], np.cumsum(dt)])
    return t[t < total]


def timed(pts: np.ndarray, rng: Rng, peak_speed: float) -> np.ndarray:
    """(n, 3) x, y, t (ms from the stroke's start) for a pixel polyline; `peak_speed` in px/ms is
    reached on long strokes, short ones are drawn slower."""
    s = arclength(pts)
    if s[-1] < 6:  # a dot: a few samples in place
        n = int(rng.integers(1, 4))
        t = np.cumsum(np.concatenate([[0], rng.uniform(10, 30, n - 1)]))
        return np.column_stack([pts[np.linspace(0, len(pts) - 1, n).astype(int)], t])
    v = peak_speed * np.clip(np.sqrt(s[-1] / 800), 0.35, 1.2) * speed_profile(pts)  # small is slow
    seg_t = np.diff(s) / (0.5 * (v[1:] + v[:-1]))
    t_at = np.concatenate([[0.0], np.cumsum(seg_t)])
    t = sample_intervals(rng, t_at[-1])
    if len(t) > 1 and t_at[-1] - t[-1] < 5:
        t = t[:-1]
    t = np.append(t, t_at[-1])
    at = np.interp(t, t_at, s)
    return np.column_stack([np.interp(at, s, pts[:, 0]), np.interp(at, s, pts[:, 1]), t])


def timeline(strokes: Strokes, rng: Rng, sloppy: bool) -> Strokes:
    """Time every stroke and chain them with pauses; times are whole, strictly increasing ms."""
    peak = rng.uniform(0.8, 2.6)
    out, start = [], 0.0
    for i, pts in enumerate(strokes):
        stroke = timed(pts, rng, peak * rng.uniform(0.85, 1.15))
        if i:
            start += float(np.clip(rng.lognormal(np.log(380 if not sloppy else 700), 0.5), 80, 3000))
        t = np.round(stroke[:, 2] + start)
        t = np.maximum.accumulate(t - np.arange(len(t))) + np.arange(len(t))  # strictly increasing
        stroke[:, 2] = t
        stroke[:, :2] = np.round(stroke[:, :2], 1)
        out.append(stroke)
        start = float(t[-1])
    return out


# -- metadata -------------------------------------------------------------------------------------

COUNTRIES = {"US": 40, "GB": 6, "DE": 5, "CA": 4, "RU": 4, "BR": 4, "AU": 3, "FR": 3, "IT": 3, "PL": 3}
COUNTRIES |= {"KR": 3, "TH": 3, "IN": 3, "JP": 2, "SE": 2, "CZ": 2, "FI": 2, "NL": 2, "SA": 2, "HU": 2}
EPOCH = datetime(2017, 1, 1, tzinfo=UTC)


def key_id(seed: int, word: str, index: int) -> int:
    """A deterministic, well-spread 53-bit key_id (fits uint64, and a JavaScript number too)."""
    digest = hashlib.blake2b(f"doodle-synth:{seed}:{word}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 11


def drawing_rng(seed: int, word: str, index: int) -> Rng:
    return np.random.default_rng([seed, zlib.crc32(word.encode()), index])


def make_drawing(word: str, index: int, seed: int = 0) -> Drawing:
    """Drawing number `index` of category `word` under `seed` (independent of all others)."""
    rng = drawing_rng(seed, word, index)
    sloppy = bool(rng.random() < SLOPPY_RATE)
    strokes = timeline(humanize(SHAPES[word](rng), rng, sloppy), rng, sloppy)
    stamp = EPOCH + timedelta(seconds=int(rng.integers(0, 90 * 86400)), microseconds=10 * int(rng.integers(100_000)))
    return Drawing(
        key_id=key_id(seed, word, index),
        strokes=strokes,
        word=word,
        countrycode=str(pick(rng, COUNTRIES)),
        recognized=not sloppy,
        timestamp=stamp,
    )


def resolve_classes(classes: Iterable[str] | None) -> list[str]:
    """The requested classes (all when None), checked; unknown names raise `DoodleError`."""
    if classes is None:
        return list(CLASSES)
    names = [c.strip().replace("_", " ") for item in classes for c in item.split(",") if c.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise DoodleError(f"no synthetic generator for {', '.join(map(repr, unknown))}; have: {', '.join(CLASSES)}")
    return list(dict.fromkeys(names))


def synth(
    out_dir: str | Path, *, per_class: int = 200, seed: int = 0, classes: Iterable[str] | None = None
) -> list[Path]:
    """Write `per_class` synthetic raw drawings per class to `out_dir/<class>.ndjson`; returns the paths."""
    import orjson

    if per_class < 1:
        raise DoodleError(f"per_class must be at least 1, got {per_class}")
    if seed < 0:
        raise DoodleError(f"seed must be a non-negative integer, got {seed}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for word in resolve_classes(classes):
        path = out / f"{word}.ndjson"
        with open(path, "wb") as handle:
            for i in range(per_class):
                handle.write(orjson.dumps(make_drawing(word, i, seed).to_json_dict()) + b"\n")
        paths.append(path)
    return paths
