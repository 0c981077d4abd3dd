"""Find the largest batch that fits in accelerator memory: doubling, then bisection.

    try_batch = make_try_batch(model, example_batch_fn, loss_fn, device)
    batch_size = find_batch_size(try_batch, start=32, limit=4096)

`find_batch_size` only needs a function `try_batch(n)` that runs one training step's worth of work
at batch n and raises on out-of-memory; it doubles n from `start` until a try fails (or `limit`
fits), then bisects between the last size that fitted and the first that did not. That is about
2 * log2(answer / start) tries, each cheap next to a training run.

The answer covers the forward and backward pass only: optimizer state (twice the parameters for
AdamW) and a data loader's pinned buffers come on top, so leave a margin (the training loop uses a
fraction of it, or a rounder number below it).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

OOM_MESSAGES = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")
"""Lower-case fragments of a RuntimeError message that mean the allocator gave up."""


class BatchOutOfMemory(RuntimeError):
    """A try at batch n ran out of memory (raised by `make_try_batch`'s function, without the
    original traceback, so the failed step's tensors can be freed)."""

    def __init__(self, n: int, detail: str = ""):
        super().__init__(f"out of memory at batch size {n}" + (f": {detail}" if detail else ""))
        self.n = n


def is_oom(err: BaseException) -> bool:
    """Whether an exception means out-of-memory: torch's OutOfMemoryError, MemoryError, or a
    RuntimeError whose message says so (CUDA, MPS, cuBLAS/cuDNN allocation failures)."""
    try:
        import torch

        oom_types: tuple[type[BaseException], ...] = (torch.cuda.OutOfMemoryError, MemoryError)
    except ImportError:  # pragma: no cover - torch is a dependency
        oom_types = (MemoryError,)
    if isinstance(err, oom_types):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err).lower() for m in OOM_MESSAGES)


def _fits(try_batch: Callable[[int], Any], n: int) -> bool:
    oom = False
    try:
        try_batch(n)
    except Exception as err:  # noqa: BLE001 - anything not OOM is re-raised
        if not is_oom(err):
            raise
        oom = True
        log.debug("batch %d: %s", n, err)
    # outside the except block: the exception and the frames it held are released
    log.info("batch size %d %s", n, "does not fit" if oom else "fits")
    return not oom


def find_batch_size(try_batch: Callable[[int], Any], start: int = 32, limit: int = 65536) -> int:
    """The largest n in 1..limit with `try_batch(n)` not running out of memory.

    Assumes fitting is monotone (n fits implies every smaller n fits). Doubles from `start`
    (capped at `limit`), then bisects. When `start` itself does not fit, bisects below it. Raises
    `MemoryError` when not even batch 1 fits; exceptions other than out-of-memory propagate.
    """
    if start < 1 or limit < 1:
        raise ValueError(f"start and limit must be positive, got start={start}, limit={limit}")
    start = min(start, limit)
    good, bad = 0, None  # largest size known to fit, smallest known not to
    n = start
    while True:
        if _fits(try_batch, n):
            good = n
            if n >= limit:
                return n
            n = min(2 * n, limit)
        else:
            bad = n
            break
    while bad - good > 1:
        mid = (good + bad) // 2
        if _fits(try_batch, mid):
            good = mid
        else:
            bad = mid
    if good == 0:
        raise MemoryError("not even a batch of 1 fits in memory")
    return good


def make_try_batch(model: Any, example_batch_fn: Callable[[int], tuple[Any, Any]],
                   loss_fn: Callable[[Any, Any], Any], device: Any, *,
                   amp_dtype: Any = None) -> Callable[[int], None]:
    """A `try_batch(n)` running one forward and backward pass of `model` at batch n on `device`.

    `example_batch_fn(n)` returns (inputs, targets): inputs a tensor or a dict of tensors/arrays (a
    `Preprocessor` batch), targets a tensor; both are moved to `device`. `loss_fn(outputs,
    targets)` gives the scalar loss. `amp_dtype` (e.g. torch.bfloat16) runs the forward pass under
    autocast, as training would. The model is put in training mode for the try and restored after;
    gradients are dropped after every try, the weights are never changed. After an out-of-memory
    error the CUDA cache is emptied and a `BatchOutOfMemory` is raised.
    """
    import torch

    device = torch.device(device)

    def to_device(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: to_device(v) for k, v in x.items()}
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x)
        return x.to(device, non_blocking=True)

    def step(n: int) -> None:
        inputs, targets = example_batch_fn(n)
        inputs, targets = to_device(inputs), to_device(targets)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outputs = model(inputs)
            loss = loss_fn(outputs, targets)
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def try_batch(n: int) -> None:
        was_training = model.training
        model.train()
        detail = None
        try:
            step(n)
        except Exception as err:  # noqa: BLE001
            if not is_oom(err):
                raise
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        finally:
            model.zero_grad(set_to_none=True)
            model.train(was_training)
        if detail is not None:
            # the failed step's frames are released once the except block is left
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            raise BatchOutOfMemory(n, detail)

    return try_batch
