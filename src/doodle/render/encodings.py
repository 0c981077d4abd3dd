"""The built-in stroke encodings: what the top Quick, Draw! teams fed their CNNs.

Every value is computed for the whole batch with numpy (no Python loop per drawing). Geometric
quantities (segment length, acceleration) are measured in Google's 0..255 frame
(`StrokeBatch.xy`), so raw and simplified drawings give comparable values. Notation: i = stroke
index in its drawing (0 = first), n = number of strokes of the drawing, m = points in a stroke.

Timed encodings (`needs_time=True`) on drawings without timing (simplified data) zero every
time-derived channel value and draw no time circles; their other channels are unchanged. No
timing is invented.
"""

from __future__ import annotations

import numpy as np

from doodle.render.raster import order_speed_accel_values
from doodle.render.registry import Channels, Dots, StrokeBatch, register_encoding

# -- documented scales and caps ---------------------------------------------------------------
ORDER_SPAN = 245.0
"""order colour = 255 - ORDER_SPAN * i / n: first stroke 255, last 255 - 245 (n - 1) / n."""
SPEED_CAP = 64.0
"""order-speed-accel: segment length (frame units) mapped 0..SPEED_CAP -> 0..255, clipped."""
ACCEL_CAP = 64.0
"""order-speed-accel: inertia distance (frame units) mapped 0..ACCEL_CAP -> 0..255, clipped."""
TIME_SPEED_CAP = 1.0
"""order-speed-accel-time: speed (frame units per ms) mapped 0..1 -> 0..255, clipped."""
TIME_ACCEL_CAP = 8.0
"""order-speed-accel-time: inertia distance (frame units; raw points are dense) 0..8 -> 0..255."""
PAUSE_CAP_MS = 2000.0
"""Pause before a stroke (ms) mapped 0..2000 -> 0..255, clipped (time circles, delay channel)."""
TOTAL_CAP_MS = 20000.0
"""Total drawing time (ms) mapped 0..20000 -> 0..255, clipped (the end circle)."""
STROKE_TIME_CAP_MS = 4000.0
"""delay-time-count: a stroke's drawing time (ms) mapped 0..4000 -> 0..255, clipped."""
COUNT_CAP = 20.0
"""delay-time-count: number of strokes mapped 0..20 -> 0..255, clipped."""
POINTS_CAP = 32.0
"""index-points: points in a stroke mapped 0..32 -> 0..255, clipped."""
DOT_RADIUS = 8.0
"""Radius of the time circles, in pixels of a 256-px image (scaled with the output size)."""
PALETTE_FIRST = (255.0, 224.0, 32.0)
"""palette: RGB of the first stroke (yellow)."""
PALETTE_LAST = (32.0, 64.0, 255.0)
"""palette: RGB of the last stroke (blue)."""
GRADIENT_LOW = 32.0
"""gradients: value at the start of a stroke (channel 1) and of the first stroke (channel 2)."""


def _scaled(values: np.ndarray, cap: float) -> np.ndarray:
    return np.minimum(np.asarray(values, np.float32) * np.float32(255.0 / cap), np.float32(255.0))


def _stroke_fraction(batch: StrokeBatch) -> np.ndarray:
    """(S,) i / (n - 1): 0 for the first stroke, 1 for the last (1 for a single stroke)."""
    n = batch.strokes_per_drawing[batch.stroke_drawing]
    return np.where(n > 1, batch.stroke_rank / np.maximum(n - 1, 1), 1.0).astype(np.float32)


def order_values(batch: StrokeBatch) -> np.ndarray:
    """(N,) the stroke-order colour 255 - 245 * i / n of each point's stroke."""
    n = batch.strokes_per_drawing[batch.stroke_drawing]
    per_stroke = (255.0 - ORDER_SPAN * batch.stroke_rank / np.maximum(n, 1)).astype(np.float32)
    return batch.per_stroke(per_stroke)


def _stack(*columns: np.ndarray | float, n: int) -> np.ndarray:
    out = np.empty((n, len(columns)), np.float32)
    for k, col in enumerate(columns):
        out[:, k] = col
    return out


@register_encoding("grey", channels=1, channel_names=("ink",), composite="max", doc="255 on the strokes.")
def grey(batch: StrokeBatch) -> Channels:
    return Channels(np.full((batch.n_points, 1), 255.0, np.float32))


