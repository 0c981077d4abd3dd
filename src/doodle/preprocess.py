"""The one path from `Drawing`s to model input, shared by training, evaluation, prediction, serving.

A checkpoint stores the `InputConfig` it was trained with; everything that feeds the model builds a
`Preprocessor` from it, so a drawing posted to the live app becomes exactly the tensor the model
saw in training (the most common cause of bad doodle demos is a mismatch here).

A batch is a dict of numpy arrays:

* "image": uint8 [B, C, size, size] in the configured encoding (image models);
* "points": float32 [B, max_points, 6] per-point features (x, y, dx, dy, dt, pen) and
  "lengths": int64 [B] (sequence models, see `sequence_features`);
* "country": int64 [B] country index (0 = unknown), when `country` is on;
* "time_features": float32 [B, 6] drawing-level timing (see `time_features`), when on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from doodle.data.drawing import Drawing, PackedDrawings, pack

InputKind = Literal["image", "sequence"]
POINT_FEATURES = ("x", "y", "dx", "dy", "dt", "pen")
TIME_FEATURES = ("has_time", "log_total_s", "strokes_per_10", "log_mean_pause_s", "log_max_pause_s", "log_points")
COUNTRY_VOCAB = 26 * 26 + 1
"""Country indices: 0 for unknown, else 1 + 26 * letter1 + letter2 of the ISO alpha-2 code."""


@dataclass
class InputConfig:
    """How a drawing becomes model input (saved in every checkpoint)."""

    encoding: str = "order-speed-accel"
    """Stroke encoding for image models (`doodle render --list`)."""
    size: int = 64
    """Image side in pixels (32..256)."""
    line_width: float = 6.0
    """Stroke width in pixels of a 256-px image (scaled with size)."""
    padding: float = 4.0
    """Blank border in pixels of a 256-px image (scaled with size)."""
    antialias: bool = True
    """Anti-aliased stroke edges."""
    placement: Literal["fit", "frame"] = "fit"
    """fit: bounding box fills the image; frame: Google's 0..255 frame fills it."""
    simplify: bool = False
    """Apply Google's simplification first to every drawing not already in its simplified form
    (`is_simplified`): raw drawings, timed or not, then look like simplified ones."""
    max_points: int = 256
    """Points per drawing for sequence models (longer drawings are subsampled evenly)."""
    country: bool = False
    """Also produce the country index (for models with a country embedding)."""
    time_features: bool = False
    """Also produce drawing-level time features (total time, strokes, pauses)."""

    def __post_init__(self) -> None:
        from doodle.config import AT_LEAST_0, AT_LEAST_1, POSITIVE, Range, check_ranges
        from doodle.render.renderer import MAX_SIZE, MIN_SIZE

        check_ranges(self, size=Range(MIN_SIZE, MAX_SIZE), line_width=POSITIVE, padding=AT_LEAST_0,
                     max_points=AT_LEAST_1)


