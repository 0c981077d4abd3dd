"""MaskedBatchNorm1d against nn.BatchNorm1d run on the real steps alone, and the stroke models that
use it: statistics, running estimates, independence from padding, state_dict keys and ONNX export.

Everything runs single-threaded on small synthetic tensors and drawings (no shared data).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from doodle.data.drawing import Drawing
from doodle.errors import DoodleError
from doodle.models import ModelConfig, create_model
from doodle.models.masked_norm import MaskedBatchNorm1d, masked_moments
from doodle.models.sequence import PointConvs, valid_mask
from doodle.preprocess import InputConfig, sequence_features

LENGTHS = torch.tensor([12, 7, 1, 3])
"""Real steps per sequence: one full, one nearly empty, all different."""


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: oversubscription is far slower
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


def padded_batch(lengths: torch.Tensor, steps: int, channels: int = 5, pad_value: float = 0.0, seed: int = 0):
    """(x [B, C, steps], mask [B, steps]): the same real values for any `steps`, padding set to pad_value."""
    gen = torch.Generator().manual_seed(seed)
    real = torch.randn(len(lengths), channels, int(lengths.max()), generator=gen) * 3 + 2
    x = torch.full((len(lengths), channels, steps), pad_value)
    x[..., : real.shape[2]] = real
    mask = valid_mask(lengths, steps)
    x[~mask.unsqueeze(1).expand_as(x)] = pad_value
    return x, mask


def gathered(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The real steps of x [B, C, T] as rows [N, C] (the input a plain BatchNorm1d sees)."""
    return x.transpose(1, 2)[mask]


def pair(momentum: float | None = 0.1) -> tuple[MaskedBatchNorm1d, nn.BatchNorm1d]:
    """A masked and a plain layer with the same (non-trivial) affine parameters."""
    ours, ref = MaskedBatchNorm1d(5, momentum=momentum), nn.BatchNorm1d(5, momentum=momentum)
    with torch.no_grad():
        ours.weight.copy_(torch.linspace(0.5, 2.0, 5))
        ours.bias.copy_(torch.linspace(-1.0, 1.0, 5))
    ref.load_state_dict(ours.state_dict())
    return ours, ref


# ---------------------------------------------------------------------------------------------
# The layer


def test_training_output_is_batchnorm_over_the_real_steps_only():
    ours, ref = pair()
    x, mask = padded_batch(LENGTHS, 16, pad_value=50.0)
    x.requires_grad_(True)
    out = ours(x, mask)
    expected = ref(gathered(x.detach(), mask))
    torch.testing.assert_close(gathered(out, mask), expected)
    assert (out.transpose(1, 2)[~mask] == 0).all(), "padded steps come out as zero"

    # the gradients of the affine parameters match too (the moments are differentiated through)
    probe = torch.randn_like(expected)
    (gathered(out, mask) * probe).sum().backward()
    (expected * probe).sum().backward()
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad)
    torch.testing.assert_close(ours.bias.grad, ref.bias.grad)


def test_masked_moments_known_answer():
    x = torch.tensor([[[1.0, 3.0, 99.0]], [[5.0, 99.0, 99.0]]])  # [2, 1, 3]; 99 is padding
    mean, var, count = masked_moments(x, valid_mask(torch.tensor([2, 1]), 3))
    assert count.item() == 3
    torch.testing.assert_close(mean, torch.tensor([3.0]))
    torch.testing.assert_close(var, torch.tensor([8.0 / 3.0]))  # ((1-3)^2 + 0 + (5-3)^2) / 3


