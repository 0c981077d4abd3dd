"""Self-describing checkpoints: everything needed to rebuild a model and its preprocessing.

A checkpoint file (torch.save of plain data, loadable with `weights_only=True`) holds:

* "format", "code_version": what wrote it;
* "model_config", "input_config", "input_kind", "classes" (in label order): enough to rebuild the
  model and the exact preprocessing (`load_checkpoint` does);
* "config": the whole resolved training config;
* "model" (and "ema" when used): the weights;
* "train_state" (resumable checkpoints only): optimizer, scheduler, scaler, counters, RNG states.

Files are written atomically (temporary file, fsync, rename), so a run killed at any moment
leaves either the old checkpoint or the new one, never half of one. The temporary of a write that
a kill interrupted (`.last.pt.tmpPID`) is removed when a run starts or resumes in that folder
(`doodle.fs.remove_stale_temporaries`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from doodle.errors import DoodleError
from doodle.version import code_version

FORMAT = "doodle-checkpoint/1"
RUN_FILES = {"best": "best.pt", "last": "last.pt", "averaged": "averaged.pt", "ema": "best.pt"}


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to `path` without ever exposing a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def make_checkpoint(*, model_config: dict, input_config: dict, input_kind: str, classes: list[str], config: dict,
                    model_state: dict, ema_state: dict | None = None, train_state: dict | None = None,
                    metrics: dict | None = None) -> dict:
    """The checkpoint dict (plain data and tensors only)."""
    return {
        "format": FORMAT,
        "code_version": code_version(),
        "model_config": model_config,
        "input_config": input_config,
        "input_kind": input_kind,
        "classes": list(classes),
        "config": config,
        "model": model_state,
        "ema": ema_state,
        "train_state": train_state,
        "metrics": metrics or {},
    }


def resolve_checkpoint(run_or_path: str | Path, which: str = "best") -> Path:
    """A checkpoint file: `run_or_path` itself, or RUN/best.pt | last.pt | averaged.pt by `which`."""
    path = Path(run_or_path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise DoodleError(f"{path} is neither a checkpoint file nor a run folder")
    candidate = Path(which) if Path(which).is_file() else path / RUN_FILES.get(which, which)
    if not candidate.is_file():
        present = ", ".join(sorted(p.name for p in path.glob("*.pt"))) or "none"
        raise DoodleError(f"no checkpoint {candidate.name!r} in {path} (checkpoints there: {present})")
    return candidate


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict, checked to be one of ours."""
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt or foreign file
        raise DoodleError(f"{path} is not a readable checkpoint: {err}") from None
    found = data.get("format") if isinstance(data, dict) else None
    if found != FORMAT:
        raise DoodleError(f"{path} is not a doodle checkpoint (format {found!r}, expected {FORMAT!r})")
    return data


def build_from_checkpoint(data: dict, weights: str = "model"):
    """(model in eval mode, Preprocessor, classes) from a checkpoint dict."""
    from doodle.config import from_dict
    from doodle.models import ModelConfig, create_model
    from doodle.preprocess import InputConfig, Preprocessor

    model_config = from_dict(ModelConfig, data["model_config"])
    input_config = from_dict(InputConfig, data["input_config"])
    model_config.pretrained_path = None  # the weights come from the checkpoint
    model = create_model(model_config, input_config, len(data["classes"]))
    state = data["ema"] if weights == "ema" and data.get("ema") else data["model"]
    model.load_state_dict(state)
    model.eval()
    return model, Preprocessor(input_config, data["input_kind"]), list(data["classes"])


def load_checkpoint(path: str | Path, weights: str = "model"):
    """(model, preprocessor, classes, meta) from a checkpoint file or run folder (best.pt).

    `weights="ema"` takes the EMA weights when the checkpoint has them. `meta` is the rest of the
    checkpoint (config, metrics, code version).
    """
    data = read_checkpoint(resolve_checkpoint(path))
    model, preprocessor, classes = build_from_checkpoint(data, weights)
    meta = {k: v for k, v in data.items() if k not in ("model", "ema", "train_state")}
    return model, preprocessor, classes, meta


def average_state_dicts(states: list[dict]) -> dict:
    """The element-wise mean of several state dicts of one model (snapshot averaging).

    Float tensors are averaged; integer buffers (e.g. BatchNorm's num_batches_tracked) come from
    the last state.
    """
    if not states:
        raise ValueError("no state dicts to average")
    out = {}
    for key, last in states[-1].items():
        if torch.is_floating_point(last):
            out[key] = sum(s[key].double() for s in states).div(len(states)).to(last.dtype)
        else:
            out[key] = last.clone()
    return out
