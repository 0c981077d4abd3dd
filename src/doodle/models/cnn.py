"""`cnn` family: any timm (or torchvision) classifier trunk on rendered images.

The trunk is `timm.create_model(arch, pretrained=False, num_classes=0, in_chans=C)` with C the
channel count of `input.encoding`; names timm does not know are looked up in torchvision.models,
whose first RGB convolution is rebuilt for C channels and whose last linear layer (the classifier)
is replaced by the identity. Pooled trunk features (+ country/time extras) go through a "linear" or
"dense" head (`doodle.models.heads`).

Input: batch["image"], uint8 [B, C, S, S] (or floats on the same 0..255 scale), normalised inside
the model: (x / 255 - 0.5) / 0.5 from scratch, the weights' mean/std (ImageNet) when
`pretrained_path` is set. The model's `trunk` attribute is the backbone (freeze it for a warm-up).
"""

from __future__ import annotations

import difflib
import logging

import timm
import torch
from torch import nn

from doodle.errors import DoodleError
from doodle.models.heads import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClassifierHead,
    Extras,
    ImageNormalizer,
    check_extras,
    load_pretrained,
)
from doodle.models.registry import ModelConfig, register_model
from doodle.preprocess import InputConfig

log = logging.getLogger(__name__)

_TV_EXTRA_KWARGS = {"googlenet": {"aux_logits": False, "init_weights": True},
                    "inception_v3": {"aux_logits": False, "init_weights": True}}


def _replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _torchvision_names() -> list[str]:
    import torchvision

    return list(torchvision.models.list_models(module=torchvision.models))


def torchvision_trunk(arch: str, channels: int) -> tuple[nn.Module, int]:
    """A torchvision classifier without its classifier, for `channels` input channels:
    returns (trunk producing [B, features], features)."""
    import torchvision

    model = torchvision.models.get_model(arch, weights=None, **_TV_EXTRA_KWARGS.get(arch, {}))
    if channels != 3:
        first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.in_channels == 3),
                     None)
        if first is None:
            raise DoodleError(f"torchvision model {arch!r} has no RGB input convolution to adapt to "
                              f"{channels} channels")
        name, conv = first
        _replace_module(model, name, nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride,
                                               conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                                               conv.padding_mode))
    last = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise DoodleError(f"torchvision model {arch!r} has no linear classifier to strip; use a timm architecture")
    name, linear = last[-1]
    _replace_module(model, name, nn.Identity())
    return model, linear.in_features


def create_trunk(arch: str, channels: int, size: int | None = None, kwargs: dict | None = None
                 ) -> tuple[nn.Module, int, dict]:
    """(trunk, pooled feature width, pretrained_cfg) for a timm or torchvision architecture name;
    `kwargs` go to timm.create_model (timm architectures only)."""
    kwargs = dict(kwargs or {})
    if timm.is_model(arch):
        try:
            trunk = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=channels, **kwargs)
            if size is not None and trunk.pretrained_cfg.get("fixed_input_size"):
                trunk = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=channels, img_size=size,
                                          **kwargs)
        except TypeError as err:  # an argument the architecture does not take
            raise DoodleError(f"model.trunk_kwargs {kwargs} for {arch!r}: {err}") from None
        return trunk, int(trunk.num_features), dict(trunk.pretrained_cfg)
    tv_names = _torchvision_names()
    if arch in tv_names and kwargs:
        raise DoodleError(f"model.trunk_kwargs {kwargs}: only timm architectures take them, {arch!r} is torchvision")
    if arch in tv_names:
        trunk, features = torchvision_trunk(arch, channels)
        return trunk, features, {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    close = difflib.get_close_matches(arch, timm.list_models() + tv_names, n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else " (see timm.list_models())"
    raise DoodleError(f"unknown architecture {arch!r}: neither timm nor torchvision has it{hint}")


def drop_stem_pool(trunk: nn.Module, arch: str) -> None:
    """Replace the stem's max-pool by the identity (ResNet-style trunks name it `maxpool`)."""
    if not isinstance(getattr(trunk, "maxpool", None), nn.MaxPool2d):
        raise DoodleError(f"model.stem_pool=false: {arch!r} has no stem max-pool named `maxpool` to drop "
                          "(ResNet-style trunks have one)")
    trunk.maxpool = nn.Identity()


class CNNClassifier(nn.Module):
    """normaliser -> trunk (pooled features) -> extras -> head."""

    def __init__(self, normalizer: ImageNormalizer, trunk: nn.Module, features: int, extras: Extras,
                 head: ClassifierHead):
        super().__init__()
        self.normalizer = normalizer
        self.trunk = trunk
        self.features = features
        self.extras = extras
        self.head = head

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        features = self.trunk(self.normalizer(batch["image"]))
        return self.head(self.extras(features, batch))


@register_model("cnn", "image", "Any timm/torchvision CNN on rendered images, linear or dense (1024) head.")
def build_cnn(config: ModelConfig, inputs: InputConfig, num_classes: int) -> CNNClassifier:
    """Any timm/torchvision CNN on rendered images, linear or dense head."""
    from doodle.render import get_encoding

    check_extras(config, inputs)
    channels = get_encoding(inputs.encoding).channels
    trunk, features, cfg = create_trunk(config.arch, channels, inputs.size, config.trunk_kwargs)
    if not config.stem_pool:
        drop_stem_pool(trunk, config.arch)
    if config.pretrained_path:
        load_pretrained(trunk, config.pretrained_path, channels)
        normalizer = ImageNormalizer(channels, cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD))
    else:
        normalizer = ImageNormalizer(channels)
    extras = Extras.from_config(config)
    head = ClassifierHead.from_config(config, features + extras.dim, num_classes)
    return CNNClassifier(normalizer, trunk, features, extras, head)
