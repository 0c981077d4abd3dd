"""Export a trained checkpoint to ONNX, with everything its preprocessing needs, and check it.

    result = export_onnx("runs/resnet18", "export/", check_sources=["../shared/quickdraw/raw"])

writes

* `export/model.onnx`: the model on the *preprocessed* arrays (the `doodle.preprocess.Preprocessor`
  batch: "image" uint8 [B, C, S, S] for image models; "points" float32 [B, T, 6] and "lengths" int64
  [B] for sequence and learned-raster models; plus "country"/"time_features" when the model uses
  them), batch axis dynamic, output "log_probs" float32 [B, K] (log-softmax);
* `export/preprocessing.json` (`PREPROCESSING_FILE`): classes in label order, the input kind, every
  `InputConfig` field (encoding, size, line width, simplification, ...), the model config, the
  graph's input names, the code version and the agreement check, so a server (or any other
  language) can rebuild the exact training preprocessing.

Rendering stays outside the graph on purpose: the numba renderer is the one training used, so a
served drawing becomes bit-for-bit the image the model saw.

The agreement check runs ONNX Runtime and eager PyTorch on the same real drawings and reports the
largest absolute difference of the log-probabilities and the fraction of drawings whose top-3
guesses agree (`Agreement`).

`quantize="int8"` writes a statically quantised model instead (ONNX Runtime QDQ, int8 per-channel
weights, uint8 activations). Its activation ranges are calibrated on drawings of the *train* split
of `calibration_store` (the store the run trained on), and the float32 and int8 models are then
both scored (MAP@3) on that store's *val* split (`QuantizationCheck`): calibrating on the drawings
it is scored on would fit the ranges to the very drawings that judge them. A store's splits are
disjoint by key_id, and the export refuses calibration and scoring drawings that share one. The
int8 model is no longer bit-for-bit the trained model, so the agreement check also reports how
often its top-3 still agree with PyTorch's. This module quotes no speed or accuracy figures: the
export prints its own MAP@3 pair (`doodle export RUN --out DIR --quantize int8 --calibration-data
STORE`), and `benchmarks/serve_bench.py` measures the served speed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from doodle.data.drawing import Drawing
from doodle.data.formats.common import atomic_output
from doodle.errors import DoodleError

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
FORMAT = "doodle-onnx/1"
MODEL_FILE = "model.onnx"
PREPROCESSING_FILE = "preprocessing.json"
OUTPUT_NAME = "log_probs"
OPSET = 17
CHECK_DRAWINGS = 256
CALIBRATION_DRAWINGS = 256
"""Training drawings int8 quantisation calibrates its activation ranges on, by default."""
SCORE_DRAWINGS = 10_000
"""Validation drawings the float32 and int8 models are scored on, by default (0: the whole split)."""
QUANTIZATIONS = ("int8",)


@dataclass
class Agreement:
    """How closely ONNX Runtime reproduces eager PyTorch on real drawings."""

    drawings: int
    """Drawings compared."""
    max_abs_diff: float
    """Largest |log-prob(ORT) - log-prob(PyTorch)| over all drawings and classes."""
    top3_agreement: float
    """Fraction of drawings whose top-3 classes (in order) are identical."""

    def __str__(self) -> str:
        return (f"ONNX Runtime vs PyTorch on {self.drawings} drawings: max |diff| of log-probabilities "
                f"{self.max_abs_diff:.2e}, top-3 identical for {self.top3_agreement:.1%}")


@dataclass
class QuantizationCheck:
    """The int8 model against the float32 one, on validation drawings its calibration never saw."""

    store: str
    """The store: calibrated on its train split, scored on its val split."""
    calibration_drawings: int
    """Drawings of the train split the activation ranges were calibrated on."""
    scored_drawings: int
    """Drawings of the val split both models were scored on."""
    map3_float: float
    """MAP@3 of the float32 ONNX model on those drawings."""
    map3_int8: float
    """MAP@3 of the int8 ONNX model on the same drawings."""

    def __str__(self) -> str:
        return (f"int8 calibrated on {self.calibration_drawings} drawings of {self.store}/train; MAP@3 on "
                f"{self.scored_drawings} drawings of {self.store}/val: float32 {self.map3_float:.4f}, "
                f"int8 {self.map3_int8:.4f}")


@dataclass
class ExportResult:
    """What `export_onnx` wrote."""

    model_path: Path
    """The ONNX file."""
    preprocessing_path: Path
    """The JSON describing classes and preprocessing."""
    agreement: Agreement | None
    """The ORT-vs-PyTorch check (None when skipped)."""
    quantization: QuantizationCheck | None = None
    """int8 exports: float32 vs int8 on the calibration store's val split (None for float32)."""


