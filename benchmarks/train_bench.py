"""Loader throughput beside model throughput, per preset: is the loader the bottleneck?

    .venv/bin/python benchmarks/train_bench.py --data STORE [--presets cpu sequence ...] [--steps 8]

For each preset (configs/NAME.yaml) it measures, in this one process:
* loader: drawings/s of ONE loader worker end to end, store read to collated tensors: computing
  `EpochBatches[i]` (packed arrays from Arrow, simplify, augment, render or sequence features) and
  turning it into tensors, median per batch, plus the store read's share (reading and decoding a
  window of row groups and packing its rows, median of three cold reads, divided by its rows: a
  worker does this once per window for all the batches it holds). A worker is one process on one core, so this is also
  the loader's rate per core;
* reference: the same for the readable per-drawing path (`Drawing` objects from the rows, then
  `Preprocessor.reference`: per-drawing simplify, `augment_batch`, features) reading the raw columns,
  on the same batches: the baseline the loader is measured against, and `speed-up` the ratio;
* model: training images/s of one optimizer step (forward, backward, AdamW/SGD step) on batches
  prepared in advance, median per step, at the preset's batch size (capped by --max-batch on CPU);
  on a CPU also per core (divided by torch's threads: the cores the step ran on).

The ratio is computed for the cores this process may run on (`os.sched_getaffinity`), not for the
preset's worker count: a preset asking for more workers than there are cores gets no more loader
throughput than the cores give. `loader/model = loader/s/core x min(workers, cores) / model img/s`:
above 1, the loader keeps up. On a CPU the loader workers and the model share those cores, so it
is an upper bound there, and `per core` (loader/s/core / model img/s/core) says how many images
the loader prepares in the time the model trains on one, core for core: the loader's share of
the CPU in a run is 1 / (1 + that figure). On a GPU machine the workers have cores of their own.
`feed cores = model img/s / loader/s/core` is how many loader cores keep the model as measured fed
(on a GPU machine: the cores to set aside for the loader workers).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from doodle.config import load_config
from doodle.data.store import load_manifest
from doodle.data.table import table_to_drawings
from doodle.models import create_model
from doodle.preprocess import Preprocessor
from doodle.train.config import TrainConfig
from doodle.train.data import READ_COLUMNS, EpochBatches
from doodle.train.losses import make_loss
from doodle.train.optim import build_optimizer

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Timings:
    """What one preset measured: median seconds per batch of one loader worker and per training
    step, at `batch` drawings, and the workers the preset asks for."""

    batch: int
    loader_s: float
    model_s: float
    workers: int
    reference_s: float | None = None
    """Median seconds per batch of the per-drawing reference path (None: not measured)."""
    read_s: float = 0.0
    """Seconds per drawing of reading and decoding the store (added to the loader's batch time)."""
    reference_read_s: float = 0.0
    """The same for the columns the reference reads (the raw strokes)."""


@dataclass(frozen=True)
class Figures:
    """The report of one preset on this machine (see the module docstring)."""

    loader_per_core: float
    """Drawings/s of one loader worker (one core), store read to collated tensors."""
    reference_per_core: float | None
    """The same for the per-drawing reference path (None: not measured)."""
    model: float
    """Training images/s of the model as measured (all torch threads, or the GPU)."""
    model_per_core: float | None
    """CPU only: model images/s per core (None on a GPU, where the model does not run on cores)."""
    workers: int
    """Loader workers the preset asks for."""
    usable_workers: int
    """Of those, how many have a core of their own here: min(workers, cores), at least 1."""
    ratio: float
    """loader_per_core x usable_workers / model: above 1, the loader keeps up."""
    per_core_ratio: float | None
    """CPU only: loader_per_core / model_per_core."""
    feed_cores: float
    """Loader cores that keep the model as measured fed: model / loader_per_core."""
    read_us: float = 0.0
    """Microseconds per drawing of reading and decoding the store (part of the loader's time; every
    worker pays it for every drawing, its own batches or not)."""


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers and taskset narrow),
    falling back to the machine's count where the mask cannot be read."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def figures(t: Timings, cores: int, threads: int, on_gpu: bool) -> Figures:
    """The report's arithmetic: rates from the timings, the ratio for `cores` cores (a worker
    loads on one core; workers beyond the cores present add nothing, and a preset with 0 workers
    loads in the main process, on one core) and, on a CPU, the model per core over `threads`."""
    loader = t.batch / (t.loader_s + t.read_s * t.batch)
    reference = None if t.reference_s is None else t.batch / (t.reference_s + t.reference_read_s * t.batch)
    model = t.batch / t.model_s
    usable = max(1, min(t.workers, cores))
    model_per_core = None if on_gpu else model / max(1, min(threads, cores))
    return Figures(
        loader_per_core=loader,
        reference_per_core=reference,
        model=model,
        model_per_core=model_per_core,
        workers=t.workers,
        usable_workers=usable,
        ratio=loader * usable / model,
        per_core_ratio=None if model_per_core is None else loader / model_per_core,
        feed_cores=model / loader,
        read_us=t.read_s * 1e6,
    )


