"""Self-describing checkpoints: everything needed to rebuild a model and its preprocessing.

A checkpoint file (torch.save of plain data, loadable with `weights_only=True`) holds:

* "format", "code_version": what wrote it;
* "model_config", "input_config", "input_kind", "classes" (in label order): enough to rebuild the
  model and the exact preprocessing (`load_checkpoint` does);
* "config": the whole resolved training config;
* "model": the weights, and "weights": what they are ("raw", the trained weights, or "ema", the
  exponential moving average of them; best.pt holds the validated ones, the EMA when it is on);
* "ema": the EMA weights beside the raw ones (last.pt and snapshots of a run with ema_decay > 0);
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
from doodle.runs.run import resolve_checkpoint
from doodle.version import code_version

FORMAT = "doodle-checkpoint/1"


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
                    metrics: dict | None = None, weights: str = "raw") -> dict:
    """The checkpoint dict (plain data and tensors only); `weights` says what `model_state` is."""
    return {
        "format": FORMAT,
        "code_version": code_version(),
        "model_config": model_config,
        "input_config": input_config,
        "input_kind": input_kind,
        "classes": list(classes),
        "config": config,
        "model": model_state,
        "weights": weights,
        "ema": ema_state,
        "train_state": train_state,
        "metrics": metrics or {},
    }


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
    state = pick_weights(data, weights)
    model.load_state_dict(state)
    model.eval()
    return model, Preprocessor(input_config, data["input_kind"]), list(data["classes"])


def pick_weights(data: dict, weights: str = "model") -> dict:
    """The state dict `weights` asks for: "model" (what the checkpoint holds as its model) or "ema"
    (its EMA weights; an error naming the file's contents when it has none)."""
    if weights != "ema":
        return data["model"]
    if data.get("ema"):
        return data["ema"]
    if data.get("weights") == "ema":  # best.pt and averaged.pt of an EMA run hold EMA weights as the model
        return data["model"]
    raise DoodleError("this checkpoint has no EMA weights (the run was trained with ema_decay=0): "
                      "use --checkpoint best, last or averaged")


def load_checkpoint(path: str | Path, weights: str = "model"):
    """(model, preprocessor, classes, meta) from a checkpoint file or run folder (best.pt).

    `weights="ema"` takes the EMA weights (an error when it has none). `meta` is the rest of the
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
