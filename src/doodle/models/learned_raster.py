"""`learned-raster` family (8th place, 0.949 single model): the network learns its own rasterisation.

    points [B, T, 6] (x, y, dx, dy, dt, pen)
    -> dilated Conv1d(k=3) -> BN -> ReLU per `raster_dilations` (1, 2, 4, 8), `raster_features` wide
       (`sequence.PointConvs`: BN statistics over the real points only, padding zeroed)
    -> scatter: each valid point's features go to the grid cell (floor(y * G), floor(x * G)) of a
       G x G grid (G = `raster_grid`); points sharing a cell are AVERAGED, empty cells are 0,
       padded points (index >= lengths) are ignored                          -> [B, F, G, G]
    -> 1x1 conv + BN + ReLU adapting F to the trunk's first-stage width (64), in place of the stem
    -> the stages (layer1..layer4) of a timm ResNet-family model, global average pool
    -> extras (country, time) -> head.

Supported trunks (`SUPPORTED_ARCHS`): timm ResNet-family models, whose stem (conv1/bn1/act1/
maxpool) is dropped: resnet18/26/34/50/101/152 and their "d" variants, resnext50/101, seresnet,
seresnext26d/26t/50/101. Other names raise a DoodleError listing these. `pretrained_path` loads
ImageNet weights into the stages (the stem's weights are reported as unexpected and unused). The
8th-place team froze the pretrained trunk (`model.trunk`) for the first 1-5 k iterations.
The scatter is ScatterElements(add) in ONNX (opset >= 16), no data-dependent control flow.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from doodle.errors import DoodleError
from doodle.models.heads import ClassifierHead, Extras, check_extras, load_pretrained
from doodle.models.registry import ModelConfig, register_model
from doodle.models.sequence import PointConvs, valid_mask
from doodle.preprocess import POINT_FEATURES, InputConfig

SUPPORTED_ARCHS = (
    "resnet10t", "resnet18", "resnet18d", "resnet26", "resnet26d", "resnet34", "resnet34d", "resnet50",
    "resnet50d", "resnet101", "resnet101d", "resnet152", "resnet152d",
    "resnext50_32x4d", "resnext50d_32x4d", "resnext101_32x4d", "resnext101_32x8d",
    "seresnet18", "seresnet34", "seresnet50", "seresnet101", "seresnet152",
    "seresnext26d_32x4d", "seresnext26t_32x4d", "seresnext50_32x4d", "seresnext101_32x4d", "seresnext101_32x8d",
)
"""timm ResNet-family trunks whose stages can follow the learned raster."""


def scatter_mean(features: torch.Tensor, xy: torch.Tensor, lengths: torch.Tensor, grid: int) -> torch.Tensor:
    """Average per-point features into a grid: features [B, F, T], xy [B, T, 2] in 0..1 (x, y),
    lengths [B] -> [B, F, grid, grid]; row = floor(y * grid), column = floor(x * grid) (clipped to
    the grid), points at index >= lengths ignored, empty cells 0."""
    batch, channels, steps = features.shape
    cell = (xy * grid).floor().clamp(0, grid - 1).long()  # [B, T, 2]
    index = cell[..., 1] * grid + cell[..., 0]  # [B, T]
    mask = valid_mask(lengths, steps).to(features.dtype).unsqueeze(1)  # [B, 1, T]
    sums = features.new_zeros(batch, channels, grid * grid)
    sums = sums.scatter_add(2, index.unsqueeze(1).expand(batch, channels, steps), features * mask)
    counts = features.new_zeros(batch, 1, grid * grid).scatter_add(2, index.unsqueeze(1), mask)
    return (sums / counts.clamp(min=1.0)).view(batch, channels, grid, grid)


def resnet_stages(arch: str) -> tuple[nn.Module, int, int]:
    """A timm ResNet-family model with its stem replaced by identities: (trunk, input width of
    layer1, pooled feature width)."""
    if arch not in SUPPORTED_ARCHS:
        raise DoodleError(f"learned-raster does not support arch {arch!r}; choose from {', '.join(SUPPORTED_ARCHS)}")
    trunk = timm.create_model(arch, pretrained=False, num_classes=0)
    from timm.models.resnet import ResNet

    if not isinstance(trunk, ResNet):  # a future timm renaming; never silently use a wrong stem
        raise DoodleError(f"timm's {arch!r} is not a ResNet-family model; learned-raster cannot use it")
    width = trunk.layer1[0].conv1.in_channels
    for name in ("conv1", "bn1", "act1", "maxpool"):
        setattr(trunk, name, nn.Identity())
    return trunk, width, int(trunk.num_features)


class LearnedRaster(nn.Module):
    def __init__(self, config: ModelConfig, num_classes: int):
        super().__init__()
        if config.raster_grid < 4:
            raise DoodleError(f"model.raster_grid must be >= 4, got {config.raster_grid}")
        if config.raster_features < 1 or not config.raster_dilations:
            raise DoodleError("model.raster_features must be >= 1 and model.raster_dilations non-empty")
        self.grid = int(config.raster_grid)
        n = len(config.raster_dilations)
        self.points = PointConvs(len(POINT_FEATURES), [config.raster_features] * n, [3] * n,
                                 list(config.raster_dilations), norm=config.point_norm)
        self.trunk, width, self.features = resnet_stages(config.arch)
        self.adapter = nn.Sequential(nn.Conv2d(config.raster_features, width, 1, bias=False), nn.BatchNorm2d(width),
                                     nn.ReLU(inplace=True))
        self.extras = Extras.from_config(config)
        self.head = ClassifierHead.from_config(config, self.features + self.extras.dim, num_classes)

    def raster(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The learned raster [B, raster_features, G, G] of a batch."""
        points = batch["points"].float()
        steps = points.shape[1]
        lengths = batch["lengths"].to(points.device).long().clamp(min=0, max=steps)  # may arrive on the CPU
        feats = self.points(points.transpose(1, 2), valid_mask(lengths, steps))
        return scatter_mean(feats, points[..., :2], lengths, self.grid)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        features = self.trunk(self.adapter(self.raster(batch)))  # timm ResNet: stages + pool
        return self.head(self.extras(features, batch))


@register_model("learned-raster", "sequence", "8th place: per-point 1-D convs scattered into a grid, ResNet stages.")
def build_learned_raster(config: ModelConfig, inputs: InputConfig, num_classes: int) -> LearnedRaster:
    """8th place: per-point 1-D convs scattered into a grid that feeds ResNet stages."""
    check_extras(config, inputs)
    model = LearnedRaster(config, num_classes)
    if config.pretrained_path:
        load_pretrained(model.trunk, config.pretrained_path)
    return model
