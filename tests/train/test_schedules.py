"""Learning-rate schedules at known steps: warm-up, constant, plateau, cosine with warm restarts,
one-cycle, and the clock that re-spreads a schedule when fewer optimizer steps are left."""

from __future__ import annotations

import math

import pytest
import torch

from doodle.train.config import ScheduleConfig
from doodle.train.optim import Schedule, ScheduleClock, onecycle_pct


def optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def lrs(schedule: Schedule, steps) -> list[float]:
    """The learning rate set after each of `steps` (increasing)."""
    out = []
    for step in steps:
        schedule.after_step(step)
        out.append(schedule.lr)
    return out


def test_constant_with_linear_warmup():
    cfg = ScheduleConfig(name="constant", warmup_steps=4, warmup_lr=0.2)
    schedule = Schedule(cfg, optimizer(), peak_lr=1.0, total_steps=100)
    assert schedule.lr == pytest.approx(0.2)  # before the first step
    assert lrs(schedule, [1, 2, 3, 4, 5, 50]) == pytest.approx([0.4, 0.6, 0.8, 1.0, 1.0, 1.0])


def test_plateau_warms_up_then_halves_after_patience_stale_validations_down_to_min_lr():
    cfg = ScheduleConfig(name="plateau", warmup_steps=2, warmup_lr=0.0, plateau_factor=0.5, plateau_patience=1,
                         min_lr=0.3)
    schedule = Schedule(cfg, optimizer(), peak_lr=1.0, total_steps=100)
    assert lrs(schedule, [0, 1, 2, 3]) == pytest.approx([0.0, 0.5, 1.0, 1.0])
    seen = []
    # ReduceLROnPlateau (mode max): the third validation is the second without improvement (> patience)
    for step, map3 in zip(range(4, 12), [0.5, 0.4, 0.4, 0.6, 0.6, 0.6, 0.6, 0.6], strict=True):
        schedule.after_eval(map3)
        schedule.after_step(step)  # optimizer steps in between leave the reduced rate alone
        seen.append(schedule.lr)
    # 1.0 -> 0.5 at the 2nd stale eval; 0.5 -> max(0.25, min_lr 0.3) at the next; never below min_lr
    assert seen == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3])


def cos_lr(peak: float, low: float, t: float, length: float) -> float:
    return low + 0.5 * (peak - low) * (1 + math.cos(math.pi * t / length))


def test_cosine_warm_restarts_with_cycle_mul_and_cycle_decay():
    # warm-up 2 steps from 0; cycles of 4, 8, 16 steps (cycle_mul 2) peaking at 1, 0.5, 0.25 (cycle_decay 0.5)
    cfg = ScheduleConfig(name="cosine", warmup_steps=2, warmup_lr=0.0, cycle_steps=4, cycle_mul=2.0,
                         cycle_decay=0.5, min_lr=0.1)
    schedule = Schedule(cfg, optimizer(), peak_lr=1.0, total_steps=1000)
    steps = [0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 14, 22]
    want = [0.0, 0.5,                       # warm-up
            1.0, 0.1 + 0.45 * (1 + math.sqrt(0.5)), 0.55, 0.1 + 0.45 * (1 - math.sqrt(0.5)),  # cycle 1
            0.5, 0.1 + 0.2 * (1 + math.sqrt(0.5)), 0.3, cos_lr(0.5, 0.1, 7, 8),  # cycle 2: steps 6..13
            0.25, 0.175]                    # cycle 3 starts at step 14; its middle is step 22
    assert lrs(schedule, steps) == pytest.approx(want, abs=1e-12)


def test_cosine_without_restarts_ends_at_min_lr_on_the_last_step():
    cfg = ScheduleConfig(name="cosine", warmup_steps=2, warmup_lr=0.0, min_lr=0.01)
    schedule = Schedule(cfg, optimizer(), peak_lr=1.0, total_steps=10)  # warm-up 2, cosine 8
    got = lrs(schedule, range(1, 11))
    cosine = [cos_lr(1.0, 0.01, t, 8) for t in (1, 2, 3)]
    assert got[:6] == pytest.approx([0.5, 1.0, *cosine, 0.505])  # step 6: half-way down the cosine
    assert got[-1] == 0.01 and got[-2] == pytest.approx(cos_lr(1.0, 0.01, 7, 8))


