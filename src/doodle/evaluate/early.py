"""Early guessing: how well a model guesses from the first strokes of a drawing.

The live app guesses while the user draws, so what matters is MAP@3 on partial drawings too. For
each fraction f (default 25 %, 50 %, 75 %, 100 %) every drawing is cut to its first ceil(f * n)
strokes (`doodle.render.augment.truncate`, at least one stroke) and scored with the model's own
preprocessing:

    result = early_guessing(model, preprocessor, classes, drawings)
    print(format_table({"cpu.yaml": result}))
    plot_early({"cpu.yaml": result}, "docs/early-guessing.png")

Training with the truncation augmentation (`augment.truncate`, `augment.truncate_min`) teaches the
model partial drawings; `benchmarks/early_guess.py` compares runs with and without it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from doodle.data.drawing import Drawing
from doodle.data.formats.common import atomic_output
from doodle.errors import DoodleError

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


@dataclass
class EarlyResult:
    """MAP@3 and top-1 accuracy per kept fraction of strokes."""

    fractions: list[float]
    """The fractions of strokes kept, ascending."""
    map3: list[float]
    """MAP@3 at each fraction."""
    acc1: list[float]
    """Top-1 accuracy at each fraction."""
    drawings: int
    """Drawings scored (those whose word is one of the model's classes)."""


def truncated(drawings: Iterable[Drawing], fraction: float) -> list[Drawing]:
    """Each drawing cut to its first ceil(fraction * n) strokes (at least one)."""
    from doodle.render.augment import truncate

    if not 0 < fraction <= 1:
        raise DoodleError(f"a fraction of strokes must be in (0, 1], got {fraction}")
    return [truncate(d, fraction=fraction) for d in drawings]


def early_guessing(model: Any, preprocessor: Any, classes: Sequence[str], drawings: Iterable[Drawing], *,
                   fractions: Sequence[float] = FRACTIONS, batch_size: int = 256, device: Any = "cpu",
                   progress: bool = False) -> EarlyResult:
    """Score `model` on the first strokes of every labelled drawing (see the module docstring).

    Drawings whose word is not one of `classes` (or that have none) are left out.
    """
    from tqdm import tqdm

    from doodle.evaluate.metrics import accuracy_at_k, map_at_3
    from doodle.infer.predict import iter_predictions

    index = {c: i for i, c in enumerate(classes)}
    kept = [d for d in drawings if d.word in index]
    if not kept:
        raise DoodleError("no drawings with one of the model's classes to score")
    labels = np.array([index[d.word] for d in kept])
    fractions = sorted(float(f) for f in fractions)
    map3, acc1 = [], []
    for f in tqdm(fractions, desc="early guessing", unit=" fraction", disable=not progress):
        logp = np.concatenate([p.log_probs for p in iter_predictions(
            model, preprocessor, truncated(kept, f), batch_size=batch_size, device=device, background=False)])
        map3.append(map_at_3(logp, labels))
        acc1.append(accuracy_at_k(logp, labels, 1))
    return EarlyResult(fractions, map3, acc1, len(kept))


def format_table(results: Mapping[str, EarlyResult]) -> str:
    """A text table: one row per run, MAP@3 per fraction of strokes."""
    first = next(iter(results.values()))
    width = max(12, *(len(name) for name in results))
    head = f"{'MAP@3':<{width}} " + " ".join(f"{f:>7.0%}" for f in first.fractions) + "   drawings"
    rows = [f"{name:<{width}} " + " ".join(f"{m:7.4f}" for m in r.map3) + f"   {r.drawings:8d}"
            for name, r in results.items()]
    return "\n".join([head, *rows])


def plot_early(results: Mapping[str, EarlyResult], out: str | os.PathLike[str], title: str = "") -> Path:
    """MAP@3 against the fraction of strokes seen, one line per run; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    top = np.max([r.map3 for r in results.values()], axis=0)
    for name, r in results.items():
        xs = [100 * f for f in r.fractions]
        ax.plot(xs, r.map3, marker="o", label=name)
        for j, (x, y) in enumerate(zip(xs, r.map3, strict=True)):  # the best value above its point, others below
            ax.annotate(f"{y:.3f}", (x, y), textcoords="offset points", xytext=(0, 7 if y >= top[j] else -13),
                        ha="center", fontsize=8, color=ax.lines[-1].get_color())
    ax.set_xlabel("strokes seen (% of the drawing's strokes, first ones)")
    ax.set_ylabel("MAP@3")
    ax.set_xticks([100 * f for f in next(iter(results.values())).fractions])
    low = min(min(r.map3) for r in results.values())
    ax.set_ylim(max(0.0, low - 0.1), 1.0 + 0.03)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "Early guessing: MAP@3 on the first strokes")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(out) as handle:
            fig.savefig(handle, format=out.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return out