def real_outputs(norm: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Training-mode outputs at the real steps, from a fresh copy of `norm`."""
    norm = copy.deepcopy(norm).train()
    out = norm(x, mask) if isinstance(norm, MaskedBatchNorm1d) else norm(x)
    return gathered(out, mask)


def test_real_outputs_ignore_padding_values_and_amount():
    ours, plain = pair()
    base = padded_batch(LENGTHS, 16)
    variants = [padded_batch(LENGTHS, 16, pad_value=-7.5), padded_batch(LENGTHS, 64)]
    for x, mask in variants:
        torch.testing.assert_close(real_outputs(ours, x, mask), real_outputs(ours, *base))
        # the same check fails for the plain layer: the premise of the masked one
        assert not torch.allclose(real_outputs(plain, x, mask), real_outputs(plain, *base), atol=1e-3)


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_running_estimates_follow_batchnorm_fed_the_real_steps(momentum):
    ours, ref = pair(momentum)
    for seed, steps in enumerate([16, 40, 12]):
        x, mask = padded_batch(LENGTHS.roll(seed), steps, pad_value=float(seed + 3), seed=seed)
        ours(x, mask)
        ref(gathered(x, mask))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), msg=name)
    assert ours.num_batches_tracked.item() == 3

    # evaluation: the running estimates, the plain layer's map, padding still zero
    ours.eval(), ref.eval()
    x, mask = padded_batch(LENGTHS, 20, pad_value=9.0, seed=7)
    out = ours(x, mask)
    torch.testing.assert_close(gathered(out, mask), ref(gathered(x, mask)))
    assert (out.transpose(1, 2)[~mask] == 0).all()


def test_running_estimates_known_answer_and_a_single_point_batch_is_skipped():
    norm = MaskedBatchNorm1d(1, momentum=0.5, affine=False)
    x = torch.tensor([[[1.0, 3.0, 99.0]], [[5.0, 99.0, 99.0]]])
    norm(x, valid_mask(torch.tensor([2, 1]), 3))
    # mean 3, unbiased variance 8 / 2 = 4: halfway from (0, 1)
    torch.testing.assert_close(norm.running_mean, torch.tensor([1.5]))
    torch.testing.assert_close(norm.running_var, torch.tensor([2.5]))
    out = norm(x, valid_mask(torch.tensor([1, 0]), 3))  # one real value: no variance to learn from
    torch.testing.assert_close(norm.running_mean, torch.tensor([1.5]))
    torch.testing.assert_close(norm.running_var, torch.tensor([2.5]))
    assert norm.num_batches_tracked.item() == 1 and torch.isfinite(out).all()


def test_state_dict_is_batchnorm1d_s_and_loads_both_ways():
    ours, ref = pair()
    ours(*padded_batch(LENGTHS, 16))
    assert list(ours.state_dict()) == list(nn.BatchNorm1d(5).state_dict())
    ref.load_state_dict(ours.state_dict())
    back = MaskedBatchNorm1d(5)
    back.load_state_dict(ref.state_dict())
    for key, value in ours.state_dict().items():
        torch.testing.assert_close(back.state_dict()[key], value)


def test_without_a_mask_it_is_plain_batchnorm():
    ours, ref = pair()
    x, _ = padded_batch(LENGTHS, 16)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_var, ref.running_var)


def test_bfloat16_inputs_keep_their_dtype_and_float32_statistics():
    ours, _ = pair()
    x, mask = padded_batch(LENGTHS, 16)
    out = ours(x.bfloat16(), mask)
    assert out.dtype == torch.bfloat16 and ours.running_mean.dtype == torch.float32
    reference = pair()[0](x.bfloat16().float(), mask)
    torch.testing.assert_close(out.float(), reference, atol=0.05, rtol=0.02)


def test_mismatched_mask_raises():
    with pytest.raises(ValueError, match="mask"):
        MaskedBatchNorm1d(5)(torch.zeros(2, 5, 8), torch.ones(2, 7, dtype=torch.bool))


# ---------------------------------------------------------------------------------------------
# Point convolutions and the stroke models


def point_batch(steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Six point features [B, 6, steps] (the PointConvs input) with the same real steps for any `steps`."""
    return padded_batch(LENGTHS, steps, channels=6, pad_value=4.0)


def point_outputs(convs: PointConvs, steps: int) -> torch.Tensor:
    """The outputs of `convs` at the real steps of `point_batch(steps)`, as rows [N, C]."""
    x, mask = point_batch(steps)
    return gathered(convs(x, mask), mask)


@pytest.mark.parametrize("norm", ["masked", "batch"])
def test_point_convs_depend_on_padding_only_with_plain_batchnorm(norm):
    convs = PointConvs(6, [8, 8], [5, 3], [1, 2], norm=norm).train()
    short, long = point_outputs(convs, 16), point_outputs(convs, 48)
    if norm == "masked":
        torch.testing.assert_close(short, long)
    else:
        assert not torch.allclose(short, long, atol=1e-3)


def test_point_convs_keep_the_state_dict_keys_and_reject_unknown_norms():
    masked, plain = PointConvs(6, [8], [3], norm="masked"), PointConvs(6, [8], [3], norm="batch")
    assert list(masked.state_dict()) == list(plain.state_dict())
    assert "layers.0.1.running_mean" in masked.state_dict()
    with pytest.raises(DoodleError, match="batch, masked"):
        PointConvs(6, [8], [3], norm="layer")


def test_weights_of_plain_batchnorm_convs_give_the_same_evaluation_outputs():
    plain = PointConvs(6, [8, 8], [5, 3], norm="batch").train()
    plain(*point_batch(32))  # running estimates away from their initial (0, 1)
    masked = PointConvs(6, [8, 8], [5, 3], norm="masked")
    masked.load_state_dict(plain.state_dict())
    plain.eval(), masked.eval()
    x, mask = point_batch(24)
    with torch.no_grad():
        torch.testing.assert_close(masked(x, mask), plain(x, mask))


def test_point_convs_export_to_onnx_and_agree():
    import onnxruntime as ort

    convs = PointConvs(6, [8, 8], [5, 3], [1, 2])
    convs(*point_batch(32))  # running estimates away from their initial (0, 1)
    convs.eval()

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = convs

        def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return self.convs(x, valid_mask(lengths, x.shape[2]))

    x, _ = point_batch(32)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices (doodle.infer.export too)
        torch.onnx.export(Wrapped().eval(), (x, LENGTHS), buffer, dynamo=False, input_names=["x", "lengths"],
                          dynamic_axes={"x": {0: "batch"}, "lengths": {0: "batch"}}, opset_version=17)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy(), "lengths": LENGTHS.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, Wrapped()(x, LENGTHS).numpy(), atol=1e-5)