def graph_inputs(kind: str, input_config: Any) -> list[str]:
    """Names of the arrays the `Preprocessor` produces for this kind and config, in graph order."""
    names = ["image"] if kind == "image" else ["points", "lengths"]
    if input_config.country:
        names.append("country")
    if input_config.time_features:
        names.append("time_features")
    return names


def _wrapper(model: Any, names: Sequence[str]) -> Any:
    """The model as a module of positional tensors returning log-probabilities (what ONNX wants)."""
    import torch

    class Exported(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return torch.log_softmax(self.model(dict(zip(names, tensors, strict=True))).float(), dim=1)

    return Exported().eval()


def to_onnx(model: Any, preprocessor: Any, example: Sequence[Drawing], path: PathLike, opset: int = OPSET) -> list[str]:
    """Trace `model` on the preprocessed `example` drawings into the ONNX file `path` (written
    atomically); returns the graph's input names (inputs the model ignores are pruned by the tracer)."""
    import torch

    names = graph_inputs(preprocessor.kind, preprocessor.config)
    batch = preprocessor(list(example))
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(batch[n])) for n in names)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    dynamic = {n: {0: "batch"} for n in [*names, OUTPUT_NAME]}
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            # the TorchScript exporter handles pack_padded_sequence (as ONNX LSTM sequence_lens) and
            # needs no onnxscript; its deprecation and RNN-batch warnings are expected here
            warnings.simplefilter("ignore")
            torch.onnx.export(_wrapper(model.cpu().eval(), names), tensors, str(tmp), dynamo=False,
                              input_names=list(names), output_names=[OUTPUT_NAME], dynamic_axes=dynamic,
                              opset_version=opset)
        os.replace(tmp, path)
    except DoodleError:
        raise
    except Exception as err:  # the exporter raises many types for unsupported operators
        tmp.unlink(missing_ok=True)
        raise DoodleError(f"cannot export this {preprocessor.kind} model to ONNX: {err}") from None
    import onnx

    return [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]


def ort_session(path: PathLike, threads: int = 1) -> Any:
    """An ONNX Runtime CPU session with `threads` intra-op threads and one inter-op thread."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def ort_feed(session: Any, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph inputs of `session` taken from a preprocessed batch."""
    return {i.name: np.ascontiguousarray(batch[i.name]) for i in session.get_inputs()}


def check_agreement(session: Any, model: Any, preprocessor: Any, drawings: Sequence[Drawing],
                    batch_size: int = 64) -> Agreement:
    """Run ONNX Runtime and eager PyTorch on the same drawings and compare (see `Agreement`)."""
    import torch

    from doodle.evaluate.metrics import topk
    from doodle.infer.predict import forward_log_probs

    if not drawings:
        raise DoodleError("no drawings to check the ONNX model on")
    diff, same = 0.0, 0
    for start in range(0, len(drawings), batch_size):
        batch = preprocessor(drawings[start:start + batch_size])
        onnx_out = session.run([OUTPUT_NAME], ort_feed(session, batch))[0]
        with torch.inference_mode():
            torch_out = forward_log_probs(model, batch, torch.device("cpu"))
        diff = max(diff, float(np.abs(onnx_out - torch_out).max()))
        same += int((topk(onnx_out, 3) == topk(torch_out, 3)).all(axis=1).sum())
    return Agreement(len(drawings), diff, same / len(drawings))