@register_encoding(
    "order",
    channels=1,
    channel_names=("order",),
    doc="Stroke order: stroke i of n drawn with 255 - 245*i/n (first 255, later strokes darker; "
    "later strokes overwrite earlier ones).",
)
def order(batch: StrokeBatch) -> Channels:
    return Channels(order_values(batch)[:, None].copy())


@register_encoding(
    "order-speed-accel",
    channels=3,
    channel_names=("order", "speed", "accel"),
    doc="24th place (simplified): order 255-245*i/n; speed = segment length in the 0..255 frame, "
    "255*min(len/64, 1); accel = |p(j) - (2p(j-1) - p(j-2))|, 255*min(d/64, 1), 0 on a stroke's "
    "first segment. Values are per segment.",
)
def order_speed_accel(batch: StrokeBatch) -> Channels:
    if not batch.n_points:
        return order_speed_accel_reference(batch)
    # one fused pass, bit for bit `order_speed_accel_reference`, without its per-point temporaries
    vals = order_speed_accel_values(
        batch.points,
        batch.stroke_offsets,
        batch.drawing_offsets,
        batch.bounds[0],
        ORDER_SPAN,
        np.float32(255.0 / SPEED_CAP),
        np.float32(255.0 / ACCEL_CAP),
    )
    return Channels(vals)


def order_speed_accel_reference(batch: StrokeBatch) -> Channels:
    """The "order-speed-accel" values written with the `StrokeBatch` arrays (the definition)."""
    vals = _stack(
        order_values(batch),
        _scaled(batch.segment_length, SPEED_CAP),
        _scaled(batch.inertia_distance, ACCEL_CAP),
        n=batch.n_points,
    )
    return Channels(vals)


def _time_dots(batch: StrokeBatch, n_channels: int, channel: int) -> Dots:
    """Circles at stroke starts (pause before the stroke) and at drawing ends (total time)."""
    start_idx = batch.stroke_offsets[:-1]
    start_val = _scaled(batch.stroke_pause, PAUSE_CAP_MS)
    keep = (start_val > 0) & batch.timed[batch.stroke_drawing]
    has_pts = batch.drawing_point_offsets[1:] > batch.drawing_point_offsets[:-1]
    end_val = _scaled(batch.drawing_duration, TOTAL_CAP_MS)
    end_keep = batch.timed & has_pts & (end_val > 0)
    end_idx = batch.drawing_point_offsets[1:] - 1
    idx = np.concatenate([start_idx[keep], end_idx[end_keep]])
    drawing = np.concatenate([batch.stroke_drawing[keep], np.flatnonzero(end_keep)]).astype(np.int64)
    values = np.zeros((len(idx), n_channels), np.float32)
    values[:, channel] = np.concatenate([start_val[keep], end_val[end_keep]])
    xy = np.ascontiguousarray(batch.points[idx, :2], dtype=np.float32)
    return Dots(drawing=drawing, xy=xy, values=values, channels=(channel,), radius=DOT_RADIUS)


@register_encoding(
    "order-speed-accel-time",
    channels=3,
    channel_names=("order", "speed+time", "accel"),
    needs_time=True,
    untimed="speed channel 0 and no time circles; order and accel as on raw data",
    doc="24th place (raw): order 255-245*i/n; speed = frame units per ms, 255*min(v/1.0, 1); "
    "accel = inertia distance, 255*min(d/8, 1). On the speed channel (1) only, filled circles "
    "(radius 8 in 256-px units) at each stroke start, 255*min(pause/2000 ms, 1), and at the "
    "drawing's last point, 255*min(total time/20000 ms, 1); circles are max-composited.",
)
def order_speed_accel_time(batch: StrokeBatch) -> Channels:
    dt = batch.segment_dt
    speed = np.where(dt > 0, batch.segment_length / np.where(dt > 0, dt, 1.0), 0.0)
    vals = _stack(
        order_values(batch),
        _scaled(speed, TIME_SPEED_CAP),
        _scaled(batch.inertia_distance, TIME_ACCEL_CAP),
        n=batch.n_points,
    )
    return Channels(vals, dots=_time_dots(batch, 3, channel=1))


