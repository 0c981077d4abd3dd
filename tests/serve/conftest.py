"""Fixtures for the serving tests: the small model of `serve_helpers.train_tiny`, its ONNX export, the
app in-process (TestClient) and on a real socket (uvicorn in a thread)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from doodle.serve.settings import ServeSettings

from .serve_helpers import SMALL_LIMITS, LiveServer, train_tiny


@pytest.fixture(scope="session")
def tiny_run(quickdraw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder (best.pt) of a small CNN trained on real drawings of `CLASSES`."""
    return train_tiny(quickdraw, tmp_path_factory.mktemp("tiny-run"))


@pytest.fixture(scope="session")
def tiny_export(tiny_run: Path, quickdraw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`doodle export` of the tiny run, checked on real raw drawings."""
    from doodle.infer.export import export_onnx

    out = tmp_path_factory.mktemp("tiny-export")
    result = export_onnx(tiny_run, out, check_sources=[quickdraw / "raw"], check_n=64)
    assert result.agreement is not None and result.agreement.top3_agreement == 1.0
    return out


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
