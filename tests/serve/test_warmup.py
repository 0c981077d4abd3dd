"""The first guess as fast as later ones: the server runs every compiled path (numba kernels of
simplification and rendering for raw, untimed and simplified drawings, the model at every batch
size) before /healthz says ready, and says 503 `ready: false` until then."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

from doodle.serve.inference import OnnxEngine
from doodle.serve.settings import ServeSettings

from .serve_helpers import VALID, free_port, wait_ready

FIRST_GUESS_S = 1.0
"""The most a cold server's first /predict may take, once /healthz says ready."""


def first_lines(path: Path) -> dict:
    return orjson.loads(path.read_bytes().splitlines()[0])


def kinds_of_input(quickdraw: Path) -> dict[str, list]:
    """One real drawing of each kind: raw with t, raw without t, Google-simplified."""
    raw = first_lines(quickdraw / "raw" / "camera.ndjson")["drawing"]
    untimed = [s[:2] for s in first_lines(quickdraw / "raw" / "eye.ndjson")["drawing"]]
    return {"raw": raw, "raw-untimed": untimed,
            "simplified": first_lines(quickdraw / "simplified" / "television.ndjson")["drawing"]}


def test_a_cold_server_answers_its_first_guesses_at_once(tiny_export, quickdraw):
    """`doodle serve` in a fresh process: once /healthz says 200, the first request of each kind of
    input takes well under a second (it took ~6 s before the warm-up)."""
    port = free_port()
    cmd = [sys.executable, "-m", "doodle", "-q", "serve", str(tiny_export), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            seen: list[int | None] = []

            def status() -> int | None:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                try:
                    seen.append(c.get("/healthz").status_code)
                except httpx.TransportError:
                    seen.append(None)
                return seen[-1]

            wait_ready(status)
            assert c.get("/healthz").json()["ready"] is True
            for kind, strokes in kinds_of_input(quickdraw).items():
                started = time.perf_counter()
                r = c.post("/predict", json={"strokes": strokes})
                took = time.perf_counter() - started
                assert r.status_code == 200, r.text
                assert took < FIRST_GUESS_S, f"first {kind} guess took {took:.2f} s"
        assert set(seen) <= {None, 503, 200}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class GatedEngine(OnnxEngine):
    """The real engine whose model calls wait for `gate` (the warm-up then lasts until it opens),
    or fail while `broken` is set."""

    def __init__(self, engine: OnnxEngine):
        super().__init__(engine.session, engine.preprocessor, engine.classes, engine.description)
        self.gate = threading.Event()
        self.broken = False

    def forward(self, batch):
        if self.broken:
            raise RuntimeError("the model failed")
        assert self.gate.wait(30)
        return super().forward(batch)


def test_healthz_says_not_ready_until_warm_and_requests_wait(bare_engine, untrained_model):
    from fastapi.testclient import TestClient

    from doodle.serve.app import create_app

    engine = GatedEngine(bare_engine)
    app = create_app(ServeSettings(model=str(untrained_model)), engine)
    with TestClient(app) as c, ThreadPoolExecutor(1) as pool:
        health = c.get("/healthz")
        assert health.status_code == 503
        assert health.json()["ready"] is False and health.json()["status"] == "warming"
        assert c.get("/classes").status_code == 200  # the rest of the app answers meanwhile
        pending = pool.submit(c.post, "/predict", json=VALID)
        time.sleep(0.3)
        assert not pending.done()  # waits for the warm-up instead of racing it
        engine.gate.set()
        assert pending.result(timeout=60).status_code == 200
        wait_ready(lambda: c.get("/healthz").status_code)
        assert c.get("/healthz").json()["ready"] is True


def test_a_failed_warm_up_is_one_log_line_and_the_server_answers(bare_engine, untrained_model, caplog):
    from fastapi.testclient import TestClient

    from doodle.serve.app import create_app

    engine = GatedEngine(bare_engine)
    engine.broken = True
    engine.gate.set()
    with TestClient(create_app(ServeSettings(model=str(untrained_model)), engine)) as c:
        wait_ready(lambda: c.get("/healthz").status_code)
        engine.broken = False
        assert c.post("/predict", json=VALID).status_code == 200
    failed = [r for r in caplog.records if "warm-up failed" in r.getMessage()]
    assert len(failed) == 1 and "the model failed" in failed[0].getMessage() and failed[0].exc_info is None