def median_time(fn, repeats: int) -> float:
    """Median wall seconds of `repeats` calls of `fn`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def collated(batch: dict) -> dict:
    """The batch as the DataLoader hands it over (`batch_size=None`: each array as a tensor)."""
    return {k: torch.as_tensor(v) for k, v in batch.items()}


def reference_batch(ds: EpochBatches, i: int) -> dict:
    """Batch i made the per-drawing way: `Drawing`s from the rows, `Preprocessor.reference`."""
    rows = ds.batch_rows(i)
    rng = np.random.default_rng([ds.seed, ds.epoch, ds.global_index(i)])
    batch = ds.preprocess.reference(table_to_drawings(rows), augment=ds.augment, rng=rng)
    batch["label"] = rows.column("label").to_numpy().astype(np.int64)
    batch["key_id"] = rows.column("key_id").to_numpy().astype(np.uint64).view(np.int64)
    return collated(batch)


def read_seconds(ds: EpochBatches, packed: bool = True, repeats: int = 3) -> float:
    """Seconds per drawing of reading and decoding the first window of row groups (cold, median),
    and with `packed` of turning its rows into the packed arrays the batch path gathers from."""
    def read() -> None:
        ds._cached = ds._arrays = None
        ds._open.clear()
        ds._window_arrays(0) if packed else ds._window_rows(0)

    rows = int(ds.window_offsets[1] - ds.window_offsets[0])
    seconds = median_time(read, repeats)
    ds._cached = ds._arrays = None
    return seconds / max(rows, 1)


def loader_timings(ds: EpochBatches, steps: int, reference: bool) -> tuple[float, float, float | None, float]:
    """(batch s, read s per drawing) of the loader, and the same of the reference (or None, 0)."""
    n = min(steps, len(ds))
    ds[0]  # warm-up: JIT compile, first window read
    indices = iter(range(1, n + 1))
    loader_s = median_time(lambda: collated(ds[next(indices) % len(ds)]), n)
    read_s = read_seconds(ds)
    if not reference:
        return loader_s, read_s, None, 0.0
    raw = copy.copy(ds)
    raw.columns, raw._cached, raw._arrays = READ_COLUMNS, None, None  # the reference reads the raw strokes
    reference_batch(raw, 0)
    indices = iter(range(1, n + 1))
    reference_s = median_time(lambda: reference_batch(raw, next(indices) % len(ds)), n)
    return loader_s, read_s, reference_s, read_seconds(raw, packed=False)


def bench(preset: str, store: Path, steps: int, max_batch: int, device: torch.device,
          reference: bool = True) -> tuple[dict, Timings]:
    """Time one preset's loader worker (and its per-drawing reference) and training step; returns
    its description and timings."""
    cfg = load_config(TrainConfig, REPO / "configs" / f"{preset}.yaml")
    batch = min(cfg.data.batch_size, max_batch)
    classes = load_manifest(store)["classes"]
    torch.manual_seed(0)
    model = create_model(cfg.model, cfg.input, len(classes)).to(device)
    ds = EpochBatches(store, "train", Preprocessor(cfg.input, model.input_kind), batch, 0, 0, augment=cfg.augment,
                      balanced_block=None)
    loader_s, read_s, reference_s, reference_read_s = loader_timings(ds, steps, reference)
    batches = [ds[i % len(ds)] for i in range(2)]
    tensors = [{k: torch.as_tensor(v).to(device) for k, v in b.items() if k not in ("key_id",)} for b in batches]
    optimizer, loss_fn = build_optimizer(cfg.optim, model), make_loss(cfg.loss)
    model.train()

    def step(i=[0]):  # noqa: B006 - a counter across calls
        b = tensors[i[0] % len(tensors)]
        i[0] += 1
        loss = loss_fn(model(b), b["label"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()
    model_s = median_time(step, steps)
    kind = model.input_kind
    described = {
        "preset": preset,
        "input": f"image {cfg.input.encoding} {cfg.input.size}px" if kind == "image"
        else f"{kind} {cfg.input.max_points} points",
        "arch": cfg.model.arch if cfg.model.family != "sequence" else "conv+bilstm",
        "batch": batch,
        "reads": "simplified" if ds.columns != READ_COLUMNS else "raw",
    }
    return described, Timings(batch, loader_s, model_s, cfg.data.workers, reference_s, read_s, reference_read_s)


def header(cores: int) -> str:
    """The table's column names."""
    return (f"{'preset':<23}{'input':<36}{'arch':<20}{'batch':>6}{'reads':>11}{'read us':>8}"
            f"{'reference/s/core':>17}"
            f"{'loader/s/core':>14}{'speed-up':>9}{'model img/s':>12}"
            f"{'img/s/core':>11}{'workers':>8}{'used':>5}{f'loader/model@{cores}':>18}{'per core':>9}"
            f"{'feed cores':>11}")


