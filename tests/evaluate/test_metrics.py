"""MAP@3, top-k accuracy and the streaming accumulator, checked by hand on small cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from doodle.evaluate.metrics import Metrics, accuracy_at_k, label_rank, map_at_3, mapk_from_topk, topk

# Row i puts class i's label at rank i (0..3): scores over 5 classes.
SCORES = np.array(
    [
        [0.9, 0.05, 0.03, 0.01, 0.01],  # label 0: first
        [0.5, 0.3, 0.1, 0.05, 0.05],  # label 1: second
        [0.5, 0.3, 0.1, 0.05, 0.05],  # label 2: third
        [0.5, 0.3, 0.1, 0.06, 0.04],  # label 4: fifth
    ]
)
LABELS = np.array([0, 1, 2, 4])


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_map_at_3_by_hand(kind):
    scores, labels = (SCORES, LABELS) if kind == "numpy" else (torch.tensor(SCORES), torch.tensor(LABELS))
    assert map_at_3(scores, labels) == pytest.approx((1 + 1 / 2 + 1 / 3 + 0) / 4)
    assert accuracy_at_k(scores, labels, 1) == pytest.approx(1 / 4)
    assert accuracy_at_k(scores, labels, 3) == pytest.approx(3 / 4)
    assert label_rank(scores, labels).tolist() == [0, 1, 2, 4]


def test_single_rows():
    row = np.array([[0.1, 0.7, 0.2]])
    assert map_at_3(row, [1]) == 1.0
    assert map_at_3(row, [2]) == 0.5
    assert map_at_3(row, [0]) == pytest.approx(1 / 3)
    assert map_at_3(np.array([[0.4, 0.3, 0.2, 0.1]]), [3]) == 0.0


def test_ties_go_to_the_lower_class_index():
    zeros = np.zeros((1, 6))
    assert topk(zeros, 3).tolist() == [[0, 1, 2]]
    assert topk(torch.zeros(1, 6), 3).tolist() == [[0, 1, 2]]
    # class 3 and class 1 tie for first: 1 wins, 3 is second
    s = np.array([[0.0, 5.0, 1.0, 5.0, 1.0]])
    assert topk(s, 4).tolist() == [[1, 3, 2, 4]]
    assert topk(torch.tensor(s), 4).tolist() == [[1, 3, 2, 4]]
    assert map_at_3(s, [3]) == 0.5
    assert map_at_3(s, [4]) == 0.0  # fourth place
    assert map_at_3(s, [2]) == pytest.approx(1 / 3)
    # all-equal scores: label 0 first, 1 second, 2 third, 3 out
    assert [map_at_3(np.zeros((1, 4)), [y]) for y in range(4)] == pytest.approx([1, 1 / 2, 1 / 3, 0])


def test_nan_scores_rank_last():
    s = np.array([[np.nan, 0.1, -np.inf, 0.3]])
    assert topk(s, 4).tolist() == [[3, 1, 0, 2]]
    assert topk(torch.tensor(s), 4).tolist() == [[3, 1, 0, 2]]
    assert map_at_3(s, [0]) == pytest.approx(1 / 3)


def test_topk_types_and_width():
    s = np.random.default_rng(0).normal(size=(5, 2))
    out = topk(s, 3)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64 and out.shape == (5, 2)
    t = topk(torch.tensor(s, dtype=torch.float16), 1)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.long and t.shape == (5, 1)
    with pytest.raises(ValueError):
        topk(s, 0)
    with pytest.raises(ValueError):
        topk(s[0], 3)


def test_topk_agrees_with_metrics_on_random_scores_with_ties():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(500, 12)).astype(np.float32)  # many ties
    labels = rng.integers(0, 12, size=500)
    idx = topk(scores, 3)
    assert np.array_equal(idx, topk(torch.from_numpy(scores), 3).numpy())
    assert mapk_from_topk(idx, labels) == pytest.approx(map_at_3(scores, labels))
    assert accuracy_at_k(scores, labels, 1) == pytest.approx(np.mean(idx[:, 0] == labels))
    assert accuracy_at_k(scores, labels, 3) == pytest.approx(np.mean((idx == labels[:, None]).any(1)))
    # brute force: a full stable ranking per row
    ranks = np.array([list(np.argsort(-row, kind="stable")).index(y) for row, y in zip(scores, labels, strict=True)])
    assert np.array_equal(label_rank(scores, labels).numpy(), ranks)


def test_mapk_from_topk_by_hand():
    idx = np.array([[2, 0, 1], [0, 1, 2], [1, 2, 0], [1, 2, 0]])
    assert mapk_from_topk(idx, [2, 1, 0, 3]) == pytest.approx((1 + 1 / 2 + 1 / 3 + 0) / 4)
    # a repeated guess counts once
    assert mapk_from_topk(np.array([[1, 1, 1]]), [1]) == 1.0
    assert mapk_from_topk(np.zeros((0, 3), np.int64), np.zeros(0, np.int64)) == 0.0


def test_logits_and_probabilities_agree():
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(2))
    labels = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(3))
    assert map_at_3(logits, labels) == pytest.approx(map_at_3(logits.softmax(1), labels))


def test_bad_shapes_and_labels():
    with pytest.raises(ValueError):
        map_at_3(np.zeros((3, 4)), [0, 1])
    with pytest.raises(ValueError):
        map_at_3(np.zeros((2, 4)), [0, 4])
    with pytest.raises(ValueError):
        map_at_3(np.zeros(4), [0])


def test_streaming_equals_batch():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(1000, 20)).astype(np.float32)
    scores[::7] = np.round(scores[::7])  # some ties
    labels = rng.integers(0, 20, size=1000)
    m = Metrics()
    for start in range(0, 1000, 96):  # uneven last batch, mixed input kinds
        s, y = scores[start:start + 96], labels[start:start + 96]
        if start % 192:
            s, y = torch.from_numpy(s), torch.from_numpy(y)
        m.update(s, y)
    out = m.compute()
    assert out["n"] == 1000
    assert out["map3"] == pytest.approx(map_at_3(scores, labels), abs=1e-12)
    assert out["acc1"] == pytest.approx(accuracy_at_k(scores, labels, 1), abs=1e-12)
    assert out["acc3"] == pytest.approx(accuracy_at_k(scores, labels, 3), abs=1e-12)
    assert "loss" not in out


def test_loss_is_weighted_by_batch_size():
    m = Metrics()
    m.update(np.zeros((2, 3)), [0, 0], loss=1.0)
    m.update(np.zeros((6, 3)), [0] * 6, loss=torch.tensor(3.0))
    assert m.compute()["loss"] == pytest.approx((2 * 1.0 + 6 * 3.0) / 8)


def test_empty_metrics():
    assert Metrics().compute() == {"map3": 0.0, "acc1": 0.0, "acc3": 0.0, "n": 0}


def test_merge_and_from_state_equal_one_accumulator():
    """What DDP does: each rank sums its shard, the states are added, the result equals one pass."""
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(300, 8))
    labels = rng.integers(0, 8, size=300)
    whole = Metrics()
    whole.update(scores, labels, loss=0.5)
    ranks = [Metrics() for _ in range(3)]
    for r, m in enumerate(ranks):
        m.update(scores[r::3], labels[r::3], loss=0.5)
    summed = sum(m.state() for m in ranks)
    assert Metrics.from_state(summed).compute() == pytest.approx(whole.compute())
    assert Metrics.from_sums(summed.numpy()).compute() == pytest.approx(whole.compute())
    merged = Metrics()
    for m in ranks:
        merged.merge(m)
    assert merged.compute() == pytest.approx(whole.compute())
    assert ranks[0].merge(ranks[1].state()).merge(ranks[2]).compute() == pytest.approx(whole.compute())
    assert whole.all_reduce() is whole  # no process group: a no-op
    with pytest.raises(ValueError):
        Metrics.from_state(np.zeros(3))


def _ddp_worker(rank: int, world: int, init_file: str, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        rng = np.random.default_rng(6)
        scores, labels = rng.normal(size=(90, 7)), rng.integers(0, 7, size=90)
        m = Metrics()
        m.update(scores[rank::world], labels[rank::world])
        results[rank] = m.all_reduce().compute()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_over_gloo(tmp_path):
    """Two real processes: all_reduce gives every rank the metrics of the whole data."""
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), results), nprocs=2, join=True)
        got = dict(results)
    rng = np.random.default_rng(6)
    scores, labels = rng.normal(size=(90, 7)), rng.integers(0, 7, size=90)
    assert got[0] == got[1] == pytest.approx({"map3": map_at_3(scores, labels), "n": 90,
                                               "acc1": accuracy_at_k(scores, labels, 1),
                                               "acc3": accuracy_at_k(scores, labels, 3)})