def synthetic_drawings(n: int = 6, seed: int = 0) -> list[Drawing]:
    """Random-walk doodles of 5 to 40 points in one to three strokes, half with timing."""
    rng = np.random.default_rng(seed)
    drawings = []
    for i in range(n):
        strokes = []
        for _ in range(rng.integers(1, 4)):
            k = int(rng.integers(2, 14))
            xy = np.cumsum(rng.normal(0, 12, (k, 2)), axis=0) + 128
            if i % 2:
                xy = np.column_stack([xy, np.cumsum(rng.integers(10, 80, k))])
            strokes.append(xy.astype(np.float64))
        drawings.append(Drawing(key_id=i, strokes=strokes))
    return drawings


def stroke_batch(drawings: list[Drawing], max_points: int) -> dict[str, torch.Tensor]:
    points, lengths = sequence_features(drawings, max_points)
    return {"points": torch.from_numpy(points), "lengths": torch.from_numpy(lengths)}


STROKE_MODELS = {
    "sequence": ModelConfig(family="sequence", conv_channels=[16, 16], conv_kernels=[5, 3], rnn_hidden=16,
                            rnn_layers=1),
    "learned-raster": ModelConfig(family="learned-raster", arch="resnet10t", raster_grid=8, raster_features=8,
                                  raster_dilations=[1, 2]),
}


@pytest.mark.parametrize("family", list(STROKE_MODELS))
def test_models_trained_at_either_padding_give_the_same_log_probs(family):
    drawings = synthetic_drawings()
    short, long = stroke_batch(drawings, 64), stroke_batch(drawings, 128)
    assert int(short["lengths"].max()) < 64 and torch.equal(short["lengths"], long["lengths"])
    first = create_model(STROKE_MODELS[family], InputConfig(max_points=128), 3)
    second = copy.deepcopy(first)

    # training-mode passes (which move the running estimates) at the two paddings
    first.train(), second.train()
    with torch.no_grad():
        for _ in range(3):
            trained_long, trained_short = first(long), second(short)
    torch.testing.assert_close(trained_long, trained_short, atol=1e-5, rtol=1e-4)
    norm_first = first.convs if family == "sequence" else first.points
    norm_second = second.convs if family == "sequence" else second.points
    torch.testing.assert_close(norm_first.layers[0][1].running_var, norm_second.layers[0][1].running_var)

    first.eval(), second.eval()
    with torch.no_grad():
        reference = torch.log_softmax(first(long), dim=1)
        for model, batch in ((first, short), (second, short), (second, long)):
            torch.testing.assert_close(torch.log_softmax(model(batch), dim=1), reference, atol=1e-5, rtol=1e-4)



@pytest.mark.parametrize("family", sorted(STROKE_MODELS))
def test_model_config_chooses_the_point_norm(family: str) -> None:
    config = STROKE_MODELS[family]
    masked = create_model(config, InputConfig(max_points=128), 3)
    plain = create_model(dataclasses.replace(config, point_norm="batch"), InputConfig(max_points=128), 3)
    assert {type(m) for m in masked.modules()} - {type(m) for m in plain.modules()} == {MaskedBatchNorm1d}
    assert not any(isinstance(m, MaskedBatchNorm1d) for m in plain.modules())
