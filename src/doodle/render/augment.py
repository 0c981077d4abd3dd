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


def affine_about_centre(d: Drawing, scale: float, degrees: float, shift_x: float, shift_y: float) -> Drawing:
    """Scale by `scale` and rotate by `degrees` about the bbox centre, then shift by
    (shift_x, shift_y) times the larger bbox side."""
    x0, y0, x1, y1 = _bbox(d)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    side = max(x1 - x0, y1 - y0, 1e-9)
    theta = math.radians(degrees)
    c, sn = math.cos(theta) * scale, math.sin(theta) * scale
    m = np.array([[c, -sn, 0.0], [sn, c, 0.0]])
    m[:, 2] = np.array([cx + shift_x * side, cy + shift_y * side]) - m[:, :2] @ np.array([cx, cy])
    return apply_affine(d, m)


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
    s = rng.uniform(scale[0], scale[1])
    degrees = rng.uniform(-rotate, rotate)
    tx, ty = rng.uniform(-shift, shift, size=2)
    return affine_about_centre(d, s, degrees, tx, ty)


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


def dropout_mask(uniforms: np.ndarray, p: float, fallback: float) -> np.ndarray:
    """Which of n strokes stroke dropout keeps, given n uniforms in [0, 1): stroke j when
    uniforms[j] >= p; if that keeps none, stroke int(fallback * n) (fallback uniform in [0, 1))."""
    keep = np.asarray(uniforms) >= p
    if len(keep) > 0 and not keep.any():
        keep[int(fallback * len(keep))] = True
    return keep


def keep_strokes(d: Drawing, uniforms: np.ndarray, p: float, fallback: float) -> Drawing:
    """Stroke dropout with given randomness (`dropout_mask` of the first n uniforms); a drawing of
    one stroke, or p <= 0, keeps every stroke."""
    n = len(d.strokes)
    if n <= 1 or p <= 0:
        return d.replace(strokes=list(d.strokes))
    keep = dropout_mask(uniforms[:n], p, fallback)
    return d.replace(strokes=[s for s, k in zip(d.strokes, keep, strict=True) if k])


def stroke_dropout(d: Drawing, rng: np.random.Generator, p: float = 0.2) -> Drawing:
    """Drop each stroke with probability `p`; if that would drop them all, one random stroke is
    kept. Stroke order (and timing) of the kept strokes is unchanged."""
    return keep_strokes(d, rng.random(len(d.strokes)), p, rng.random())


def add_noise(d: Drawing, noise: np.ndarray, sigma: float) -> Drawing:
    """Add `noise` (N x 2 standard normals, one row per point) times `sigma` times the larger bbox
    side to x and y."""
    x0, y0, x1, y1 = _bbox(d)
    std = sigma * max(x1 - x0, y1 - y0, 1e-9)
    noise = np.asarray(noise, dtype=np.float64)
    if noise.shape != (d.n_points, 2):
        raise ValueError(f"noise must have shape {(d.n_points, 2)}, got {noise.shape}")
    ends = np.cumsum([len(s) for s in d.strokes])
    parts = iter(np.split(noise, ends[:-1]) if d.strokes else [])
    return _map_xy(d, lambda xy: xy + std * next(parts))


def jitter(d: Drawing, rng: np.random.Generator, sigma: float = 0.005) -> Drawing:
    """Add Gaussian noise of standard deviation `sigma` times the larger bbox side to x and y."""
    return add_noise(d, rng.standard_normal((d.n_points, 2)), sigma)


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


COINS = ("truncate", "fraction", "flip", "affine", "scale", "rotate", "shift_x", "shift_y", "keep_one")
"""The uniforms in [0, 1) drawn for every drawing of a batch (`AugmentDraws.coins` columns): whether
to truncate and the kept fraction, whether to flip, whether to transform, the transform's scale,
rotation and shifts, and which stroke stroke dropout keeps when it would drop them all."""


@dataclass(frozen=True, slots=True)
class AugmentDraws:
    """All the randomness of augmenting one batch, drawn up front so that the per-drawing reference
    (`augment_batch`) and the compiled batch path (`doodle.render.augment_packed`) apply the very
    same numbers: a batch's draws depend only on the generator and the batch's sizes."""

    coins: np.ndarray
    """float64 [B, len(COINS)] uniforms in [0, 1), one row per drawing."""
    strokes: np.ndarray
    """float64 [S] uniforms, one per input stroke (stroke dropout; empty when dropout is 0)."""
    noise: np.ndarray
    """float64 [N, 2] standard normals, one row per input point (jitter; empty when jitter is 0)."""


