"""Recipe search: train variants of a config side by side and print their validation scores.

    python benchmarks/recipe_search.py --data STORE --variants benchmarks/recipes/cpu-q15.txt \
        --out runs/search --parallel 4

Each line of the variants file is `name | config | key=value overrides [| store]` (`#` starts a
comment); each variant is one `doodle train` process. On a GPU machine many variants share the
device (each with its own loader workers), which is how configs/cpu.yaml was chosen: the search
runs in minutes there and the winner is then timed on the 2-core CPU it is meant for. The table
gives, per variant, the best and the final validation MAP@3 and acc@1 (from the run's
metrics.csv) and the wall time; a failing variant prints the end of its log.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Variant:
    name: str
    config: str
    overrides: list[str]
    data: str | None = None


def read_variants(path: Path) -> list[Variant]:
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) not in (3, 4):
            sys.exit(f"{path}:{number}: expected 'name | config | overrides [| store]', got {line!r}")
        out.append(Variant(parts[0], parts[1], parts[2].split(), parts[3] if len(parts) == 4 else None))
    return out


def val_rows(run: Path) -> list[dict[str, str]]:
    metrics = run / "metrics.csv"
    if not metrics.exists():
        return []
    with open(metrics, newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["split"] == "val"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="store to train on (a variant's 4th field overrides it)")
    parser.add_argument("--variants", required=True, type=Path, help="variants file (see above)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the runs (one per variant)")
    parser.add_argument("--parallel", type=int, default=1, help="variants trained at once (default 1)")
    args = parser.parse_args()
    variants = read_variants(args.variants)
    args.out.mkdir(parents=True, exist_ok=True)
    pending, running, results = list(variants), [], []
    started = time.time()
    while pending or running:
        while pending and len(running) < args.parallel:
            v = pending.pop(0)
            log = open(args.out / f"{v.name}.log", "w")  # noqa: SIM115 (closed when the process ends)
            cmd = [sys.executable, "-m", "doodle", "-q", "train", "--config", v.config, "--data", v.data or args.data,
                   "--out", str(args.out / v.name), *v.overrides]
            running.append((v, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log, time.time()))
        time.sleep(1)
        for item in [r for r in running if r[1].poll() is not None]:
            running.remove(item)
            v, proc, log, t0 = item
            log.close()
            rows = val_rows(args.out / v.name)
            best = max(rows, key=lambda r: float(r["map3"])) if rows else None
            results.append((v, proc.returncode, time.time() - t0, best, rows[-1] if rows else None))
            score = f": final MAP@3 {float(rows[-1]['map3']):.4f}" if rows else ""
            print(f"finished {v.name} (exit {proc.returncode}) after {time.time() - t0:.0f} s{score}", flush=True)
            if proc.returncode:
                print((args.out / f"{v.name}.log").read_text()[-1500:])
    print(f"\n{'variant':24s} {'best MAP@3':>10s} {'final MAP@3':>11s} {'final acc@1':>11s} {'wall s':>7s}  overrides")
    for v, code, wall, best, last in results:
        if code or last is None:
            print(f"{v.name:24s} {'failed':>10s}")
            continue
        print(f"{v.name:24s} {float(best['map3']):10.4f} {float(last['map3']):11.4f} {float(last['acc1']):11.4f} "
              f"{wall:7.0f}  {' '.join(v.overrides)}")
    finals = [float(last["map3"]) for _, code, _, _, last in results if not code and last]
    if len(finals) > 1:
        print(f"\nfinal MAP@3 over {len(finals)} variants: median {statistics.median(finals):.4f}, "
              f"min {min(finals):.4f}, max {max(finals):.4f}; {time.time() - started:.0f} s in all")
    return 0 if all(code == 0 for _, code, *_ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
