"""A one-pass parser for the text of a Quick, Draw! `drawing`: the fast path of Kaggle CSV rows.

Kaggle's CSVs hold each drawing as JSON text, `[[[x...], [y...]], ...]` (a third `[t...]` list
per stroke in raw data). The general way, `orjson.loads` and then `strokes_from_json`, builds a
Python int object per coordinate and walks them again to validate and copy them; this parser reads
the bytes once, straight into the float64 point array the strokes are views of.

It handles exactly one shape, the shape every valid Quick, Draw! drawing has: nested lists of
integer literals (optionally negative, at most 15 digits, so exact in float64), JSON whitespace,
brackets and commas, with every structural rule and `Limits` bound of `strokes_from_json`. Anything
else (a float or exponent, a string, null or true, ragged or empty lists, bad nesting, trailing
text, a bound exceeded) is *not handled*: `parse_drawing_text` returns None and the caller takes
the general way, so every reject reason and every accepted value stays that path's own.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import pairwise

import numpy as np
from numba import njit

from doodle.data.drawing import DEFAULT_LIMITS, Limits

MAX_DIGITS = 15
"""Longest integer literal handled: 10**15 - 1 < 2**53, so int64 arithmetic and the float64 value
are both exact; longer ones (never valid under the default limits) go the general way."""

_OK, _NOT_HANDLED = 0, 1

# byte values
_SPACE, _TAB, _LF, _CR = 32, 9, 10, 13
_OPEN, _CLOSE, _COMMA, _MINUS, _ZERO, _NINE = 91, 93, 44, 45, 48, 57


@njit(cache=True, nogil=True)
def _not_handled():  # pragma: no cover - compiled
    return np.empty((0, 2), np.float64), np.zeros(1, np.int64), _NOT_HANDLED


@njit(cache=True, nogil=True)
def _first_stroke_width(text):  # pragma: no cover - compiled
    """How many lists the first stroke opens (2 or 3 in a drawing; the parse checks it)."""
    depth, lists = 0, 0
    for c in text:
        if c == _OPEN:
            depth += 1
            lists += depth == 3
        elif c == _CLOSE:
            depth -= 1
            if depth <= 1:
                break
    return lists


@njit(cache=True, nogil=True)
def _counts(text):  # pragma: no cover - compiled
    commas, opens = 0, 0
    for c in text:
        commas += c == _COMMA
        opens += c == _OPEN
    return commas, opens


# One loop with no helper call inside: passing the text array to a function costs a reference count
# increment and decrement, which made a version with a helper call per value 4x slower.
@njit(cache=True, nogil=True)
def _parse(text, limits):  # pragma: no cover - compiled
    """(points (N, D) float64, offsets (S + 1,) int64, status) of a drawing's JSON bytes.

    `limits`: float64 [max_strokes, max_points, max_abs_coord, max_abs_time]. Depth 1 is the
    drawing's list, 2 a stroke, 3 a coordinate list; `want_item` says whether the next token is an
    item (an opening bracket, at depth 3 an integer) or what follows one (a comma or a closing
    bracket).
    """
    width = _first_stroke_width(text)
    if width != 2 and width != 3:
        return _not_handled()
    # In a drawing every comma separates two items and every bracket pair is the drawing, a stroke
    # or a coordinate list, so it has commas + 1 values in (opens - 1) / (width + 1) strokes: the
    # arrays are allocated at their size, the values written where they belong as they are read.
    commas, opens = _counts(text)
    n_alloc, s_alloc = (commas + 1) // width, (opens - 1) // (width + 1)
    points = np.empty((n_alloc, width), np.float64)
    offsets = np.empty(s_alloc + 1, np.int64)
    offsets[0] = 0
    n_bytes = len(text)
    n_points, n_strokes = 0, 0
    lists, n, count, bound = 0, 0, 0, 0.0  # of the stroke and the coordinate list being read
    depth, want_item, done = 0, True, False
    i = 0
    while i < n_bytes:
        c = text[i]
        if c in (_SPACE, _LF, _CR, _TAB):
            i += 1
            continue
        if done:  # text after the drawing
            return _not_handled()
        if want_item and depth == 3:  # an integer literal
            negative = c == _MINUS
            i += negative
            start, value = i, 0
            while i < n_bytes and _ZERO <= text[i] <= _NINE:
                if i - start == MAX_DIGITS:
                    return _not_handled()
                value = value * 10 + (text[i] - _ZERO)
                i += 1
            digits = i - start
            p = n_points + count
            if digits == 0 or (digits > 1 and text[start] == _ZERO) or p >= n_alloc:
                return _not_handled()  # no digit, a leading zero (not JSON), or more values than commas allow
            v = float(-value if negative else value)
            if abs(v) > bound:
                return _not_handled()
            points[p, lists] = v
            count += 1
            want_item = False
        elif want_item:
            if c != _OPEN:
                return _not_handled()  # an empty list, or an item of the wrong kind
            depth += 1
            i += 1
            if depth == 2:
                n_strokes += 1
                lists = 0
                if n_strokes > limits[0] or n_strokes > s_alloc:
                    return _not_handled()
            elif depth == 3:
                if lists == width:
                    return _not_handled()
                count = 0
                bound = limits[3] if lists == 2 else limits[2]
        elif c == _COMMA:
            want_item = True
            i += 1
        elif c == _CLOSE:
            i += 1
            if depth == 3:  # a coordinate list ends: as long as the stroke's others
                if lists and count != n:
                    return _not_handled()
                n = count
                lists += 1
            elif depth == 2:  # a stroke ends: with as many lists as stroke 0
                if lists != width:
                    return _not_handled()
                n_points += n
                if n_points > limits[1]:
                    return _not_handled()
                offsets[n_strokes] = n_points
            else:
                done = True
            depth -= 1
        else:
            return _not_handled()
    if not done or n_points != n_alloc or n_strokes != s_alloc:  # truncated, or not the counts of a drawing
        return _not_handled()
    return points, offsets, _OK


@lru_cache(maxsize=64)
def _limit_array(limits: Limits) -> np.ndarray | None:
    """`limits` as the parser takes them; None where a bound is no number (the general way copes)."""
    try:
        values = [float(limits.max_strokes), float(limits.max_points), float(limits.max_abs_coord),
                  float(limits.max_abs_time)]
    except (TypeError, ValueError, OverflowError):
        return None
    out = np.array(values, np.float64)
    out.flags.writeable = False  # shared by every call
    return out


_DEFAULT_BOUNDS = _limit_array(DEFAULT_LIMITS)


def _bounds(limits: Limits) -> np.ndarray | None:
    if limits is DEFAULT_LIMITS:  # the usual case, without hashing the dataclass
        return _DEFAULT_BOUNDS
    try:
        return _limit_array(limits)
    except TypeError:  # a bound that cannot be hashed is no number either
        return None


def parse_flat(text: str | bytes, limits: Limits) -> tuple[np.ndarray, np.ndarray] | None:
    """(points (N, 2|3) float64, offsets (S + 1,) int64) of a drawing's JSON text, or None where the
    text is not the one shape handled here (see the module docstring)."""
    # Exactly str or bytes: orjson refuses their subclasses, and the general path's reason must stay.
    if type(text) is str:
        if not text.isascii():  # O(1) for str; a non-ASCII byte is never part of the shape anyway
            return None
        text = text.encode("ascii")
    elif type(text) is not bytes:
        return None
    bounds = _bounds(limits)
    if bounds is None:
        return None
    points, offsets, status = _parse(text, bounds)
    if status != _OK:
        return None
    return points, offsets


def parse_drawing_text(text: str | bytes, limits: Limits) -> list[np.ndarray] | None:
    """The strokes of a drawing's JSON text, as `strokes_from_json(orjson.loads(text), limits)` would
    return them (views into one (N, 2|3) float64 array), or None where the text is not handled."""
    flat = parse_flat(text, limits)
    if flat is None:
        return None
    points, offsets = flat
    return [points[a:b] for a, b in pairwise(offsets.tolist())]
