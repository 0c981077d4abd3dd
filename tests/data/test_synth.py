"""Synthetic doodles: deterministic, valid raw Quick, Draw! records, varied, and shaped like their class."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest

from doodle.cli import main
from doodle.data.drawing import Drawing, drawing_from_record, parse_timestamp
from doodle.data.synth import CLASSES, make_drawing, synth
from doodle.errors import DoodleError

N = 30  # drawings per class in the shared fixture


def load(path: Path) -> list[Drawing]:
    return [drawing_from_record(orjson.loads(line)) for line in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, list[Drawing]]:
    out = tmp_path_factory.mktemp("synth")
    paths = synth(out, per_class=N, seed=0)
    return {p.stem: load(p) for p in paths}


# -- files, records, determinism ----------------------------------------------------------------


def test_every_class_written_with_the_requested_count(written):
    assert len(CLASSES) >= 12
    assert set(written) == set(CLASSES)
    for word, drawings in written.items():
        assert len(drawings) == N
        assert {d.word for d in drawings} == {word}
    keys = [d.key_id for ds in written.values() for d in ds]
    assert len(set(keys)) == len(keys)
    assert all(0 < k < 2**64 for k in keys)


def test_same_seed_same_bytes_other_seed_other_drawings(tmp_path):
    a = synth(tmp_path / "a", per_class=5, seed=7, classes=["circle", "smiley face"])
    b = synth(tmp_path / "b", per_class=5, seed=7, classes=["circle", "smiley face"])
    c = synth(tmp_path / "c", per_class=5, seed=8, classes=["circle", "smiley face"])
    assert [p.name for p in a] == ["circle.ndjson", "smiley face.ndjson"]
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    for pa, pc in zip(a, c, strict=True):
        da, dc = load(pa), load(pc)
        assert {d.key_id for d in da}.isdisjoint(d.key_id for d in dc)
        assert all(not np.array_equal(x.strokes[0], y.strokes[0]) for x, y in zip(da, dc, strict=True))


def test_a_drawing_does_not_depend_on_what_else_is_asked_for(written, tmp_path):
    [path] = synth(tmp_path, per_class=3, seed=0, classes=["star"])
    for alone, together in zip(load(path), written["star"], strict=False):
        assert alone.key_id == together.key_id
        assert all(np.array_equal(a, b) for a, b in zip(alone.strokes, together.strokes, strict=True))


def test_raw_layout(tmp_path):
    [path] = synth(tmp_path, per_class=2, seed=3, classes=["house"])
    record = orjson.loads(path.read_bytes().splitlines()[0])
    assert list(record) == ["word", "countrycode", "timestamp", "recognized", "key_id", "drawing"]
    assert isinstance(record["key_id"], str) and record["key_id"].isdigit()
    assert record["timestamp"].startswith("2017-") and record["timestamp"].endswith(" UTC")
    assert parse_timestamp(record["timestamp"]).year == 2017
    assert isinstance(record["recognized"], bool)
    assert len(record["countrycode"]) == 2
    for stroke in record["drawing"]:
        assert len(stroke) == 3 and len(stroke[0]) == len(stroke[1]) == len(stroke[2])
        assert all(isinstance(t, int) for t in stroke[2])
    assert any(isinstance(x, float) for stroke in record["drawing"] for x in stroke[0])


def test_timing_increases_within_strokes_with_pauses_between(written):
    gaps, intervals = [], []
    for drawings in written.values():
        for d in drawings:
            assert d.has_time
            assert d.strokes[0][0, 2] == 0
            for s in d.strokes:
                assert np.all(np.diff(s[:, 2]) > 0)
                intervals.extend(np.diff(s[:, 2]))
            gaps.extend(b[0, 2] - a[-1, 2] for a, b in zip(d.strokes, d.strokes[1:], strict=False))
            x0, y0, x1, y1 = d.bbox()
            assert min(x0, y0) >= 0 and x1 < 1100 and y1 < 900
    assert min(gaps) >= 80 and 200 < np.median(gaps) < 800
    assert 10 <= np.median(intervals) <= 30
    assert np.percentile(intervals, 5) < np.percentile(intervals, 95) - 8  # irregular sampling


def test_strokes_slow_down_at_their_ends(written):
    ratios = []
    for d in written["line"]:
        s = d.strokes[0]
        speed = np.hypot(*np.diff(s[:, :2], axis=0).T) / np.diff(s[:, 2])
        if len(speed) >= 8:
            k = len(speed) // 5
            ratios.append(np.mean(speed[[0, -1]]) / np.median(speed[k:-k]))
    assert len(ratios) > N / 2 and np.median(ratios) < 0.6


def test_drawings_vary(written):
    for word, drawings in written.items():
        sizes = [max(d.bbox()[2] - d.bbox()[0], d.bbox()[3] - d.bbox()[1]) for d in drawings]
        assert max(sizes) > 1.5 * min(sizes), word
        assert len({d.n_points for d in drawings}) > N / 2, word
        assert len({d.countrycode for d in drawings}) > 1, word
    for word in ("square", "star", "smiley face", "house", "sun"):
        assert len({len(d.strokes) for d in written[word]}) > 1, word
    starts = {(d.strokes[0][0, 0] > d.strokes[0][-1, 0]) for d in written["line"]}
    assert starts == {True, False}  # lines drawn both ways
    unrecognised = sum(not d.recognized for ds in written.values() for d in ds)
    assert 0 < unrecognised < 0.15 * N * len(written)


# -- shapes ---------------------------------------------------------------------------------------


def rdp(pts: np.ndarray, eps: float) -> np.ndarray:
    """Ramer-Douglas-Peucker on an (n, 2) polyline."""
    if len(pts) < 3:
        return pts
    a, b = pts[0], pts[-1]
    d = b - a
    norm = math.hypot(*d)
    rel = pts - a
    dist = np.abs(d[0] * rel[:, 1] - d[1] * rel[:, 0]) / norm if norm else np.hypot(*rel.T)
    i = int(np.argmax(dist))
    if dist[i] <= eps:
        return np.array([a, b])
    return np.vstack([rdp(pts[: i + 1], eps)[:-1], rdp(pts[i:], eps)])


def xy(d: Drawing) -> np.ndarray:
    return np.concatenate([s[:, :2] for s in d.strokes])


def size(d: Drawing) -> float:
    x0, y0, x1, y1 = d.bbox()
    return max(x1 - x0, y1 - y0)


def long_sides(d: Drawing, min_frac: float) -> list[float]:
    """Directions (degrees mod 180) of the straight runs longer than min_frac of the drawing's size.

    Runs come from RDP; a segment less than 20 degrees off the run before it extends that run (a
    wobble), and on a closed stroke a last run parallel to the first is the same side, overshot.
    """
    out = []
    for s in d.strokes:
        v = rdp(s[:, :2], 0.04 * size(d))
        if len(v) < 2:
            continue
        runs = [[v[0], v[1]]]
        for q in v[2:]:
            if angle_gap(direction(*runs[-1]), direction(runs[-1][1], q)) < 20:
                runs[-1][1] = q
            else:
                runs.append([runs[-1][1], q])
        closed = math.dist(s[0, :2], s[-1, :2]) < 0.2 * size(d)
        if closed and len(runs) > 2 and angle_gap(direction(*runs[0]), direction(*runs[-1])) < 20:
            runs.pop()
        out.extend(direction(p, q) for p, q in runs if math.dist(p, q) > min_frac * size(d))
    return out


def direction(p: np.ndarray, q: np.ndarray) -> float:
    return math.degrees(math.atan2(q[1] - p[1], q[0] - p[0])) % 180


def angle_gap(a: float, b: float) -> float:
    g = abs(a - b) % 180
    return min(g, 180 - g)


def dense(points: np.ndarray, k: int = 4) -> np.ndarray:
    """The polyline with k - 1 points added on each segment (fast strokes are sparsely sampled)."""
    u = np.linspace(0, len(points) - 1, (len(points) - 1) * k + 1)
    return np.column_stack([np.interp(u, np.arange(len(points)), points[:, j]) for j in range(2)])


def polar(d: Drawing) -> tuple[np.ndarray, np.ndarray]:
    """Angles and radii of all points around the bbox centre, the bbox scaled to a unit square."""
    x0, y0, x1, y1 = d.bbox()
    p = np.concatenate([dense(s[:, :2]) for s in d.strokes])
    p = (p - [(x0 + x1) / 2, (y0 + y1) / 2]) / [(x1 - x0) / 2, (y1 - y0) / 2]
    return np.arctan2(p[:, 1], p[:, 0]), np.hypot(p[:, 0], p[:, 1])


def is_circle(d: Drawing) -> bool:
    theta, r = polar(d)
    bins = np.unique(((theta + np.pi) / (2 * np.pi) * 12).astype(int) % 12)
    return len(d.strokes) <= 2 and len(bins) == 12 and np.std(r) < 0.12 and 0.8 < np.median(r) < 1.1


def polygon(n: int, min_frac: float):
    def check(d: Drawing) -> bool:
        return len(long_sides(d, min_frac)) == n

    return check


def is_square(d: Drawing) -> bool:
    sides = long_sides(d, 0.3)
    return len(sides) == 4 and all(min(angle_gap(a, sides[0]), angle_gap(a, sides[0] + 90)) < 15 for a in sides)


def is_triangle(d: Drawing) -> bool:
    sides = long_sides(d, 0.3)
    return len(sides) == 3 and all(angle_gap(a, b) > 30 for i, a in enumerate(sides) for b in sides[i + 1 :])


def is_diamond(d: Drawing) -> bool:
    sides = long_sides(d, 0.3)
    tilted = all(min(angle_gap(a, 0), angle_gap(a, 90)) > 10 for a in sides)
    return len(sides) == 4 and tilted and max(angle_gap(a, sides[0]) for a in sides) > 40


def is_line(d: Drawing) -> bool:
    s = d.strokes[0][:, :2]
    chord = s[-1] - s[0]
    off = np.abs(chord[0] * (s[:, 1] - s[0, 1]) - chord[1] * (s[:, 0] - s[0, 0])) / math.hypot(*chord)
    return len(d.strokes) == 1 and off.max() < 0.08 * math.hypot(*chord)


def turns(v: np.ndarray) -> np.ndarray:
    e = np.diff(v, axis=0)
    return np.sign(e[:-1, 0] * e[1:, 1] - e[:-1, 1] * e[1:, 0])


def is_zigzag(d: Drawing) -> bool:
    t = turns(rdp(d.strokes[0][:, :2], 0.05 * size(d)))
    return len(d.strokes) == 1 and len(t) >= 3 and np.all(t[1:] == -t[:-1])


def is_squiggle(d: Drawing) -> bool:
    """One open wavy stroke: it crosses its own main axis (least-squares line) at least twice."""
    s = d.strokes[0][:, :2]
    centred = s - s.mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    side = (centred[:, 0] * axis[1] - centred[:, 1] * axis[0]) / np.ptp(centred @ axis)
    band = np.sign(side[np.abs(side) > 0.04])  # which side of the axis, ignoring points near it
    crossings = np.count_nonzero(band[1:] != band[:-1])
    is_open = math.dist(s[0], s[-1]) > 0.6 * np.ptp(centred @ axis)
    return len(d.strokes) == 1 and is_open and crossings >= 2 and arc_len(s) > 1.2 * math.dist(s[0], s[-1])


def arc_len(s: np.ndarray) -> float:
    return float(np.hypot(*np.diff(s, axis=0).T).sum())


def is_star(d: Drawing) -> bool:
    theta, r = polar(d)
    bins = ((theta + np.pi) / (2 * np.pi) * 72).astype(int) % 72
    outline = np.zeros(72)
    np.maximum.at(outline, bins, r)
    filled = outline > 0
    outline = np.interp(np.arange(72), np.flatnonzero(filled), outline[filled], period=72)
    high = outline > (outline.min() + outline.max()) / 2
    return np.count_nonzero(high & ~np.roll(high, 1)) == 5


def is_smiley(d: Drawing) -> bool:
    by_size = sorted(d.strokes, key=lambda s: np.ptp(s[:, 0]) + np.ptp(s[:, 1]), reverse=True)
    if len(by_size) != 4:
        return False
    face, mouth, eyes = by_size[0][:, :2], by_size[1][:, :2], [e[:, :2] for e in by_size[2:]]
    centre = (face.min(0) + face.max(0)) / 2
    face_ok = is_circle(Drawing(0, [face]))
    eyes_ok = (
        all(e.mean(0)[1] < centre[1] for e in eyes)
        and (eyes[0].mean(0)[0] - centre[0]) * (eyes[1].mean(0)[0] - centre[0]) < 0
    )
    return face_ok and eyes_ok and mouth.mean(0)[1] > centre[1]


def is_house(d: Drawing) -> bool:
    p = xy(d)
    x0, y0, x1, y1 = d.bbox()
    top = p[p[:, 1] < y0 + 0.12 * (y1 - y0)]
    bottom = p[p[:, 1] > y1 - 0.2 * (y1 - y0)]
    return np.ptp(top[:, 0]) < 0.4 * (x1 - x0) and np.ptp(bottom[:, 0]) > 0.7 * (x1 - x0)


def shoelace(p: np.ndarray) -> float:
    return 0.5 * abs(float(np.dot(p[:, 0], np.roll(p[:, 1], 1)) - np.dot(p[:, 1], np.roll(p[:, 0], 1))))


def is_moon(d: Drawing) -> bool:
    x0, y0, x1, y1 = d.bbox()
    p = xy(d)
    if len(d.strokes) == 2:  # outer and inner arc, both from one horn: join them nose to tail
        a, b = d.strokes[0][:, :2], d.strokes[1][:, :2]
        p = np.vstack([a, b if math.dist(a[-1], b[0]) < math.dist(a[-1], b[-1]) else b[::-1]])
    ratio = shoelace(p) / ((x1 - x0) * (y1 - y0))
    return 0.1 < ratio < 0.55 and (y1 - y0) > 1.4 * (x1 - x0)


def is_envelope(d: Drawing) -> bool:
    x0, y0, x1, y1 = d.bbox()
    p = xy(d)
    mid = p[np.abs(p[:, 0] - (x0 + x1) / 2) < 0.1 * (x1 - x0)]
    inside = (mid[:, 1] > y0 + 0.3 * (y1 - y0)) & (mid[:, 1] < y1 - 0.15 * (y1 - y0))
    return (x1 - x0) > (y1 - y0) and inside.any() and len(long_sides(d, 0.4)) >= 4


def is_sun(d: Drawing) -> bool:
    by_size = sorted(d.strokes, key=lambda s: np.ptp(s[:, 0]) + np.ptp(s[:, 1]), reverse=True)
    disc, rays = by_size[0][:, :2], [r[:, :2] for r in by_size[1:]]
    centre = (disc.min(0) + disc.max(0)) / 2
    radius = np.median(np.hypot(*(disc - centre).T))
    outside = all(np.hypot(*(r - centre).T).min() > 0.9 * radius for r in rays)
    straight = all(len(rdp(r, 0.1 * radius)) == 2 for r in rays)
    return is_circle(Drawing(0, [disc])) and len(rays) >= 5 and outside and straight


SHAPE_CHECKS = {
    "circle": is_circle,
    "square": is_square,
    "triangle": is_triangle,
    "line": is_line,
    "zigzag": is_zigzag,
    "squiggle": is_squiggle,
    "star": is_star,
    "hexagon": polygon(6, 0.25),
    "octagon": polygon(8, 0.18),
    "diamond": is_diamond,
    "smiley face": is_smiley,
    "house": is_house,
    "moon": is_moon,
    "envelope": is_envelope,
    "sun": is_sun,
}


def test_every_class_has_a_shape_check():
    assert set(SHAPE_CHECKS) == set(CLASSES)


@pytest.mark.parametrize("word", sorted(SHAPE_CHECKS))
def test_recognized_drawings_have_their_shape(written, word):
    """Nearly every recognised drawing passes its class's check (wobble may hide an octagon's corner)."""
    drawings = [d for d in written[word] if d.recognized]
    failed = [d.key_id for d in drawings if not SHAPE_CHECKS[word](d)]
    assert len(drawings) > N * 0.75
    assert len(failed) <= 0.1 * len(drawings), f"{word}: {len(failed)} of {len(drawings)} fail: {failed}"


def test_shape_checks_can_fail(written):
    """Each check rejects the other classes' drawings most of the time, so it tests something."""
    for word, check in SHAPE_CHECKS.items():
        others = [d for w, ds in written.items() if w != word for d in ds[:5] if d.recognized]
        accepted = sum(check(d) for d in others)
        assert accepted < 0.25 * len(others), f"{word} accepts {accepted} of {len(others)} others"


# -- errors and CLI ---------------------------------------------------------------------------------


def test_bad_arguments(tmp_path):
    with pytest.raises(DoodleError, match="'dragon'"):
        synth(tmp_path, classes=["dragon"])
    with pytest.raises(DoodleError, match="per_class"):
        synth(tmp_path, per_class=0)
    assert make_drawing("smiley face", 0, 5).word == "smiley face"


def test_cli(tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["synth", "--out", str(out), "--per-class", "4", "--seed", "2", "--classes", "smiley face", "line"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["line.ndjson", "smiley face.ndjson"]
    assert len(load(out / "line.ndjson")) == 4
    assert "2 class(es) x 4 drawings" in capsys.readouterr().out
    assert main(["synth", "--out", str(out), "--classes", "dragon"]) == 2
    assert "dragon" in capsys.readouterr().err