def draw_augment(config: AugmentConfig, rng: np.random.Generator, drawings: int, strokes: int,
                 points: int) -> AugmentDraws:
    """The draws of a batch of `drawings` drawings with `strokes` strokes and `points` points in
    all: coins first, then stroke uniforms (if dropout), then noise (if jitter), from one generator."""
    coins = rng.random((drawings, len(COINS)))
    stroke_u = rng.random(strokes) if config.dropout > 0 else np.zeros(0)
    noise = rng.standard_normal((points, 2)) if config.jitter > 0 else np.zeros((0, 2))
    return AugmentDraws(coins, stroke_u, noise)


def augment_drawn(d: Drawing, config: AugmentConfig, coins: np.ndarray, strokes: np.ndarray,
                  noise: np.ndarray) -> Drawing:
    """Augment one drawing with its draws (its row of coins, its strokes' uniforms and its points'
    noise), in the order truncate, dropout, flip, affine, jitter, then back into the frame."""
    cfg = config
    c = dict(zip(COINS, coins, strict=True))
    x0, y0, x1, y1 = _bbox(d)
    in_frame = x0 >= FRAME[0] and y0 >= FRAME[0] and x1 <= FRAME[1] and y1 <= FRAME[1]
    kept = np.arange(len(d.strokes))  # indices of the input strokes still there
    if cfg.truncate > 0 and c["truncate"] < cfg.truncate:
        kept = kept[:len(truncate(d, fraction=cfg.truncate_min + (1.0 - cfg.truncate_min) * c["fraction"]).strokes)]
    if cfg.dropout > 0 and len(kept) > 1:
        kept = kept[dropout_mask(strokes[:len(kept)], cfg.dropout, c["keep_one"])]
    out = d.replace(strokes=[d.strokes[j] for j in kept])
    if cfg.flip > 0 and c["flip"] < cfg.flip:
        out = hflip(out)
    if cfg.affine > 0 and c["affine"] < cfg.affine:
        lo, hi = cfg.scale
        out = affine_about_centre(out, lo + (hi - lo) * c["scale"], cfg.rotate * (2.0 * c["rotate"] - 1.0),
                                  cfg.shift * (2.0 * c["shift_x"] - 1.0), cfg.shift * (2.0 * c["shift_y"] - 1.0))
    if cfg.jitter > 0:
        ends = np.concatenate([[0], np.cumsum([len(s) for s in d.strokes])]).astype(np.int64)
        rows = [np.arange(ends[j], ends[j + 1]) for j in kept]
        out = add_noise(out, noise[np.concatenate(rows)] if rows else np.zeros((0, 2)), cfg.jitter)
    if cfg.keep_in_frame and in_frame:
        out = fit_into(out)
    return out


def augment_batch(
    drawings: Sequence[Drawing], config: AugmentConfig | None = None, seed: int | np.random.Generator | None = None
) -> list[Drawing]:
    """Augment a batch: draw its randomness from one generator made from `seed` (`draw_augment`),
    then apply each drawing's share (`augment_drawn`). The readable reference of the compiled
    `doodle.render.augment_packed`, which gives the same strokes up to float rounding."""
    cfg = config or AugmentConfig()
    drawings = list(drawings)
    n_strokes = [len(d.strokes) for d in drawings]
    n_points = [d.n_points for d in drawings]
    draws = draw_augment(cfg, _rng(seed), len(drawings), sum(n_strokes), sum(n_points))
    s_end, p_end = np.cumsum(n_strokes, dtype=np.int64), np.cumsum(n_points, dtype=np.int64)
    out = []
    for i, d in enumerate(drawings):
        s_lo, p_lo = s_end[i] - n_strokes[i], p_end[i] - n_points[i]
        strokes = draws.strokes[s_lo:s_end[i]] if cfg.dropout > 0 else draws.strokes
        noise = draws.noise[p_lo:p_end[i]] if cfg.jitter > 0 else draws.noise
        out.append(augment_drawn(d, cfg, draws.coins[i], strokes, noise))
    return out


def augment(d: Drawing, config: AugmentConfig | None = None, rng: int | np.random.Generator | None = None) -> Drawing:
    """Augment one drawing: `augment_batch` of a batch of one (deterministic for a seed or
    generator state)."""
    return augment_batch([d], config, rng)[0]
