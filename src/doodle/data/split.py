"""Pure functions of key_id: the train/val split and the shuffle bucket.

All come from splitmix64, a fast, well-mixed 64-bit hash, so a drawing lands in the same split
whatever the input order, file or machine, and buckets are uniform even though key_ids are not.
The uses are salted differently so that bucket membership says nothing about the split, and the
pass of a bucket reduced in several passes says nothing about either.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
SPLIT_SALT = 0x5EED5917
BUCKET_SALT = 0xB0C4E7
PASS_SALT = 0x9A55E5


def splitmix64(values: np.ndarray, salt: int = 0) -> np.ndarray:
    """splitmix64 of uint64 values (vectorised; wrap-around arithmetic is intended)."""
    with np.errstate(over="ignore"):
        z = np.asarray(values, dtype=np.uint64) + np.uint64(salt % 2**64) * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def splitmix64_int(value: int, salt: int = 0) -> int:
    """`splitmix64` of one Python int: for a reader hashing one drawing at a time, where a NumPy
    call would cost more than the hash (the same numbers; tests/data/test_store_sample.py)."""
    mask = (1 << 64) - 1
    z = (value + (salt % 2**64) * int(_GOLDEN) + int(_GOLDEN)) & mask
    z = ((z ^ (z >> 30)) * int(_M1)) & mask
    z = ((z ^ (z >> 27)) * int(_M2)) & mask
    return z ^ (z >> 31)


def unit_hash(key_ids: np.ndarray, salt: int) -> np.ndarray:
    """A uniform float in [0, 1) per key_id (53 high bits of the hash)."""
    return (splitmix64(key_ids, salt) >> np.uint64(11)).astype(np.float64) / 2.0**53


def is_val(key_ids: np.ndarray, val_fraction: float, seed: int = 0) -> np.ndarray:
    """True where a key_id belongs to the validation split (fraction `val_fraction`)."""
    return unit_hash(key_ids, SPLIT_SALT + seed) < val_fraction


def bucket_of(key_ids: np.ndarray, n_buckets: int, seed: int = 0) -> np.ndarray:
    """The shuffle bucket (0..n_buckets-1) of each key_id; all copies of a key_id share one."""
    return (splitmix64(key_ids, BUCKET_SALT + seed) % np.uint64(n_buckets)).astype(np.int64)


def pass_of(key_ids: np.ndarray, n_passes: int, seed: int = 0) -> np.ndarray:
    """The reduce pass (0..n_passes-1) of each key_id within its bucket; all copies share one."""
    return (splitmix64(key_ids, PASS_SALT + seed) % np.uint64(n_passes)).astype(np.int64)
