"""Benchmark `doodle prepare`: throughput per core, and peak memory as the input grows; for Kaggle
CSVs, the drawing parser's rate against the general path and prepare's rate end to end.

    .venv/bin/python benchmarks/prepare_bench.py [--quickdraw ../shared/quickdraw] [--factors 1 10 100]
    .venv/bin/python benchmarks/prepare_bench.py --csv /tmp/prof/in [--rows 50000] [--workers 2 1]

ndjson (the default):

1. Throughput: every ndjson drawing in ../shared/quickdraw (raw and simplified), prepared with one
   worker and with all cores; prints drawings/s and drawings/s per core (median of --repeats runs).
2. Memory: the same input replicated 1x, 10x, 100x with fresh key_ids (so nothing is deduplicated
   away), prepared with the default memory budget on all cores; prints the peak resident memory of
   the whole process tree (parent and workers, sampled from /proc every 50 ms), the number of
   shards and the throughput per core at that size (where start-up costs no longer dominate).
   Bounded memory means the peak stays flat while the input grows 100-fold.

Kaggle CSVs (--csv FILES or FOLDERS of `countrycode,drawing,key_id,recognized,timestamp,word` rows):

3. Parse rate, in this one process on one core: the drawing column of --rows rows (shared evenly
   by the files, so every class is in), turned into strokes and flat points by the general path
   (orjson.loads, strokes_from_json, then Drawing.to_flat per drawing) and by prepare's path
   (strokes_from_text: the one-pass parser of `doodle.data.stroke_json`, which hands what it does
   not handle to the general path; the flat points of a whole batch in one concatenation, as
   drawings_to_table makes them). Both sides get the same texts; first they are checked to give
   the same arrays (exactly) or the same reject reasons. Printed: drawings per CPU-second of each
   side (medians of --repeats; the process is single-threaded, so CPU seconds are core seconds
   and a busy machine's waiting is left out), and the new / old ratio, the median of the ratios of
   runs timed back to back (old and new alternate, so a drift in the machine's load hits both).
4. End to end: `doodle prepare` of the CSVs in a child process for each --workers value (default:
   all cores): wall seconds, CPU seconds of the whole process tree (workers included) over wall,
   drawings/s per core (drawings / wall / workers: the number to compare with other machines when
   the cores are free) and drawings per CPU-second (the same when they are; on a busy machine the
   truer one). With --baseline, each run is paired with one whose every process (spawned workers
   included) takes the general path of part 3, and the ratio of the two is printed.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from doodle.data.drawing import DEFAULT_LIMITS, BadRecord, Drawing, strokes_from_json, strokes_from_text
from doodle.data.store import load_manifest
from doodle.data.stroke_json import parse_drawing_text
from doodle.data.table import _batch_points

REPO = Path(__file__).resolve().parents[1]
KEY = re.compile(rb'"key_id"\s*:\s*"?(\d+)"?')


def source_files(quickdraw: Path) -> list[Path]:
    return sorted((quickdraw / "raw").glob("*.ndjson")) + sorted((quickdraw / "simplified").glob("*.ndjson"))


def count_lines(files: list[Path]) -> int:
    return sum(sum(1 for line in open(f, "rb") if line.strip()) for f in files)


def replicate(files: list[Path], factor: int, out: Path) -> int:
    """Write `factor` copies of every line with fresh, unique key_ids; returns the line count."""
    out.mkdir(parents=True)
    counter = 10**15  # far from real key_ids, unique across copies
    n = 0
    for copy in range(factor):
        with open(out / f"copy{copy:04d}.ndjson", "wb") as sink:
            for f in files:
                for line in f.read_bytes().splitlines():
                    if not line.strip():
                        continue
                    counter += 1
                    sink.write(KEY.sub(b'"key_id":"%d"' % counter, line, count=1) + b"\n")
                    n += 1
    return n


def tree_rss_bytes(root: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


def run_prepare(src: Path, out: Path, workers: int, extra: list[str] | None = None) -> tuple[float, int, dict]:
    """Run `doodle prepare` in a child process; returns (seconds, peak tree RSS bytes, manifest)."""
    cmd = [sys.executable, "-m", "doodle", "-q", "prepare", str(src), "--out", str(out), "--overwrite",
           "--no-progress", "--workers", str(workers), *(extra or [])]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_bytes(proc.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    if code:
        raise SystemExit(f"prepare failed with exit code {code}")
    return seconds, peak, load_manifest(out)


# -- Kaggle CSVs: the parse rate ------------------------------------------------------------------

BATCH = 8192
"""Drawings per flat batch of the new side (a segment of prepare's map stage holds tens of thousands)."""


def csv_files(sources: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for src in sources:
        files += sorted(src.rglob("*.csv")) if src.is_dir() else [src]
    if not files:
        raise SystemExit(f"no CSV files in {', '.join(map(str, sources))}")
    return files


def drawing_texts(files: list[Path], rows: int) -> list[str]:
    """The drawing column of `rows` rows (0: all), an even share from each file."""
    share = math.ceil(rows / len(files)) if rows else None
    csv.field_size_limit(1 << 30)  # a raw drawing can outgrow the default limit
    texts: list[str] = []
    for path in files:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            for k, row in enumerate(reader):
                if share is not None and k >= share:
                    break
                texts.append(row["drawing"])
    return texts[:rows] if rows else texts


def general_strokes(text: str) -> list[np.ndarray]:
    """The general path, as drawing_from_record took it before the one-pass parser."""
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise BadRecord(f"drawing is not valid JSON: {err}") from None
    return strokes_from_json(parsed, DEFAULT_LIMITS)


def old_side(texts: list[str]) -> int:
    """The general path, then to_flat per drawing; returns how many were accepted."""
    accepted = 0
    for text in texts:
        try:
            strokes = general_strokes(text)
        except BadRecord:
            continue
        Drawing(key_id=0, strokes=strokes).to_flat()
        accepted += 1
    return accepted


def new_side(texts: list[str]) -> int:
    """prepare's path: strokes_from_text, then the flat points of each batch at once."""
    batch: list[Drawing] = []
    accepted = 0
    for text in texts:
        try:
            batch.append(Drawing(key_id=0, strokes=strokes_from_text(text, DEFAULT_LIMITS)))
        except BadRecord:
            continue
        if len(batch) == BATCH:
            accepted += _flatten(batch)
            batch = []
    return accepted + _flatten(batch)


def _flatten(batch: list[Drawing]) -> int:
    if batch and _batch_points(batch) is None:  # not one width: drawings_to_table's general way
        for d in batch:
            d.to_flat()
    return len(batch)


def outcome(text: str, parse: Callable[[str], list[np.ndarray]]) -> list[np.ndarray] | str:
    try:
        return parse(text)
    except BadRecord as err:
        return str(err)


def same_outcome(a: list[np.ndarray] | str, b: list[np.ndarray] | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def check_same(texts: list[str]) -> int:
    """Both sides' strokes, exactly equal (or the same reject reason) for every text; returns how
    many texts the one-pass parser handled itself."""
    for i, text in enumerate(texts):
        new = outcome(text, lambda t: strokes_from_text(t, DEFAULT_LIMITS))
        if not same_outcome(outcome(text, general_strokes), new):
            raise SystemExit(f"row {i}: the two paths differ on {text[:120]!r}")
    return sum(parse_drawing_text(t, DEFAULT_LIMITS) is not None for t in texts)


def time_side(side: Callable[[list[str]], int], texts: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run of a side over the texts."""
    cpu, wall = time.process_time(), time.perf_counter()
    side(texts)
    return time.process_time() - cpu, time.perf_counter() - wall


def parse_rate(files: list[Path], rows: int, repeats: int) -> None:
    texts = drawing_texts(files, rows)
    handled = check_same(texts)
    megabytes = sum(map(len, texts)) / 1e6
    print(f"3. parse rate on one core: {len(texts):,} drawing texts from {len(files)} files ({megabytes:.0f} MB); "
          f"the one-pass parser handles {handled / max(len(texts), 1):.2%} itself, the same arrays as the general path")
    new_side(texts[:100])  # numba's compilation (or its cache's loading) is no part of the rate
    runs: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    for _ in range(repeats):
        for name, side in (("old", old_side), ("new", new_side)):
            runs[name].append(time_side(side, texts))
    n = len(texts)
    for name, label in (("old", "general: orjson + strokes_from_json + to_flat"),
                        ("new", "prepare: strokes_from_text + batch flat")):
        cpu = statistics.median(c for c, _ in runs[name])
        wall = statistics.median(w for _, w in runs[name])
        print(f"  {label:48} {n / cpu:9,.0f} drawings per CPU-second ({n / wall:9,.0f} drawings/s wall)")
    ratio = statistics.median(o[0] / w[0] for o, w in zip(runs["old"], runs["new"], strict=True))
    print(f"  new / old: {ratio:.2f}x (median of {repeats} paired runs)")


# -- Kaggle CSVs: prepare end to end ------------------------------------------------------------------

GENERAL_PATH_SHIM = """\
# Written by benchmarks/prepare_bench.py for a baseline run: every process that starts with this
# folder on PYTHONPATH (the spawned workers of prepare too) takes the general path.
from doodle.data import drawing, table

drawing._text_parser = lambda: (lambda text, limits: None)
table._batch_points = lambda drawings: None
"""


@dataclass
class Run:
    wall: float
    cpu: float
    drawings: int


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def prepare_run(sources: Sequence[Path], out: Path, workers: int, shim: Path | None = None,
                extra: Sequence[str] = ()) -> Run:
    """`doodle prepare` in a child process; CPU counts the child and the workers it waited for."""
    cmd = [sys.executable, "-m", "doodle", "-q", "prepare", *map(str, sources), "--out", str(out), "--overwrite",
           "--no-progress", "--workers", str(workers), *extra]
    env = dict(os.environ)
    if shim is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), env.get("PYTHONPATH")]))
    cpu, start = children_cpu(), time.perf_counter()
    code = subprocess.run(cmd, stdout=subprocess.DEVNULL, env=env).returncode
    wall = time.perf_counter() - start
    if code:
        raise SystemExit(f"prepare failed with exit code {code}")
    return Run(wall, children_cpu() - cpu, load_manifest(out)["input"])


def describe_run(label: str, run: Run, workers: int) -> str:
    return (f"  {label:9} {run.wall:8.1f} s wall  CPU/wall {run.cpu / run.wall:4.2f}  "
            f"{run.drawings / run.wall / workers:8,.0f} drawings/s per core  "
            f"{run.drawings / run.cpu:8,.0f} drawings per CPU-second")


def prepare_rate(sources: Sequence[Path], workers_list: list[int], repeats: int, baseline: bool, work: Path,
                 extra: Sequence[str] = ()) -> None:
    shim = None
    if baseline:
        shim = work / "general-path"
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "sitecustomize.py").write_text(GENERAL_PATH_SHIM)
    options = f", {' '.join(extra)}" if extra else ""
    print(f"4. prepare end to end (median of {repeats}; wall includes start-up; drawings = records read{options})")
    for workers in workers_list:
        runs: dict[str, list[Run]] = {"new": [], "general": []}
        for _ in range(repeats):
            runs["new"].append(prepare_run(sources, work / "store", workers, extra=extra))
            if shim is not None:
                runs["general"].append(prepare_run(sources, work / "store", workers, shim, extra))
        print(f" workers={workers}, {runs['new'][0].drawings:,} drawings")
        for label, measured in runs.items():
            if measured:
                print(describe_run(label, median_run(measured), workers))
        if shim is not None:
            wall = statistics.median(g.wall / n.wall for n, g in zip(runs["new"], runs["general"], strict=True))
            cpu = statistics.median(g.cpu / n.cpu for n, g in zip(runs["new"], runs["general"], strict=True))
            print(f"  new / general: {wall:.2f}x in wall time, {cpu:.2f}x in CPU time (medians of paired runs)")


def median_run(runs: list[Run]) -> Run:
    return Run(statistics.median(r.wall for r in runs), statistics.median(r.cpu for r in runs), runs[0].drawings)


def csv_main(args: argparse.Namespace) -> None:
    files = csv_files(args.csv)
    work = Path(tempfile.mkdtemp(prefix="doodle-bench-", dir=args.workdir))
    try:
        if not args.no_parse:
            parse_rate(files, args.rows, args.repeats)
        if not args.no_prepare:
            workers = args.workers or [os.cpu_count() or 1]
            prepare_rate(args.csv, workers, args.repeats, args.baseline, work, prepare_options(args))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prepare_options(args: argparse.Namespace) -> list[str]:
    return [*(["--memory-mb", str(args.memory_mb)] if args.memory_mb else []),
            *(["--shards", str(args.shards)] if args.shards else [])]


# -- ndjson ----------------------------------------------------------------------------------------


def ndjson_main(args: argparse.Namespace) -> None:
    extra = prepare_options(args)
    files = source_files(args.quickdraw)
    if not files:
        raise SystemExit(f"no ndjson files under {args.quickdraw}")
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="doodle-bench-", dir=args.workdir))
    try:
        src = work / "src"
        n = replicate(files, 1, src)
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        print(f"input: {len(files)} real ndjson files, {n:,} drawings ({megabytes:.0f} MB)")
        print(f"\n1. throughput (median of {args.repeats} runs; includes process start-up)")
        for workers in [] if args.no_throughput else sorted({1, cores}):
            times = [run_prepare(src, work / "store", workers)[0] for _ in range(args.repeats)]
            med = statistics.median(times)
            print(f"  workers={workers}: {med:6.2f} s  {n / med:9,.0f} drawings/s  "
                  f"{n / med / workers:9,.0f} drawings/s per core")
        options = " ".join(extra) or "default --memory-mb 2048"
        print(f"\n2. peak memory of the process tree ({cores} workers, {options})")
        print(f"  {'factor':>6} {'drawings':>11} {'input MB':>9} {'shards':>6} {'passes':>6} {'seconds':>8} "
              f"{'drawings/s/core':>15} {'peak RSS MB':>11}")
        for factor in args.factors:
            shutil.rmtree(work / "rep", ignore_errors=True)
            n_rep = replicate(files, factor, work / "rep")
            size = sum(f.stat().st_size for f in (work / "rep").iterdir())
            seconds, peak, manifest = run_prepare(work / "rep", work / "store", cores, extra)
            assert manifest["accepted"] == n_rep, manifest["accepted"]
            passes = manifest.get("passes", manifest["shards"])  # reduce passes in all (one per shard at most sizes)
            print(f"  {factor:>5}x {n_rep:>11,} {size / 1e6:>9,.0f} {manifest['shards']:>6} {passes:>6} "
                  f"{seconds:>8.1f} "
                  f"{n_rep / seconds / cores:>15,.0f} {peak / 2**20:>11,.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quickdraw", type=Path, default=REPO.parent / "shared" / "quickdraw")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch space (default: a temp dir)")
    parser.add_argument("--memory-mb", type=int, default=None,
                        help="prepare's --memory-mb in the memory part and in part 4 (default: prepare's own, 2048)")
    parser.add_argument("--shards", type=int, default=None,
                        help="prepare's --shards in the memory part and in part 4 (a few, with a small "
                        "--memory-mb, makes buckets outgrow their share: the multi-pass reduce)")
    parser.add_argument("--no-throughput", action="store_true", help="skip part 1")
    csv_args = parser.add_argument_group("Kaggle CSVs (parts 3 and 4, instead of 1 and 2)")
    csv_args.add_argument("--csv", type=Path, nargs="+", metavar="PATH", help="Kaggle CSV files or folders")
    csv_args.add_argument("--rows", type=int, default=50_000, help="rows parsed in part 3 (0: all; default 50,000)")
    csv_args.add_argument("--workers", type=int, nargs="+", default=None,
                          help="prepare's --workers in part 4, one run each (default: all cores)")
    csv_args.add_argument("--baseline", action="store_true",
                          help="part 4: pair each run with one on the general path, and print the ratio")
    csv_args.add_argument("--no-parse", action="store_true", help="skip part 3")
    csv_args.add_argument("--no-prepare", action="store_true", help="skip part 4")
    args = parser.parse_args(argv)
    if args.csv:
        csv_main(args)
    else:
        ndjson_main(args)


if __name__ == "__main__":
    main()