@pytest.mark.filterwarnings("ignore:Detected call of")  # no optimizer step here
def test_onecycle_rises_to_peak_then_ends_at_peak_over_25e4():
    # 11 steps (+1): the rise takes pct_start * 12 - 1 = 2 steps from 1/25, the fall 9 steps to 1/25/1e4
    cfg = ScheduleConfig(name="onecycle", pct_start=0.25)
    schedule = Schedule(cfg, optimizer(), peak_lr=1.0, total_steps=11)
    assert schedule.lr == pytest.approx(1 / 25)
    end = 1 / 25 / 1e4
    got = lrs(schedule, range(1, 12))
    # cosine annealing between phase ends: half-way up at step 1, a third of the way down at step 5
    assert got[0] == pytest.approx(1 - 0.96 / 2) and got[1] == pytest.approx(1.0)
    assert got[4] == pytest.approx(end + (1 - end) * 0.75)
    assert got[-1] == pytest.approx(end, rel=1e-12)


@pytest.mark.filterwarnings("ignore:Detected call of")
@pytest.mark.parametrize("pct_start", [0.1, 0.2, 0.25, 0.3, 0.5])
@pytest.mark.parametrize("total", range(1, 13))
def test_onecycle_takes_runs_of_any_length(total: int, pct_start: float):
    """A run sized by a time budget may be a few steps long: torch's OneCycleLR divides by zero when
    pct_start x steps is 1 (5 steps at 0.2, 4 at 0.25); the schedule rises and falls all the same."""
    schedule = Schedule(ScheduleConfig(name="onecycle", pct_start=pct_start), optimizer(), peak_lr=1.0,
                        total_steps=total)
    got = lrs(schedule, range(1, total + 1))
    assert all(0 < lr <= 1.0 for lr in got)
    if total >= 2:
        assert got[-1] == pytest.approx(1 / 25 / 1e4, rel=1e-9)  # the cycle's end value at the last step


def test_onecycle_pct_leaves_a_long_run_alone():
    assert onecycle_pct(0.25, 1000) == 0.25 and onecycle_pct(0.2, 5) == 0.4 and onecycle_pct(0.1, 3) == 0.5


def test_clock_spreads_what_is_left_over_the_new_number_of_steps():
    clock = ScheduleClock(total=10)
    assert [clock.position(s) for s in range(0, 5)] == [0, 1, 2, 3, 4]
    clock.resize(4, 3)  # 6 planned positions left, 3 steps to take them: 2 per step
    assert [clock.position(s) for s in (4, 5, 6, 7, 8)] == [4, 6, 8, 10, 10]
    clock.resize(5, 1)  # from position 6, one step to the end
    assert [clock.position(s) for s in (5, 6, 7)] == [6, 10, 10]
    with pytest.raises(ValueError):
        clock.resize(6, 0)


@pytest.mark.filterwarnings("ignore:Detected call of")
@pytest.mark.parametrize("name, end", [("cosine", 0.001), ("onecycle", 1 / 25 / 1e4)])
def test_resized_schedule_ends_on_the_last_step_and_resumes(name: str, end: float):
    cfg = ScheduleConfig(name=name, min_lr=0.001)
    schedule = Schedule(cfg, optimizer(), peak_lr=1.0, total_steps=12)
    lrs(schedule, range(1, 5))
    schedule.resize(4, 3)  # the run now ends at step 7 instead of 12
    resumed = Schedule(cfg, optimizer(), peak_lr=1.0, total_steps=12)
    resumed.load_state_dict(schedule.state_dict())
    for s in (schedule, resumed):
        got = lrs(s, [5, 6, 7])
        assert got[-1] == pytest.approx(end, rel=1e-12) and got[-2] > 2 * end
    if name == "cosine":  # steps 5 and 6 land on positions 4 + 8/3 and 4 + 16/3 of the 12-step plan
        want = [cos_lr(1.0, 0.001, 4 + 8 / 3, 12), cos_lr(1.0, 0.001, 4 + 16 / 3, 12)]
        assert lrs(resumed, [5, 6]) == pytest.approx(want, abs=1e-12)
