"""Ranking metrics of the Kaggle competition: MAP@3 and top-k accuracy, batch and streaming.

Every function takes class scores [N, K] (logits or probabilities: only their order matters) as a
numpy array or a torch tensor, and integer labels [N] of either kind.

Ties are broken deterministically by the lower class index: among classes with equal scores, the
one with the smaller index ranks first (so `topk` of an all-zero row is 0, 1, 2). NaN scores count
as -inf (last, then by index). `topk` and the label-rank metrics follow the same rule, so
`map_at_3(s, y) == mapk_from_topk(topk(s, 3), y)` always holds.

MAP@3 with one true label per drawing is the mean over drawings of 1, 1/2 or 1/3 when the label is
the first, second or third guess, else 0.

`Metrics` accumulates the sums batch by batch (on the scores' device, without a host sync per
batch) and merges across data-parallel ranks:

    m = Metrics()
    for logits, labels in batches:
        m.update(logits, labels, loss=loss.item())
    m = m.all_reduce()          # under torch.distributed: sums over every rank
    m.compute()                 # {"map3": ..., "acc1": ..., "acc3": ..., "n": ..., "loss": ...}
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["Metrics", "accuracy_at_k", "label_rank", "map_at_3", "mapk_from_topk", "topk"]

ArrayLike = np.ndarray | torch.Tensor


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    return torch.as_tensor(np.asarray(x))


def _scores_labels(scores: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
    s = _as_tensor(scores)
    y = _as_tensor(labels).to(device=s.device, dtype=torch.long).reshape(-1)
    if s.ndim != 2:
        raise ValueError(f"scores must have shape [N, K], got {tuple(s.shape)}")
    if s.shape[0] != y.shape[0]:
        raise ValueError(f"{s.shape[0]} score rows but {y.shape[0]} labels")
    # checked on the CPU only: on an accelerator it would cost a host sync per batch
    if s.device.type == "cpu" and y.numel() and (int(y.min()) < 0 or int(y.max()) >= s.shape[1]):
        raise ValueError(f"labels must lie in 0..{s.shape[1] - 1}")
    if not s.is_floating_point():
        s = s.float()
    return _nan_lowest(s), y


def _nan_lowest(s: torch.Tensor) -> torch.Tensor:
    """NaN as -inf (NaN compares false with everything, which would make ranks meaningless)."""
    if s.is_floating_point():
        s = torch.where(torch.isnan(s), torch.full_like(s, float("-inf")), s)
    return s


def topk(probs_or_logits: ArrayLike, k: int = 3) -> ArrayLike:
    """Indices [N, min(k, K)] of the k best classes per row, best first, ties to the lower index.

    Returns the input's kind: int64 numpy for numpy input, a long tensor on the same device for a
    tensor. NaN scores count as -inf.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if isinstance(probs_or_logits, torch.Tensor):
        s = probs_or_logits.detach()
        if s.ndim != 2:
            raise ValueError(f"scores must have shape [N, K], got {tuple(s.shape)}")
        s = _nan_lowest(s if s.is_floating_point() else s.double())
        k = min(k, s.shape[1])
        return torch.sort(s, dim=1, descending=True, stable=True).indices[:, :k]
    s = np.asarray(probs_or_logits)
    if s.ndim != 2:
        raise ValueError(f"scores must have shape [N, K], got {s.shape}")
    s = s.astype(np.float64, copy=False)
    k = min(k, s.shape[1])
    # a stable ascending sort of -s keeps equal scores in index order; NaN sorts last
    neg = -s
    neg[np.isnan(neg)] = np.inf
    return np.argsort(neg, axis=1, kind="stable")[:, :k].astype(np.int64, copy=False)


def label_rank(scores: ArrayLike, labels: ArrayLike) -> torch.Tensor:
    """0-based rank of each true label among its row's classes (0 = first guess), long tensor [N].

    rank = #classes scoring higher + #classes with equal score and a lower index: the position the
    label has in `topk`'s order, in O(K) per row without sorting.
    """
    s, y = _scores_labels(scores, labels)
    true = s.gather(1, y[:, None])
    higher = (s > true).sum(1)
    index = torch.arange(s.shape[1], device=s.device)
    tied_before = ((s == true) & (index[None, :] < y[:, None])).sum(1)
    return higher + tied_before


