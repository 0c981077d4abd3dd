"""Test-time augmentation: predict several views of each drawing and average.

Views are made on the vector drawing, before the checkpoint's own `Preprocessor`, so every view
is rendered exactly as in training:

* "flip": mirrored left-right (`doodle.render.augment.hflip`), the view most Kaggle teams used;
* "dropout": each stroke dropped with probability 0.2 (`stroke_dropout`, at least one kept), as a
  few teams did. The random draw is seeded by the drawing's key_id and the view's position, so a
  drawing gets the same view whatever batch it falls in and however often it is predicted.

The original view is always included. Views are combined by the arithmetic mean of probabilities
("prob", the default) or of log-probabilities ("log", a geometric mean). The arithmetic mean is
the default because a view that loses the decisive stroke can be confidently wrong, and a
geometric mean lets such a view veto the right class; `benchmarks/last_mile_bench.py` measures both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from doodle.data.drawing import Drawing
from doodle.data.split import splitmix64
from doodle.errors import DoodleError

VIEWS = ("flip", "dropout")
MEANS = ("prob", "log")
DROPOUT_P = 0.2
_SALT = 0x77A0

View = Callable[[list[Drawing]], list[Drawing]]


def parse_tta(spec: str | Sequence[str] | None) -> list[str]:
    """View names from "flip,dropout" (or a list; "none" or empty: no TTA); raises on unknown names."""
    if spec is None:
        return []
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    names = [n for n in names if n != "none"]
    for name in names:
        if name not in VIEWS:
            raise DoodleError(f"unknown TTA view {name!r}; choose from {', '.join(VIEWS)} (comma-separated)")
    return names


def _seed(key_id: int, position: int) -> np.random.Generator:
    mixed = splitmix64(np.array([key_id % 2**64], np.uint64), _SALT + position)[0]
    return np.random.default_rng(int(mixed))


def make_view(name: str, position: int) -> View:
    """The function making view `name` (at `position` in the TTA list) of a batch of drawings."""
    from doodle.render.augment import hflip, stroke_dropout

    if name == "flip":
        return lambda drawings: [hflip(d) if d.strokes else d for d in drawings]
    if name == "dropout":
        return lambda drawings: [stroke_dropout(d, _seed(d.key_id, position), DROPOUT_P) for d in drawings]
    raise DoodleError(f"unknown TTA view {name!r}; choose from {', '.join(VIEWS)}")


def make_views(names: Sequence[str]) -> list[View]:
    """The identity followed by one function per named view."""
    return [list] + [make_view(n, i + 1) for i, n in enumerate(names)]


def combine(log_probs: Sequence[np.ndarray], mean: str = "prob") -> np.ndarray:
    """float32 [B, K] log-probabilities of the views' average (see the module docstring)."""
    if mean not in MEANS:
        raise DoodleError(f"unknown TTA mean {mean!r}; choose from {', '.join(MEANS)}")
    if len(log_probs) == 1:
        return np.asarray(log_probs[0], np.float32)
    stack = np.stack([np.asarray(lp, np.float64) for lp in log_probs])
    if mean == "log":
        avg = stack.mean(0)
    else:
        top = stack.max(0)  # log-mean-exp, stable
        avg = top + np.log(np.exp(stack - top).mean(0))
    # renormalise (a mean of log-probabilities is not normalised)
    top = avg.max(1, keepdims=True)
    avg = avg - (top + np.log(np.exp(avg - top).sum(1, keepdims=True)))
    return avg.astype(np.float32)
