"""A training time budget: `time_budget` (`doodle train --time-budget 15m`) sizes a run to the
wall-clock time it may take on this machine.

Before training, the trainer times a few optimizer steps of the real batches, one validation pass,
one checkpoint and the plot drawn at the end (`Costs`); `fit_steps` finds the most optimizer steps
whose run, with its validations, checkpoints and its end, fits in the budget less a safety margin.
The run's max_steps (and epochs, so that the data suffices) are set to that, so the learning-rate
schedule spans the real length. The numbers are saved in config.yaml and run.json: a resume reuses
them and measures nothing.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from doodle.errors import DoodleError

MARGIN = 0.10
"""Fraction of the budget kept free for what the measurement misses (noise, slower later epochs)."""
CALIBRATION_STEPS = 8
"""Optimizer steps timed before training (after one untimed warm-up step)."""
CALIBRATION_SHARE = 0.05
"""Calibration stops timing steps early once it has used this fraction of the budget."""
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PARTS = re.compile(rf"({_NUMBER})\s*([smhd])")


def parse_duration(text: str) -> float:
    """Seconds in a duration: `900`, `90s`, `15m`, `1.5h`, `1h30m` (DoodleError for anything else)."""
    spec = str(text).strip().lower()
    if re.fullmatch(_NUMBER, spec):
        return float(spec)
    if spec and re.fullmatch(rf"(?:{_NUMBER}\s*[smhd]\s*)+", spec):
        return sum(float(value) * UNITS[unit] for value, unit in _PARTS.findall(spec))
    raise DoodleError(f"time budget {text!r} is not a duration: give seconds (900) or a number with a unit "
                      "s, m, h or d (90s, 15m, 1.5h, 1h30m)")


def format_duration(seconds: float) -> str:
    """`4.2s`, `42s`, `15m 00s`, `1h 05m`: a duration as a person reads it."""
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    minutes = round(seconds / 60)
    return f"{minutes // 60}h {minutes % 60:02d}m"


@dataclass
class Costs:
    """Measured seconds of the parts of a run."""

    step: float
    """One optimizer step (its micro-batches), loading included."""
    validation: float
    """One validation pass, and the best.pt it may write."""
    checkpoint: float
    """One resumable checkpoint: last.pt and a weight snapshot."""
    epoch: float
    """Starting an epoch: its loader, up to the first batch."""
    end: float
    """After the loop: averaging, the final writes, the plot."""

    def as_dict(self) -> dict[str, float]:
        """Rounded, for run.json."""
        return {key: round(value, 6) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class Cadence:
    """How often a run validates and checkpoints, in optimizer steps."""

    steps_per_epoch: int
    eval_every: int = 0
    """0: at the end of every epoch."""
    checkpoint_every: int = 0
    """0: at the end of every epoch."""

    def count(self, steps: int, every: int) -> int:
        """Events in a run of `steps` (one more for a last partial period, as the loop does)."""
        return math.ceil(steps / (every or self.steps_per_epoch))


def run_seconds(costs: Costs, steps: int, cadence: Cadence) -> float:
    """Estimated wall time of `steps` optimizer steps, with their validations, checkpoints and end."""
    return (steps * costs.step + cadence.count(steps, cadence.eval_every) * costs.validation
            + cadence.count(steps, cadence.checkpoint_every) * costs.checkpoint
            + cadence.count(steps, 0) * costs.epoch + costs.end)


def fit_steps(costs: Costs, seconds: float, cadence: Cadence, limit: int = 10**12) -> int:
    """The most optimizer steps (at most `limit`) whose run fits in `seconds`; 0 when not even one does."""
    if run_seconds(costs, 1, cadence) > seconds:
        return 0
    low, high = 1, 2  # run_seconds grows with steps: double, then bisect
    while high < limit and run_seconds(costs, high, cadence) <= seconds:
        low, high = high, high * 2
    high = min(high, limit + 1)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if run_seconds(costs, mid, cadence) <= seconds else (low, mid)
    return low


def budget_line(budget: float, steps: int, costs: Costs, epochs: int) -> str:
    """The log line that says how a budget was spent."""
    return (f"time budget {format_duration(budget)}: {steps} steps of ~{costs.step:.3g} s "
            f"(+ validation ~{costs.validation:.3g} s, end ~{costs.end:.3g} s); {epochs} epoch(s)")
