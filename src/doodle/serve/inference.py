"""Inference for the server: posted strokes -> the training preprocessing -> the model -> guesses.

Two backends behind one interface (`Engine`): ONNX Runtime (the default: an export folder, or a run
exported at start-up) and eager PyTorch (the checkpoint itself, for comparison in benchmarks). Both
use `doodle.preprocess.Preprocessor` built from the model's own `InputConfig`, the object training
and `doodle predict` use, so a drawing posted over HTTP becomes exactly the array the model saw.

Posted strokes are canvas strokes of any scale, `[[x...], [y...], ([t...])]` each, as in
Quick, Draw!'s raw files, or strokes already simplified as Google's simplified files are. A model
trained with `input.simplify` first gets Google's simplification (align, scale to 0..255, resample,
RDP), which uses x and y only, so it is applied with or without t, to every drawing not already in
the simplified form (`doodle.preprocess.is_simplified`: whole numbers spanning 0..255, no t), the test
the `Preprocessor` of training and `doodle predict` makes too. Posting a drawing's strokes, raw,
raw without t or simplified, therefore gives exactly `doodle predict` on a file of them.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from doodle.data.drawing import BadRecord, Drawing, Limits, strokes_from_json
from doodle.errors import DoodleError
from doodle.preprocess import needs_simplification

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


@dataclass(frozen=True)
class SimplifyBudget:
    """How much work the server lets one drawing's simplification take (see `doodle.data.simplify`)."""

    max_points: int | None = None
    """Most points resampling may make of the drawing (None: no limit)."""
    max_work: int | None = None
    """Most point-to-chord distances RDP may compute (None: no limit)."""


UNLIMITED = SimplifyBudget()


class Engine:
    """A loaded model with its preprocessing; `log_probs` is safe to call from several threads.

    The steps, for the server to run them apart: `simplified` (Google's simplification when the
    model was trained with it, the only step whose cost depends on the drawing's shape), `encode`
    (the model input of simplified drawings) and `forward` (the model).
    """

    backend = "?"

    def __init__(self, preprocessor: Any, classes: Sequence[str], description: dict[str, Any]):
        self.preprocessor = preprocessor
        # `encode` takes drawings `simplified` has already seen: a drawing simplified there must not
        # be tested (and perhaps simplified) again, so the encoder is the same one without that step
        self._encoder = _without_simplification(preprocessor)
        self.classes = list(classes)
        self.description = description

    @property
    def simplifies(self) -> bool:
        """Whether posted drawings get Google's simplification before the model."""
        return bool(self.preprocessor.config.simplify)

    def simplify_size(self, drawing: Drawing) -> int:
        """The points resampling would make of `drawing` (0 when the model does not simplify): the
        O(n) measure of what simplifying it costs."""
        from doodle.data.simplify import resampled_size

        return resampled_size(drawing.strokes) if self.simplifies and needs_simplification(drawing) else 0

    def simplified(self, drawing: Drawing, budget: SimplifyBudget = UNLIMITED) -> Drawing:
        """`drawing` simplified as the model's training data was (itself when the model does not
        simplify, or when it is already simplified); InputError when it needs more than `budget`."""
        if not self.simplifies or not needs_simplification(drawing):
            return drawing
        from doodle.data.simplify import SimplifyLimitError, simplify

        try:
            # simplified, so the Preprocessor leaves it as it is (it would simplify a raw one itself)
            return simplify(drawing, max_points=budget.max_points, max_work=budget.max_work)
        except SimplifyLimitError as err:
            raise InputError(str(err)) from None

    def encode(self, simplified: Sequence[Drawing]) -> dict[str, np.ndarray]:
        """The model input of drawings already passed through `simplified`."""
        try:
            return self._encoder(simplified)
        except (ValueError, IndexError) as err:  # defensive: validated input should never get here
            raise InputError(f"cannot preprocess the drawing: {err}") from None

    def prepare(self, drawings: Sequence[Drawing]) -> dict[str, np.ndarray]:
        """The model input for `drawings` (see the module docstring for simplification)."""
        return self.encode([self.simplified(d) for d in drawings])

    def forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """float32 [B, K] log-probabilities of a model input."""
        raise NotImplementedError

    def infer(self, simplified: Sequence[Drawing]) -> np.ndarray:
        """float32 [B, K] log-probabilities of drawings already passed through `simplified`."""
        return self.forward(self.encode(simplified))

    def log_probs(self, drawings: Sequence[Drawing]) -> np.ndarray:
        """float32 [B, K] log-probabilities."""
        return self.forward(self.prepare(drawings))

    def guesses(self, drawing: Drawing, k: int) -> list[Guess]:
        """The `k` most likely classes of one drawing, best first (ties to the lower class index)."""
        return self.answers(self.log_probs([drawing]), [k])[0]

    def answers(self, logp: np.ndarray, ks: Sequence[int]) -> list[list[Guess]]:
        """The ks[i] most likely classes of row i of log-probabilities [B, K], best first (ties to
        the lower class index)."""
        from doodle.evaluate.metrics import topk

        best = topk(logp, max(ks))
        return [[Guess(self.classes[i], float(np.exp(logp[row, i]))) for i in best[row, :k]]
                for row, k in enumerate(ks)]

    def close(self) -> None:
        """Release what the engine holds (temporary files)."""


