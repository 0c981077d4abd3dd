"""The stroke-encoding registry and the batch view that encoding functions receive.

An encoding is one decorated function::

    @register_encoding("grey", channels=1, doc="255 on the strokes.")
    def grey(batch: StrokeBatch) -> Channels:
        return Channels(np.full((batch.n_points, 1), 255, np.float32))

The function sees the whole batch at once (flat arrays, no Python loop per drawing) and returns
one row of channel values per point, in 0..255 (floats; clipped and rounded when drawn). How the
rasteriser reads those rows is declared at registration:

* ``interpolate=False`` (default): row ``j`` is the colour of the segment from point ``j`` to
  point ``j + 1`` of the same stroke (constant along it); a stroke's last row is only used when
  the stroke is a single point (drawn as a dot).
* ``interpolate=True``: rows are per-point colours, linearly interpolated along each segment.
* ``composite="over"``: later segments overwrite earlier ones where they cover them (anti-aliased
  edges blend), as cv2 does; what stroke-order encodings need. ``"max"``: a pixel keeps the
  largest value any segment gave it (overlaps never darken).
* ``reverse=True``: strokes are drawn last to first.

An encoding may also return `Dots`: filled discs drawn after all strokes, max-composited, on the
channels it names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np

from doodle.errors import DoodleError

FRAME = 255.0
"""Side of Google's simplified frame: `StrokeBatch.xy` spans 0..FRAME on its larger side."""


class UnknownEncodingError(DoodleError, KeyError):
    """An encoding name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(slots=True)
class Dots:
    """Filled discs drawn after the strokes (max-composited, only on the `channels` named).

    drawing: (D,) int64 index of the drawing in the batch; xy: (D, 2) float32 position in the
    drawing's own coordinates (the same space as the input points, placed like them);
    values: (D, C) float32 0..255; radius: disc radius in pixels of a 256-px image (scaled with
    the output size like the line width).
    """

    drawing: np.ndarray
    xy: np.ndarray
    values: np.ndarray
    channels: tuple[int, ...]
    radius: float = 8.0


@dataclass(slots=True)
class Channels:
    """What an encoding function returns: (N, C) float32 values 0..255, plus optional dots."""

    values: np.ndarray
    dots: Dots | None = None


@dataclass(frozen=True, slots=True)
class Encoding:
    """A registered encoding: its function and the facts the renderer and the docs need."""

    name: str
    fn: Callable[[StrokeBatch], Channels] = field(repr=False)
    channels: int
    channel_names: tuple[str, ...]
    doc: str
    needs_time: bool = False
    untimed: str = ""
    """What the encoding does on drawings without timing (simplified data); empty if not timed."""
    interpolate: bool = False
    composite: Literal["over", "max"] = "over"
    reverse: bool = False

    def describe(self) -> str:
        """One line: name, channels, summary, and the untimed behaviour for timed encodings."""
        names = ", ".join(self.channel_names)
        text = f"{self.name:<24} {self.channels} ch ({names}): {self.doc.splitlines()[0]}"
        if self.needs_time:
            text += f" [needs time; simplified data: {self.untimed}]"
        return text


_REGISTRY: dict[str, Encoding] = {}


def register_encoding(
    name: str,
    *,
    channels: int,
    doc: str,
    channel_names: tuple[str, ...] | None = None,
    needs_time: bool = False,
    untimed: str = "",
    interpolate: bool = False,
    composite: Literal["over", "max"] = "over",
    reverse: bool = False,
) -> Callable[[Callable[[StrokeBatch], Channels]], Callable[[StrokeBatch], Channels]]:
    """Decorator adding an encoding function to the registry under `name` (see module doc)."""
    if channels < 1:
        raise ValueError("an encoding needs at least one channel")
    if composite not in ("over", "max"):
        raise ValueError(f"composite must be 'over' or 'max', got {composite!r}")
    if needs_time and not untimed:
        raise ValueError(f"timed encoding {name!r} must say what it does on untimed data (untimed=...)")
    names = channel_names or tuple(f"c{i}" for i in range(channels))
    if len(names) != channels:
        raise ValueError(f"{name!r}: {len(names)} channel names for {channels} channels")

    def decorate(fn: Callable[[StrokeBatch], Channels]) -> Callable[[StrokeBatch], Channels]:
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"encoding {name!r} is already registered")
        _REGISTRY[name] = Encoding(
            name=name,
            fn=fn,
            channels=channels,
            channel_names=tuple(names),
            doc=doc.strip(),
            needs_time=needs_time,
            untimed=untimed,
            interpolate=interpolate,
            composite=composite,
            reverse=reverse,
        )
        return fn

    return decorate


def get_encoding(name: str) -> Encoding:
    """The registered encoding called `name` (raises `UnknownEncodingError` listing the names)."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownEncodingError(f"unknown encoding {name!r}; known: {known}") from None


