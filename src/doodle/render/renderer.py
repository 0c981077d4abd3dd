"""`render`: a batch of drawings to a uint8 [B, C, size, size] array in any registered encoding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from doodle.data.drawing import Drawing, PackedDrawings, pack
from doodle.render import raster
from doodle.render.raster import draw_dots, rasterize
from doodle.render.registry import StrokeBatch, get_encoding

MIN_SIZE, MAX_SIZE = 8, 1024
REFERENCE_SIZE = 256.0
"""`line_width`, `padding` and dot radii are given in pixels of a 256-px image."""


def _as_packed(drawings: Sequence[Drawing] | PackedDrawings | Drawing) -> PackedDrawings:
    if isinstance(drawings, PackedDrawings):
        points = np.ascontiguousarray(drawings.points, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"packed points must have shape (N, 3), got {points.shape}")
        return PackedDrawings(
            points,
            np.ascontiguousarray(drawings.stroke_offsets, dtype=np.int64),
            np.ascontiguousarray(drawings.drawing_offsets, dtype=np.int64),
        )
    if isinstance(drawings, Drawing):
        drawings = [drawings]
    return pack(list(drawings))


def pixel_line_width(line_width: float, size: int) -> float:
    """The drawn line width in output pixels: line_width * size / 256, at least 1 px."""
    return max(float(line_width) * size / REFERENCE_SIZE, 1.0)


def pixel_margin(line_width: float, padding: float, size: int) -> float:
    """Distance from the image edge to the outermost point centres, in output pixels.

    padding (a 256-px-image length, scaled) plus half the drawn line width, so `padding` is the
    blank border left around the ink.
    """
    return max(float(padding), 0.0) * size / REFERENCE_SIZE + pixel_line_width(line_width, size) / 2.0


def render(
    drawings: Sequence[Drawing] | PackedDrawings | Drawing,
    encoding: str = "grey",
    size: int = 64,
    *,
    line_width: float = 6.0,
    padding: float = 4.0,
    antialias: bool = True,
    placement: Literal["fit", "frame"] = "fit",
    align: bool | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Rasterise drawings straight at `size` x `size`: a uint8 array [B, C, size, size].

    drawings: Drawing objects (raw or simplified, mixed is fine) or a `PackedDrawings`.
    encoding: a registered encoding name (`list_encodings()`); C is its channel count.
    line_width: stroke width in pixels of a 256-px image; drawn width = line_width * size / 256
        output pixels, never below 1 px (so the meaning does not change with size).
    padding: blank border around the ink, in pixels of a 256-px image (scaled likewise).
    antialias: coverage-weighted edges (True) or hard pixels (False).
    placement: "fit" scales the drawing's bounding box, aspect kept, centred, to fill the image
        inside the padding; "frame" maps Google's 0..255 frame onto that area (simplified data
        keeps its own position and scale).
    align: for placement="frame", whether to first align each drawing as Google simplified it
        (min x, y to 0, larger side to 255). None (default): only drawings with timing or with a
        coordinate outside 0..255 (raw screen coordinates); True/False: all/none.
    out: optional preallocated uint8 array [B, C, size, size]; it is cleared and returned.
    """
    enc = get_encoding(encoding)
    size = int(size)
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be between {MIN_SIZE} and {MAX_SIZE}, got {size}")
    if line_width <= 0:
        raise ValueError(f"line_width must be positive, got {line_width}")
    if placement not in ("fit", "frame"):
        raise ValueError(f"placement must be 'fit' or 'frame', got {placement!r}")
    packed = _as_packed(drawings)
    n_draw = len(packed)
    shape = (n_draw, enc.channels, size, size)
    if out is None:
        out = np.empty(shape, np.uint8)
    elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous uint8 with shape {shape}, got {out.dtype} {out.shape}")
    if n_draw == 0 or len(packed.points) == 0:
        out[...] = 0
        return out

    batch = StrokeBatch(packed.points, packed.stroke_offsets, packed.drawing_offsets)
    result = enc.fn(batch)
    vals = np.ascontiguousarray(result.values, dtype=np.float32)
    if vals.shape != (len(packed.points), enc.channels):
        raise ValueError(
            f"encoding {enc.name!r} returned values of shape {vals.shape}, "
            f"expected {(len(packed.points), enc.channels)}"
        )
    np.clip(vals, 0.0, 255.0, out=vals)

    half_w = pixel_line_width(line_width, size) / 2.0
    margin = pixel_margin(line_width, padding, size)
    a, bx, by = _placement(batch, size, margin, placement, align)
    rasterize(
        packed.points,
        packed.stroke_offsets,
        packed.drawing_offsets,
        a,
        bx,
        by,
        vals,
        enc.interpolate,
        enc.reverse,
        enc.composite == "max",
        half_w,
        bool(antialias),
        out,
    )
    dots = result.dots
    if dots is not None and len(dots.drawing):
        mask = np.zeros(enc.channels, np.bool_)
        mask[list(dots.channels)] = True
        radius = max(dots.radius * size / REFERENCE_SIZE, half_w)
        draw_dots(
            np.ascontiguousarray(dots.drawing, dtype=np.int64),
            np.ascontiguousarray(dots.xy, dtype=np.float32),
            np.clip(np.ascontiguousarray(dots.values, dtype=np.float32), 0.0, 255.0),
            mask,
            a,
            bx,
            by,
            radius,
            bool(antialias),
            out,
        )
    return out


def _placement(
    batch: StrokeBatch, size: int, margin: float, mode: str, align: bool | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return raster.placement(batch.points, batch.drawing_point_offsets, size, margin, mode, align, batch.bounds)
