"""Batch normalisation over the real steps of padded sequences.

A batch of drawings is zero-padded to `max_points` steps, often several times more slots than
points, so `nn.BatchNorm1d` over [B, C, T] would take its mean and variance mostly from padding.
The statistics it learns then describe padding, and at inference the running estimates do not fit
real points. `MaskedBatchNorm1d` takes them over the real steps only:

    norm = MaskedBatchNorm1d(64)
    y = norm(x, mask)  # x [B, 64, T], mask [B, T] bool (True on real steps) -> [B, 64, T]

* training: per-channel mean and biased variance over the real steps of the whole batch normalise
  them; the running estimates move towards that mean and the unbiased variance by `momentum`
  (a cumulative average when momentum is None), exactly as `nn.BatchNorm1d` does over every step;
* evaluation: the running estimates, the same element-wise affine map as `nn.BatchNorm1d`;
* padded steps come out as zero in both modes, so nothing placed there can leak downstream.

A batch with fewer than two real steps leaves the running estimates untouched (one value has no
variance). The module is an `nn.BatchNorm1d`: the same parameters, buffers and state_dict keys, so
weights move between the two freely and export the same way; without a mask it is plain
`nn.BatchNorm1d`. Statistics use float32 whatever the input dtype (mixed precision), and the
arithmetic has no data-dependent Python branches, so it traces to ONNX.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """`nn.BatchNorm1d` over [B, C, T] whose statistics come from the steps where mask [B, T] is True."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised x [B, C, T], zero where mask is False; mask None: every step is real."""
        if mask is None:
            return super().forward(x)
        # the check runs eagerly only: traced, shapes would become constants of the graph
        if not torch.jit.is_tracing() and (x.dim() != 3 or mask.shape != (x.shape[0], x.shape[2])):
            raise ValueError(f"expected x [B, C, T] and mask [B, T], got {tuple(x.shape)} and {tuple(mask.shape)}")
        m = mask.unsqueeze(1).to(x.dtype)
        if self.training or self.running_mean is None:
            return self._normalise_batch(x, mask) * m
        # evaluation is the plain layer's own affine map; masking after it keeps padding at zero
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps) * m

    def _normalise_batch(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x normalised by the mean and variance of its real steps (padded steps are not zeroed here)."""
        xf = x.float()
        mean, var, count = masked_moments(xf, mask)
        if self.training and self.track_running_stats:
            self._update_running(mean, var, count)
        y = (xf - mean[:, None]) * torch.rsqrt(var[:, None] + self.eps)
        if self.affine:
            y = y * self.weight.float()[:, None] + self.bias.float()[:, None]
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor) -> None:
        """Move the running estimates towards this batch's, as `nn.BatchNorm1d` does."""
        # a weight of 0 skips a batch without a host sync (a Python `if` on count would need one)
        counted = (count > 1).to(mean.dtype)
        self.num_batches_tracked.add_(counted.long())
        if self.momentum is None:  # cumulative moving average
            factor = counted / self.num_batches_tracked.clamp(min=1).to(mean.dtype)
        else:
            factor = counted * self.momentum
        unbiased = var * count / (count - 1).clamp(min=1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor.to(self.running_mean.dtype))
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor.to(self.running_var.dtype))


def masked_moments(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-channel mean [C] and biased variance [C] of x [B, C, T] over the steps where mask [B, T]
    is True, and the number of such steps (a 0-d tensor); both moments are 0 when there are none."""
    m = mask.unsqueeze(1).to(x.dtype)
    count = m.sum()
    denom = count.clamp(min=1)
    mean = (x * m).sum((0, 2)) / denom
    # centred before squaring: E[x^2] - E[x]^2 loses precision when the mean is large
    var = (((x - mean[:, None]) * m) ** 2).sum((0, 2)) / denom
    return mean, var, count
