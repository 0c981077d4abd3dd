"""What a person watching `doodle train` sees: a progress bar on the terminal and one closing line."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from doodle.train.budget import format_duration

log = logging.getLogger("doodle.train")


def bar_wanted(stream: TextIO | None = None) -> bool:
    """A bar only on a terminal, and only where doodle's info lines are shown (not under -q)."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and log.isEnabledFor(logging.INFO)


def make_bar(total: int, initial: int = 0, *, stream: TextIO | None = None, enabled: bool | None = None) -> tqdm:
    """The training bar: step / total steps, rate and ETA (a disabled bar when not wanted: every call a no-op)."""
    stream = stream if stream is not None else sys.stderr
    on = bar_wanted(stream) if enabled is None else enabled
    # explicit `disable`: tqdm would otherwise read TQDM_DISABLE, which `-q` sets for other bars
    return tqdm(total=total, initial=initial, desc="train", unit="step", file=stream, disable=not on,
                dynamic_ncols=True, leave=True)


def log_beside(bar: tqdm) -> contextlib.AbstractContextManager:
    """While the bar shows, console log lines are written above it instead of through it."""
    if bar.disable:
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm(tqdm_class=tqdm)


def _epoch(value: float) -> str:
    return f"{round(value, 2):g}"


def done_line(summary: dict, run_dir: str | Path) -> str:
    """`done in 14m 32s: best val MAP@3 0.9561 at step 2400 (epoch 12); weights RUN/best.pt (EMA)`."""
    weights = f"{Path(run_dir) / 'best.pt'} ({'EMA' if summary.get('weights') == 'ema' else 'raw'})"
    head = f"done in {format_duration(summary.get('seconds', 0.0))}: "
    if summary.get("best_step", -1) < 0:
        line = f"{head}{summary['steps']} steps, no validation; weights {weights}, the last"
    else:
        epoch = summary.get("best_epoch")
        where = f" (epoch {_epoch(epoch)})" if epoch is not None and epoch >= 0 else ""
        best = f"best val MAP@3 {summary['best_map3']:.4f} at step {summary['best_step']}{where}"
        line = f"{head}{best}; weights {weights}"
    averaged = summary.get("averaged") or {}
    if "map3" in averaged:
        line += f"; averaged.pt ({averaged['weights']} of {averaged['snapshots']}) MAP@3 {averaged['map3']:.4f}"
    if summary.get("stopped_on_clock"):
        line += f"; stopped on the clock after {summary['steps']} steps"
    return line
