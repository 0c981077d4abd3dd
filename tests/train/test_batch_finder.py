"""find_batch_size with fake memory limits, and make_try_batch on a tiny real model (CPU)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from doodle.train.batch_finder import BatchOutOfMemory, find_batch_size, is_oom, make_try_batch


class FakeMemory:
    """try_batch that runs out of memory above `threshold`, recording every size tried."""

    def __init__(self, threshold: int, error: type[BaseException] | BaseException = torch.cuda.OutOfMemoryError):
        self.threshold = threshold
        self.error = error
        self.calls: list[int] = []

    def __call__(self, n: int) -> None:
        self.calls.append(n)
        if n > self.threshold:
            raise self.error if isinstance(self.error, BaseException) else self.error("CUDA out of memory.")


@pytest.mark.parametrize("threshold", [1, 5, 31, 32, 33, 100, 127, 128, 129, 1000, 4095, 4096, 50_000, 65_535])
def test_exact_answer_in_logarithmic_calls(threshold):
    fake = FakeMemory(threshold)
    assert find_batch_size(fake, start=32, limit=65536) == threshold
    bound = 2 * math.ceil(math.log2(65536)) + 2
    assert len(fake.calls) <= bound
    assert len(set(fake.calls)) == len(fake.calls)  # never the same size twice


def test_limit_caps_the_search():
    fake = FakeMemory(10**9)
    assert find_batch_size(fake, start=32, limit=1000) == 1000
    assert fake.calls == [32, 64, 128, 256, 512, 1000]
    assert find_batch_size(FakeMemory(10**9), start=4096, limit=1000) == 1000
    assert find_batch_size(FakeMemory(700), start=32, limit=1000) == 700


def test_start_too_large_bisects_below_it():
    fake = FakeMemory(20)
    assert find_batch_size(fake, start=256) == 20
    assert fake.calls[0] == 256 and len(fake.calls) <= 10


@pytest.mark.parametrize("error", [
    MemoryError(),
    RuntimeError("CUDA error: out of memory"),
    RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    BatchOutOfMemory(64, "boom"),
])
def test_every_kind_of_oom_is_caught(error):
    assert is_oom(error)
    assert find_batch_size(FakeMemory(77, error)) == 77


def test_other_errors_propagate():
    fake = FakeMemory(77, RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    with pytest.raises(RuntimeError, match="shapes"):
        find_batch_size(fake)
    with pytest.raises(ValueError, match="boom"):
        find_batch_size(FakeMemory(10, ValueError("boom")))
    assert not is_oom(KeyError("out of memory"))  # only RuntimeErrors are read


def test_nothing_fits():
    with pytest.raises(MemoryError, match="batch of 1"):
        find_batch_size(FakeMemory(0))
    with pytest.raises(ValueError):
        find_batch_size(FakeMemory(10), start=0)


class TinyNet(nn.Module):
    def __init__(self, classes: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4, classes)

    def forward(self, batch):
        x = batch["image"].float() / 255.0
        return self.fc(self.conv(x).relu().mean((2, 3)))


def test_real_model_on_cpu_with_an_emulated_limit():
    torch.manual_seed(0)
    model = TinyNet().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen: list[int] = []

    def example_batch(n):
        seen.append(n)
        images = torch.randint(0, 256, (n, 1, 16, 16), dtype=torch.uint8)
        return {"image": images}, torch.randint(0, 5, (n,))

    modes: list[bool] = []
    model.register_forward_hook(lambda module, args, out: modes.append(module.training))
    real = make_try_batch(model, example_batch, nn.functional.cross_entropy, "cpu")

    def limited(n):  # a memory limit of 200 drawings, as an allocator would raise it
        if n > 200:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        real(n)
        assert modes[-1]  # the try ran in training mode
        assert all(p.grad is None for p in model.parameters())  # gradients dropped after the try

    assert find_batch_size(limited, start=16, limit=1024) == 200
    assert seen and max(seen) == 200
    assert not model.training  # mode restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights untouched


def test_make_try_batch_turns_oom_into_batch_out_of_memory():
    model = TinyNet()

    def loss_fn(outputs, targets):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")

    try_batch = make_try_batch(model, lambda n: ({"image": torch.zeros(n, 1, 8, 8)}, torch.zeros(n, dtype=torch.long)),
                               loss_fn, torch.device("cpu"))
    with pytest.raises(BatchOutOfMemory, match="batch size 8: CUDA out of memory") as info:
        try_batch(8)
    assert info.value.n == 8 and info.value.__context__ is None

    bad = make_try_batch(model, lambda n: ({"image": torch.zeros(n, 1, 8, 8)}, torch.zeros(n, dtype=torch.long)),
                         lambda out, y: out.sum() + y.float().mean() + torch.ones(3), "cpu")
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        bad(4)  # not an OOM: propagates unchanged
