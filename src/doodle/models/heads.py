"""Pieces every model family shares: input normalisation, the country/time "extras", the classifier
head and loading local pretrained weights.

* `ImageNormalizer`: uint8 (or float in 0..255) images -> normalised floats, inside the model, so
  export and serving feed the renderer's uint8 output unchanged. With pretrained weights it uses the
  weights' mean/std (ImageNet's by default); without, (x / 255 - 0.5) / 0.5, i.e. -1..1. The
  mean/std are persistent buffers, so a checkpoint carries its own normalisation.
* `Extras`: the country embedding (`country_dim > 0`) and the 6 drawing-level time features
  (`time_features`), concatenated to a family's pooled features before its classifier.
* `ClassifierHead`: "linear" (dropout -> linear) or "dense" (linear head_dim -> ReLU -> dropout ->
  linear, the 24th-place head).
* `load_pretrained`: a local state dict of ImageNet weights into a trunk (never downloaded),
  dropping the classifier, adapting 3-channel input convolutions to the model's channel count.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from doodle.errors import DoodleError
from doodle.preprocess import COUNTRY_VOCAB, TIME_FEATURES, InputConfig

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def channel_stats(values: tuple[float, ...], channels: int) -> list[float]:
    """Per-channel statistics for `channels` inputs from 3-channel (RGB) ones, matching how
    `adapt_input_conv` maps RGB weights: 1 channel takes the mean, more channels repeat RGB."""
    if channels == len(values):
        return list(values)
    if channels == 1:
        return [sum(values) / len(values)]
    return [values[c % len(values)] for c in range(channels)]


class ImageNormalizer(nn.Module):
    """uint8 [B, C, S, S] (or floats on the same 0..255 scale) -> float32 normalised images.

    `(x / 255 - mean) / std` per channel; mean = std = 0.5 for models trained from scratch, the
    pretrained weights' statistics (ImageNet by default) when weights are loaded.
    """

    def __init__(self, channels: int, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None):
        super().__init__()
        mean = channel_stats(tuple(mean), channels) if mean is not None else [0.5] * channels
        std = channel_stats(tuple(std), channels) if std is not None else [0.5] * channels
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image.float() / 255.0 - self.mean) / self.std


def check_extras(config, inputs: InputConfig) -> None:
    """Raise a DoodleError when the model wants extras the preprocessing will not produce."""
    if config.country_dim < 0:
        raise DoodleError(f"model.country_dim must be >= 0, got {config.country_dim}")
    if config.country_dim > 0 and not inputs.country:
        raise DoodleError("model.country_dim > 0 needs input.country = true (the country index)")
    if config.time_features and not inputs.time_features:
        raise DoodleError("model.time_features needs input.time_features = true")


class Extras(nn.Module):
    """Joins the country embedding and the time features to pooled features [B, D] -> [B, D + dim].

    Reads batch["country"] (int64 [B], `COUNTRY_VOCAB` indices, 0 = unknown) when `country_dim > 0`
    and batch["time_features"] (float32 [B, 6]) when `time_features`; with neither it is the identity.
    """

    def __init__(self, country_dim: int = 0, time_features: bool = False):
        super().__init__()
        self.country = nn.Embedding(COUNTRY_VOCAB, country_dim) if country_dim > 0 else None
        self.time_features = bool(time_features)
        self.dim = max(country_dim, 0) + (len(TIME_FEATURES) if time_features else 0)

    @classmethod
    def from_config(cls, config) -> Extras:
        return cls(config.country_dim, config.time_features)

    def forward(self, features: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [features]
        if self.country is not None:
            parts.append(self.country(batch["country"].long()))
        if self.time_features:
            parts.append(batch["time_features"].to(features.dtype))
        return torch.cat(parts, dim=1) if len(parts) > 1 else features


class ClassifierHead(nn.Module):
    """Pooled features [B, in_dim] -> logits [B, num_classes].

    linear: Dropout(dropout) -> Linear; dense: Linear(head_dim) -> ReLU -> Dropout(dropout) -> Linear.
    """

    def __init__(self, in_dim: int, num_classes: int, kind: str = "linear", head_dim: int = 1024,
                 dropout: float = 0.0):
        super().__init__()
        if kind == "linear":
            self.layers = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, num_classes))
        elif kind == "dense":
            if head_dim < 1:
                raise DoodleError(f"model.head_dim must be >= 1, got {head_dim}")
            self.layers = nn.Sequential(nn.Linear(in_dim, head_dim), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                        nn.Linear(head_dim, num_classes))
        else:
            raise DoodleError(f"unknown model.head {kind!r}; choose from dense, linear")
        self.kind = kind

    @classmethod
    def from_config(cls, config, in_dim: int, num_classes: int) -> ClassifierHead:
        return cls(in_dim, num_classes, config.head, config.head_dim, config.dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


# ---------------------------------------------------------------------------------------------
# Local pretrained weights


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a local weights file: a state dict, or a dict holding one under "state_dict"
    or "model" (a training checkpoint). A "module." prefix (DataParallel) is removed."""
    path = Path(path)
    if not path.is_file():
        raise DoodleError(f"pretrained weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle with code, a truncated file, not a torch file at all
        raise DoodleError(f"cannot read pretrained weights {path}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DoodleError(f"{path} holds no state dict (expected a dict of tensors, or one under "
                          "'state_dict' or 'model')")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def adapt_input_conv(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """Conv weights [O, 3, kh, kw] trained on RGB -> [O, channels, kh, kw].

    1 channel: the sum over RGB (a grey image gives the same response as the same grey in RGB);
    more channels: RGB repeated cyclically and scaled by 3 / channels, keeping the activation scale.
    """
    rgb = weight.shape[1]
    if channels == rgb:
        return weight
    dtype = weight.dtype
    weight = weight.float()
    if channels == 1:
        out = weight.sum(dim=1, keepdim=True)
    else:
        reps = -(-channels // rgb)
        out = weight.repeat(1, reps, 1, 1)[:, :channels] * (rgb / channels)
    return out.to(dtype)


def load_pretrained(module: nn.Module, path: str | Path, channels: int | None = None) -> dict[str, list[str]]:
    """Load the local weights at `path` into `module` (a trunk) with strict=False.

    Tensors whose shape does not fit are dropped (the 1000-class ImageNet classifier), except
    RGB input convolutions [O, 3, k, k] that differ only in input channels, which are adapted to
    `channels` with `adapt_input_conv`. Returns and logs the "missing", "unexpected", "skipped"
    (wrong shape) and "adapted" key lists. Raises DoodleError when nothing at all was loaded.
    """
    source = read_state_dict(path)
    target = module.state_dict()
    if not any(k in target for k in source) and any(k.startswith("trunk.") for k in source):
        source = {k[len("trunk."):]: v for k, v in source.items() if k.startswith("trunk.")}
    load: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    adapted: list[str] = []
    for key, value in source.items():
        if key not in target:
            continue
        want = target[key].shape
        if value.shape == want:
            load[key] = value
        elif (channels is not None and value.ndim == 4 and len(want) == 4 and want[1] == channels
              and value.shape[1] == 3 and value.shape[0] == want[0] and value.shape[2:] == want[2:]):
            load[key] = adapt_input_conv(value, channels)
            adapted.append(key)
        else:
            skipped.append(key)
    if not load:
        raise DoodleError(f"no tensor of {path} fits the {type(module).__name__} trunk (wrong architecture?)")
    result = module.load_state_dict(load, strict=False)
    report = {
        "missing": sorted(result.missing_keys),
        "unexpected": sorted(k for k in source if k not in target),
        "skipped": sorted(skipped),
        "adapted": sorted(adapted),
    }
    log.info("loaded %d of %d tensors from %s into %s", len(load), len(target), path, type(module).__name__)
    for what, keys in report.items():
        if keys:
            log.info("pretrained %s keys (%d): %s", what, len(keys), ", ".join(keys[:20])
                     + (" ..." if len(keys) > 20 else ""))
    return report


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
