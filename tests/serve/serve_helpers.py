"""Helpers of the serving tests: a small CNN trained on real drawings, a uvicorn server in a thread,
raw drawings.

The model is trained for a few seconds on real simplified drawings of four classes from
../shared/quickdraw, so its guesses are real (mostly right on those classes) and the parity and
browser tests exercise a genuine model, never a stub.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

CLASSES = ["camera", "eye", "headphones", "television"]
PER_CLASS = 120
SIZE = 32


def train_tiny(quickdraw: Path, out: Path, steps: int = 40) -> Path:
    """Train a resnet10t at 32 px on real simplified drawings; write out/best.pt (a real checkpoint)."""
    from doodle.checkpoint import atomic_save, make_checkpoint
    from doodle.data.formats import read
    from doodle.models import ModelConfig, create_model
    from doodle.preprocess import InputConfig, Preprocessor

    drawings, labels = [], []
    for label, name in enumerate(CLASSES):
        path = quickdraw / "simplified" / f"JulienDuranleau_{name}.ndjson"
        batch = list(itertools.islice(read(path), PER_CLASS))
        drawings += batch
        labels += [label] * len(batch)
    inputs = InputConfig(encoding="order-speed-accel", size=SIZE, simplify=True)
    model_cfg = ModelConfig(family="cnn", arch="resnet10t")
    pre = Preprocessor(inputs, "image")
    images = torch.from_numpy(pre(drawings)["image"])
    targets = torch.tensor(labels)
    torch.manual_seed(0)
    model = create_model(model_cfg, inputs, len(CLASSES))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (48,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model({"image": images[idx]}), targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    ckpt = make_checkpoint(model_config=asdict(model_cfg), input_config=asdict(inputs), input_kind="image",
                           classes=CLASSES, config={}, model_state=model.state_dict())
    out.mkdir(parents=True, exist_ok=True)
    atomic_save(ckpt, out / "best.pt")
    return out

SMALL_LIMITS = dict(max_body_bytes=200_000, max_strokes=50, max_points=4000, max_top_k=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a background thread."""

    def __init__(self, app, port: int | None = None):
        import uvicorn

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="doodle-test-uvicorn", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def raw_drawings(quickdraw: Path, names: list[str]) -> list[dict]:
    """The raw records (with timing) of the given class files, in file order."""
    import orjson

    out = []
    for name in names:
        out += [orjson.loads(line) for line in (quickdraw / "raw" / f"{name}.ndjson").read_bytes().splitlines()
                if line.strip()]
    return out


def strokes_of(record: dict) -> list:
    return record["drawing"]


def scaled(strokes: list, factor: float, dx: float = 0.0, dy: float = 0.0) -> list:
    """Strokes moved and scaled as a canvas of another size would give them (t unchanged)."""
    return [[list(np.asarray(s[0]) * factor + dx), list(np.asarray(s[1]) * factor + dy), *s[2:]] for s in strokes]
