"""Sketch-RNN `.npz` files (FORMATS.md section 5): stroke-3 drawings in train/valid/test arrays.

The arrays are pickled object arrays, so the file is loaded whole (as Sketch-RNN itself does; a
category is some tens of MB). Stroke-3 keeps only offsets, so the absolute origin is lost: each
drawing is shifted so that its minimum x and y are 0, as simplified drawings are. The files carry
no key_id, word, country or time: the key_id is `synthetic_key_id`, the word comes from `word=` or
the file name.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from doodle.data.drawing import DEFAULT_LIMITS, BadRecord, Drawing, Limits, Reject, check_points
from doodle.data.formats.common import RECORD_ERRORS, ReadStats, check_range, hex_reject, infer_word, synthetic_key_id

SUBSETS = ("train", "valid", "test")


def npz_subsets(path: Path) -> list[str] | str:
    """The Sketch-RNN subsets a zip file holds, or a sentence saying why it is not such a file."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = {n.removesuffix(".npy") for n in archive.namelist()}
    except (zipfile.BadZipFile, OSError) as err:
        return f"not a readable .npz archive ({err})"
    found = [s for s in SUBSETS if s in names]
    if not found:
        shown = ", ".join(sorted(names))[:120]
        return f"an .npz without train/valid/test arrays (it holds: {shown or 'nothing'})"
    return found


def iter_npz(
    path: Path,
    *,
    limits: Limits = DEFAULT_LIMITS,
    word: str | None = None,
    start: int = 0,
    end: int | None = None,
    stats: ReadStats | None = None,
) -> Iterator[Drawing | Reject]:
    """Every drawing of train, then valid, then test; a reject's `line` is the running index."""
    check_range(path, start, end)
    if start != 0 or end is not None:
        raise ValueError(f"{path}: an .npz file cannot be split by byte range; read it whole")
    word = word or infer_word(path)
    index = 0
    with np.load(path, allow_pickle=True, encoding="latin1") as archive:
        for subset in SUBSETS:
            if subset not in archive.files:
                continue
            for i, s3 in enumerate(archive[subset]):
                item = _drawing(path, index, subset, i, s3, limits, word)
                if stats is not None:
                    stats.lines += 1
                    stats.records += 1
                    stats.rejects += isinstance(item, Reject)
                yield item
                index += 1


def _drawing(
    path: Path, index: int, subset: str, i: int, s3: object, limits: Limits, word: str | None
) -> Drawing | Reject:
    try:
        arr = np.asarray(s3)
        if arr.dtype.kind not in "iuf" or arr.ndim != 2 or arr.shape[1] != 3:
            raise BadRecord(f"{subset}[{i}] is not an (n, 3) numeric stroke-3 array: {arr.dtype} {arr.shape}")
        if len(arr) == 0:
            raise BadRecord(f"{subset}[{i}] has no points")
        if len(arr) > limits.max_points:
            raise BadRecord(f"{subset}[{i}] has more than {limits.max_points} points")
        drawing = Drawing.from_stroke3(arr, key_id=synthetic_key_id("npz", path, subset, i), word=word)
        if len(drawing.strokes) > limits.max_strokes:
            raise BadRecord(f"{subset}[{i}] has {len(drawing.strokes)} strokes (limit {limits.max_strokes})")
        points, offsets = drawing.to_flat()
        check_points(points, limits)
        points -= points.min(axis=0)  # the origin is lost in stroke-3: align to the top-left corner
        return Drawing.from_flat(points, offsets, key_id=drawing.key_id, word=word)
    except RECORD_ERRORS as err:
        raw = np.asarray(s3).tobytes() if isinstance(s3, np.ndarray) else repr(s3).encode()
        return hex_reject(path, index, str(err), raw)