def list_encodings() -> list[Encoding]:
    """Every registered encoding, in registration order (`e.name`, `e.describe()` for a line)."""
    _load_builtins()
    return list(_REGISTRY.values())


def _load_builtins() -> None:
    from doodle.render import encodings  # noqa: F401  (registers the built-in encodings)


@dataclass(eq=False)
class StrokeBatch:
    """A batch of drawings as flat arrays, plus derived per-point/stroke/drawing facts.

    points: (N, 3) float32 x, y, t as given (t NaN when untimed); the offsets are those of
    `doodle.data.drawing.PackedDrawings`. Derived arrays are computed on first use.
    """

    points: np.ndarray
    stroke_offsets: np.ndarray
    drawing_offsets: np.ndarray

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_points(self) -> int:
        return len(self.points)

    @property
    def n_strokes(self) -> int:
        return len(self.stroke_offsets) - 1

    @property
    def n_drawings(self) -> int:
        return len(self.drawing_offsets) - 1

    # -- index maps --------------------------------------------------------------------------
    @cached_property
    def stroke_n_points(self) -> np.ndarray:
        """(S,) points per stroke."""
        return np.diff(self.stroke_offsets)

    @cached_property
    def strokes_per_drawing(self) -> np.ndarray:
        """(B,) strokes per drawing."""
        return np.diff(self.drawing_offsets)

    @cached_property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(B, 4) float64 min_x, min_y, max_x, max_y of each drawing's points (zeros when empty)
        and (B,) bool "has timing" (`doodle.render.raster.drawing_bounds`)."""
        from doodle.render.raster import drawing_bounds

        return drawing_bounds(self.points, self.drawing_point_offsets)

    @cached_property
    def _geometry(self) -> tuple[np.ndarray, ...]:
        from doodle.render.raster import batch_geometry

        return batch_geometry(self.points, self.stroke_offsets, self.drawing_offsets)

    @property
    def stroke_drawing(self) -> np.ndarray:
        """(S,) index of each stroke's drawing."""
        return self._geometry[0]

    @property
    def stroke_rank(self) -> np.ndarray:
        """(S,) index of each stroke inside its drawing (0 for the first stroke)."""
        return self._geometry[1]

    @property
    def point_stroke(self) -> np.ndarray:
        """(N,) global index of each point's stroke."""
        return self._geometry[2]

    @cached_property
    def point_drawing(self) -> np.ndarray:
        """(N,) index of each point's drawing."""
        return self.stroke_drawing[self.point_stroke]

    @property
    def point_rank(self) -> np.ndarray:
        """(N,) index of each point inside its stroke."""
        return self._geometry[3]

    @cached_property
    def drawing_point_offsets(self) -> np.ndarray:
        """(B + 1,) offsets of each drawing's points."""
        return self.stroke_offsets[self.drawing_offsets]

    def per_stroke(self, values: np.ndarray) -> np.ndarray:
        """Broadcast (S, ...) stroke values to (N, ...) point values."""
        return np.asarray(values)[self.point_stroke]

    def per_drawing(self, values: np.ndarray) -> np.ndarray:
        """Broadcast (B, ...) drawing values to (N, ...) point values."""
        return np.asarray(values)[self.point_drawing]

    # -- geometry in Google's frame ------------------------------------------------------------
    @property
    def xy(self) -> np.ndarray:
        """(N, 2) float32 points of every drawing aligned and scaled the way Google simplified them.

        Minimum x and y become 0 and the larger side spans 0..255 (aspect kept), so lengths are
        comparable between raw (screen pixels) and simplified drawings.
        """
        return self._geometry[4]

    @cached_property
    def is_stroke_end(self) -> np.ndarray:
        """(N,) True on each stroke's last point."""
        end = np.zeros(self.n_points, bool)
        end[self.stroke_offsets[1:] - 1] = True
        return end

    @property
    def segment_length(self) -> np.ndarray:
        """(N,) frame-unit length of the segment from point j to j + 1 (0 on stroke ends)."""
        return self._geometry[5]

    @property
    def inertia_distance(self) -> np.ndarray:
        """(N,) for the segment j -> j + 1: |p(j+1) - (2 p(j) - p(j-1))| in frame units.

        The distance between where the pen went and where it would have gone at constant
        velocity ("acceleration"); 0 on a stroke's first segment and on stroke ends.
        """
        return self._geometry[6]

    # -- timing ------------------------------------------------------------------------------
    @cached_property
    def t(self) -> np.ndarray:
        """(N,) float32 milliseconds since the drawing's first point; 0 where untimed."""
        t = self.points[:, 2]
        return np.where(np.isnan(t), np.float32(0), t).astype(np.float32, copy=False)

    @cached_property
    def timed(self) -> np.ndarray:
        """(B,) True for drawings whose points carry timing (raw data)."""
        first = self.drawing_point_offsets[:-1]
        ok = np.zeros(self.n_drawings, bool)
        has = self.drawing_point_offsets[1:] > first
        ok[has] = ~np.isnan(self.points[first[has], 2])
        return ok

    @cached_property
    def point_timed(self) -> np.ndarray:
        """(N,) `timed` per point."""
        return self.timed[self.point_drawing]

    @cached_property
    def segment_dt(self) -> np.ndarray:
        """(N,) milliseconds from point j to j + 1, at least 1 ms (0 on stroke ends/untimed)."""
        out = np.zeros(self.n_points, np.float32)
        if self.n_points > 1:
            out[:-1] = np.maximum(np.diff(self.t), 1.0)
        out[self.is_stroke_end | ~self.point_timed] = 0.0
        return out

    @cached_property
    def stroke_start_time(self) -> np.ndarray:
        """(S,) t of each stroke's first point (0 when untimed)."""
        return self.t[self.stroke_offsets[:-1]]

    @cached_property
    def stroke_end_time(self) -> np.ndarray:
        """(S,) t of each stroke's last point (0 when untimed)."""
        return self.t[self.stroke_offsets[1:] - 1]

    @cached_property
    def stroke_pause(self) -> np.ndarray:
        """(S,) milliseconds between the previous stroke's end and this stroke's start (0 for a
        drawing's first stroke, for untimed drawings, and when t goes backwards)."""
        pause = np.zeros(self.n_strokes, np.float32)
        if self.n_strokes > 1:
            pause[1:] = self.stroke_start_time[1:] - self.stroke_end_time[:-1]
        pause[self.stroke_rank == 0] = 0.0
        return np.maximum(pause, 0.0)

    @cached_property
    def stroke_duration(self) -> np.ndarray:
        """(S,) milliseconds from a stroke's first to its last point (0 when untimed)."""
        return np.maximum(self.stroke_end_time - self.stroke_start_time, 0.0)

    @cached_property
    def drawing_duration(self) -> np.ndarray:
        """(B,) t of each drawing's last point: the total drawing time in ms (0 when untimed)."""
        last = self.drawing_point_offsets[1:] - 1
        out = np.zeros(self.n_drawings, np.float32)
        has = self.drawing_point_offsets[1:] > self.drawing_point_offsets[:-1]
        out[has] = np.maximum(self.t[last[has]], 0.0)
        return out
