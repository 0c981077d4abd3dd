"""Numpy bitmaps (FORMATS.md section 6): 28x28 uint8 images, `.npy` or headerless 784-byte rows.

Strokes are gone, so each item is a `Drawing` with `strokes=[]` and `bitmap` set (a (28, 28) uint8
copy, so nothing keeps the file mapped). `.npy` files are memory-mapped and headerless `.bin` files
read with `numpy.memmap`: constant memory whatever the size. The key_id is `synthetic_key_id`, the
word comes from `word=` or the file name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from doodle.data.drawing import DEFAULT_LIMITS, Drawing, Limits, Reject
from doodle.data.formats.common import ReadStats, check_range, infer_word, synthetic_key_id

SIDE = 28
ROW = SIDE * SIDE
ACCEPTED_SHAPES = "(N, 784), (N, 1, 784) or (N, 28, 28)"


def npy_problem(path: Path) -> str | None:
    """None when `path` is an .npy array of bitmaps, else a sentence saying why not."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        return f"not a readable .npy array ({err})"
    return _shape_problem(arr)


def _shape_problem(arr: np.ndarray) -> str | None:
    if arr.dtype != np.uint8:
        return f"an .npy of dtype {arr.dtype}, bitmaps are uint8"
    if arr.ndim < 2 or int(np.prod(arr.shape[1:])) != ROW or arr.shape[1:] not in ((ROW,), (1, ROW), (SIDE, SIDE)):
        return f"an .npy of shape {arr.shape}, bitmaps are {ACCEPTED_SHAPES}"
    return None


def iter_bitmaps(
    path: Path,
    fmt: str,
    *,
    limits: Limits = DEFAULT_LIMITS,
    word: str | None = None,
    start: int = 0,
    end: int | None = None,
    stats: ReadStats | None = None,
) -> Iterator[Drawing | Reject]:
    """Every image of a "bitmap-npy" or "bitmap-bin" file as a bitmap-only `Drawing`."""
    del limits  # a uint8 28x28 image is always valid
    check_range(path, start, end)
    if start != 0 or end is not None:
        raise ValueError(f"{path}: bitmap files cannot be split by byte range; read them whole")
    word = word or infer_word(path)
    if fmt == "bitmap-npy":
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        problem = _shape_problem(arr)
        if problem:
            raise ValueError(f"{path}: {problem}")
    else:
        size = path.stat().st_size
        if size % ROW:
            raise ValueError(f"{path}: {size} bytes is not a whole number of {ROW}-byte bitmaps")
        arr = np.memmap(path, np.uint8, "r") if size else np.zeros(0, np.uint8)
    images = arr.reshape(-1, SIDE, SIDE)
    for i in range(len(images)):
        drawing = Drawing(
            key_id=synthetic_key_id(fmt, path, "", i),
            strokes=[],
            word=word,
            bitmap=np.array(images[i]),
        )
        if stats is not None:
            stats.lines += 1
            stats.records += 1
        yield drawing
