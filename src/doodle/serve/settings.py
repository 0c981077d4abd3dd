"""Server settings, read from DOODLE_* environment variables (the CLI sets them from its flags).

    DOODLE_MODEL=runs/resnet18 DOODLE_PORT=8000 uvicorn --factory doodle.serve.app:create_app \
        --http doodle.serve.server:GuardedProtocol --limit-concurrency 1000

(`doodle serve` configures uvicorn itself, with every limit below; plain uvicorn as above gets the
app's limits from DOODLE_* and the protocol's header and body deadlines at their defaults.)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Literal

from doodle.errors import DoodleError

ENV_PREFIX = "DOODLE_"


@dataclass(frozen=True)
class ServeSettings:
    """Everything `create_app` needs; each field `name` is read from DOODLE_<NAME> by `from_env`."""

    model: str = ""
    """Export folder (`doodle export`), run folder or checkpoint file to serve."""
    checkpoint: str = "best"
    """Which checkpoint of a run folder: best, last, averaged, ema or a file."""
    backend: Literal["onnx", "torch"] = "onnx"
    """onnx: ONNX Runtime (a run is exported at start-up); torch: eager PyTorch (for comparison)."""
    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = 8000
    """TCP port to listen on."""
    threads: int = 0
    """Intra-op threads of each inference call (0: the number of CPU cores)."""
    workers: int = 1
    """Inference threads, each micro-batching the queued requests (measured on 2 cores: one worker
    with 2 intra-op threads beats two workers with one each, 28 vs 33 ms p50 at concurrency 8)."""
    max_batch: int = 8
    """Most queued requests one inference call takes together (micro-batching; 1: none)."""
    max_body_bytes: int = 1_000_000
    """Largest request body accepted, checked before parsing (413 beyond)."""
    max_strokes: int = 200
    """Most strokes in one posted drawing (422 beyond)."""
    max_points: int = 20_000
    """Most points in one posted drawing, all strokes together (422 beyond)."""
    max_top_k: int = 20
    """Largest top_k a client may ask for."""
    max_simplify_points: int = 200_000
    """Most points resampling may make of one drawing before simplification (422 beyond, checked in
    O(n) before any work). Over the 10,129 raw drawings of ../shared/quickdraw/raw the most is 35,929
    (99.9th percentile 10,463); a zigzag across the whole canvas makes millions."""
    max_simplify_work: int = 10_000_000
    """Most point-to-chord distances Ramer-Douglas-Peucker may compute for one drawing (422 beyond):
    about 12 ms of one core. Over the same raw drawings the most is 439,279 (99.9th percentile
    93,901); RDP is quadratic in the worst case, and such a drawing would take a minute."""
    header_timeout: float = 10.0
    """Seconds a client has to send a request's headers, from its first byte (or from connecting);
    a connection still sending them then gets 408 and is closed."""
    body_timeout: float = 30.0
    """Seconds a client has to send a request's body once its headers are in (408 and closed beyond)."""
    max_header_bytes: int = 65_536
    """Largest request line plus headers accepted (431 and closed beyond)."""
    max_connections: int = 1000
    """Most connections and requests at once; requests beyond get 503 (uvicorn's limit_concurrency)."""

    @classmethod
    def from_env(cls, **overrides: object) -> ServeSettings:
        """Defaults, then DOODLE_* variables, then `overrides` (non-None values)."""
        values: dict[str, object] = {}
        for f in fields(cls):
            text = os.environ.get(ENV_PREFIX + f.name.upper())
            if text is not None and text != "":
                values[f.name] = _parse(f.name, f.type, text)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise a DoodleError naming the first impossible value."""
        if self.backend not in ("onnx", "torch"):
            raise DoodleError(f"backend must be onnx or torch, got {self.backend!r}")
        for name in ("max_batch", "max_body_bytes", "max_strokes", "max_points", "max_top_k", "workers",
                     "max_simplify_points", "max_simplify_work", "max_header_bytes", "max_connections"):
            if getattr(self, name) < 1:
                raise DoodleError(f"{ENV_PREFIX}{name.upper()} must be at least 1, got {getattr(self, name)}")
        for name in ("header_timeout", "body_timeout"):
            if not 0 < getattr(self, name) < math.inf:
                raise DoodleError(f"{ENV_PREFIX}{name.upper()} must be a positive finite number of seconds, "
                                  f"got {getattr(self, name)}")
        if self.threads < 0 or not 0 <= self.port < 65536:
            raise DoodleError(f"threads must be >= 0 and port within 0..65535 (got {self.threads}, {self.port})")

    @property
    def limits(self) -> dict[str, float]:
        """The limits a client may run into, as /healthz shows them."""
        names = ("max_body_bytes", "max_strokes", "max_points", "max_top_k", "max_simplify_points",
                 "max_simplify_work", "header_timeout", "body_timeout", "max_header_bytes", "max_connections")
        return {name: getattr(self, name) for name in names}

    @property
    def inference_threads(self) -> int:
        """`threads`, with 0 resolved to the number of CPU cores."""
        return self.threads or os.cpu_count() or 1


def _parse(name: str, tp: object, text: str) -> object:
    for kind, word in ((int, "an integer"), (float, "a number")):
        if tp in (kind, kind.__name__):
            try:
                return kind(text)
            except ValueError:
                raise DoodleError(f"{ENV_PREFIX}{name.upper()} must be {word}, got {text!r}") from None
    return text