def _without_simplification(preprocessor: Any) -> Any:
    """`preprocessor` without its simplification step (None stays None: engines of the tests)."""
    if preprocessor is None:
        return None
    from dataclasses import replace

    from doodle.preprocess import Preprocessor

    return Preprocessor(replace(preprocessor.config, simplify=False), preprocessor.kind)


WARM_STROKES = [[[round(300 + 180 * math.cos(i / 7.5), 2) for i in range(48)],
                 [round(260 + 150 * math.sin(i / 7.5), 2) for i in range(48)], [16.0 * i for i in range(48)]],
                [[120.0, 300.5, 480.0], [500.0, 512.25, 500.0], [900.0, 1000.0, 1100.0]]]
"""A small raw drawing (a circle and a line, canvas pixels, t in ms) for the warm-up."""


def warm_drawings() -> list[Drawing]:
    """One drawing of each kind of input the server is posted: raw with t, raw without t, and
    Google-simplified; parsed as request bodies are, so the compiled kernels see the same array
    types and layouts (numba compiles one version per layout)."""
    from doodle.data.simplify import simplify

    limits = Limits()
    raw = to_drawing(WARM_STROKES, limits)
    untimed = to_drawing([s[:2] for s in WARM_STROKES], limits)
    simple = simplify(untimed).to_json_dict()["drawing"]
    return [raw, untimed, to_drawing(simple, limits)]


class OnnxEngine(Engine):
    backend = "onnx"

    def __init__(self, session: Any, preprocessor: Any, classes: Sequence[str], description: dict[str, Any]):
        super().__init__(preprocessor, classes, description)
        self.session = session

    def forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        from doodle.infer.export import OUTPUT_NAME, ort_feed

        return self.session.run([OUTPUT_NAME], ort_feed(self.session, batch))[0]


class TorchEngine(Engine):
    backend = "torch"

    def __init__(self, model: Any, preprocessor: Any, classes: Sequence[str], description: dict[str, Any]):
        super().__init__(preprocessor, classes, description)
        self.model = model

    def forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        from doodle.infer.predict import forward_log_probs

        with torch.inference_mode():
            return forward_log_probs(self.model, batch, torch.device("cpu"))


TOP_K_WARM = 3
"""The guesses the warm-up asks for (the page's)."""


class _Aside(Exception):
    """A drawing the batch lane gave up simplifying: it goes to the side lane."""