@register_encoding(
    "palette",
    channels=3,
    channel_names=("red", "green", "blue"),
    doc="4th-place talk: RGB interpolated per stroke from (255, 224, 32) yellow on the first "
    "stroke to (32, 64, 255) blue on the last, fraction i/(n-1) (a lone stroke is blue).",
)
def palette(batch: StrokeBatch) -> Channels:
    f = batch.per_stroke(_stroke_fraction(batch))
    first = np.asarray(PALETTE_FIRST, np.float32)
    last = np.asarray(PALETTE_LAST, np.float32)
    return Channels((first[None, :] + f[:, None] * (last - first)[None, :]).astype(np.float32))


@register_encoding(
    "gradients",
    channels=3,
    channel_names=("grey", "along", "across"),
    interpolate=True,
    doc="4th-place talk: 255 on the strokes; 32->255 along each stroke by arc length (255 on a "
    "zero-length stroke), interpolated inside segments; 32->255 across strokes, 32+223*i/(n-1) "
    "(a lone stroke is 255).",
)
def gradients(batch: StrokeBatch) -> Channels:
    seg = batch.segment_length.astype(np.float64)
    cum = np.concatenate([[0.0], np.cumsum(seg)[:-1]]) if batch.n_points else seg
    start = cum[batch.stroke_offsets[:-1]]
    arc = cum - batch.per_stroke(start)
    total = batch.per_stroke(cum[batch.stroke_offsets[1:] - 1] - start)
    along = np.where(total > 0, arc / np.where(total > 0, total, 1.0), 1.0)
    span = 255.0 - GRADIENT_LOW
    across = batch.per_stroke(GRADIENT_LOW + span * _stroke_fraction(batch))
    vals = _stack(255.0, GRADIENT_LOW + span * along, across, n=batch.n_points)
    return Channels(vals)


@register_encoding(
    "delay-time-count",
    channels=3,
    channel_names=("delay", "duration", "count"),
    needs_time=True,
    untimed="delay and duration channels 0; count as on raw data",
    doc="5th place (raw): per stroke, 255*min(pause before it/2000 ms, 1) (0 for the first "
    "stroke); 255*min(its drawing time/4000 ms, 1); 255*min(n/20, 1) for the whole drawing.",
)
def delay_time_count(batch: StrokeBatch) -> Channels:
    timed = batch.timed[batch.stroke_drawing]
    delay = np.where(timed, _scaled(batch.stroke_pause, PAUSE_CAP_MS), 0.0)
    duration = np.where(timed, _scaled(batch.stroke_duration, STROKE_TIME_CAP_MS), 0.0)
    count = _scaled(batch.strokes_per_drawing, COUNT_CAP)
    vals = _stack(batch.per_stroke(delay), batch.per_stroke(duration), batch.per_drawing(count), n=batch.n_points)
    return Channels(vals)


@register_encoding(
    "thirds",
    channels=3,
    channel_names=("first third", "two thirds", "all"),
    composite="max",
    doc="14th place: channel k (0, 1, 2) is 255 on strokes i < ceil(n*(k+1)/3): the first third, "
    "the first two thirds and all of the strokes.",
)
def thirds(batch: StrokeBatch) -> Channels:
    n = batch.strokes_per_drawing[batch.stroke_drawing]
    rank = batch.stroke_rank
    cols = [np.where(rank < (n * (k + 1) + 2) // 3, 255.0, 0.0) for k in range(3)]
    return Channels(_stack(*(batch.per_stroke(c) for c in cols), n=batch.n_points))


@register_encoding(
    "index-points",
    channels=3,
    channel_names=("index", "points", "const"),
    doc="21st place: stroke index 10->255, 255-245*(n-1-i)/(n-1) (last stroke 255, a lone stroke "
    "255); points in the stroke, 255*min(m/32, 1); constant 255.",
)
def index_points(batch: StrokeBatch) -> Channels:
    n = batch.strokes_per_drawing[batch.stroke_drawing]
    index = np.where(n > 1, 255.0 - ORDER_SPAN * (n - 1 - batch.stroke_rank) / np.maximum(n - 1, 1), 255.0)
    points = _scaled(batch.stroke_n_points, POINTS_CAP)
    vals = _stack(batch.per_stroke(index), batch.per_stroke(points), 255.0, n=batch.n_points)
    return Channels(vals)


@register_encoding(
    "reverse",
    channels=1,
    channel_names=("order",),
    reverse=True,
    doc="46th place: order colours 255-245*i/n, strokes drawn last to first so the first "
    "(brightest) strokes lie on top and late details do not hide them.",
)
def reverse(batch: StrokeBatch) -> Channels:
    return Channels(order_values(batch)[:, None].copy())
