"""The training losses against hand computations: top-3 hinge and its margin, the mix with
(label-smoothed) cross-entropy, and the weighted mean with a given weight total."""

from __future__ import annotations

import math

import pytest
import torch

from doodle.train.config import LossConfig
from doodle.train.distributed import Env
from doodle.train.losses import make_loss, micro_batch_loss, top3_loss

# Row 0: true class 4th (third-best rival 0.5); row 1: true class first by 3; row 2: true class 4th
# (rival 0.5); row 3: true class 3rd, 0.5 above the best rival outside the top three (0.1).
LOGITS = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0],
                       [0.0, 3.0, 0.2, 0.1, 0.0],
                       [1.0, 0.9, 0.3, 0.5, 0.2],
                       [0.6, 1.0, 0.8, 0.1, 0.0]])
TARGET = torch.tensor([3, 1, 2, 0])


def cross_entropy(row: list[float], target: int, smoothing: float = 0.0) -> float:
    """-log softmax by hand; smoothing spreads `smoothing` evenly over all classes."""
    log_z = math.log(sum(math.exp(v) for v in row))
    nll = log_z - row[target]
    uniform = sum(log_z - v for v in row) / len(row)
    return (1 - smoothing) * nll + smoothing * uniform


@pytest.mark.parametrize("margin, per_row", [
    (1.0, [1.5, 0.0, 1.2, 0.5]),    # relu(1 - (true - third)): 1 - (0 - .5), 0, 1 - (.3 - .5), 1 - (.6 - .1)
    (0.25, [0.75, 0.0, 0.45, 0.0]),
    (0.0, [0.5, 0.0, 0.2, 0.0]),
])
def test_top3_hinge_against_the_third_best_rival(margin: float, per_row: list[float]):
    each = top3_loss(LOGITS, TARGET, margin, reduction="none")
    assert each.tolist() == pytest.approx(per_row)
    assert float(top3_loss(LOGITS, TARGET, margin)) == pytest.approx(sum(per_row) / 4)


def test_top3_gradient_pushes_the_true_class_up_and_the_third_rival_down():
    logits = LOGITS.clone().requires_grad_(True)
    top3_loss(logits, TARGET).backward()
    want = torch.zeros_like(LOGITS)
    want[0, 3], want[0, 2] = -0.25, 0.25  # row 0: true class 3, third-best rival class 2
    want[2, 2], want[2, 3] = -0.25, 0.25
    want[3, 0], want[3, 3] = -0.25, 0.25
    assert torch.allclose(logits.grad, want)


def test_mixed_loss_with_label_smoothing_and_margin_from_the_config():
    cfg = LossConfig(label_smoothing=0.1, top3_weight=0.9, top3_margin=0.25)
    ce = [cross_entropy(LOGITS[i].tolist(), int(TARGET[i]), 0.1) for i in range(4)]
    top3 = [0.75, 0.0, 0.45, 0.0]
    each = [0.1 * c + 0.9 * t for c, t in zip(ce, top3, strict=True)]
    loss = make_loss(cfg)
    assert float(loss(LOGITS, TARGET)) == pytest.approx(sum(each) / 4)
    w = torch.tensor([1.0, 0.0, 2.0, 1.0])
    want = (each[0] + 2 * each[2] + each[3]) / 4
    assert float(loss(LOGITS, TARGET, w)) == pytest.approx(want)
    # a given weight total (a process's share of all processes' weights) replaces w.sum()
    assert float(loss(LOGITS, TARGET, w, torch.tensor(8.0))) == pytest.approx(want * 4 / 8)


def test_micro_batch_loss_of_one_process_is_the_weighted_mean_over_accumulate():
    loss = make_loss(LossConfig())
    env = Env(0, 1, 0, torch.device("cpu"))
    w = torch.tensor([3.0, 1.0, 0.0, 1.0])
    ce = [cross_entropy(LOGITS[i].tolist(), int(TARGET[i])) for i in range(4)]
    want = (3 * ce[0] + ce[1] + ce[3]) / 5 / 2
    assert float(micro_batch_loss(loss, env, LOGITS, TARGET, w, accumulate=2)) == pytest.approx(want)
    assert float(micro_batch_loss(loss, env, LOGITS, TARGET, None, accumulate=2)) == pytest.approx(sum(ce) / 8)