class Batcher:
    """Micro-batching on the event loop: requests wait in a list, and up to `workers` batches run at
    a time, each taking every waiting request (up to `max_batch`) to a worker thread as one model call.

    Greedy, never waiting for a batch to fill: an idle server answers one drawing at once, a busy
    one amortises the model call over the queued drawings (on a 2-core CPU a batch of 8 costs about
    0.6x per drawing of single calls). The hand-over to the thread happens once per batch, not per
    request, and the answers are set on the event loop itself, so a batch of 8 costs two thread
    wake-ups instead of sixteen. Each drawing is simplified on its own and a batch whose model call
    fails is retried one drawing at a time, so one bad drawing only fails its own request.

    Simplification is the one step whose cost depends on the drawing's shape (a zigzag across the
    canvas costs up to the `budget`, about 12 ms of a core by default, where a real drawing costs
    well under one). So the batch lane simplifies a drawing only within the work of any real one
    (`LIGHT_POINTS`, `LIGHT_WORK`); a costlier one is simplified first on one side thread
    (`budget` there, InputError beyond), then joins a batch. Costly drawings wait for each other
    on that thread, not for the model, and real ones never wait for them.
    """

    LIGHT_POINTS = 50_000
    """Resampled points the batch lane simplifies (real raw drawings: at most 35,929, measured)."""
    LIGHT_WORK = 1_000_000
    """RDP work the batch lane spends on one drawing (real raw drawings: at most 439,279)."""

    def __init__(self, engine: Engine, workers: int = 1, max_batch: int = 8, budget: SimplifyBudget = UNLIMITED):
        from concurrent.futures import ThreadPoolExecutor

        self.engine = engine
        self.max_batch = max(1, int(max_batch))
        self.workers = max(1, int(workers))
        self.budget = budget
        self._light = SimplifyBudget(budget.max_points, _smaller(budget.max_work, self.LIGHT_WORK))
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="doodle-infer")
        self._side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doodle-simplify")
        self._waiting: list[tuple[Drawing, int, bool, Any]] = []
        self._running = 0

    async def guesses(self, drawing: Drawing, k: int) -> list[Guess]:
        """The `k` best guesses for `drawing`, computed on a worker thread (InputError when it is
        over the simplification budget)."""
        size = self.engine.simplify_size(drawing)
        if self.budget.max_points is not None and size > self.budget.max_points:
            raise InputError(f"the drawing would resample to {size:,} points, the limit is {self.budget.max_points:,}")
        if size <= self.LIGHT_POINTS:
            try:
                return await self._queued(drawing, k, simplified=False)
            except _Aside:
                pass
        return await self._queued(await self._simplified_aside(drawing), k, simplified=True)

    async def _simplified_aside(self, drawing: Drawing) -> Drawing:
        import asyncio

        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._side, self.engine.simplified, drawing, self.budget)

    async def _queued(self, drawing: Drawing, k: int, simplified: bool) -> list[Guess]:
        """Queue the request for a batch and wait for its answer."""
        import asyncio

        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((drawing, k, simplified, future))
        if self._running < self.workers:
            self._running += 1
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Run batches of the waiting requests until none is left."""
        import asyncio

        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                batch = [item for item in self._waiting[: self.max_batch] if not item[3].done()]
                del self._waiting[: self.max_batch]
                if not batch:
                    continue  # every one of them was cancelled (clients gone)
                try:
                    answers = await loop.run_in_executor(self._pool, self._answer, [item[:3] for item in batch])
                except Exception as err:  # noqa: BLE001 - the executor itself failed (shut down)
                    answers = [err] * len(batch)
                for item, answer in zip(batch, answers, strict=True):
                    _settle(item[3], answer)
        finally:
            self._running -= 1

    def _answer(self, items: list[tuple[Drawing, int, bool]]) -> list[list[Guess] | BaseException]:
        """Guesses (or the error) for each (drawing, k, simplified already), each drawing
        simplified on its own, then one model call for those that could be."""
        out: list[list[Guess] | BaseException] = []
        ready: list[tuple[int, Drawing, int]] = []
        for i, (drawing, k, simplified) in enumerate(items):
            try:
                ready.append((i, drawing if simplified else self._simplified_light(drawing), k))
                out.append([])
            except Exception as err:  # noqa: BLE001 - handed to the waiting request
                out.append(err)
        for (i, _, _), answer in zip(ready, self._infer([(d, k) for _, d, k in ready]), strict=True):
            out[i] = answer
        return out

    def _simplified_light(self, drawing: Drawing) -> Drawing:
        """`drawing` simplified within the batch lane's budget; _Aside when the full budget is larger."""
        try:
            return self.engine.simplified(drawing, self._light)
        except InputError:
            if self._light == self.budget:
                raise
            raise _Aside() from None

    def _infer(self, items: list[tuple[Drawing, int]]) -> list[list[Guess] | BaseException]:
        """Guesses (or the error) for each (simplified drawing, k), from one model call when it succeeds."""
        if not items:
            return []
        try:
            logp = self.engine.infer([d for d, _ in items])
        except Exception as err:  # noqa: BLE001 - handed to the waiting request(s)
            if len(items) > 1:
                return [answer for item in items for answer in self._infer([item])]
            return [err]
        return self.engine.answers(logp, [k for _, k in items])

    def warm(self) -> None:
        """Run every compiled path a request can take, on the threads requests run on, so the
        first request is as fast as later ones: the numba kernels of measuring, simplifying (both
        lanes' budgets) and rendering raw, untimed and simplified drawings, and the model at every
        batch size up to `max_batch` (ONNX Runtime and PyTorch pay a first call for each shape).
        Blocks until done (seconds, dominated by loading or compiling the kernels)."""
        drawings = warm_drawings()
        for d in drawings:
            self.engine.simplify_size(d)
            self._side.submit(self.engine.simplified, d, self.budget).result()
        for n in range(1, self.max_batch + 1):
            items = [(drawings[i % len(drawings)], TOP_K_WARM, False) for i in range(n)]
            for answer in self._pool.submit(self._answer, items).result():
                if isinstance(answer, BaseException):
                    raise answer

    def close(self) -> None:
        """Stop the worker threads (after the batches already running)."""
        self._side.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)


