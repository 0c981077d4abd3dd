"""Arrays out of an .npz archive without running code: a pickle may only rebuild numpy arrays.

`numpy.load(allow_pickle=True)` lets a pickle call any function it names, so a crafted Sketch-RNN
file would run code in `doodle prepare` or `predict`. Sketch-RNN's real files store each subset as
a pickled object array of int16 (n, 3) arrays, which needs only numpy's array constructors: the
unpickler here admits those (`ALLOWED_GLOBALS`) and refuses every other name with
`RefusedPickle`. Each member is read from the zip directly, its .npy header parsed by numpy's own
header reader, plain (non-object) arrays read without pickle at all, and the member read to its end,
which is where zipfile checks its CRC-32: a damaged member fails as a whole instead of yielding
arrays of wrong numbers.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
import zlib
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # files pickled by numpy 1.x (and Python 2)
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
"""Everything a pickled numeric or object ndarray refers to; the pickle may call nothing else."""
SNIFF_PICKLE_BYTES = 1 << 18
"""How much of a member's pickle detection unpickles (honest numpy pickles name every global they
use within their first few hundred bytes; the reader refuses a later one all the same)."""
# What decoding a damaged or crafted member can raise: a truncated or garbled pickle fails in many
# ways, and every one of them is the member's problem, never the caller's (zipfile raises
# RuntimeError for an encrypted member or an unknown compression method; a pickle nested too deep
# raises RecursionError, a RuntimeError too).
MEMBER_ERRORS = (
    ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, MemoryError, EOFError,
    OSError, RuntimeError, zlib.error, zipfile.BadZipFile, pickle.UnpicklingError,
)


class RefusedPickle(Exception):
    """A pickle that names a global outside `ALLOWED_GLOBALS`; it is never called."""


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedPickle(
                f"its pickle would call {module}.{name}, and only numpy arrays are unpickled"
            ) from None


def _header(fp: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from an .npy header (ValueError when it is not one)."""
    version = npy_format.read_magic(fp)
    if version == (1, 0):
        return npy_format.read_array_header_1_0(fp)
    if version == (2, 0):
        return npy_format.read_array_header_2_0(fp)
    raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")


def _unpickle(fp: IO[bytes]) -> np.ndarray:
    obj = _ArrayUnpickler(fp, encoding="latin1").load()  # latin1: Python 2 pickles, as numpy does
    if not isinstance(obj, np.ndarray):
        raise ValueError(f"its pickle holds a {type(obj).__name__}, not an array")
    return obj


def _plain(fp: IO[bytes], shape: tuple[int, ...], fortran: bool, dtype: np.dtype) -> np.ndarray:
    count = math.prod(shape)
    size = count * dtype.itemsize
    data = fp.read(size)
    if len(data) < size:
        raise ValueError(f"truncated array data ({len(data)} of {size} bytes)")
    return np.frombuffer(data, dtype, count).reshape(shape, order="F" if fortran else "C")


def read_member(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """The array stored as member `name`, without running code.

    Raises `RefusedPickle` for a pickle naming anything but numpy's array constructors, and one of
    `MEMBER_ERRORS` for a member that cannot be decoded (bad header, truncated, failed CRC-32).
    """
    with archive.open(name) as fp:
        shape, fortran, dtype = _header(fp)
        array = _unpickle(fp) if dtype.hasobject else _plain(fp, shape, fortran, dtype)
        while fp.read(1 << 20):  # to the end: zipfile checks the CRC-32 only there
            pass
    return array


def refused_member(archive: zipfile.ZipFile, name: str) -> str | None:
    """Why member `name` is refused (its pickle, as far as `SNIFF_PICKLE_BYTES`, names a global that
    is not numpy's), or None; any other damage is left to the reader to report."""
    try:
        with archive.open(name) as fp:
            if not _header(fp)[2].hasobject:
                return None
            head = fp.read(SNIFF_PICKLE_BYTES)
        _ArrayUnpickler(io.BytesIO(head), encoding="latin1").load()
    except RefusedPickle as err:
        return str(err)
    except MEMBER_ERRORS:  # the cut end of `head`, or damage: not a refusal
        return None
    return None
