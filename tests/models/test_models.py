"""Model families, generated from the registry, on real drawings; heads, extras, trunks, weights.

Every model runs single-threaded (2 shared cores) at tiny sizes: 32-px images, 8x8 learned
rasters, one small recurrent layer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_ndjson

from doodle.errors import DoodleError
from doodle.models import ModelConfig, create_model, get_family, list_models
from doodle.models.heads import IMAGENET_MEAN, ImageNormalizer, adapt_input_conv
from doodle.models.learned_raster import SUPPORTED_ARCHS, scatter_mean
from doodle.preprocess import InputConfig, Preprocessor
from doodle.render import get_encoding

FAMILIES = [f.name for f in list_models()]

SMALL: dict[str, dict] = {
    "cnn": dict(arch="resnet18"),
    "sequence": dict(conv_channels=[16, 32], conv_kernels=[5, 3], rnn_hidden=32, rnn_layers=1),
    "learned-raster": dict(arch="resnet18", raster_grid=8, raster_features=16, raster_dilations=[1, 2]),
}
"""Small settings per family; a family registered without an entry here fails the tests below."""

SMALL_INPUT = dict(size=32, max_points=64)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 cores shared with other test runs: oversubscription is far slower
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def labelled(quickdraw: Path):
    """16 cats and 16 dogs, each half raw (timed) and half simplified, with labels 0/1."""
    drawings, labels = [], []
    for label, word in enumerate(["cat", "dog"]):
        for kind in ("raw", "simplified"):
            got = load_ndjson(quickdraw / kind / f"{word}.ndjson", limit=8)
            assert len(got) == 8
            drawings += got
            labels += [label] * 8
    return drawings, torch.tensor(labels)


def small_model(family: str, num_classes: int = 2, inputs: InputConfig | None = None, **overrides):
    if family not in SMALL:
        pytest.fail(f"family {family!r} is registered but has no small test settings in SMALL")
    config = ModelConfig(family=family, **{**SMALL[family], **overrides})
    inputs = inputs or InputConfig(**SMALL_INPUT)
    return create_model(config, inputs, num_classes), inputs


def make_batch(drawings, inputs: InputConfig, kind: str) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in Preprocessor(inputs, kind)(drawings).items()}


# ---------------------------------------------------------------------------------------------
# Every registered family


def test_registry_lists_the_three_families():
    assert {"cnn", "sequence", "learned-raster"} <= set(FAMILIES)
    assert get_family("cnn").input_kind == "image"
    assert get_family("sequence").input_kind == "sequence"
    assert get_family("learned-raster").input_kind == "sequence"


@pytest.mark.parametrize("family", FAMILIES)
def test_family_runs_on_real_drawings_and_learns(family, labelled):
    drawings, labels = labelled
    model, inputs = small_model(family)
    assert model.input_kind == get_family(family).input_kind and model.num_classes == 2
    batch = make_batch(drawings, inputs, model.input_kind)

    model.eval()
    with torch.no_grad():
        logits = model(batch)
    assert logits.shape == (32, 2) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()

    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(batch), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], f"{family} did not learn: {[round(x, 3) for x in losses]}"


@pytest.mark.parametrize("family", FAMILIES)
def test_country_and_time_extras_reach_the_classifier(family, labelled):
    drawings, labels = labelled
    inputs = InputConfig(**SMALL_INPUT, country=True, time_features=True)
    model, _ = small_model(family, inputs=inputs, country_dim=4, time_features=True)
    batch = make_batch(drawings, inputs, model.input_kind)
    assert batch["country"].shape == (32,) and batch["time_features"].shape == (32, 6)
    assert (batch["country"] > 0).any(), "real drawings carry country codes"

    loss = torch.nn.functional.cross_entropy(model(batch), labels)
    loss.backward()
    grad = model.extras.country.weight.grad
    used = torch.zeros(grad.shape[0], dtype=torch.bool)
    used[batch["country"]] = True
    assert grad[used].abs().sum(1).gt(0).all(), "every country in the batch gets a gradient"
    assert grad[~used].abs().sum() == 0

    model.eval()
    with torch.no_grad():
        before = model(batch)
        shifted = dict(batch, time_features=batch["time_features"] + 1.0)
        assert not torch.allclose(before, model(shifted)), "time features change the logits"
        other = dict(batch, country=(batch["country"] + 1) % 677)
        assert not torch.allclose(before, model(other)), "the country changes the logits"


@pytest.mark.parametrize("family", FAMILIES)
def test_extras_without_the_matching_input_raise(family):
    with pytest.raises(DoodleError, match="input.country"):
        small_model(family, country_dim=4)
    with pytest.raises(DoodleError, match="input.time_features"):
        small_model(family, time_features=True)


@pytest.mark.parametrize("family", ["sequence", "learned-raster"])
def test_sequence_models_ignore_padded_points(family, labelled):
    drawings, _ = labelled
    inputs = InputConfig(max_points=160)
    model, _ = small_model(family, inputs=inputs)
    model.eval()
    batch = make_batch(drawings[6:12], inputs, "sequence")  # raw (long) and simplified (short) cats
    assert (batch["lengths"] < inputs.max_points).sum() >= 3
    noisy = dict(batch, points=batch["points"].clone())
    pad = ~(torch.arange(inputs.max_points)[None, :] < batch["lengths"][:, None])
    noisy["points"][pad] = torch.rand(int(pad.sum()), 6) * 3
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(noisy))
        if family == "learned-raster":  # the raster itself, not only the (small) effect on logits
            torch.testing.assert_close(model.raster(batch), model.raster(noisy))


# ---------------------------------------------------------------------------------------------
# CNN trunks, heads, normalisation


def random_images(channels: int, n: int = 2, size: int = 32) -> dict[str, torch.Tensor]:
    return {"image": torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8)}


@pytest.mark.parametrize("encoding", ["grey", "order-speed-accel"])
@pytest.mark.parametrize("arch", ["resnet18", "mobilenetv2_100", "seresnext26d_32x4d"])
def test_timm_archs_build_by_name(arch, encoding):
    channels = get_encoding(encoding).channels
    model, _ = small_model("cnn", num_classes=5, inputs=InputConfig(encoding=encoding, size=32), arch=arch)
    first = next(m for m in model.trunk.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == channels
    model.eval()
    with torch.no_grad():
        assert model(random_images(channels)).shape == (2, 5)


def test_torchvision_only_arch_through_the_fallback():
    import timm
    import torchvision

    assert not timm.is_model("shufflenet_v2_x0_5")
    grey = InputConfig(encoding="grey", size=32)
    model, _ = small_model("cnn", num_classes=3, inputs=grey, arch="shufflenet_v2_x0_5")
    assert isinstance(model.trunk, torchvision.models.ShuffleNetV2)
    assert isinstance(model.trunk.fc, torch.nn.Identity), "the ImageNet classifier is stripped"
    assert model.trunk.conv1[0].in_channels == 1
    assert model.head.layers[-1].in_features == 1024  # shufflenet's pooled width
    model.eval()
    with torch.no_grad():
        assert model(random_images(1)).shape == (2, 3)


def test_stem_pool_and_trunk_kwargs_change_the_trunk():
    # Dropping the stem max-pool doubles the last feature map's side; trunk_kwargs reach timm.
    def last_map(model) -> tuple[int, ...]:
        with torch.no_grad():
            return tuple(model.trunk.forward_features(torch.zeros(1, 3, 64, 64)).shape[-2:])

    inputs = InputConfig(encoding="order-speed-accel", size=64)
    pooled, _ = small_model("cnn", inputs=inputs, arch="resnet18")
    unpooled, _ = small_model("cnn", inputs=inputs, arch="resnet18", stem_pool=False)
    dilated, _ = small_model("cnn", inputs=inputs, arch="resnet18", trunk_kwargs={"output_stride": 16})
    assert last_map(pooled) == (2, 2)
    assert last_map(unpooled) == (4, 4)
    assert last_map(dilated) == (4, 4)
    with pytest.raises(DoodleError, match="has no stem max-pool"):
        small_model("cnn", arch="mobilenetv2_100", stem_pool=False)
    with pytest.raises(DoodleError, match=r"trunk_kwargs \{'bogus': 1\} for 'resnet18'"):
        small_model("cnn", arch="resnet18", trunk_kwargs={"bogus": 1})
    with pytest.raises(DoodleError, match="only timm architectures take them"):
        small_model("cnn", arch="shufflenet_v2_x0_5", trunk_kwargs={"drop_path_rate": 0.1})


def test_unknown_arch_raises_with_suggestions():
    with pytest.raises(DoodleError, match="unknown architecture 'resnet181'.*resnet18"):
        small_model("cnn", arch="resnet181")


def test_dense_head_has_a_1024_wide_layer():
    model, _ = small_model("cnn", num_classes=7, head="dense", dropout=0.3)
    linears = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 1024), (1024, 7)]
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.3 for m in model.head.modules())
    model.eval()
    with torch.no_grad():
        assert model(random_images(3)).shape == (2, 7)
    linear, _ = small_model("cnn", num_classes=7)
    assert [m.out_features for m in linear.head.modules() if isinstance(m, torch.nn.Linear)] == [7]
    with pytest.raises(DoodleError, match="dense, linear"):
        small_model("cnn", head="mlp")


def test_images_are_normalised_inside_the_model():
    scratch = ImageNormalizer(3)
    out = scratch(torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(1, 3, 1, 2))
    torch.testing.assert_close(out[0, :, 0, 0], torch.full((3,), -1.0))
    torch.testing.assert_close(out[0, :, 0, 1], torch.full((3,), 1.0))
    model, _ = small_model("cnn")
    model.eval()
    images = random_images(3)
    with torch.no_grad():
        torch.testing.assert_close(model(images), model({"image": images["image"].float()}))


# ---------------------------------------------------------------------------------------------
# Local pretrained weights


@pytest.fixture
def imagenet_like(tmp_path):
    """A timm resnet18 state dict with a 1000-class classifier, saved as a training checkpoint."""
    import timm

    source = timm.create_model("resnet18", pretrained=False, num_classes=1000)
    path = tmp_path / "resnet18_imagenet.pth"
    torch.save({"state_dict": source.state_dict(), "epoch": 90}, path)
    return source, path


@pytest.mark.parametrize("encoding", ["order-speed-accel", "grey"])
def test_pretrained_trunk_loads_from_a_local_file(imagenet_like, encoding, caplog):
    source, path = imagenet_like
    with caplog.at_level(logging.INFO, logger="doodle.models.heads"):
        model, _ = small_model("cnn", inputs=InputConfig(encoding=encoding, size=32), pretrained_path=str(path))
    assert "unexpected" in caplog.text and "fc.weight" in caplog.text
    src = source.state_dict()
    for key, value in model.trunk.state_dict().items():
        if key == "conv1.weight" and encoding == "grey":
            torch.testing.assert_close(value, src[key].sum(1, keepdim=True))
        else:
            torch.testing.assert_close(value, src[key], msg=key)
    mean = model.normalizer.mean.flatten()
    expected = [sum(IMAGENET_MEAN) / 3] if encoding == "grey" else list(IMAGENET_MEAN)
    torch.testing.assert_close(mean, torch.tensor(expected))
    assert "normalizer.mean" in model.state_dict(), "checkpoints carry their normalisation"
    scratch, _ = small_model("cnn", inputs=InputConfig(encoding=encoding, size=32))
    assert not torch.equal(scratch.trunk.layer1[0].conv1.weight, src["layer1.0.conv1.weight"])


def test_adapted_first_conv_keeps_the_response_to_grey_images():
    weight = torch.randn(8, 3, 3, 3)
    for channels in (1, 6):  # a constant (grey) image gets exactly the RGB response
        adapted = adapt_input_conv(weight, channels)
        assert adapted.shape == (8, channels, 3, 3)
        torch.testing.assert_close(adapted.sum(1), weight.sum(1))
    five = adapt_input_conv(weight, 5)  # RGB repeated (r, g, b, r, g), scaled by 3 / 5
    torch.testing.assert_close(five, torch.cat([weight, weight[:, :2]], 1) * 0.6)
    torch.testing.assert_close(adapt_input_conv(weight, 3), weight)


def test_learned_raster_loads_pretrained_stages(imagenet_like):
    source, path = imagenet_like
    model, _ = small_model("learned-raster", pretrained_path=str(path))
    torch.testing.assert_close(model.trunk.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert isinstance(model.trunk.conv1, torch.nn.Identity)


def test_missing_or_foreign_weights_raise(tmp_path):
    missing = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(DoodleError, match=str(missing)):
        small_model("cnn", pretrained_path=str(missing))
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, foreign)
    with pytest.raises(DoodleError, match="no tensor"):
        small_model("cnn", pretrained_path=str(foreign))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(DoodleError, match="cannot read"):
        small_model("cnn", pretrained_path=str(junk))


# ---------------------------------------------------------------------------------------------
# Learned rasterisation


def test_scatter_averages_collisions_and_ignores_padding():
    features = torch.tensor([[[1.0, 3.0, 5.0, 100.0], [2.0, -4.0, 7.0, 100.0]],
                             [[9.0, 9.0, 9.0, 9.0], [9.0, 9.0, 9.0, 9.0]]])  # [B=2, F=2, T=4]
    xy = torch.tensor([[[0.10, 0.10], [0.20, 0.15], [0.90, 0.60], [0.10, 0.10]],
                       [[1.00, 1.00], [0.0, 0.0], [0.5, 0.5], [0.5, 0.5]]])
    lengths = torch.tensor([3, 1])
    grid = scatter_mean(features, xy, lengths, 4)
    assert grid.shape == (2, 2, 4, 4)
    expected = torch.zeros(2, 2, 4, 4)
    expected[0, :, 0, 0] = torch.tensor([2.0, -1.0])  # points 0 and 1 share cell (0, 0): averaged
    expected[0, :, 2, 3] = torch.tensor([5.0, 7.0])  # x = 0.9 -> column 3, y = 0.6 -> row 2
    expected[1, :, 3, 3] = 9.0  # x = y = 1.0 is clipped into the last cell; the rest is padding
    torch.testing.assert_close(grid, expected)
    empty = scatter_mean(features, xy, torch.tensor([0, 0]), 4)
    assert empty.abs().sum() == 0


def test_unknown_family_and_unsupported_raster_arch_raise():
    with pytest.raises(DoodleError, match="cnn, learned-raster, sequence"):
        create_model(ModelConfig(family="transformer"), InputConfig(), 3)
    with pytest.raises(DoodleError, match="mobilenetv2_100.*resnet18.*seresnext50_32x4d"):
        small_model("learned-raster", arch="mobilenetv2_100")
    assert {"resnet18", "resnet34", "resnet50", "seresnext50_32x4d"} <= set(SUPPORTED_ARCHS)
