"""Server settings from DOODLE_* variables, and `doodle serve` refusing bad models clearly."""

from __future__ import annotations

import os

import pytest

from doodle.cli import main
from doodle.errors import DoodleError
from doodle.serve.settings import ServeSettings


def test_settings_from_env(monkeypatch):
    monkeypatch.setenv("DOODLE_PORT", "9123")
    monkeypatch.setenv("DOODLE_MAX_STROKES", "7")
    monkeypatch.setenv("DOODLE_BACKEND", "torch")
    monkeypatch.setenv("DOODLE_HOST", "")  # empty: the default
    s = ServeSettings.from_env(model="m", max_strokes=None, workers=3)
    assert (s.port, s.max_strokes, s.backend, s.host, s.workers, s.model) == (9123, 7, "torch", "127.0.0.1", 3, "m")
    assert s.inference_threads == (os.cpu_count() or 1)  # threads 0: every core
    assert ServeSettings.from_env(model="m", threads=3).inference_threads == 3


def test_limit_settings_from_env(monkeypatch):
    monkeypatch.setenv("DOODLE_HEADER_TIMEOUT", "2.5")
    monkeypatch.setenv("DOODLE_BODY_TIMEOUT", "7")
    monkeypatch.setenv("DOODLE_MAX_SIMPLIFY_WORK", "123456")
    monkeypatch.setenv("DOODLE_MAX_CONNECTIONS", "64")
    s = ServeSettings.from_env(model="m")
    assert (s.header_timeout, s.body_timeout, s.max_simplify_work, s.max_connections) == (2.5, 7.0, 123456, 64)
    assert s.limits["header_timeout"] == 2.5 and s.limits["max_simplify_work"] == 123456
    assert "model" not in s.limits and "host" not in s.limits


@pytest.mark.parametrize("name, value, needle", [
    ("DOODLE_PORT", "eighty", "must be an integer"),
    ("DOODLE_MAX_POINTS", "0", "must be at least 1"),
    ("DOODLE_WORKERS", "0", "must be at least 1"),
    ("DOODLE_THREADS", "-1", "threads must be >= 0"),
    ("DOODLE_BACKEND", "tensorflow", "onnx or torch"),
    ("DOODLE_PORT", "70000", "port"),
    ("DOODLE_HEADER_TIMEOUT", "soon", "must be a number"),
    ("DOODLE_BODY_TIMEOUT", "0", "positive finite number of seconds"),
    ("DOODLE_HEADER_TIMEOUT", "nan", "positive finite number of seconds"),
    ("DOODLE_HEADER_TIMEOUT", "inf", "positive finite number of seconds"),
    ("DOODLE_MAX_SIMPLIFY_POINTS", "0", "must be at least 1"),
    ("DOODLE_MAX_CONNECTIONS", "-5", "must be at least 1"),
])
def test_bad_settings(monkeypatch, name, value, needle):
    monkeypatch.setenv(name, value)
    with pytest.raises(DoodleError, match=needle):
        ServeSettings.from_env(model="m")


def test_serve_refuses_a_missing_or_bad_model(tmp_path, capsys, tiny_export):
    with pytest.raises(SystemExit) as exit_info:  # refused while the command line is read
        main(["serve", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"doodle serve: error: {tmp_path / 'nowhere'}: no such file or folder\n"
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert main(["serve", str(tmp_path / "junk.pt")]) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
    assert main(["serve", str(tiny_export), "--backend", "torch"]) == 2
    assert "needs the run or checkpoint" in capsys.readouterr().err
