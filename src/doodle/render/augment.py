"""Vector augmentation: random changes to a drawing's strokes before it is rasterised.

Each function is pure (returns a new `Drawing`, never changes its input) and takes its
randomness from a `numpy.random.Generator`, so a seed makes everything reproducible. Only x and
y change; a t column (raw data) is carried along untouched. Sizes (shift, jitter) are fractions
of the drawing's larger bounding-box side, so they mean the same for raw screen coordinates and
for the 0..255 simplified frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from doodle.data.drawing import Drawing

FRAME = (0.0, 255.0)


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _bbox(d: Drawing) -> tuple[float, float, float, float]:
    if not d.strokes:
        return (0.0, 0.0, 0.0, 0.0)
    return d.bbox()


def _map_xy(d: Drawing, fn) -> Drawing:
    strokes = []
    for s in d.strokes:
        new = np.array(s, dtype=np.float64, copy=True)
        new[:, :2] = fn(new[:, :2])
        strokes.append(new)
    return d.replace(strokes=strokes)


def hflip(d: Drawing) -> Drawing:
    """Mirror left-right inside the drawing's own bounding box (x -> min_x + max_x - x)."""
    x0, _, x1, _ = _bbox(d)
    return _map_xy(d, lambda xy: np.column_stack([x0 + x1 - xy[:, 0], xy[:, 1]]))


