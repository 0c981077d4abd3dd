"""Rendering: Quick, Draw! strokes to CNN-ready uint8 images, in every encoding top teams used.

* `render(drawings, encoding, size, ...)`: a batch straight to [B, C, size, size] uint8 (numba);
* `list_encodings()`, `get_encoding(name)`, `register_encoding(...)`: the encoding registry;
* `augment(drawing, config, rng)` and the single augmentations in `doodle.render.augment`;
* `save_gallery(...)`: a labelled PNG of drawings in one encoding, one tile per channel.
"""

from doodle.render.augment import AugmentConfig, augment, augment_batch
from doodle.render.registry import (
    Channels,
    Dots,
    Encoding,
    StrokeBatch,
    UnknownEncodingError,
    get_encoding,
    list_encodings,
    register_encoding,
)
from doodle.render.renderer import render

__all__ = [
    "AugmentConfig",
    "Channels",
    "Dots",
    "Encoding",
    "StrokeBatch",
    "UnknownEncodingError",
    "augment",
    "augment_batch",
    "get_encoding",
    "list_encodings",
    "register_encoding",
    "render",
    "save_gallery",
]


def __getattr__(name: str):  # matplotlib is only imported when a gallery is drawn
    if name == "save_gallery":
        from doodle.render.gallery import save_gallery

        return save_gallery
    raise AttributeError(f"module 'doodle.render' has no attribute {name!r}")
