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


def test_requests_waiting_behind_a_batch_go_together_and_get_their_own_answers():
    engine = Recorder()
    batcher = Batcher(engine, workers=1, max_batch=4)

    async def main():
        engine.release.clear()  # the first request's call waits while nine more queue up
        first = asyncio.create_task(batcher.guesses(drawing(0), 2))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(batcher.guesses(drawing(i), 1 + i % 3)) for i in range(1, 10)]
        await asyncio.sleep(0.05)
        engine.release.set()
        return await asyncio.gather(first, *rest)

    try:
        answers = asyncio.run(main())
    finally:
        batcher.close()
    assert engine.calls == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]  # greedy, at most max_batch
    for i, guesses in enumerate(answers):
        k = 2 if i == 0 else 1 + i % 3
        assert len(guesses) == k
        assert guesses[0].word == CLASSES[i % 4] and guesses[0].probability == pytest.approx(0.7)
        assert [g.word for g in guesses[1:]] == [c for c in CLASSES if c != CLASSES[i % 4]][: k - 1]


def test_a_bad_drawing_fails_only_its_own_request():
    engine = Recorder()
    batcher = Batcher(engine, workers=1, max_batch=8)

    async def main():
        engine.release.clear()
        first = asyncio.create_task(batcher.guesses(drawing(0), 1))
        await asyncio.sleep(0.05)
        tasks = [asyncio.create_task(batcher.guesses(drawing(i), 1)) for i in (1, -1, 2)]
        await asyncio.sleep(0.05)
        engine.release.set()
        return await asyncio.gather(first, *tasks, return_exceptions=True)

    try:
        answers = asyncio.run(main())
    finally:
        batcher.close()
    assert [a[0].word for a in (answers[0], answers[1], answers[3])] == ["a", "b", "c"]
    assert isinstance(answers[2], InputError) and "-1" in str(answers[2])
    assert engine.calls[1] == [1, -1, 2]  # the batch failed, then each drawing alone
    assert engine.calls[2:] == [[1], [-1], [2]]


def test_a_cancelled_request_is_not_computed():
    engine = Recorder()
    batcher = Batcher(engine, workers=1, max_batch=8)

    async def main():
        engine.release.clear()
        first = asyncio.create_task(batcher.guesses(drawing(0), 1))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(batcher.guesses(drawing(1), 1))
        kept = asyncio.create_task(batcher.guesses(drawing(2), 1))
        await asyncio.sleep(0.05)
        gone.cancel()
        engine.release.set()
        return await asyncio.gather(first, kept)

    try:
        first, kept = asyncio.run(main())
    finally:
        batcher.close()
    assert engine.calls == [[0], [2]]
    assert first[0].word == "a" and kept[0].word == "c"