def apply_affine(d: Drawing, matrix: np.ndarray) -> Drawing:
    """Apply a 2x3 affine matrix to every point: [x', y'] = M[:, :2] @ [x, y] + M[:, 2]."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"affine matrix must be 2x3, got {m.shape}")
    return _map_xy(d, lambda xy: xy @ m[:, :2].T + m[:, 2])


def random_affine(
    d: Drawing,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.9, 1.1),
    shift: float = 0.05,
    rotate: float = 10.0,
) -> Drawing:
    """Scale (uniform in `scale`), rotate (uniform in +-`rotate` degrees) about the bbox centre,
    then shift each axis by up to +-`shift` times the larger bbox side."""
    x0, y0, x1, y1 = _bbox(d)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    side = max(x1 - x0, y1 - y0, 1e-9)
    s = rng.uniform(scale[0], scale[1])
    theta = math.radians(rng.uniform(-rotate, rotate))
    tx, ty = rng.uniform(-shift, shift, size=2) * side
    c, sn = math.cos(theta) * s, math.sin(theta) * s
    m = np.array([[c, -sn, 0.0], [sn, c, 0.0]])
    m[:, 2] = np.array([cx + tx, cy + ty]) - m[:, :2] @ np.array([cx, cy])
    return apply_affine(d, m)


def fit_into(d: Drawing, lo: float = FRAME[0], hi: float = FRAME[1]) -> Drawing:
    """Bring a drawing inside the square [lo, hi]^2: shrink it about its centre if it is bigger,
    then shift it in. A drawing already inside is returned unchanged (same object)."""
    x0, y0, x1, y1 = _bbox(d)
    if x0 >= lo and y0 >= lo and x1 <= hi and y1 <= hi:
        return d
    side = max(x1 - x0, y1 - y0)
    k = min(1.0, (hi - lo) / side) if side > 0 else 1.0
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    half_w, half_h = (x1 - x0) * k / 2.0, (y1 - y0) * k / 2.0
    ncx = min(max(cx, lo + half_w), hi - half_w)
    ncy = min(max(cy, lo + half_h), hi - half_h)
    out = _map_xy(d, lambda xy: (xy - [cx, cy]) * k + [ncx, ncy])
    # Rounding can leave a point a hair outside: clamp.
    for s in out.strokes:
        np.clip(s[:, :2], lo, hi, out=s[:, :2])
    return out


def stroke_dropout(d: Drawing, rng: np.random.Generator, p: float = 0.2) -> Drawing:
    """Drop each stroke with probability `p`; if that would drop them all, one random stroke is
    kept. Stroke order (and timing) of the kept strokes is unchanged."""
    n = len(d.strokes)
    if n <= 1 or p <= 0:
        return d.replace(strokes=list(d.strokes))
    keep = rng.random(n) >= p
    if not keep.any():
        keep[rng.integers(n)] = True
    return d.replace(strokes=[s for s, k in zip(d.strokes, keep, strict=True) if k])


def jitter(d: Drawing, rng: np.random.Generator, sigma: float = 0.005) -> Drawing:
    """Add Gaussian noise of standard deviation `sigma` times the larger bbox side to x and y."""
    x0, y0, x1, y1 = _bbox(d)
    std = sigma * max(x1 - x0, y1 - y0, 1e-9)
    return _map_xy(d, lambda xy: xy + rng.normal(0.0, std, size=xy.shape))


def truncate(d: Drawing, k: int | None = None, fraction: float | None = None) -> Drawing:
    """Keep the first `k` strokes, or the first ceil(fraction * n) strokes; always at least one."""
    n = len(d.strokes)
    if (k is None) == (fraction is None):
        raise ValueError("give exactly one of k and fraction")
    keep = int(k) if k is not None else math.ceil(float(fraction) * n - 1e-9)
    return d.replace(strokes=list(d.strokes[: max(1, min(keep, n))]))


@dataclass(frozen=True, slots=True)
class AugmentConfig:
    """Which augmentations `augment` applies, and how strongly (defaults: flip + mild affine)."""

    flip: float = 0.5
    """Probability of a horizontal flip."""
    affine: float = 1.0
    """Probability of a random affine transform (scale, rotate, shift below)."""
    scale: tuple[float, float] = (0.9, 1.1)
    """Range of the uniform scale factor of the affine transform."""
    rotate: float = 10.0
    """Largest rotation of the affine transform, in degrees (either way)."""
    shift: float = 0.05
    """Largest shift of the affine transform per axis, as a fraction of the larger bbox side."""
    dropout: float = 0.0
    """Probability of dropping each stroke (never all of them)."""
    jitter: float = 0.0
    """Standard deviation of point noise, as a fraction of the larger bbox side (0: none)."""
    truncate: float = 0.0
    """Probability of keeping only the first strokes (a partial drawing)."""
    truncate_min: float = 0.3
    """When truncating, the kept fraction of strokes is uniform in [truncate_min, 1] (rounded up)."""
    keep_in_frame: bool = True
    """Drawings that started inside the 0..255 frame are brought back inside it (`fit_into`)."""

    def __post_init__(self) -> None:
        from doodle.config import AT_LEAST_0, POSITIVE, PROBABILITY, check_ranges

        check_ranges(self, flip=PROBABILITY, affine=PROBABILITY, scale=POSITIVE, rotate=AT_LEAST_0,
                     shift=AT_LEAST_0, dropout=PROBABILITY, jitter=AT_LEAST_0, truncate=PROBABILITY,
                     truncate_min=PROBABILITY)


def augment(d: Drawing, config: AugmentConfig | None = None, rng: int | np.random.Generator | None = None) -> Drawing:
    """Apply the augmentations of `config` in the order truncate, dropout, flip, affine, jitter.

    Deterministic for a given seed (int) or generator state.
    """
    cfg = config or AugmentConfig()
    gen = _rng(rng)
    x0, y0, x1, y1 = _bbox(d)
    in_frame = x0 >= FRAME[0] and y0 >= FRAME[0] and x1 <= FRAME[1] and y1 <= FRAME[1]
    out = d
    if cfg.truncate > 0 and gen.random() < cfg.truncate:
        out = truncate(out, fraction=gen.uniform(cfg.truncate_min, 1.0))
    if cfg.dropout > 0:
        out = stroke_dropout(out, gen, cfg.dropout)
    if cfg.flip > 0 and gen.random() < cfg.flip:
        out = hflip(out)
    if cfg.affine > 0 and gen.random() < cfg.affine:
        out = random_affine(out, gen, scale=cfg.scale, shift=cfg.shift, rotate=cfg.rotate)
    if cfg.jitter > 0:
        out = jitter(out, gen, cfg.jitter)
    if cfg.keep_in_frame and in_frame:
        out = fit_into(out)
    return out if out is not d else d.replace(strokes=list(d.strokes))


def augment_batch(
    drawings: Sequence[Drawing], config: AugmentConfig | None = None, seed: int | np.random.Generator | None = None
) -> list[Drawing]:
    """`augment` every drawing with one generator made from `seed` (reproducible as a batch)."""
    gen = _rng(seed)
    return [augment(d, config, gen) for d in drawings]
