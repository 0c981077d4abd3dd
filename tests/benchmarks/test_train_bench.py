"""benchmarks/train_bench.py: the report's arithmetic on fake timings (per-core rates, the ratio
for the cores present, not for the preset's worker count) and one tiny run end to end."""

from __future__ import annotations

import pytest
from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("train_bench")


def test_figures_on_a_cpu_count_only_the_cores_present(bench):
    # 64 drawings: 0.02 s per loader batch (3,200/s on one core), 0.5 s per step (128 img/s)
    t = bench.Timings(batch=64, loader_s=0.02, model_s=0.5, workers=8)
    f = bench.figures(t, cores=2, threads=2, on_gpu=False)
    assert f.loader_per_core == pytest.approx(3200) and f.model == pytest.approx(128)
    assert f.model_per_core == pytest.approx(64)  # two threads on two cores
    assert f.workers == 8 and f.usable_workers == 2  # eight asked for, two cores here
    assert f.ratio == pytest.approx(3200 * 2 / 128)  # 50x, not the 200x that 8 workers would claim
    assert f.per_core_ratio == pytest.approx(3200 / 64)
    assert f.feed_cores == pytest.approx(128 / 3200)  # the model eats what 0.04 of a loader core makes


def test_figures_cap_threads_and_workers_at_the_cores(bench):
    t = bench.Timings(batch=10, loader_s=1.0, model_s=0.1, workers=1)
    f = bench.figures(t, cores=4, threads=16, on_gpu=False)
    assert f.usable_workers == 1 and f.ratio == pytest.approx(10 / 100)
    assert f.model_per_core == pytest.approx(100 / 4)  # 16 threads still run on 4 cores
    # no workers: the main process loads, on one core
    assert bench.figures(bench.Timings(10, 1.0, 0.1, 0), 4, 1, False).usable_workers == 1


def test_figures_on_a_gpu_have_no_model_per_core(bench):
    t = bench.Timings(batch=64, loader_s=0.02, model_s=0.01, workers=10)
    f = bench.figures(t, cores=16, threads=16, on_gpu=True)
    assert f.model_per_core is None and f.per_core_ratio is None
    assert f.usable_workers == 10 and f.ratio == pytest.approx(3200 * 10 / 6400)
    assert f.feed_cores == pytest.approx(6400 / 3200)  # a fast GPU needs two loader cores
    line = bench.row({"preset": "p", "input": "image grey64", "arch": "a", "batch": 64}, f)
    assert line.split()[-3:] == ["5.0x", "-", "2"]


def test_available_cores_follow_the_affinity_mask(bench, monkeypatch):
    monkeypatch.setattr(bench.os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert bench.available_cores() == 3


def test_the_benchmark_runs_on_one_preset(bench, small_store, capsys):
    bench.main(["--data", str(small_store), "--presets", "cpu", "--steps", "1", "--max-batch", "4"])
    out = capsys.readouterr().out
    cores = bench.available_cores()
    assert f"{cores} cores available" in out and f"loader/model@{cores}" in out
    (line,) = [x for x in out.splitlines() if x.startswith("cpu ")]
    fields = line.split()
    workers, used = int(fields[-5]), int(fields[-4])
    assert used == max(1, min(workers, cores)) and fields[-3].endswith("x") and fields[-2].endswith("x")
    assert float(fields[-1]) > 0  # feed cores
