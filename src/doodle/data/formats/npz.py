"""Sketch-RNN `.npz` files (FORMATS.md section 5): stroke-3 drawings in train/valid/test arrays.

The arrays are pickled object arrays, read whole, one subset at a time (as Sketch-RNN itself does; a
category is some tens of MB), by `safe_npy`: the pickle may rebuild numpy arrays and nothing else,
so a crafted file runs no code. A member that cannot be decoded (damaged, truncated, failed CRC-32,
or refused for what its pickle names) is one reject, and the other subsets are still read.
Drawings are read as stored: the points are the running sums of the offsets from (0, 0), so
`Drawing.to_stroke3()` gives back the file's rows exactly (no translation is applied; renderers
place a drawing by its bounding box anyway). The files carry no key_id, word, country or time: the
key_id is `synthetic_key_id`, the word comes from `word=` or the file name.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from doodle.data.drawing import DEFAULT_LIMITS, BadRecord, Drawing, Limits, Reject, check_points
from doodle.data.formats.common import RECORD_ERRORS, ReadStats, check_range, hex_reject, infer_word, synthetic_key_id
from doodle.data.formats.safe_npy import MEMBER_ERRORS, RefusedPickle, read_member, refused_member

SUBSETS = ("train", "valid", "test")


def npz_members(archive: zipfile.ZipFile) -> dict[str, str]:
    """Subset name -> member name ("train" -> "train.npy") of the Sketch-RNN subsets present."""
    names = archive.namelist()
    members = {}
    for subset in SUBSETS:
        for name in (f"{subset}.npy", subset):
            if name in names:
                members[subset] = name
                break
    return members


def npz_subsets(path: Path) -> list[str] | str:
    """The Sketch-RNN subsets a zip file holds, or a sentence saying why it is not such a file.

    A subset whose pickle names anything but numpy's array constructors (`safe_npy`) makes the
    whole file refused: nothing in it is unpickled.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = npz_members(archive)
            if not members:
                shown = ", ".join(sorted(archive.namelist()))[:120]
                return f"an .npz without train/valid/test arrays (it holds: {shown or 'nothing'})"
            for name in members.values():
                why = refused_member(archive, name)
                if why:
                    return f"refused to read member {name}: {why}"
    except (zipfile.BadZipFile, OSError) as err:
        return f"not a readable .npz archive ({err})"
    return list(members)


def iter_npz(
    path: Path,
    *,
    limits: Limits = DEFAULT_LIMITS,
    word: str | None = None,
    start: int = 0,
    end: int | None = None,
    stats: ReadStats | None = None,
) -> Iterator[Drawing | Reject]:
    """Every drawing of train, then valid, then test; a reject's `line` is the running index.

    A member that cannot be read is one reject at the index its drawings would have started at.
    """
    check_range(path, start, end)
    if start != 0 or end is not None:
        raise ValueError(f"{path}: an .npz file cannot be split by byte range; read it whole")
    word = word or infer_word(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:  # changed or damaged since it was detected
        yield _counted(stats, Reject(str(path), 0, f"not a readable .npz archive ({err})"))
        return
    with archive:
        index = 0  # every item takes one index, a member's reject too
        for subset, name in npz_members(archive).items():
            for item in _iter_member(path, archive, subset, name, index, limits, word):
                yield _counted(stats, item)
                index += 1


def _iter_member(
    path: Path, archive: zipfile.ZipFile, subset: str, name: str, index: int, limits: Limits, word: str | None
) -> Iterator[Drawing | Reject]:
    try:
        array = read_member(archive, name)
        if array.ndim == 0:
            raise ValueError(f"it holds a 0-d {array.dtype} array, not a list of drawings")
    except RefusedPickle as err:
        yield Reject(str(path), index, f"npz member {name} refused: {err}")
        return
    except MEMBER_ERRORS as err:
        yield Reject(str(path), index, f"npz member {name} cannot be read: {err}")
        return
    for i, s3 in enumerate(array):
        yield _drawing(path, index + i, subset, i, s3, limits, word)


def _counted(stats: ReadStats | None, item: Drawing | Reject) -> Drawing | Reject:
    if stats is not None:
        stats.lines += 1
        stats.records += 1
        stats.rejects += isinstance(item, Reject)
    return item


def _drawing(
    path: Path, index: int, subset: str, i: int, s3: object, limits: Limits, word: str | None
) -> Drawing | Reject:
    try:
        if not isinstance(s3, np.ndarray):  # an object array may hold anything the pickle built
            raise BadRecord(f"{subset}[{i}] is a {type(s3).__name__}, not a stroke-3 array")
        arr = s3
        if arr.dtype.kind not in "iuf" or arr.ndim != 2 or arr.shape[1] != 3:
            raise BadRecord(f"{subset}[{i}] is not an (n, 3) numeric stroke-3 array: {arr.dtype} {arr.shape}")
        if len(arr) == 0:
            raise BadRecord(f"{subset}[{i}] has no points")
        if len(arr) > limits.max_points:
            raise BadRecord(f"{subset}[{i}] has more than {limits.max_points} points")
        drawing = Drawing.from_stroke3(arr, key_id=synthetic_key_id("npz", path, subset, i), word=word)
        if len(drawing.strokes) > limits.max_strokes:
            raise BadRecord(f"{subset}[{i}] has {len(drawing.strokes)} strokes (limit {limits.max_strokes})")
        check_points(drawing.to_flat()[0], limits)
        return drawing
    except RECORD_ERRORS as err:
        plain = isinstance(s3, np.ndarray) and not s3.dtype.hasobject
        raw = s3.tobytes() if plain else repr(s3).encode()  # the bytes of an object array are pointers
        return hex_reject(path, index, str(err), raw)
