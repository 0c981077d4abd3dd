"""Recipe search: train variants of a config side by side and print their validation scores.

    python benchmarks/recipe_search.py --data STORE --variants benchmarks/recipes/cpu-q15.txt \
        --out runs/search --parallel 4

Each line of the variants file is `name | config | key=value overrides [| store]` (`#` starts a
comment); the config path is relative to the variants file. Each variant is one `doodle train`
process. On a GPU machine many variants share the device (each with its own loader workers),
which is how configs/cpu.yaml was chosen: the search runs in minutes there and the winner is then
timed on the 2-core CPU it is meant for. The table gives, per variant, the best and the final
validation MAP@3 and acc@1 (from the run's metrics.csv) and the wall time; a failing variant
prints the end of its log.

A table of scores is only reproducible if its variants are: a variants file may only use configs
pinned under benchmarks/recipes/ (`PINNED`), and so may every `base:` they inherit. Such a file is
frozen with every field written out (e.g. recipes/cpu-resnet18d-e12.yaml, configs/cpu.yaml as the
search of recipes/cpu-q15.txt used it), where a live preset under configs/ changes as the recipe
improves and would silently re-define every variant built on it. A variants file that depends on
a config anywhere else is refused before anything trains; `--allow-unpinned` runs it anyway, for
an exploratory search, with a warning naming each such file (the table is then not for quoting).
Each variant trains from its fully resolved config, written beside its run as NAME.config.yaml.
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
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
PINNED = REPO / "benchmarks" / "recipes"
"""The folder of pinned configs: the only configs a variants file may depend on by default."""


class VariantsError(ValueError):
    """A variants file that cannot be read, or that depends on configs outside the pinned folder."""


@dataclass
class Variant:
    """One line of a variants file."""

    name: str
    config: Path
    """The config file (resolved against the variants file's folder)."""
    overrides: list[str]
    data: str | None = None
    """The store this variant trains on, if not --data."""


def read_variants(path: Path) -> list[Variant]:
    """The variants of a file, config paths resolved relative to it (see the module docstring)."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) not in (3, 4):
            raise VariantsError(f"{path}:{number}: expected 'name | config | overrides [| store]', got {line!r}")
        config = (path.parent / parts[1]).resolve()
        out.append(Variant(parts[0], config, parts[2].split(), parts[3] if len(parts) == 4 else None))
    return out


def config_files(config: Path) -> list[Path]:
    """The config and every file it inherits through `base:` (resolved as `doodle.config` does)."""
    files, path = [], config.resolve()
    while True:
        if path in files:
            raise VariantsError(f"{path}: its `base:` chain comes back to itself")
        if not path.is_file():
            raise VariantsError(f"config file {path} not found")
        files.append(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        base = data.get("base") if isinstance(data, dict) else None
        if not base:
            return files
        path = (path.parent / base).resolve()


def unpinned_files(variants: list[Variant], pinned: Path = PINNED) -> list[Path]:
    """The config files the variants depend on that lie outside `pinned`, each once."""
    pinned = pinned.resolve()
    out: list[Path] = []
    for v in variants:
        for f in config_files(v.config):
            if not f.is_relative_to(pinned) and f not in out:
                out.append(f)
    return out


def check_pinned(variants: list[Variant], pinned: Path = PINNED, allow_unpinned: bool = False) -> list[str]:
    """Refuse variants that depend on configs outside `pinned` (raise VariantsError), or, with
    `allow_unpinned`, return one warning per such file."""
    outside = unpinned_files(variants, pinned)
    if outside and not allow_unpinned:
        raise VariantsError(
            f"the variants depend on config files outside {pinned}: {', '.join(map(str, outside))}; a live preset "
            "changes and would re-define the variants: pin a frozen copy (every field written out) under "
            f"{pinned} and name it instead, or pass --allow-unpinned for an exploratory search")
    return [f"warning: {f} is not pinned under {pinned}: this table may not be reproducible" for f in outside]


def resolve(variant: Variant) -> Any:
    """The variant's full training config: its config file (and bases) with its overrides applied."""
    from doodle.config import load_config
    from doodle.errors import DoodleError
    from doodle.train.config import TrainConfig

    try:
        return load_config(TrainConfig, variant.config, variant.overrides)
    except DoodleError as err:
        raise VariantsError(f"variant {variant.name}: {err}") from None


def resolved_configs(path: Path, pinned: Path = PINNED, allow_unpinned: bool = False) -> dict[str, dict]:
    """Each variant of a variants file as its fully resolved config (plain data), after the check
    that it depends on pinned configs only: what a search of this file trains."""
    from doodle.config import to_dict

    variants = read_variants(path)
    check_pinned(variants, pinned, allow_unpinned)
    return {v.name: to_dict(resolve(v)) for v in variants}


def val_rows(run: Path) -> list[dict[str, str]]:
    """The validation rows of a run's metrics.csv (none before its first validation)."""
    metrics = run / "metrics.csv"
    if not metrics.exists():
        return []
    with open(metrics, newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["split"] == "val"]


def main(argv: list[str] | None = None) -> int:
    """Train the variants (see the module docstring) and print their table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="store to train on (a variant's 4th field overrides it)")
    parser.add_argument("--variants", required=True, type=Path, help="variants file (see above)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the runs (one per variant)")
    parser.add_argument("--parallel", type=int, default=1, help="variants trained at once (default 1)")
    parser.add_argument("--allow-unpinned", action="store_true",
                        help=f"run variants that depend on configs outside {PINNED} (with a warning)")
    args = parser.parse_args(argv)
    from doodle.config import save_config

    try:
        variants = read_variants(args.variants)
        warnings = check_pinned(variants, PINNED, args.allow_unpinned)
        configs = {v.name: resolve(v) for v in variants}
    except VariantsError as err:
        print(f"recipe_search: {err}", file=sys.stderr)
        return 2
    for line in warnings:
        print(line, file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    pending, running, results = list(variants), [], []
    started = time.time()
    while pending or running:
        while pending and len(running) < args.parallel:
            v = pending.pop(0)
            # the run trains from the config this script resolved, so what it trained is on disk
            # beside it, whatever happens to the variants file's configs later
            resolved = args.out / f"{v.name}.config.yaml"
            save_config(configs[v.name], resolved)
            log = open(args.out / f"{v.name}.log", "w")  # noqa: SIM115 (closed when the process ends)
            cmd = [sys.executable, "-m", "doodle", "-q", "train", "--config", str(resolved), "--data",
                   v.data or args.data, "--out", str(args.out / v.name)]
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
    for line in warnings:
        print(line)
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
