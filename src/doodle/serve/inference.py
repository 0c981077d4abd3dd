"""Inference for the server: posted strokes -> the training preprocessing -> the model -> guesses.

Two backends behind one interface (`Engine`): ONNX Runtime (the default: an export folder, or a run
exported at start-up) and eager PyTorch (the checkpoint itself, for comparison in benchmarks). Both
use `doodle.preprocess.Preprocessor` built from the model's own `InputConfig`, the object training
and `doodle predict` use, so a drawing posted over HTTP becomes exactly the array the model saw.

Posted strokes are raw canvas strokes of any scale, `[[x...], [y...], ([t...])]` each, as in
Quick, Draw!'s raw files. A model trained with `input.simplify` first gets Google's simplification
(align, scale to 0..255, resample, RDP), which uses x and y only, so it is applied with or without
t; posting a raw drawing's strokes therefore gives exactly `doodle predict` on the raw file.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from doodle.data.drawing import BadRecord, Drawing, Limits, strokes_from_json
from doodle.errors import DoodleError

log = logging.getLogger(__name__)


class InputError(DoodleError):
    """A posted drawing that cannot be turned into model input (the server answers 422)."""


@dataclass
class Guess:
    """One class and its probability."""

    word: str
    """The class name."""
    probability: float
    """Softmax probability, 0..1."""


def to_drawing(strokes: Any, limits: Limits) -> Drawing:
    """Validate posted strokes (lists of x, y[, t] lists) into a `Drawing`, or raise InputError
    naming the problem (ragged lists, mixed timed/untimed strokes, non-finite or absurd values,
    too many strokes or points)."""
    try:
        return Drawing(key_id=0, strokes=strokes_from_json(strokes, limits))
    except BadRecord as err:
        raise InputError(str(err)) from None


class Engine:
    """A loaded model with its preprocessing; `log_probs` is safe to call from several threads."""

    backend = "?"

    def __init__(self, preprocessor: Any, classes: Sequence[str], description: dict[str, Any]):
        self.preprocessor = preprocessor
        self.classes = list(classes)
        self.description = description

    def prepare(self, drawings: Sequence[Drawing]) -> dict[str, np.ndarray]:
        """The model input for `drawings` (see the module docstring for simplification)."""
        if self.preprocessor.config.simplify:
            from doodle.data.simplify import simplify

            # the Preprocessor simplifies timed drawings itself; untimed canvas strokes need it too
            drawings = [d if d.has_time else simplify(d) for d in drawings]
        try:
            return self.preprocessor(drawings)
        except (ValueError, IndexError) as err:  # defensive: validated input should never get here
            raise InputError(f"cannot preprocess the drawing: {err}") from None

    def log_probs(self, drawings: Sequence[Drawing]) -> np.ndarray:
        """float32 [B, K] log-probabilities."""
        raise NotImplementedError

    def guesses(self, drawing: Drawing, k: int) -> list[Guess]:
        """The `k` most likely classes of one drawing, best first (ties to the lower class index)."""
        from doodle.metrics import topk

        logp = self.log_probs([drawing])
        best = topk(logp, k)[0]
        return [Guess(self.classes[i], float(np.exp(logp[0, i]))) for i in best]

    def close(self) -> None:
        """Release what the engine holds (temporary files)."""


class OnnxEngine(Engine):
    backend = "onnx"

    def __init__(self, session: Any, preprocessor: Any, classes: Sequence[str], description: dict[str, Any]):
        super().__init__(preprocessor, classes, description)
        self.session = session

    def log_probs(self, drawings: Sequence[Drawing]) -> np.ndarray:
        from doodle.export import OUTPUT_NAME, ort_feed

        return self.session.run([OUTPUT_NAME], ort_feed(self.session, self.prepare(drawings)))[0]


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, model: Any, preprocessor: Any, classes: Sequence[str], description: dict[str, Any]):
        super().__init__(preprocessor, classes, description)
        self.model = model

    def log_probs(self, drawings: Sequence[Drawing]) -> np.ndarray:
        import torch

        from doodle.predict import forward_log_probs

        with torch.inference_mode():
            return forward_log_probs(self.model, self.prepare(drawings), torch.device("cpu"))


class Batcher:
    """Micro-batching: requests queue up, `workers` threads each take every request waiting (up to
    `max_batch`) and run them as one batch.

    Greedy, never waiting for a batch to fill: an idle server answers one drawing at once, a busy
    one amortises the model call over the queued drawings (on a 2-core CPU a batch of 8 costs about
    0.6x per drawing of single calls). A batch whose preprocessing fails is retried one drawing at a
    time, so one bad drawing only fails its own request.
    """

    def __init__(self, engine: Engine, workers: int = 1, max_batch: int = 8):
        import queue
        import threading

        self.engine = engine
        self.max_batch = max(1, int(max_batch))
        self._queue: queue.Queue = queue.Queue()
        self._threads = [threading.Thread(target=self._work, name=f"doodle-infer-{i}", daemon=True)
                         for i in range(max(1, int(workers)))]
        for t in self._threads:
            t.start()

    async def guesses(self, drawing: Drawing, k: int) -> list[Guess]:
        """The `k` best guesses for `drawing`, computed on a worker thread."""
        import asyncio

        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((drawing, k, future, loop))
        return await future

    def _work(self) -> None:
        import queue

        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:  # keep the stop signal for this thread's next turn
                    self._queue.put(None)
                    break
                batch.append(more)
            self._run(batch)

    def _run(self, batch: list) -> None:
        from doodle.metrics import topk

        try:
            logp = self.engine.log_probs([b[0] for b in batch])
        except Exception as err:  # noqa: BLE001 - handed to the waiting request(s)
            if len(batch) > 1:
                for one in batch:
                    self._run([one])
                return
            _, _, future, loop = batch[0]
            loop.call_soon_threadsafe(_settle, future, None, err)
            return
        for row, (_, k, future, loop) in enumerate(batch):
            best = topk(logp[row:row + 1], k)[0]
            out = [Guess(self.engine.classes[i], float(np.exp(logp[row, i]))) for i in best]
            loop.call_soon_threadsafe(_settle, future, out, None)

    def close(self) -> None:
        """Stop the worker threads (after the requests already queued)."""
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=10)


def _settle(future: Any, result: Any, error: BaseException | None) -> None:
    if future.done():  # the request was cancelled (client went away)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def load_engine(model: str | os.PathLike[str], backend: str = "onnx", checkpoint: str = "best",
                threads: int = 1) -> Engine:
    """The engine for an export folder, a run folder or a checkpoint file.

    onnx: an export folder is loaded as is; a run or checkpoint is exported to a temporary folder,
    loaded, and the folder removed at once (the session holds the model in memory, so nothing is
    left behind however the server stops). torch: needs a run or checkpoint (an export holds no
    PyTorch model).
    """
    from doodle.export import export_to_temp, is_export, load_export

    path = Path(model)
    if not path.exists():
        raise DoodleError(f"model {path} does not exist (give an export folder, a run folder or a checkpoint)")
    if backend == "torch":
        if is_export(path):
            raise DoodleError(f"{path} is an ONNX export; the torch backend needs the run or checkpoint")
        import torch

        from doodle.checkpoint import load_checkpoint, resolve_checkpoint

        torch.set_num_threads(max(1, threads))
        file = resolve_checkpoint(path, checkpoint)
        net, preprocessor, classes, meta = load_checkpoint(file, weights="ema" if checkpoint == "ema" else "model")
        return TorchEngine(net.cpu().eval(), preprocessor, classes, _describe(meta, str(file), "torch"))
    if backend != "onnx":
        raise DoodleError(f"unknown backend {backend!r}; choose onnx or torch")
    if is_export(path):
        loaded = load_export(path, threads)
        source = str(path)
    else:
        log.info("exporting %s to ONNX for serving", path)
        tmp = export_to_temp(path, checkpoint)
        try:
            loaded = load_export(tmp, threads)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        source = loaded.spec.get("checkpoint", str(path))
    return OnnxEngine(loaded.session, loaded.preprocessor, loaded.classes, _describe(loaded.spec, source, "onnx"))


def _describe(meta: dict[str, Any], source: str, backend: str) -> dict[str, Any]:
    """What /healthz reports about the loaded model."""
    return {
        "backend": backend,
        "source": source,
        "input_kind": meta.get("input_kind"),
        "input_config": dict(meta.get("input_config") or {}),
        "family": (meta.get("model_config") or {}).get("family"),
        "arch": (meta.get("model_config") or {}).get("arch"),
        "code_version": meta.get("checkpoint_code_version") or meta.get("code_version"),
        "metrics": meta.get("metrics", {}),
    }
