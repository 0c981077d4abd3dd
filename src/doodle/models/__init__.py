"""Models: one registry (`create_model`), one file per family.

* `cnn`: any timm (or torchvision) classifier on rendered images, optional dense head;
* `sequence`: 1-D convolutions then a bidirectional LSTM/GRU over per-point features;
* `learned-raster` (8th place): per-point features scattered into a grid that feeds a CNN trunk.

Any family can join a country embedding and drawing-level time features before its classifier.
"""

from doodle.models.registry import ModelConfig, create_model, get_family, list_models, register_model

__all__ = ["ModelConfig", "create_model", "get_family", "list_models", "register_model"]
