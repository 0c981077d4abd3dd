"""Helpers of the serving tests: a small CNN trained on real drawings, a uvicorn server in a thread,
raw drawings.

The model is trained for a few seconds on real simplified drawings of four classes from the
committed sample (tests/fixtures/quickdraw), so its guesses are real (mostly right on those classes)
and the parity and browser tests exercise a genuine model, never a stub.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

CLASSES = ["camera", "eye", "headphones", "television"]
PER_CLASS = 120
SIZE = 32


def train_tiny(quickdraw: Path, out: Path, steps: int = 40) -> Path:
    """Train a resnet10t at 32 px on real simplified drawings; write out/best.pt (a real checkpoint)."""
    from doodle.data.formats import read
    from doodle.preprocess import Preprocessor

    drawings, labels = [], []
    for label, name in enumerate(CLASSES):
        path = quickdraw / "simplified" / f"JulienDuranleau_{name}.ndjson"
        batch = list(itertools.islice(read(path), PER_CLASS))
        drawings += batch
        labels += [label] * len(batch)
    model, inputs = tiny_model()
    pre = Preprocessor(inputs, "image")
    images = torch.from_numpy(pre(drawings)["image"])
    targets = torch.tensor(labels)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (48,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model({"image": images[idx]}), targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return save_run(model, inputs, out)


def untrained_run(out: Path) -> Path:
    """out/best.pt: the model of `train_tiny` with its initial (seeded) weights. Its guesses mean
    nothing, but its export, preprocessing and simplification are the real ones: for the tests of
    the server itself, which need no real data."""
    model, inputs = tiny_model()
    return save_run(model, inputs, out)


def tiny_model():
    """A seeded resnet10t for 32 px images of the order-speed-accel encoding, and its InputConfig
    (with Google's simplification, as the real models)."""
    from doodle.models import ModelConfig, create_model
    from doodle.preprocess import InputConfig

    inputs = InputConfig(encoding="order-speed-accel", size=SIZE, simplify=True)
    torch.manual_seed(0)
    return create_model(ModelConfig(family="cnn", arch="resnet10t"), inputs, len(CLASSES)), inputs


def save_run(model, inputs, out: Path) -> Path:
    """Write `model` as out/best.pt, a real checkpoint of CLASSES."""
    from doodle.models import ModelConfig
    from doodle.runs.checkpoint import atomic_save, make_checkpoint

    model.eval()
    ckpt = make_checkpoint(model_config=asdict(ModelConfig(family="cnn", arch="resnet10t")),
                           input_config=asdict(inputs), input_kind="image", classes=CLASSES, config={},
                           model_state=model.state_dict())
    out.mkdir(parents=True, exist_ok=True)
    atomic_save(ckpt, out / "best.pt")
    return out

SMALL_LIMITS = dict(max_body_bytes=200_000, max_strokes=50, max_points=4000, max_top_k=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a background thread, configured as `doodle serve`
    configures it (the protocol and limits of `settings`)."""

    def __init__(self, app, port: int | None = None, settings=None):
        import uvicorn

        from doodle.serve.server import uvicorn_config
        from doodle.serve.settings import ServeSettings

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        settings = replace(settings or ServeSettings(), host="127.0.0.1", port=self.port)
        self.server = uvicorn.Server(uvicorn_config(app, settings, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="doodle-test-uvicorn", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        wait_ready(lambda: _health_status(self.port))
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def wait_ready(status, timeout: float = 120.0) -> float:
    """Poll `status()` (the /healthz status code, None while unreachable) until it is 200 (the
    server has warmed up); returns the seconds waited."""
    started = time.monotonic()
    while (code := status()) != 200:
        if code not in (None, 503) or time.monotonic() - started > timeout:
            raise RuntimeError(f"the server did not become ready (last /healthz status {code})")
        time.sleep(0.02)
    return time.monotonic() - started


def _health_status(port: int) -> int | None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


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


VALID = {"strokes": [[[10, 60, 110, 60, 10], [20, 80, 20, 0, 20], [0, 40, 80, 120, 160]],
                     [[30, 90], [60, 60], [300, 340]]], "top_k": 3}
"""A small valid /predict body."""


def zigzag(n: int, step: float, height: float = 1000.0) -> list:
    """One untimed stroke of n points whose x advances by `step` while y alternates 0 / height: a
    small body that resampling turns into many points (and RDP into much work)."""
    xs = [round(i * step, 6) for i in range(n)]
    return [[xs, [0.0 if i % 2 == 0 else height for i in range(n)]]]


BRIEF_ZIGZAG = zigzag(20_000, 1.0)
"""20,000 points, x 0..19999, y 0/1000 (about 300 KB): 255,002 resampled points."""
STEEP_ZIGZAG = zigzag(20_000, 0.01)
"""The same with x 0..199.99: 5.1 million resampled points, about a minute of RDP unbounded."""


def heaviest_zigzag(max_work: int, max_points: int, step: float = 1.0) -> list:
    """The longest `zigzag(n, step)` whose simplification stays within both limits (binary search
    with the library itself): the costliest drawing of its kind the server must still answer."""
    import numpy as np

    from doodle.data.simplify import SimplifyLimitError, simplify_strokes

    def fits(n: int) -> bool:
        x, y = zigzag(n, step)[0]
        try:
            simplify_strokes([np.array([x, y], dtype=np.float64).T], max_points=max_points, max_work=max_work)
        except SimplifyLimitError:
            return False
        return True

    lo, hi = 2, 20_000  # fits(lo), and the server's point limit caps n anyway
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return zigzag(lo, step)


class Answer:
    """One HTTP response: status, headers (lower-case names), body, and whether it closed the connection."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes, closes: bool):
        self.status, self.headers, self.body, self.closes = status, headers, body, closes

    def json(self):
        import orjson

        return orjson.loads(self.body)


class KeepAlive:
    """One HTTP/1.1 keep-alive connection to 127.0.0.1 (http.client), reused for every request.

    `opened` counts the sockets it opened and `announced` the answers that said `connection:
    close`, so `opened - 1 - announced` is the number of times the server dropped the connection
    without saying so (0 on a healthy server); a request on a connection the server dropped
    silently raises, as it would for any client."""

    def __init__(self, port: int, timeout: float = 60.0):
        import http.client

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.opened = 0
        self.announced = 0
        self.ports: list[int] = []

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                chunks: list[bytes] | None = None) -> Answer:
        if self.conn.sock is None:
            self.conn.connect()
            self.opened += 1
            self.ports.append(self.conn.sock.getsockname()[1])
        if chunks is not None:
            self.conn.request(method, path, body=iter(chunks), headers=headers or {}, encode_chunked=True)
        else:
            self.conn.request(method, path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        data = response.read()
        answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data,
                        closes=response.will_close)
        self.announced += answer.closes
        return answer

    def post(self, body: bytes, content_type: str | None = "application/json", **kw) -> Answer:
        headers = {"Content-Type": content_type} if content_type else {}
        return self.request("POST", "/predict", body, {**headers, **kw.pop("headers", {})}, **kw)

    @property
    def silent_drops(self) -> int:
        """Connections the server closed without a `connection: close` answer."""
        return self.opened - 1 - self.announced if self.opened else 0

    def close(self) -> None:
        self.conn.close()


def capture_logs():
    """A handler collecting the records of the root and "uvicorn" loggers (uvicorn's own do not
    reach the root), attached until `.detach()`; `.records` holds them."""
    import logging

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.INFO)
            self.records: list[logging.LogRecord] = []
            self.loggers = [logging.getLogger(), logging.getLogger("uvicorn")]
            for logger in self.loggers:
                logger.addHandler(self)

        def emit(self, record):
            self.records.append(record)

        def detach(self):
            for logger in self.loggers:
                logger.removeHandler(self)

    return Collect()