def rate(value: float) -> str:
    """A rate for the table: whole numbers with thousands separators, three digits below 100 (a
    large model's few images/s per core would otherwise print as 0 or 1)."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def row(described: dict, f: Figures) -> str:
    """One preset's line of the table (per-core model figures are "-" on a GPU)."""
    per_core = "-" if f.model_per_core is None else rate(f.model_per_core)
    per_core_ratio = "-" if f.per_core_ratio is None else f"{f.per_core_ratio:.1f}x"
    reference = "-" if f.reference_per_core is None else rate(f.reference_per_core)
    speed_up = "-" if f.reference_per_core is None else f"{f.loader_per_core / f.reference_per_core:.1f}x"
    return (f"{described['preset']:<23}{described['input']:<36}{described['arch']:<20}{described['batch']:>6}"
            f"{described.get('reads', '-'):>11}{f.read_us:>8.2f}{reference:>17}{rate(f.loader_per_core):>14}"
            f"{speed_up:>9}"
            f"{rate(f.model):>12}{per_core:>11}{f.workers:>8}{f.usable_workers:>5}"
            f"{f.ratio:>17.1f}x{per_core_ratio:>9}{f.feed_cores:>11.3g}")


def main(argv: list[str] | None = None) -> None:
    """Measure the presets named on the command line and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a store made by doodle prepare")
    parser.add_argument("--presets", nargs="+", default=["cpu", "cnn", "sequence", "learned-raster",
                                                         "mobilenet-grey-64", "seresnext50-128"])
    parser.add_argument("--steps", type=int, default=6, help="timed batches/steps per measurement")
    parser.add_argument("--max-batch", type=int, default=64, help="cap on the batch size (CPU memory and time)")
    parser.add_argument("--no-reference", action="store_true", help="skip the per-drawing reference path")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cores, threads = available_cores(), torch.get_num_threads()
    print(f"device {device}, {cores} cores available to this process, {threads} torch threads; "
          f"median of {args.steps} batches/steps")
    print(header(cores))
    print("  (reads = the store columns the loader reads; read us = their read, decode and packing per drawing, which "
          "every worker pays for every drawing; reference/s/core = the per-drawing path; loader/s/core "
          "= this loader, store read to collated tensors; speed-up = loader / reference)")
    print(f"  (used = the preset's workers that have a core here; loader/model@{cores} = loader/s/core x used / "
          "model img/s; per core = loader/s/core / img/s/core; feed cores = loader cores the model as measured "
          "needs: model img/s / loader/s/core)")
    for preset in args.presets:
        described, timings = bench(preset, args.data, args.steps, args.max_batch, device, not args.no_reference)
        print(row(described, figures(timings, cores, threads, device.type == "cuda")), flush=True)


if __name__ == "__main__":
    main()
