"""Fixtures for the serving tests: the small model of `serve_helpers.train_tiny`, its ONNX export, the
app in-process (TestClient) and on a real socket (uvicorn in a thread)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from doodle.serve.settings import ServeSettings

from .serve_helpers import SMALL_LIMITS, LiveServer, train_tiny, wait_ready


def shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary folder of this run that every pytest-xdist worker sees (the workers' common
    parent), or this process' own without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def made_once(root: Path, name: str, make: Callable[[Path], object]) -> Path:
    """root/name, made by `make(folder)` by the first worker that asks, the others waiting for it
    (training the tiny model costs most of this suite's time, twice over with two workers)."""
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".complete").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / ".complete").touch()
    return folder


@pytest.fixture(scope="session")
def tiny_run(quickdraw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder (best.pt) of a small CNN trained on real drawings of `CLASSES`."""
    return made_once(shared_folder(tmp_path_factory), "tiny-run", lambda out: train_tiny(quickdraw, out))


@pytest.fixture(scope="session")
def tiny_export(tiny_run: Path, quickdraw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`doodle export` of the tiny run, checked on real raw drawings."""
    from doodle.infer.export import export_onnx

    def export(out: Path) -> None:
        result = export_onnx(tiny_run, out, check_sources=[quickdraw / "raw"], check_n=64)
        assert result.agreement is not None and result.agreement.top3_agreement == 1.0

    return made_once(shared_folder(tmp_path_factory), "tiny-export", export)


@pytest.fixture(scope="session")
def engine(tiny_export: Path):
    from doodle.serve.inference import load_engine

    eng = load_engine(tiny_export)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def client(engine, tiny_export: Path):
    """The app in-process (Starlette TestClient), with small limits the tests can reach."""
    from fastapi.testclient import TestClient

    from doodle.serve.app import create_app

    app = create_app(ServeSettings(model=str(tiny_export), **SMALL_LIMITS), engine)
    with TestClient(app, raise_server_exceptions=False) as c:
        wait_ready(lambda: c.get("/healthz").status_code)
        yield c


@pytest.fixture(scope="session")
def live_server(engine, tiny_export: Path) -> Iterator[LiveServer]:
    from doodle.serve.app import create_app

    with LiveServer(create_app(ServeSettings(model=str(tiny_export)), engine)) as server:
        yield server


@pytest.fixture(scope="session")
def untrained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with the tiny model's initial weights (no data needed)."""
    from .serve_helpers import untrained_run

    return untrained_run(tmp_path_factory.mktemp("untrained-run"))


@pytest.fixture(scope="session")
def bare_engine(untrained_model: Path):
    """The untrained model, exported to ONNX at load as `doodle serve RUN` does."""
    from doodle.serve.inference import load_engine

    eng = load_engine(untrained_model, threads=2)
    yield eng
    eng.close()
