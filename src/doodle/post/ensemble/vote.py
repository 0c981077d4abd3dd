"""Rank-weighted voting of Kaggle submission CSVs (1st place).

Each submission's row lists three guesses; the guess at rank r (0, 1, 2) earns the submission's
weight times 1 / (r + 1), exactly the credit MAP@3 would give it, and the three classes with the
most credit win (ties: the class first seen in the submissions' order, guess order). It needs no
probabilities, so it blends submissions whose models are gone.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from doodle.errors import DoodleError

PathLike = str | os.PathLike[str]


def read_submission(path: PathLike) -> tuple[list[str], list[list[str]]]:
    """(key_ids as written, guesses per row) of a `key_id,word` CSV; raises `DoodleError` on a bad file."""
    path = Path(path)
    if not path.is_file():
        raise DoodleError(f"{path}: no such submission file")
    keys: list[str] = []
    guesses: list[list[str]] = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["key_id", "word"]:
            raise DoodleError(f"{path} is not a submission (expected the header key_id,word, got {header})")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 2:
                raise DoodleError(f"{path}:{line}: expected 2 cells, got {len(row)}")
            keys.append(row[0].strip())
            guesses.append(row[1].split())
    return keys, guesses


def vote(paths: Sequence[PathLike], out: PathLike, weights: Sequence[float] | None = None, k: int = 3) -> int:
    """Write the rank-weighted vote of submissions `paths` to `out` (atomically); returns its rows.

    All submissions must hold the same key_ids (any order); rows follow the first file's order."""
    if not paths:
        raise DoodleError("no submissions to vote")
    w = np.ones(len(paths)) if weights is None else np.asarray(weights, np.float64)
    if len(w) != len(paths) or (w < 0).any():
        raise DoodleError(f"{len(w)} weight(s) for {len(paths)} submission(s) (non-negative ones)")
    subs = [read_submission(p) for p in paths]
    keys = subs[0][0]
    if len(set(keys)) != len(keys):
        raise DoodleError(f"{paths[0]} repeats key_ids")
    tables = []
    for path, (other_keys, guesses) in zip(paths, subs, strict=True):
        table = dict(zip(other_keys, guesses, strict=True))
        if len(table) != len(keys) or table.keys() != set(keys):
            missing = next((key for key in keys if key not in table), None)
            raise DoodleError(f"{path} and {paths[0]} hold different key_ids (e.g. {missing or 'an extra one'})")
        tables.append(table)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["key_id", "word"])
            for key in keys:
                credit: dict[str, float] = {}
                for wi, table in zip(w, tables, strict=True):
                    for rank, word in enumerate(table[key]):
                        credit[word] = credit.get(word, 0.0) + wi / (rank + 1)
                # sorted() is stable: equal credit keeps first-seen order
                best = sorted(credit, key=lambda word: -credit[word])[:k]
                writer.writerow([key, " ".join(best)])
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(keys)