def check_drawings(sources: Iterable[PathLike], classes: Sequence[str], n: int = CHECK_DRAWINGS) -> list[Drawing]:
    """Up to `n` drawings for the agreement check, taken round-robin over the files of the model's
    classes (`<class>.ndjson` ...) when a source folder has them, else over every file read."""
    from doodle.data.formats import read
    from doodle.infer.predict import RejectCounter

    paths: list[Path] = []
    for src in sources:
        src = Path(src)
        if not src.exists():
            raise DoodleError(f"check data {src} does not exist")
        matching = [p for c in classes for p in sorted(src.glob(f"{c}.*"))] if src.is_dir() else []
        paths.extend(matching or [src])
    per_file = max(1, -(-n // len(paths))) if paths else n
    out: list[Drawing] = []
    for path in paths:
        rejects = RejectCounter()
        for i, d in enumerate(read(path, on_reject=rejects)):
            if i >= per_file or len(out) >= n:
                break
            out.append(d)
        if len(out) >= n:
            break
    if not out:
        raise DoodleError(f"no drawings read from {', '.join(map(str, sources))} for the agreement check")
    return out


def default_check_sources() -> list[Path]:
    """Real raw drawings to check against: $DOODLE_SHARED/quickdraw/raw, else ../shared/quickdraw/raw."""
    shared = Path(os.environ.get("DOODLE_SHARED", Path.cwd().parent / "shared"))
    raw = shared / "quickdraw" / "raw"
    return [raw] if raw.is_dir() else []


def split_drawings(store: PathLike, split: str, classes: Sequence[str], n: int) -> list[Drawing]:
    """The first `n` drawings (0: all) of one split of a store whose word is one of `classes` (a
    store's splits are shuffled when prepared, so the first drawings are a sample of them all)."""
    from doodle.data.store import iter_store

    wanted = set(classes)
    out: list[Drawing] = []
    for d in iter_store(store, split):
        if d.word in wanted:
            out.append(d)
            if n and len(out) >= n:
                break
    return out


def calibration_and_scoring(store: PathLike, classes: Sequence[str], calibration_n: int = CALIBRATION_DRAWINGS,
                            score_n: int = SCORE_DRAWINGS) -> tuple[list[Drawing], list[Drawing]]:
    """Drawings to calibrate int8 on (the store's train split) and to score it on (its val split),
    checked to share no key_id: a drawing in both would let the calibration see what scores it."""
    from doodle.data.store import load_manifest

    load_manifest(store)  # a store, not one of its split folders or a drawings file
    calibration = split_drawings(store, "train", classes, calibration_n)
    scoring = split_drawings(store, "val", classes, score_n)
    if not calibration:
        raise DoodleError(f"{store}/train has no drawings of the model's classes to calibrate int8 on")
    if not scoring:
        raise DoodleError(f"{store}/val has no drawings of the model's classes to score int8 on")
    shared = {d.key_id for d in calibration} & {d.key_id for d in scoring}
    if shared:
        raise DoodleError(f"{store}: {len(shared)} key_id(s) are in both its train and val splits (e.g. "
                          f"{min(shared)}); int8 would be scored on drawings it was calibrated on")
    return calibration, scoring


def onnx_map3(path: PathLike, preprocessor: Any, drawings: Sequence[Drawing], classes: Sequence[str],
              batch_size: int = 64) -> float:
    """MAP@3 of the ONNX model at `path` on labelled drawings, preprocessed as served."""
    from doodle.evaluate.metrics import map_at_3

    session = ort_session(path, threads=os.cpu_count() or 1)
    index = {c: i for i, c in enumerate(classes)}
    scores = [session.run([OUTPUT_NAME], ort_feed(session, preprocessor(list(drawings[k:k + batch_size]))))[0]
              for k in range(0, len(drawings), batch_size)]
    return map_at_3(np.concatenate(scores), np.array([index[d.word] for d in drawings]))


def quantize_int8(model_path: PathLike, preprocessor: Any, drawings: Sequence[Drawing], batch_size: int = 32) -> None:
    """Replace the float ONNX model at `model_path` by its static int8 quantisation (QDQ format,
    per-channel int8 weights, uint8 activations) calibrated on `drawings` preprocessed as served."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not drawings:
        raise DoodleError("int8 quantisation needs real drawings to calibrate on")
    path = Path(model_path)
    batches = [preprocessor(drawings[i:i + batch_size]) for i in range(0, len(drawings), batch_size)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(batches)

        def get_next(self):
            batch = next(self.items, None)
            return None if batch is None else {k: v for k, v in batch.items() if k in inputs}

    import onnx

    inputs = {i.name for i in onnx.load(str(path), load_external_data=False).graph.input}
    with tempfile.TemporaryDirectory(prefix="doodle-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "int8.onnx"
        quant_pre_process(str(path), str(prepared))
        quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        tmp_out = path.with_name(f".{path.name}.tmp{os.getpid()}")
        shutil.copyfile(quantized, tmp_out)
        os.replace(tmp_out, path)


def preprocessing_spec(meta: dict, classes: Sequence[str], inputs: Sequence[str], checkpoint: PathLike,
                       agreement: Agreement | None, opset: int = OPSET, quantize: str | None = None,
                       quantization: QuantizationCheck | None = None) -> dict[str, Any]:
    """The JSON next to the ONNX file: what a client needs to rebuild the training preprocessing."""
    from doodle.version import code_version

    return {
        "format": FORMAT,
        "classes": list(classes),
        "input_kind": meta["input_kind"],
        "input_config": dict(meta["input_config"]),
        "model_config": dict(meta["model_config"]),
        "inputs": list(inputs),
        "output": OUTPUT_NAME,
        "opset": opset,
        "quantization": "int8 static QDQ (per-channel weights, uint8 activations)" if quantize else None,
        "checkpoint": str(checkpoint),
        "checkpoint_code_version": meta.get("code_version"),
        "code_version": code_version(),
        "metrics": meta.get("metrics", {}),
        "check": dataclasses.asdict(agreement) if agreement is not None else None,
        "quantization_check": dataclasses.asdict(quantization) if quantization is not None else None,
    }


def write_json(obj: Any, path: PathLike) -> None:
    """`obj` as indented JSON, written atomically."""
    with atomic_output(path) as handle:
        handle.write((json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def export_onnx(run_or_checkpoint: PathLike, out_dir: PathLike, *, checkpoint: str = "best",
                check_sources: Iterable[PathLike] | None = None, check: bool = True,
                check_n: int = CHECK_DRAWINGS, opset: int = OPSET, quantize: str | None = None,
                calibration_store: PathLike | None = None, calibration_n: int = CALIBRATION_DRAWINGS,
                score_n: int = SCORE_DRAWINGS) -> ExportResult:
    """Export a checkpoint (run folder + `checkpoint` name, or a file) to `out_dir` (see the module
    docstring); `check` runs the agreement check on `check_sources` (default: `default_check_sources`).
    `quantize="int8"` needs `calibration_store`, the store the run trained on: calibrated on
    `calibration_n` drawings of its train split, scored on `score_n` of its val split (0: all)."""
    from doodle.runs.checkpoint import load_checkpoint, resolve_checkpoint

    path = resolve_checkpoint(run_or_checkpoint, checkpoint)
    model, preprocessor, classes, meta = load_checkpoint(path, weights="ema" if checkpoint == "ema" else "model")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise DoodleError(f"unknown quantization {quantize!r}; choose from {', '.join(QUANTIZATIONS)}")
    if quantize and calibration_store is None:
        raise DoodleError("int8 quantisation calibrates on training drawings: pass the store the run trained on "
                          "(--calibration-data STORE); it is then scored on that store's val split")
    if calibration_store is not None and not quantize:
        raise DoodleError("calibration data is only used by --quantize int8")
    sources = list(check_sources) if check_sources is not None else default_check_sources()
    if check and not sources:
        raise DoodleError("no real drawings for the ONNX-vs-PyTorch check: pass check data (e.g. "
                          "../shared/quickdraw/raw), set DOODLE_SHARED, or skip the check")
    calibration, scoring = (calibration_and_scoring(calibration_store, classes, calibration_n, score_n)
                            if quantize else ([], []))
    drawings = check_drawings(sources, classes, check_n) if check else []
    example = (drawings or calibration)[:2] or [_example_drawing(), _example_drawing()]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILE
    inputs = to_onnx(model, preprocessor, example, model_path, opset)
    quantization = None
    if quantize == "int8":
        quantization = _quantize_and_score(model_path, preprocessor, classes, calibration, scoring,
                                           str(calibration_store))
        log.debug("%s", quantization)
    agreement = None
    if check:
        agreement = check_agreement(ort_session(model_path, threads=os.cpu_count() or 1), model, preprocessor,
                                    drawings)
        log.debug("%s", agreement)
    spec_path = out_dir / PREPROCESSING_FILE
    write_json(preprocessing_spec(meta, classes, inputs, path, agreement, opset, quantize, quantization), spec_path)
    return ExportResult(model_path, spec_path, agreement, quantization)


def _quantize_and_score(model_path: Path, preprocessor: Any, classes: Sequence[str], calibration: Sequence[Drawing],
                        scoring: Sequence[Drawing], store: str) -> QuantizationCheck:
    """Quantise the float model at `model_path` in place, calibrated on `calibration`, and score the
    float32 and int8 models on `scoring` (the float copy lives in a temporary folder meanwhile)."""
    with tempfile.TemporaryDirectory(prefix="doodle-f32-") as tmp:
        float_path = Path(tmp) / MODEL_FILE
        shutil.copyfile(model_path, float_path)
        quantize_int8(model_path, preprocessor, calibration)
        map3_float = onnx_map3(float_path, preprocessor, scoring, classes)
    map3_int8 = onnx_map3(model_path, preprocessor, scoring, classes)
    return QuantizationCheck(store, len(calibration), len(scoring), map3_float, map3_int8)


def _example_drawing() -> Drawing:
    """A two-stroke drawing for tracing when no real drawings are at hand (the graph does not depend
    on the values)."""
    t = np.arange(5, dtype=np.float64) * 10
    a = np.stack([np.linspace(0, 100, 5), np.linspace(0, 50, 5), t], axis=1)
    b = np.stack([np.linspace(100, 0, 5), np.linspace(80, 90, 5), t + 100], axis=1)
    return Drawing(key_id=0, strokes=[a, b])


# -- loading an export -------------------------------------------------------------------------


@dataclass
class LoadedExport:
    """An export folder read back: the session, the same Preprocessor as training, the classes."""

    session: Any
    """The ONNX Runtime session."""
    preprocessor: Any
    """`doodle.preprocess.Preprocessor` rebuilt from the JSON."""
    classes: list[str]
    """Class names in label order."""
    spec: dict[str, Any]
    """The whole preprocessing JSON."""


def is_export(path: PathLike) -> bool:
    """True for a folder written by `export_onnx`."""
    path = Path(path)
    return path.is_dir() and (path / MODEL_FILE).is_file() and (path / PREPROCESSING_FILE).is_file()


def load_export(path: PathLike, threads: int = 1) -> LoadedExport:
    """Read an export folder (model.onnx + preprocessing.json) into a session and its Preprocessor."""
    from doodle.config import from_dict
    from doodle.preprocess import InputConfig, Preprocessor

    path = Path(path)
    if not is_export(path):
        raise DoodleError(f"{path} is not an ONNX export folder (needs {MODEL_FILE} and {PREPROCESSING_FILE})")
    try:
        spec = json.loads((path / PREPROCESSING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DoodleError(f"cannot read {path / PREPROCESSING_FILE}: {err}") from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        raise DoodleError(f"{path / PREPROCESSING_FILE} is not a doodle export description (format {FORMAT!r})")
    try:
        session = ort_session(path / MODEL_FILE, threads)
    except Exception as err:  # onnxruntime raises its own exception types for a bad file
        raise DoodleError(f"ONNX Runtime cannot load {path / MODEL_FILE}: {err}") from None
    preprocessor = Preprocessor(from_dict(InputConfig, spec["input_config"]), spec["input_kind"])
    return LoadedExport(session, preprocessor, list(spec["classes"]), spec)


def export_to_temp(run_or_checkpoint: PathLike, checkpoint: str = "best") -> Path:
    """Export a checkpoint into a fresh temporary folder without the check (a server serving a run
    directly); the caller removes it with `shutil.rmtree`."""
    tmp = Path(tempfile.mkdtemp(prefix="doodle-onnx-"))
    try:
        export_onnx(run_or_checkpoint, tmp, checkpoint=checkpoint, check=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp
