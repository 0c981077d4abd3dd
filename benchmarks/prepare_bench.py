"""Benchmark `doodle prepare`: throughput per core, and peak memory as the input grows.

    .venv/bin/python benchmarks/prepare_bench.py [--quickdraw ../shared/quickdraw] [--factors 1 10 100]

1. Throughput: every ndjson drawing in ../shared/quickdraw (raw and simplified), prepared with one
   worker and with all cores; prints drawings/s and drawings/s per core (median of --repeats runs).
2. Memory: the same input replicated 1x, 10x, 100x with fresh key_ids (so nothing is deduplicated
   away), prepared with the default memory budget on all cores; prints the peak resident memory of
   the whole process tree (parent and workers, sampled from /proc every 50 ms), the number of
   shards and the throughput per core at that size (where start-up costs no longer dominate).
   Bounded memory means the peak stays flat while the input grows 100-fold.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from doodle.data.store import load_manifest

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quickdraw", type=Path, default=REPO.parent / "shared" / "quickdraw")
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="scratch space (default: a temp dir)")
    parser.add_argument("--memory-mb", type=int, default=None,
                        help="prepare's --memory-mb in the memory part (default: prepare's own, 2048)")
    parser.add_argument("--shards", type=int, default=None,
                        help="prepare's --shards in the memory part (a few, with a small --memory-mb, makes "
                        "buckets outgrow their share: the multi-pass reduce)")
    parser.add_argument("--no-throughput", action="store_true", help="skip part 1")
    args = parser.parse_args()
    extra = [*(["--memory-mb", str(args.memory_mb)] if args.memory_mb else []),
             *(["--shards", str(args.shards)] if args.shards else [])]
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


if __name__ == "__main__":
    main()
