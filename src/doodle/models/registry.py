"""One registry of model families, one `create_model` (the timm pattern).

A family is a function `build(config: ModelConfig, inputs: InputConfig, num_classes: int) ->
nn.Module`, registered with the kind of input it consumes ("image" or "sequence"). Every model
takes the batch dict of `doodle.preprocess.Preprocessor` (as tensors) and returns logits [B, K]:

    model = create_model(ModelConfig(family="cnn", arch="resnet18"), InputConfig(size=64), 15)
    logits = model({"image": uint8_images})

The model converts uint8 images to floats itself, so export and serving need no extra step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from doodle.errors import DoodleError
from doodle.preprocess import InputConfig, InputKind


@dataclass
class ModelConfig:
    """Which model to build and its shape."""

    family: str = "cnn"
    """Registered family (`doodle.models.list_models()`): cnn, sequence, learned-raster."""
    arch: str = "resnet18"
    """timm (or torchvision) architecture of the CNN trunk, e.g. resnet34, seresnext50_32x4d."""
    trunk_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for timm.create_model, e.g. {drop_path_rate: 0.1, output_stride: 16}."""
    stem_pool: bool = True
    """Keep the trunk's stem max-pool; False drops it (ResNet-style trunks): 4x the feature-map area,
    which small doodle images (64 px) need more than ImageNet photos do, for about 3x the compute."""
    pretrained_path: str | None = None
    """Local file of ImageNet weights for the trunk (never downloaded); None: random init."""
    head: Literal["linear", "dense"] = "linear"
    """linear: pooled features -> classes; dense: pool -> dense head_dim ReLU -> dropout -> classes."""
    head_dim: int = 1024
    """Width of the dense head."""
    dropout: float = 0.0
    """Dropout before the classifier."""
    country_dim: int = 0
    """Size of the country embedding joined before the classifier (0: off; needs input.country)."""
    time_features: bool = False
    """Join drawing-level time features before the classifier (needs input.time_features)."""
    conv_channels: list[int] = field(default_factory=lambda: [48, 64, 96])
    """sequence: filters of the 1-D convolutions."""
    conv_kernels: list[int] = field(default_factory=lambda: [5, 5, 3])
    """sequence: kernel sizes of the 1-D convolutions."""
    rnn: Literal["lstm", "gru"] = "lstm"
    """sequence: recurrent cell of the bidirectional layers."""
    rnn_hidden: int = 128
    """sequence: hidden units per direction."""
    rnn_layers: int = 3
    """sequence: stacked bidirectional layers."""
    raster_grid: int = 32
    """learned-raster: side of the grid the per-point features are scattered into."""
    raster_features: int = 64
    """learned-raster: features per point (channels of the grid)."""
    raster_dilations: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    """learned-raster: dilations of the per-point 1-D convolution stack."""
    point_norm: Literal["masked", "batch"] = "masked"
    """sequence, learned-raster: normalisation of the point convolutions, "masked" (statistics over
    real points only) or "batch" (plain BatchNorm1d, padding included: the older models' choice)."""


Builder = Callable[[ModelConfig, InputConfig, int], "object"]


@dataclass(frozen=True)
class Family:
    name: str
    input_kind: InputKind
    build: Builder
    doc: str


_FAMILIES: dict[str, Family] = {}


def register_model(name: str, input_kind: InputKind, doc: str = "") -> Callable[[Builder], Builder]:
    """Decorator registering a model family under `name`, declaring the input kind it consumes."""

    def decorate(build: Builder) -> Builder:
        if name in _FAMILIES:
            raise ValueError(f"model family {name!r} is registered twice")
        _FAMILIES[name] = Family(name, input_kind, build, doc or (build.__doc__ or "").strip().split("\n")[0])
        return build

    return decorate


def _load_builtins() -> None:
    # Importing the family modules registers them.
    from doodle.models import cnn, learned_raster, sequence  # noqa: F401


def list_models() -> list[Family]:
    """Every registered family, by name."""
    _load_builtins()
    return [_FAMILIES[k] for k in sorted(_FAMILIES)]


def get_family(name: str) -> Family:
    _load_builtins()
    if name not in _FAMILIES:
        raise DoodleError(f"unknown model family {name!r}; choose from {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def create_model(config: ModelConfig, inputs: InputConfig, num_classes: int):
    """Build the model of `config.family`; it carries `.input_kind` and `.num_classes`."""
    family = get_family(config.family)
    model = family.build(config, inputs, num_classes)
    model.input_kind = family.input_kind
    model.num_classes = num_classes
    return model