class Preprocessor:
    """Turns a list of drawings into the batch dict a model of `kind` consumes."""

    def __init__(self, config: InputConfig, kind: InputKind = "image"):
        if kind not in ("image", "sequence"):
            raise ValueError(f"input kind must be 'image' or 'sequence', got {kind!r}")
        self.config = config
        self.kind = kind

    def __call__(self, drawings: Sequence[Drawing], augment=None, rng: np.random.Generator | None = None
                 ) -> dict[str, np.ndarray]:
        """The batch for `drawings`; `augment` (a `doodle.render.AugmentConfig`) is applied first."""
        drawings = list(drawings)
        return self.packed(pack(drawings, np.float64), [d.countrycode for d in drawings], augment, rng)

    def table(self, table, augment=None, rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
        """The batch for store rows (a pyarrow Table with the strokes, and countrycode when `country`
        is on), read straight into packed arrays: the training loader's path. With `simplify` and a
        store prepared with simplified strokes (`SIMPLIFIED_COLUMNS`), those are used as they are."""
        from doodle.data.table import SIMPLIFIED_COLUMNS, table_to_packed

        presimplified = self.config.simplify and SIMPLIFIED_COLUMNS[0] in table.schema.names
        packed = table_to_packed(table, simplified=presimplified)
        countries = table.column("countrycode").to_pylist() if self.config.country else None
        done = np.ones(len(packed), bool) if presimplified else None
        return self.packed(packed, countries, augment, rng, simplified=done)

    def packed(self, packed: PackedDrawings, countries: Sequence[str | None] | None = None, augment=None,
               rng: np.random.Generator | None = None, simplified: np.ndarray | None = None
               ) -> dict[str, np.ndarray]:
        """The batch for packed drawings (float64 points), with their country codes when `country`
        is on; `simplified` (bool [B]) marks drawings simplified already (skipped by `simplify`)."""
        from doodle.packed import sequence_features_packed, simplify_packed, time_features_packed

        cfg = self.config
        if cfg.simplify:
            packed = simplify_packed(packed, simplified)
        if augment is not None:
            from doodle.render.augment_packed import augment_packed

            packed = augment_packed(packed, augment, rng if rng is not None else np.random.default_rng())
        batch: dict[str, np.ndarray] = {}
        if self.kind == "image":
            batch["image"] = self._render(packed)
        else:
            batch["points"], batch["lengths"] = sequence_features_packed(packed, cfg.max_points)
        if cfg.country:
            if countries is None or len(countries) != len(packed):
                raise ValueError("input.country is on: give one country code per drawing")
            batch["country"] = np.array([country_index(c) for c in countries], np.int64)
        if cfg.time_features:
            batch["time_features"] = time_features_packed(packed)
        return batch

    def _render(self, drawings: Sequence[Drawing] | PackedDrawings) -> np.ndarray:
        from doodle.render import render

        cfg = self.config
        return render(drawings, cfg.encoding, cfg.size, line_width=cfg.line_width, padding=cfg.padding,
                      antialias=cfg.antialias, placement=cfg.placement)

    def reference(self, drawings: Sequence[Drawing], augment=None, rng: np.random.Generator | None = None
                  ) -> dict[str, np.ndarray]:
        """The same batch as `__call__`, made the readable way, one `Drawing` at a time (simplify,
        `augment_batch`, `sequence_features`, `time_features`): the definition the packed path is
        tested against, and the baseline `benchmarks/train_bench.py` measures it beside."""
        cfg = self.config
        drawings = list(drawings)
        if cfg.simplify:
            from doodle.data.simplify import simplify

            drawings = [simplify(d) if needs_simplification(d) else d for d in drawings]
        if augment is not None:
            from doodle.render import augment_batch

            drawings = augment_batch(drawings, augment, rng if rng is not None else np.random.default_rng())
        batch: dict[str, np.ndarray] = {}
        if self.kind == "image":
            batch["image"] = self._render(drawings)
        else:
            batch["points"], batch["lengths"] = sequence_features(drawings, cfg.max_points)
        if cfg.country:
            batch["country"] = np.array([country_index(d.countrycode) for d in drawings], np.int64)
        if cfg.time_features:
            batch["time_features"] = np.stack([time_features(d) for d in drawings]) if drawings else (
                np.zeros((0, len(TIME_FEATURES)), np.float32))
        return batch


SIMPLIFIED_SIDE = 255.0
"""Google's simplified drawings have whole-number coordinates in 0..SIMPLIFIED_SIDE."""
SIMPLIFIED_EDGES = (4.0, 48.0, 240.0)
"""Where a simplified drawing's extremes lie: Google aligns both axes to 0 and scales the larger
side to 255, then resampling and RDP move the extreme points. Over the 12,752 simplified drawings of
../shared/quickdraw/simplified (measured): the smaller minimum of x and y at most 4, the larger at
most 46, the largest coordinate at least 241; so (4, 48, 240)."""


def is_simplified(d: Drawing) -> bool:
    """Whether `d` is already in Google's simplified form: no timing, every coordinate a whole
    number in 0..255, its extremes where simplification puts them (`SIMPLIFIED_EDGES`). Simplifying
    such a drawing again would change it (resampling and RDP are not idempotent), so it is left as
    it is. Timed drawings are raw; of the 10,078 raw drawings of ../shared/quickdraw/raw with the
    timing removed, 80 lie in 0..255 with whole numbers and none passes. Every path that feeds a
    model (training, `doodle predict`, the server) decides with this one test."""
    if d.has_time:
        return False
    pts = np.concatenate(d.strokes) if d.strokes else np.zeros((0, 2))
    if pts.size == 0:
        return True  # nothing to simplify
    low, high = pts.min(0), float(pts.max())
    touch, other, reach = SIMPLIFIED_EDGES
    return bool(0.0 <= low.min() <= touch and low.max() <= other and reach <= high <= SIMPLIFIED_SIDE
                and np.array_equal(pts, np.floor(pts)))


def needs_simplification(d: Drawing) -> bool:
    """Whether a model trained with `input.simplify` gets `d` simplified first (not `is_simplified`)."""
    return not is_simplified(d)


def country_index(code: str | None) -> int:
    """0 for a missing or malformed code, else a stable index below `COUNTRY_VOCAB`."""
    if not code or len(code) != 2 or not code.isascii() or not code.isalpha():
        return 0
    a, b = (ord(c) - ord("A") for c in code.upper())
    return 1 + 26 * a + b


def time_features(d: Drawing) -> np.ndarray:
    """Drawing-level timing, float32 [6]: has_time, log1p(total seconds), strokes / 10,
    log1p(mean pause s), log1p(max pause s), log1p(points). Untimed drawings get zeros for the
    time entries (has_time = 0), so a model can tell "no timing" from "fast"."""
    out = np.zeros(len(TIME_FEATURES), np.float32)
    out[2] = len(d.strokes) / 10.0
    out[5] = np.log1p(d.n_points)
    if d.has_time and d.strokes:
        starts = np.array([s[0, 2] for s in d.strokes])
        ends = np.array([s[-1, 2] for s in d.strokes])
        pauses = np.maximum(starts[1:] - ends[:-1], 0.0) / 1000.0 if len(d.strokes) > 1 else np.zeros(1)
        out[0] = 1.0
        out[1] = np.log1p(max(float(ends.max()), 0.0) / 1000.0)
        out[3] = np.log1p(float(pauses.mean()))
        out[4] = np.log1p(float(pauses.max()))
    return out


def sequence_features(drawings: Sequence[Drawing], max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-point features [B, max_points, 6] (zero-padded) and the number of valid points [B].

    Coordinates are aligned the way Google simplified them (min to 0, larger side to 1), so raw and
    simplified drawings share a frame: x, y in 0..1; dx, dy the step from the previous point (0 for
    the first); dt the seconds since the previous point, clipped to 0..5 (0 without timing); pen = 1
    on the last point of each stroke. Longer drawings are subsampled evenly; a stroke end that falls
    between two kept points marks the earlier one, so the pen still lifts before the next stroke.
    """
    out = np.zeros((len(drawings), max_points, len(POINT_FEATURES)), np.float32)
    lengths = np.zeros(len(drawings), np.int64)
    for i, d in enumerate(drawings):
        if not d.strokes:
            continue
        pts, offsets = d.to_flat()
        pen = np.zeros(len(pts), np.float32)
        pen[offsets[1:] - 1] = 1.0
        xy = pts[:, :2] - pts[:, :2].min(0)
        extent = float(xy.max())
        xy = xy / extent if extent > 0 else xy
        t = pts[:, 2] / 1000.0 if pts.shape[1] == 3 else np.zeros(len(pts))
        if len(pts) > max_points:
            keep = np.unique(np.linspace(0, len(pts) - 1, max_points).round().astype(np.int64))
            # a stroke end dropped after kept point j marks j: the pen lifts there
            pen = np.maximum.reduceat(pen, keep)
            xy, t = xy[keep], t[keep]
        n = len(xy)
        feats = out[i, :n]
        feats[:, 0:2] = xy
        feats[1:, 2:4] = np.diff(xy, axis=0)
        feats[1:, 4] = np.clip(np.diff(t), 0.0, 5.0)
        feats[:, 5] = pen
        lengths[i] = n
    return out, lengths
