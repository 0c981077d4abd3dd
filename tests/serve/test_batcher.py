"""`Batcher`: greedy micro-batching on the event loop, one thread hand-over per batch."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from doodle.data.drawing import Drawing
from doodle.serve.inference import UNLIMITED, Batcher, Engine, InputError, SimplifyBudget

CLASSES = ["a", "b", "c", "d"]


class Recorder(Engine):
    """Answers class (key_id % 4) with probability 0.7; a drawing with key_id < 0 is bad. Records
    each call's key_ids, and can hold calls until released."""

    backend = "test"
    simplifies = False

    def __init__(self):
        super().__init__(preprocessor=None, classes=CLASSES, description={})
        self.calls: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()

    def infer(self, drawings):
        self.release.wait(10)
        ids = [d.key_id for d in drawings]
        self.calls.append(ids)
        if any(i < 0 for i in ids):
            raise InputError(f"bad drawing among {ids}")
        p = np.full((len(ids), len(CLASSES)), 0.1, np.float32)
        p[np.arange(len(ids)), np.array(ids) % len(CLASSES)] = 0.7
        return np.log(p)


def drawing(key_id: int) -> Drawing:
    return Drawing(key_id=key_id, strokes=[np.array([[0.0, 0.0], [1.0, 1.0]])])


def behind_a_held_call(max_batch: int, first: tuple[int, int], later: list[tuple[int, int]],
                       cancel: int | None = None) -> tuple[Recorder, list]:
    """Ask for `first` (key_id, k), hold its model call while the `later` requests queue up behind
    it (cancelling the one with key_id `cancel`), then let everything run; the engine and the
    answers (an exception where a request failed) of first and the requests not cancelled."""
    engine = Recorder()
    batcher = Batcher(engine, workers=1, max_batch=max_batch)

    async def main():
        engine.release.clear()
        head = asyncio.create_task(batcher.guesses(drawing(first[0]), first[1]))
        await asyncio.sleep(0.05)
        tasks = {i: asyncio.create_task(batcher.guesses(drawing(i), k)) for i, k in later}
        await asyncio.sleep(0.05)
        if cancel is not None:
            tasks.pop(cancel).cancel()
        engine.release.set()
        return await asyncio.gather(head, *tasks.values(), return_exceptions=True)

    try:
        return engine, asyncio.run(main())
    finally:
        batcher.close()


def test_requests_waiting_behind_a_batch_go_together_and_get_their_own_answers():
    engine, answers = behind_a_held_call(4, (0, 2), [(i, 1 + i % 3) for i in range(1, 10)])
    assert engine.calls == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]  # greedy, at most max_batch
    for i, guesses in enumerate(answers):
        k = 2 if i == 0 else 1 + i % 3
        assert len(guesses) == k
        assert guesses[0].word == CLASSES[i % 4] and guesses[0].probability == pytest.approx(0.7)
        assert [g.word for g in guesses[1:]] == [c for c in CLASSES if c != CLASSES[i % 4]][: k - 1]


def test_a_bad_drawing_fails_only_its_own_request():
    engine, answers = behind_a_held_call(8, (0, 1), [(1, 1), (-1, 1), (2, 1)])
    assert [a[0].word for a in (answers[0], answers[1], answers[3])] == ["a", "b", "c"]
    assert isinstance(answers[2], InputError) and "-1" in str(answers[2])
    assert engine.calls[1] == [1, -1, 2]  # the batch failed, then each drawing alone
    assert engine.calls[2:] == [[1], [-1], [2]]


def test_a_cancelled_request_is_not_computed():
    engine, (first, kept) = behind_a_held_call(8, (0, 1), [(1, 1), (2, 1)], cancel=1)
    assert engine.calls == [[0], [2]]
    assert first[0].word == "a" and kept[0].word == "c"


class Costly(Recorder):
    """Recorder whose drawings have a simplification cost: key_id 100+ are costly to simplify
    (60,000 resampled points, and held until `aside` is set), key_id 50-99 need more RDP work than
    the batch lane spends, key_id 90-99 more than any budget. Records which budget each call got."""

    simplifies = True

    def __init__(self):
        super().__init__()
        self.aside = threading.Event()
        self.budgets: list[tuple[int, int | None]] = []

    def simplify_size(self, drawing):
        return 60_000 if drawing.key_id >= 100 else 100

    def simplified(self, drawing, budget=UNLIMITED):
        self.budgets.append((drawing.key_id, budget.max_work))
        if drawing.key_id >= 100:
            self.aside.wait(10)
        elif drawing.key_id >= 90 or (drawing.key_id >= 50 and budget.max_work <= Batcher.LIGHT_WORK):
            raise InputError(f"drawing {drawing.key_id} is too complex to simplify")
        return drawing


def test_costly_drawings_wait_aside_while_the_others_are_answered():
    engine = Costly()
    batcher = Batcher(engine, workers=1, max_batch=8, budget=SimplifyBudget(max_points=100_000, max_work=10**7))

    async def main():
        costly = asyncio.create_task(batcher.guesses(drawing(101), 1))
        await asyncio.sleep(0.05)
        others = await asyncio.wait_for(asyncio.gather(*(batcher.guesses(drawing(i), 1) for i in (1, 2, 3))), 5)
        held = costly.done()
        engine.aside.set()
        return others, held, await costly

    try:
        others, held, costly = asyncio.run(main())
    finally:
        batcher.close()
    assert [g[0].word for g in others] == ["b", "c", "d"] and not held  # answered while 101 was still held
    assert costly[0].word == "b" and (101, 10**7) in engine.budgets  # aside, with the whole budget
    assert [101] in engine.calls  # then through the model like any other


def test_drawings_over_the_batch_lane_work_go_aside_and_over_the_budget_fail_alone():
    engine = Costly()
    batcher = Batcher(engine, workers=1, max_batch=8, budget=SimplifyBudget(max_points=50_000, max_work=10**7))

    async def main():
        return await asyncio.gather(*(batcher.guesses(drawing(i), 1) for i in (1, 55, 95, 2, 101)),
                                    return_exceptions=True)

    try:
        answers = asyncio.run(main())
    finally:
        batcher.close()
    assert answers[0][0].word == "b" and answers[3][0].word == "c"
    assert answers[1][0].word == "d"  # 55: refused by the batch lane's work, answered aside
    assert (55, Batcher.LIGHT_WORK) in engine.budgets and (55, 10**7) in engine.budgets
    assert isinstance(answers[2], InputError) and "95" in str(answers[2])  # over the whole budget: its own 422
    assert isinstance(answers[4], InputError) and "60,000 points, the limit is 50,000" in str(answers[4])
    assert 101 not in [key for key, _ in engine.budgets]  # refused before any simplification