def _sums(rank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sum of average precision at 3, hits at 1, hits at 3."""
    ap = torch.where(rank < 3, 1.0 / (rank.double() + 1.0), torch.zeros((), dtype=torch.float64, device=rank.device))
    return ap.sum(), (rank < 1).sum(), (rank < 3).sum()


def map_at_3(scores: ArrayLike, labels: ArrayLike) -> float:
    """MAP@3 of scores [N, K] against labels [N] (0.0 for N = 0)."""
    rank = label_rank(scores, labels)
    if rank.numel() == 0:
        return 0.0
    return float(_sums(rank)[0]) / rank.numel()


def accuracy_at_k(scores: ArrayLike, labels: ArrayLike, k: int) -> float:
    """Fraction of rows whose label is among the k best classes (0.0 for N = 0)."""
    rank = label_rank(scores, labels)
    if rank.numel() == 0:
        return 0.0
    return float((rank < k).sum()) / rank.numel()


def mapk_from_topk(topk_idx: ArrayLike, labels: ArrayLike) -> float:
    """MAP@k from precomputed guesses [N, k] (best first; k is the width, usually 3) and labels [N].

    A label that appears at position j (0-based) scores 1 / (j + 1); only its first appearance
    counts, as in Kaggle's metric.
    """
    idx = _as_tensor(topk_idx)
    y = _as_tensor(labels).to(device=idx.device, dtype=torch.long).reshape(-1)
    if idx.ndim != 2 or idx.shape[0] != y.shape[0]:
        raise ValueError(f"topk_idx must have shape [N, k] with N = {y.shape[0]}, got {tuple(idx.shape)}")
    if y.numel() == 0:
        return 0.0
    hit = idx.long() == y[:, None]
    first = hit & (hit.long().cumsum(1) == 1)
    weights = 1.0 / torch.arange(1, idx.shape[1] + 1, device=idx.device, dtype=torch.float64)
    return float((first.double() * weights).sum()) / y.numel()


class Metrics:
    """Streaming MAP@3, top-1 and top-3 accuracy (and mean loss, when given), mergeable across ranks.

    The state is six sums, float64: n, sum of AP@3, hits@1, hits@3, sum of loss * batch size, and the
    number of drawings that came with a loss. `state()` returns them as a tensor; `from_state`,
    `merge` and `all_reduce` rebuild and combine them, so distributed evaluation is one all-reduce.
    """

    FIELDS = ("n", "ap3", "hit1", "hit3", "loss_sum", "loss_n")

    def __init__(self) -> None:
        self._sums: torch.Tensor | None = None

    def _state_on(self, device: torch.device) -> torch.Tensor:
        if self._sums is None:
            dtype = torch.float32 if device.type == "mps" else torch.float64
            self._sums = torch.zeros(len(self.FIELDS), dtype=dtype, device=device)
        return self._sums

    def update(self, scores: ArrayLike, labels: ArrayLike, loss: float | torch.Tensor | None = None) -> None:
        """Add a batch: scores [B, K], labels [B], and optionally the batch's mean loss."""
        rank = label_rank(scores, labels)
        sums = self._state_on(rank.device)
        ap, hit1, hit3 = _sums(rank)
        n = rank.numel()
        add = [torch.tensor(float(n), device=sums.device), ap, hit1, hit3]
        if loss is not None:
            loss_t = loss.detach().reshape(()) if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
            add += [loss_t.to(sums.device, torch.float64) * n, torch.tensor(float(n), device=sums.device)]
        else:
            add += [torch.zeros((), device=sums.device), torch.zeros((), device=sums.device)]
        if sums.device != rank.device:
            add = [a.to(sums.device) for a in add]
        sums += torch.stack([a.to(sums.dtype) for a in add])

    def state(self) -> torch.Tensor:
        """The six sums (see `FIELDS`) as a float64 tensor on the device the updates ran on."""
        if self._sums is None:
            return torch.zeros(len(self.FIELDS), dtype=torch.float64)
        return self._sums.clone()

    @classmethod
    def from_state(cls, state: ArrayLike) -> Metrics:
        """A `Metrics` holding the given sums (a tensor or array from `state()`, possibly summed)."""
        s = _as_tensor(state).to(torch.float64).reshape(-1)
        if s.numel() != len(cls.FIELDS):
            raise ValueError(f"state must hold {len(cls.FIELDS)} sums, got {s.numel()}")
        m = cls()
        m._sums = s.clone()
        return m

    from_sums = from_state

    def merge(self, other: Metrics | ArrayLike) -> Metrics:
        """Add another accumulator's sums (or a raw state) into this one; returns self."""
        theirs = other.state() if isinstance(other, Metrics) else _as_tensor(other).reshape(-1)
        mine = self._state_on(theirs.device if self._sums is None else self._sums.device)
        mine += theirs.to(mine.device, mine.dtype)
        return self

    def all_reduce(self, group: Any = None) -> Metrics:
        """Sums over every rank of `torch.distributed` (a no-op when it is not initialised).

        Every rank must call it (a collective). Runs on the CUDA device for the NCCL backend.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        state = self.state()
        if dist.get_backend(group) == "nccl" and state.device.type != "cuda":
            state = state.to(torch.device("cuda", torch.cuda.current_device()))
        state = state.to(torch.float64)
        dist.all_reduce(state, op=dist.ReduceOp.SUM, group=group)
        return Metrics.from_state(state)

    def reset(self) -> None:
        self._sums = None

    @property
    def n(self) -> int:
        return 0 if self._sums is None else int(self._sums[0].item())

    def compute(self) -> dict[str, float]:
        """{"map3", "acc1", "acc3", "n"} (and "loss" when losses were given); zeros when empty."""
        n, ap3, hit1, hit3, loss_sum, loss_n = (float(v) for v in self.state().cpu().tolist())
        out = {
            "map3": ap3 / n if n else 0.0,
            "acc1": hit1 / n if n else 0.0,
            "acc3": hit3 / n if n else 0.0,
            "n": int(n),
        }
        if loss_n:
            out["loss"] = loss_sum / loss_n
        return out

    def __repr__(self) -> str:
        return f"Metrics({self.compute()})"
