"""`doodle quickstart` end to end, as a user without network runs it: a mirror of the committed
sample on 127.0.0.1, download -> prepare -> train -> evaluate -> export, then doodle's server on
127.0.0.1 answering POST /predict for real val drawings; a second call reuses every stage."""

from __future__ import annotations

import argparse
import threading
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from conftest import load_benchmark
from serve.serve_helpers import _health_status, free_port, wait_ready

from doodle.data.mirror import Mirror
from doodle.data.store import iter_store
from doodle.errors import DoodleError
from doodle.quickstart import STAGES, QuickstartConfig, build_server, quickstart

CATEGORIES = ["eye", "camera", "map", "airplane", "television"]
# seconds of training on 2 cores: 32 px, no augmentation (it slows a short run's learning), no EMA
# (40 steps of EMA would still be the initial weights)
SHORT = ["max_steps=40", "input.size=32", "data.batch_size=32", "ema_decay=0", "data.workers=0", "log_every=10",
         "augment.affine=0", "augment.flip=0", "model.dropout=0"]


@pytest.fixture(scope="module")
def mirror(quickdraw: Path):
    with Mirror(quickdraw) as served:
        yield served


def _config(mirror: Mirror, out: Path, **changes) -> QuickstartConfig:
    options = dict(base_url=mirror.url, per_class=150, time_budget=None, train_overrides=SHORT, progress=False)
    return QuickstartConfig(CATEGORIES, out, **{**options, **changes})


@pytest.fixture(scope="module")
def first_run(mirror, tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart") / "real"
    lines: list[str] = []
    started = time.monotonic()
    result = quickstart(_config(mirror, out), echo=lines.append)
    return result, lines, time.monotonic() - started


class _Served:
    """quickstart's server (`build_server`) for an export, run in a thread on a free port."""

    def __init__(self, export: Path):
        self.port = free_port()
        self.server, self.engine = build_server(export, "127.0.0.1", self.port)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Served:
        self.thread.start()
        wait_ready(lambda: _health_status(self.port), timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.engine.close()

    def top(self, strokes: list, k: int = 3) -> list[str]:
        body = orjson.dumps({"strokes": strokes, "top_k": k})
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/predict", data=body,
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return [p["word"] for p in orjson.loads(answer.read())["predictions"]]


def test_real_drawings_are_guessed_over_http_by_the_served_model(first_run):
    result, lines, seconds = first_run
    val = list(iter_store(result.store, "val"))
    with _Served(result.export) as served:
        answers = [served.top(d.to_json_dict()["drawing"]) for d in val]
    top1 = sum(a[0] == d.word for a, d in zip(answers, val, strict=True)) / len(val)
    top3 = sum(d.word in a for a, d in zip(answers, val, strict=True)) / len(val)
    # chance is 0.2 (top-1) and 0.6 (top-3) for 5 classes: over ~75 val drawings luck passes neither bar
    # (p < 1e-4 each), and a model that learned nothing fails both
    assert len(val) >= 50 and top1 >= 0.45 and top3 >= 0.8, (top1, top3)
    assert [s.name for s in result.stages] == list(STAGES)
    print(f"quickstart end to end: {seconds:.1f} s", result.table(), sep="\n")
    assert 0.5 < result.map3 <= 1 and f"val MAP@3 of the served model: {result.map3:.4f}" in result.table()


def test_each_stage_prints_its_wall_time_and_the_sample_is_counted(first_run):
    result, lines, _ = first_run
    assert [line.split("]")[0] for line in lines if line.startswith("[")] == [f"[{s}" for s in STAGES]
    assert any("sampled out" in line for line in lines)
    assert all(s.what.startswith(("built", "5 simplified", "MAP@3")) for s in result.stages)


def test_a_second_call_reuses_every_stage(first_run, mirror):
    result, _, _ = first_run
    lines: list[str] = []
    started = time.monotonic()
    again = quickstart(_config(mirror, result.out), echo=lines.append)
    assert time.monotonic() - started < 15 and again.map3 == result.map3
    assert "reused 5 complete" in again.stages[0].what
    assert all(s.what.startswith("reused") for s in again.stages[1:]), [s.what for s in again.stages]


def test_no_network_fails_in_seconds_naming_the_mirror_option(tmp_path):
    started = time.monotonic()
    with pytest.raises(DoodleError, match="cannot reach no-such-host.invalid.*--base-url"):
        quickstart(QuickstartConfig(["cat"], tmp_path, base_url="http://no-such-host.invalid/", progress=False))
    assert time.monotonic() - started < 5


def test_the_command_line_parses_its_options():
    from doodle.cli import quickstart as cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["quickstart", "--categories", "cat", "paint can", "--out", "x", "--time-budget", "2m",
                              "--no-serve", "--per-class", "300", "max_steps=5"])
    assert args.categories == ["cat", "paint can"] and args.serve is False and args.per_class == 300
    assert args.overrides == ["max_steps=5"] and args.time_budget == "2m" and args.fmt == "simplified"
    with pytest.raises(SystemExit):
        parser.parse_args(["quickstart", "--categories", "cat", "--out", "x", "--format", "bitmap"])


@pytest.mark.breadth
def test_the_real_data_benchmark_over_the_whole_shared_folder(shared_quickdraw, tmp_path):
    bench = load_benchmark("real_data")
    steps = [o for o in SHORT if not o.startswith("max_steps")] + ["max_steps=60"]
    figures = bench.main(["--shared", str(shared_quickdraw), "--out", str(tmp_path / "bench"), "--time-budget", "0",
                          "--per-class", "400", *steps])
    # 15 classes: guessing at random scores a MAP@3 of about 0.12
    assert figures["categories"] == 15 and figures["map3"] > 0.3, figures
    assert list(figures["stages"]) == list(STAGES)