def _smaller(limit: int | None, cap: int) -> int:
    """The smaller of a limit (None: none) and a cap."""
    return cap if limit is None else min(limit, cap)


def _settle(future: Any, answer: Any) -> None:
    """Hand `answer` (a result or an exception) to a request still waiting for it."""
    if future.done():
        return
    if isinstance(answer, BaseException):
        future.set_exception(answer)
    else:
        future.set_result(answer)


def load_engine(model: str | os.PathLike[str], backend: str = "onnx", checkpoint: str = "best",
                threads: int = 1) -> Engine:
    """The engine for an export folder, a run folder or a checkpoint file.

    onnx: an export folder is loaded as is; a run or checkpoint is exported to a temporary folder,
    loaded, and the folder removed at once (the session holds the model in memory, so nothing is
    left behind however the server stops). torch: needs a run or checkpoint (an export holds no
    PyTorch model).
    """
    from doodle.infer.export import export_to_temp, is_export, load_export

    path = Path(model)
    if not path.exists():
        raise DoodleError(f"model {path} does not exist (give an export folder, a run folder or a checkpoint)")
    if backend == "torch":
        if is_export(path):
            raise DoodleError(f"{path} is an ONNX export; the torch backend needs the run or checkpoint")
        import torch

        from doodle.runs.checkpoint import load_checkpoint, resolve_checkpoint

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


def model_name(source: str | os.PathLike[str]) -> str:
    """A model's name without where it lies: its run or export folder's name (the folder holding
    a checkpoint file), e.g. "resnet18" for /srv/runs/resnet18/best.pt."""
    path = Path(source)
    return (path.parent.name if path.suffix == ".pt" else path.name) or "model"


def _describe(meta: dict[str, Any], source: str, backend: str) -> dict[str, Any]:
    """What /healthz reports about the loaded model: what a client may want to know, never a path
    on the server's disk."""
    return {
        "name": model_name(source),
        "checkpoint": Path(source).name if Path(source).suffix == ".pt" else None,
        "backend": backend,
        "input_kind": meta.get("input_kind"),
        "input_config": dict(meta.get("input_config") or {}),
        "family": (meta.get("model_config") or {}).get("family"),
        "arch": (meta.get("model_config") or {}).get("arch"),
        "code_version": meta.get("checkpoint_code_version") or meta.get("code_version"),
        "metrics": {k: v for k, v in (meta.get("metrics") or {}).items() if isinstance(v, int | float)},
    }
