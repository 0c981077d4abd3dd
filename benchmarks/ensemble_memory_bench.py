"""Peak memory of `doodle ensemble` fits on a holdout the size of the 1st place's (1,000,000 drawings).

    .venv/bin/python benchmarks/ensemble_memory_bench.py                      # stack, 1 M x 340, 2 models
    .venv/bin/python benchmarks/ensemble_memory_bench.py --fit map3 --rows 1000000
    .venv/bin/python benchmarks/ensemble_memory_bench.py --src /path/to/other/src --limit-gb 12   # another tree

Writes (once, into --folder) seeded synthetic predictions of two models as predictions Parquet
files (`doodle.infer.probabilities.PredictionWriter`): a labelled holdout of --rows drawings and a
test set of --test-rows drawings, 340 classes, with drawing-time features. Then runs
`doodle ensemble` in a child process (`--method stack`, or `--fit METHOD`) and prints its peak
resident memory (the child's ru_maxrss, from wait4), its wall time and its exit status. The
child is killed when its resident memory passes --limit-gb (polled every 0.2 s), so that a
version that holds everything in memory cannot take the machine down; its peak is then at least
the limit. --src runs the child with another source tree first on PYTHONPATH (e.g. a copy of an
older version) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from doodle.infer.probabilities import PredictionWriter

CLASSES = [f"class {i:03d}" for i in range(340)]
CHUNK = 32_768


def write_model(path: Path, rows: int, labels: np.ndarray, strength: float, seed: int) -> None:
    """Synthetic predictions of one model: softmax of random logits, the true class raised."""
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    bias = rng.normal(0, 0.2, k).astype(np.float32)
    time_rng = np.random.default_rng(12345)  # the drawings' timing is the same for every model
    with PredictionWriter(path, CLASSES, {"synthetic": seed}) as writer:
        for lo in range(0, rows, CHUNK):
            y = labels[lo:lo + CHUNK]
            logits = rng.normal(0, 1, (len(y), k)).astype(np.float32) + bias
            logits[np.arange(len(y)), y] += strength
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            tf = time_rng.normal(0, 1, (len(y), 6)).astype(np.float32)
            writer.write(np.arange(lo, lo + len(y), dtype=np.uint64) * 7919 + 1, p, [CLASSES[c] for c in y], tf)


def dataset(folder: Path, rows: int, test_rows: int) -> dict[str, list[Path]]:
    """The holdout and test files of two models (written when missing)."""
    out = {"holdout": [folder / f"hold_{m}_{rows}.parquet" for m in "ab"],
           "test": [folder / f"test_{m}_{test_rows}.parquet" for m in "ab"]}
    for kind, n in (("holdout", rows), ("test", test_rows)):
        labels = np.random.default_rng(7 if kind == "holdout" else 8).integers(0, len(CLASSES), n)
        for m, path in enumerate(out[kind]):
            if not path.exists():
                started = time.time()
                write_model(path, n, labels, 3.0 + m, seed=100 * m + (kind == "test"))
                print(f"wrote {path} ({time.time() - started:.0f} s)", flush=True)
    return out


def run_child(argv: list[str], src: str | None, limit_gb: float) -> tuple[float, float, int, bool]:
    """(peak RSS in GB, seconds, exit status, killed at the limit) of one child process."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    started = time.time()
    child = subprocess.Popen(argv, env=env)
    killed = False
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if not killed and _rss_gb(child.pid) > limit_gb:
            os.kill(child.pid, signal.SIGKILL)
            killed = True
        time.sleep(0.2)
    return usage.ru_maxrss / 2**20, time.time() - started, os.waitstatus_to_exitcode(status), killed


def _rss_gb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/doodle-ensemble-bench"), help="where the data goes")
    parser.add_argument("--rows", type=int, default=1_000_000, help="holdout drawings (default 1,000,000)")
    parser.add_argument("--test-rows", type=int, default=112_199, help="test drawings (default 112,199)")
    parser.add_argument("--fit", default=None, help="fit blend weights with this method instead of stacking")
    parser.add_argument("--rounds", type=int, default=20, help="stack: boosting rounds (memory does not depend on it)")
    parser.add_argument("--src", default=None, help="a source tree to run the child with (first on PYTHONPATH)")
    parser.add_argument("--limit-gb", type=float, default=14.0, help="kill the child past this RSS (default 14)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `doodle ensemble` options")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    files = dataset(args.folder, args.rows, args.test_rows)
    out = args.folder / "out.parquet"
    method = ["--fit", args.fit] if args.fit else ["--method", "stack", "--rounds", str(args.rounds)]
    argv = [sys.executable, "-m", "doodle", "-q", "ensemble", *map(str, files["test"]), "--holdout",
            *map(str, files["holdout"]), *method, "--out", str(out), *args.extra]
    peak, seconds, code, killed = run_child(argv, args.src, args.limit_gb)
    what = f"--fit {args.fit}" if args.fit else "--method stack"
    print(f"ensemble {what}: holdout {args.rows:,} x {len(CLASSES)} x 2 models, test {args.test_rows:,}: "
          f"peak RSS {peak:.2f} GB{' (killed at the limit)' if killed else ''}, {seconds:.0f} s, exit {code}")


if __name__ == "__main__":
    main()
