"""`sequence` family: 1-D convolutions then a bidirectional LSTM/GRU over per-point features.

The best public stroke model of the competition (0.93-0.94 MAP@3) and Google's tutorial RNN:

    points [B, T, 6] (x, y, dx, dy, dt, pen)
    -> Conv1d(k, "same" padding) -> BatchNorm -> ReLU, one per (conv_channels, conv_kernels)
       (padded steps are zeroed after every layer; BatchNorm takes its statistics from the real
       steps only, `MaskedBatchNorm1d`, so the amount of padding cannot shift them)
    -> bidirectional LSTM/GRU (rnn_layers x rnn_hidden per direction) on the packed sequence
       (pack_padded_sequence with batch["lengths"], so padding never enters the recurrence)
    -> masked mean and max over the valid steps, concatenated ([B, 4 * rnn_hidden])
    -> extras (country, time) -> head.

Google's tutorial sums the outputs over time; mean + max is length-independent and keeps the
strongest response. Drawings with no points (length 0) are treated as one zero point.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from doodle.errors import DoodleError
from doodle.models.heads import ClassifierHead, Extras, check_extras
from doodle.models.masked_norm import MaskedBatchNorm1d
from doodle.models.registry import ModelConfig, register_model
from doodle.preprocess import POINT_FEATURES, InputConfig


def valid_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, steps] bool, True on the first lengths[b] steps."""
    return torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


PointNorm = Literal["masked", "batch"]
"""Normalisation of the point convolutions: masked (statistics over real steps) or batch (plain
`nn.BatchNorm1d`, statistics over every padded slot too)."""


class PointConvs(nn.Module):
    """Masked Conv1d -> BN -> ReLU stack over [B, C, T] with "same" padding."""

    def __init__(self, in_channels: int, channels: list[int], kernels: list[int], dilations: list[int] | None = None,
                 norm: PointNorm = "masked"):
        super().__init__()
        if norm not in ("masked", "batch"):
            raise DoodleError(f"unknown point normalisation {norm!r}; choose from batch, masked")
        dilations = dilations or [1] * len(channels)
        layers = []
        for out, k, d in zip(channels, kernels, dilations, strict=True):
            if k < 1 or k % 2 == 0:
                raise DoodleError(f"1-D convolution kernels must be odd and positive, got {k}")
            bn = MaskedBatchNorm1d(out) if norm == "masked" else nn.BatchNorm1d(out)
            # (conv, norm, act) in a Sequential keeps the state_dict keys of earlier checkpoints
            layers.append(nn.Sequential(nn.Conv1d(in_channels, out, k, padding=d * (k // 2), dilation=d, bias=False),
                                        bn, nn.ReLU(inplace=True)))
            in_channels = out
        self.layers = nn.ModuleList(layers)
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(1).to(x.dtype)
        x = x * m
        for conv, bn, act in self.layers:
            h = bn(conv(x), mask) if isinstance(bn, MaskedBatchNorm1d) else bn(conv(x))
            x = act(h) * m
        return x


class SequenceClassifier(nn.Module):
    def __init__(self, config: ModelConfig, num_classes: int):
        super().__init__()
        if len(config.conv_channels) != len(config.conv_kernels):
            raise DoodleError(f"model.conv_channels ({len(config.conv_channels)}) and model.conv_kernels "
                              f"({len(config.conv_kernels)}) must have the same length")
        if config.rnn not in ("lstm", "gru"):
            raise DoodleError(f"unknown model.rnn {config.rnn!r}; choose from gru, lstm")
        if config.rnn_layers < 1 or config.rnn_hidden < 1:
            raise DoodleError("model.rnn_layers and model.rnn_hidden must be >= 1")
        self.convs = PointConvs(len(POINT_FEATURES), list(config.conv_channels), list(config.conv_kernels),
                                norm=config.point_norm)
        rnn_cls = nn.LSTM if config.rnn == "lstm" else nn.GRU
        self.rnn = rnn_cls(self.convs.out_channels, config.rnn_hidden, num_layers=config.rnn_layers,
                           batch_first=True, bidirectional=True)
        self.features = 4 * config.rnn_hidden
        self.extras = Extras.from_config(config)
        self.head = ClassifierHead.from_config(config, self.features + self.extras.dim, num_classes)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        points = batch["points"].float()
        steps = points.shape[1]
        # lengths may arrive on the CPU (pack_padded_sequence wants them there): the mask follows the points
        lengths = batch["lengths"].to(points.device).long().clamp(min=1, max=steps)
        mask = valid_mask(lengths, steps)
        x = self.convs(points.transpose(1, 2), mask).transpose(1, 2)  # [B, T, C]
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)  # [B, T, 2H], zero padded
        m = mask.unsqueeze(2).to(out.dtype)
        mean = (out * m).sum(1) / lengths.unsqueeze(1).to(out.dtype)
        peak = out.masked_fill(~mask.unsqueeze(2), float("-inf")).amax(1)
        return self.head(self.extras(torch.cat([mean, peak], dim=1), batch))


@register_model("sequence", "sequence", "1-D convolutions + bidirectional LSTM/GRU over stroke points.")
def build_sequence(config: ModelConfig, inputs: InputConfig, num_classes: int) -> SequenceClassifier:
    """1-D convolutions + bidirectional LSTM/GRU over stroke points."""
    check_extras(config, inputs)
    return SequenceClassifier(config, num_classes)
