"""`Batcher`: greedy micro-batching on the event loop, one thread hand-over per batch."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from doodle.data.drawing import Drawing
from doodle.serve.inference import Batcher, Engine, InputError

CLASSES = ["a", "b", "c", "d"]


class Recorder(Engine):
    """Answers class (key_id % 4) with probability 0.7; a drawing with key_id < 0 is bad. Records
    each call's key_ids, and can hold calls until released."""

    backend = "test"

    def __init__(self):
        super().__init__(preprocessor=None, classes=CLASSES, description={})
        self.calls: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()

    def log_probs(self, drawings):
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
