"""Rehearse the Kaggle competition's whole workflow on a replica of its files, with the `doodle`
commands a user would type, and measure every stage.

    .venv/bin/python benchmarks/kaggle_rehearsal.py --rows N --work DIR [--steps S] [--holdout H]
                                                    [--seed 0] [--replica DIR] [--test-rows T]

Unless --replica names one, a replica of Kaggle's files is written first (benchmarks/kaggle_replica.py:
N train rows, T = 112,199 test rows). Then, each stage one subprocess:

  a. doodle prepare REPLICA/train_simplified REPLICA/test_simplified.csv --out STORE
         --classes kaggle_340_classes.txt --val-fraction H/N     (test rows land in STORE/test)
  b. doodle train --config configs/cpu.yaml --data STORE --out RUN1 max_steps=S
     and benchmarks/train_bench.py --data STORE (one loader worker's drawings/s per preset)
  c. doodle predict RUN1 --data REPLICA/test_simplified.csv --tta flip --out test1.parquet
     doodle predict RUN1 --data STORE/val --tta flip --out hold1.parquet
  d. a second model, the stroke-sequence family (configs/sequence.yaml): RUN2 -> test2, hold2
  e. doodle ensemble test1.parquet test2.parquet --fit map3 --holdout hold1.parquet hold2.parquet
         --out ens.parquet, and the same with --method stack --out stack.parquet
  f. doodle balance ens.parquet --method iterative|greedy|flow --out ... (each timed; the
     --submission-method one writes submission.csv, the others balanced_METHOD.csv)
  g. the submissions checked against Kaggle's format: header `key_id,word`, one row per test
     drawing, key_ids unique and equal to the test CSV's, three known class names per row
     (spaces inside names written as underscores)
  h. accounting after each stage that reads drawings: input = accepted + duplicates + rejected
     (store manifest), predictions written + skipped = rows of the input.

For each stage: wall time, drawings handled, cores it may use, drawings/s per core, measured CPU
use (CPU seconds / wall seconds), peak resident memory of its whole process tree (VmRSS of the
child and all its descendants from /proc every 50 ms) and disk used by its outputs. At the end,
each stage extrapolated to 50 M rows on 16 cores, with the assumption it rests on.

A stage whose command fails prints the command, its exit code and its stderr tail; the stages that
need its outputs are skipped, and the rehearsal exits with status 1 (also when an accounting check
or the submission check fails). Each stage's full stdout/stderr is kept in WORK/logs/.

--stages NAME ... reruns only the named stages of a rehearsal already in WORK (say `prepare` after a
change to it, or `balance_flow validate`), replacing just their outputs; the table then shows those.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
DEFAULT_QUICKDRAW = REPO.parent / "shared" / "quickdraw"
KAGGLE_TEST_ROWS = 112_199
GOAL_ROWS = 50_000_000
GOAL_CORES = 16
GOAL_RAW_ROWS = 1_000_000
"""Raw train rows the replica writes at 50 M (its default cap)."""
BALANCE_METHODS = ("iterative", "greedy", "flow")
MANIFEST_NAMES = ("_manifest.json", "manifest.json")
"""The store's metadata file: `_manifest.json` in new stores, `manifest.json` in older ones."""
SAMPLE_SECONDS = 0.05
TAIL_LINES = 25
SKIPPED = re.compile(r"([\d,]+) record\(s\) rejected and skipped")


def cores_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# -- measuring a child process tree --------------------------------------------------------------


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _vm_rss(pid: int) -> int:
    """VmRSS of one process in bytes (0 when it is gone or a kernel thread)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_rss_bytes(root: int) -> int:
    """Resident memory of `root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_of(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _vm_rss(pid)
        stack += children.get(pid, [])
    return total


@dataclass
class Measured:
    code: int
    seconds: float
    cpu_seconds: float
    peak_rss: int
    stdout: str
    stderr: str


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(cmd: Sequence[str], log_stem: Path) -> Measured:
    """Run `cmd`, sampling its tree's memory every 50 ms; stdout/stderr go to LOG.out / LOG.err.
    CPU time counts the child and every descendant it waited for (pool workers included)."""
    out_path, err_path = log_stem.with_suffix(".out"), log_stem.with_suffix(".err")
    cpu_before, start = _children_cpu(), time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, cwd=REPO)
        peak, done = 0, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss_bytes(proc.pid))
                done.wait(SAMPLE_SECONDS)

        sampler = threading.Thread(None, sample, daemon=True)  # (group, function)
        sampler.start()
        code = proc.wait()
        done.set()
        sampler.join()
    seconds = time.perf_counter() - start
    read = lambda p: p.read_text(encoding="utf-8", errors="replace")  # noqa: E731
    return Measured(code, seconds, _children_cpu() - cpu_before, peak, read(out_path), read(err_path))


def disk_bytes(paths: Iterable[Path]) -> int:
    """Bytes of the files at or under `paths` (apparent sizes)."""
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return total


# -- stores, predictions, CSVs ------------------------------------------------------------------


def manifest_path(store: Path) -> Path | None:
    for name in MANIFEST_NAMES:
        if (store / name).is_file():
            return store / name
    return None


def read_manifest(store: Path) -> dict:
    path = manifest_path(store)
    if path is None:
        raise FileNotFoundError(f"{store}: no {' or '.join(MANIFEST_NAMES)}")
    return orjson.loads(path.read_bytes())


def parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def parquet_key_ids(path: Path) -> list[int]:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["key_id"]).column("key_id").to_pylist()


def csv_data_rows(path: Path) -> int:
    """Rows of a CSV after its header (one physical line per row, as Kaggle's files are), counted
    by line ends in big blocks: the train files of a big replica are read once at disk speed."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        while block := handle.read(1 << 24):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"  # a last line without its line end
    return max(lines - 1, 0)


def csv_key_ids(path: Path) -> list[int]:
    """The key_id column of a CSV, in file order, streaming (Kaggle's test files start with it,
    so only the text before the first comma of each line is parsed)."""
    with open(path, "rb") as handle:
        header = next(csv.reader([handle.readline().decode("utf-8-sig")]))
        if header[:1] != ["key_id"]:
            raise ValueError(f"{path}: key_id is not the first column ({','.join(header)})")
        return [int(line.split(b",", 1)[0]) for line in handle if line.strip()]


def read_classes(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def skipped_count(stderr: str) -> int:
    """Records `doodle predict` says it rejected and skipped (0 when it says nothing)."""
    found = SKIPPED.findall(stderr)
    return int(found[-1].replace(",", "")) if found else 0


# -- the submission check -----------------------------------------------------------------------


@dataclass
class Validation:
    """What the submission check found: problems by kind, with the first example of each."""

    path: Path
    rows: int = 0
    expected_rows: int = 0
    problems: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, example: str) -> None:
        self.problems[kind] += 1
        self.examples.setdefault(kind, example)

    def report(self) -> str:
        if self.ok:
            return (f"{self.path.name}: valid Kaggle submission: header key_id,word, {self.rows:,} rows, key_ids "
                    "unique and equal to the test CSV's, three known classes per row")
        lines = [f"{self.path.name}: NOT a valid submission ({self.rows:,} rows, expected {self.expected_rows:,}):"]
        lines += [f"  {n:,} x {kind}: e.g. {self.examples[kind]}" for kind, n in self.problems.most_common()]
        return "\n".join(lines)


def _check_guesses(word: str, names: set[str], spaced: list[str], check: Validation, key: str) -> None:
    guesses = word.split(" ")
    wrong = len(guesses) != 3 or any(g not in names for g in guesses)
    padded = f" {word} "
    if wrong and any(f" {name} " in padded for name in spaced):  # "paint can" written for paint_can
        check.add("spaces instead of underscores inside a class name", f"{key},{word}")
    elif len(guesses) != 3 or "" in guesses:
        check.add("not three guesses separated by single spaces", f"{key},{word}")
    elif wrong:
        unknown = next(g for g in guesses if g not in names)
        check.add("unknown class name", f"{key},{word} ({unknown!r})")
    elif len(set(guesses)) != 3:
        check.add("a class guessed twice", f"{key},{word}")


def validate_submission(path: Path, test_keys: Sequence[int], classes: Sequence[str]) -> Validation:
    """Check a submission CSV against Kaggle's format for a test set with key_ids `test_keys`."""
    names = {c.replace(" ", "_") for c in classes}
    spaced = [c for c in classes if " " in c]
    expected = set(test_keys)
    check = Validation(path, expected_rows=len(test_keys))
    seen: set[int] = set()
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != ["key_id", "word"]:
            check.add("header is not key_id,word", ",".join(header or []))
        for row in reader:
            if not row:
                continue
            check.rows += 1
            if len(row) != 2 or not row[0].isdigit():
                check.add("row is not key_id,word", ",".join(row))
                continue
            key = int(row[0])
            if key in seen:
                check.add("duplicate key_id", row[0])
            elif key not in expected:
                check.add("key_id not in the test set", row[0])
            seen.add(key)
            _check_guesses(row[1], names, spaced, check, row[0])
    missing = expected - seen
    if missing:
        check.problems["test key_id missing"] += len(missing)
        check.examples["test key_id missing"] = str(min(missing))
    if check.rows != len(test_keys):
        check.add("row count differs from the test CSV's", f"{check.rows:,} rows, test CSV {len(test_keys):,}")
    return check


# -- stages ---------------------------------------------------------------------------------------


ROWS_CORES = "rows / cores"
ROWS_ONE = "rows, one process"
TEST_ROWS = "test rows"
FIXED = "as measured"


@dataclass
class Stage:
    """One command of the workflow, what it needs and makes, and how its figures are read."""

    name: str
    cmd: list[str]
    outputs: list[Path]
    needs: list[Path] = field(default_factory=list)
    cores: int = 1
    scaling: str = FIXED
    note: str = ""
    drawings: Callable[[], int] | None = None
    """Drawings the stage handled, asked after it ran."""
    fixed: Callable[[Measured], float] | None = None
    """Seconds of the run that do not grow with the input (start-up), kept out of the scaling."""
    head: int = 0
    """Lines of stdout to show from the top (0: the last 4)."""
    info: Callable[[], str] | None = None
    """One more line to print after a successful run (e.g. the logged training speed)."""
    goal: Callable[[Measured], float | None] | None = None
    """The stage's own extrapolation to 50 M rows, where the generic one would mislead."""
    checks: list[Callable[[Measured], tuple[bool, str]]] = field(default_factory=list)
    """Accounting checks run after a successful run: (passed, what was checked)."""


@dataclass
class Result:
    stage: Stage
    status: str
    """ok, FAILED (exit code), CHECK FAILED, or skipped."""
    measured: Measured | None = None
    drawings: int | None = None
    disk: int = 0
    lines: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def shown(cmd: Sequence[str]) -> str:
    """A command as a user types it: `doodle ...` / `python benchmarks/...`."""
    parts = list(cmd)
    if parts[:3] == [sys.executable, "-m", "doodle"]:
        parts = ["doodle", *parts[3:]]
    elif parts and parts[0] == sys.executable:
        parts = ["python", *parts[1:]]
    return shlex.join(os.path.relpath(p, REPO) if p.startswith(str(REPO)) else p for p in parts)


def doodle(*args: object) -> list[str]:
    return [sys.executable, "-m", "doodle", *map(str, args)]


def script(name: str, *args: object) -> list[str]:
    return [sys.executable, str(BENCHMARKS / name), *map(str, args)]


def torch_startup(logs: Path) -> float:
    """Seconds a Python process here takes to import torch and doodle's model code: the start-up
    every model stage pays whatever its input size, kept out of the extrapolation."""
    cmd = [sys.executable, "-c", "import torch, doodle.infer.predict, doodle.post.ensemble.files, doodle.post.balance"]
    return run_measured(cmd, logs / "startup").seconds


REPLICA_SECONDS = re.compile(r"^[\d,]+ rows in ([\d,.]+) s:", re.MULTILINE)


REPLICA_PARTS = re.compile(r"(train_simplified|train_raw|test) ([\d,]+) rows in ([\d,.]+) s")


def replica_goal(measured: Measured) -> float | None:
    """The replica at 50 M: each part at its own measured rate (simplified rows are ~4x cheaper than
    raw or test rows), raw capped at 1 M as the replica's default, plus the fixed start-up."""
    parts = {name: (int(rows.replace(",", "")), float(sec.replace(",", "")))
             for name, rows, sec in REPLICA_PARTS.findall(measured.stdout)}
    goal_rows = {"train_simplified": GOAL_ROWS, "train_raw": GOAL_RAW_ROWS, "test": KAGGLE_TEST_ROWS}
    if set(parts) != set(goal_rows) or any(rows == 0 for rows, _ in parts.values()):
        return None
    return replica_fixed(measured) + sum(sec * goal_rows[name] / rows for name, (rows, sec) in parts.items())


def replica_fixed(measured: Measured) -> float:
    """The replica's time outside its row loop (reading the real drawings), from what it prints."""
    found = REPLICA_SECONDS.findall(measured.stdout)
    return max(measured.seconds - float(found[-1].replace(",", "")), 0.0) if found else 0.0


def run_stage(stage: Stage, logs: Path) -> Result:
    """Run one stage (or skip it when an input is missing), then its accounting checks."""
    missing = [p for p in stage.needs if not p.exists()]
    print(f"\n== {stage.name}: {shown(stage.cmd)}", flush=True)
    if missing:
        print(f"   skipped: needs {', '.join(str(p) for p in missing)} (an earlier stage did not make it)")
        return Result(stage, "skipped")
    measured = run_measured(stage.cmd, logs / stage.name.replace(" ", "_"))
    result = Result(stage, "ok", measured, disk=disk_bytes(stage.outputs))
    if measured.code != 0:
        result.status = f"FAILED ({measured.code})"
        tail = "\n".join(measured.stderr.splitlines()[-TAIL_LINES:])
        print(f"   FAILED: exit code {measured.code} after {measured.seconds:.1f} s\n   command: {shown(stage.cmd)}\n"
              f"   stderr (last {TAIL_LINES} lines):\n{_indent(tail)}")
        return result
    lines = measured.stdout.strip().splitlines()
    for line in lines[: stage.head] if stage.head else lines[-4:]:
        print(f"   > {line}")
    result.drawings = stage.drawings() if stage.drawings else None
    if stage.info is not None:
        print(f"   {stage.info()}")
    for check in stage.checks:
        try:
            passed, text = check(measured)
        except (OSError, KeyError, ValueError) as err:
            passed, text = False, f"could not check: {err}"
        print(f"   accounting: {text}: {'OK' if passed else 'MISMATCH'}")
        if not passed:
            result.status = "CHECK FAILED"
    print(f"   {measured.seconds:.1f} s, peak RSS {measured.peak_rss / 2**20:,.0f} MB, outputs "
          f"{result.disk / 1e6:,.1f} MB")
    return result


def _indent(text: str) -> str:
    return "\n".join(f"     | {line}" for line in text.splitlines())


# -- accounting checks ----------------------------------------------------------------------------


def store_check(store: Path, expected_input: int, expected_test: int) -> Callable[[Measured], tuple[bool, str]]:
    def check(_: Measured) -> tuple[bool, str]:
        m = read_manifest(store)
        total = m["accepted"] + m["duplicates"] + m["rejected"]
        test = m["splits"].get("test", 0)
        ok = m["input"] == total == expected_input and test == expected_test
        return ok, (f"input {m['input']:,} = accepted {m['accepted']:,} + duplicates {m['duplicates']:,} + "
                    f"rejected {m['rejected']:,} (replica rows {expected_input:,}); test split {test:,} "
                    f"(test CSV {expected_test:,}); splits {m['splits']}")
    return check


def predict_check(out: Path, expected: Callable[[], int], what: str) -> Callable[[Measured], tuple[bool, str]]:
    def check(measured: Measured) -> tuple[bool, str]:
        rows, skipped, total = parquet_rows(out), skipped_count(measured.stderr), expected()
        return rows + skipped == total, f"rows written {rows:,} + skipped {skipped:,} = {what} {total:,}"
    return check


def keys_check(out: Path, test_keys: Callable[[], list[int]]) -> Callable[[Measured], tuple[bool, str]]:
    def check(_: Measured) -> tuple[bool, str]:
        same = parquet_key_ids(out) == test_keys()
        return same, f"{out.name} key_ids {'equal' if same else 'differ from'} the test CSV's, in order"
    return check


def csv_rows_check(out: Path, expected: Callable[[], int]) -> Callable[[Measured], tuple[bool, str]]:
    def check(_: Measured) -> tuple[bool, str]:
        rows, total = csv_data_rows(out), expected()
        return rows == total, f"{out.name}: {rows:,} rows = test drawings {total:,}"
    return check


# -- the workflow ---------------------------------------------------------------------------------


@dataclass
class Layout:
    """Where everything goes under --work."""

    work: Path
    replica: Path

    @property
    def store(self) -> Path:
        return self.work / "store"

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    def run(self, i: int) -> Path:
        return self.work / f"run{i}"

    def file(self, name: str) -> Path:
        return self.work / name

    @property
    def test_csv(self) -> Path:
        return self.replica / "test_simplified.csv"

    def managed(self, own_replica: bool) -> list[Path]:
        """What a rehearsal writes here (and --overwrite removes)."""
        names = ["store", "run1", "run2", "logs", "test1.parquet", "hold1.parquet", "test2.parquet", "hold2.parquet",
                 "ens.parquet", "stack.parquet", "submission.csv", *(f"balanced_{m}.csv" for m in BALANCE_METHODS)]
        return [self.work / n for n in names] + ([self.replica] if own_replica else [])


class Lazy:
    """Values read once, after the stage that makes them (test key_ids, manifest counts)."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self._test_keys: list[int] | None = None
        self._rows: dict[str, int] = {}

    def test_keys(self) -> list[int]:
        if self._test_keys is None:
            self._test_keys = csv_key_ids(self.layout.test_csv)
        return self._test_keys

    def test_rows(self) -> int:
        return len(self.test_keys())

    def val_rows(self) -> int:
        return int(read_manifest(self.layout.store)["splits"]["val"])

    def replica_rows(self, kinds: Sequence[str]) -> int:
        """Rows of the replica's train folders `kinds` (each counted once)."""
        for kind in kinds:
            if kind not in self._rows:
                files = sorted((self.layout.replica / kind).glob("*.csv"))
                self._rows[kind] = sum(csv_data_rows(f) for f in files)
        return sum(self._rows[k] for k in kinds)


def train_drawings(run: Path, val: Callable[[], int]) -> Callable[[], int]:
    """Optimizer steps x effective batch, plus the drawings validated at the end."""
    def count() -> int:
        import yaml

        cfg = yaml.safe_load((run / "config.yaml").read_text())
        steps = orjson.loads((run / "summary.json").read_bytes())["steps"]
        return int(steps) * int(cfg["data"]["batch_size"]) * int(cfg.get("accumulate", 1)) + val()
    return count


def logged_rate(run: Path) -> float | None:
    """Median training drawings/s the run logged (metrics.csv, images_per_s of train rows)."""
    path = run / "metrics.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as handle:
        rates = sorted(float(r["images_per_s"]) for r in csv.DictReader(handle)
                       if r.get("split") == "train" and r.get("images_per_s"))
    return rates[len(rates) // 2] if rates else None


def speed_line(run: Path) -> str:
    rate = logged_rate(run)
    return f"training speed logged: {_num(rate)} drawings/s (median of the run's metrics.csv train rows)"


def build_stages(args: argparse.Namespace, layout: Layout, lazy: Lazy, classes_file: Path,
                 startup: float) -> list[Stage]:
    cores, r, w = cores_available(), layout.replica, layout
    fixed = lambda m: min(startup, m.seconds)  # noqa: E731
    stages: list[Stage] = []
    if args.replica is None:
        stages.append(Stage(
            "replica", script("kaggle_replica.py", "--out", r, "--rows", args.rows, "--raw-rows", args.raw_rows,
                              "--test-rows", args.test_rows, "--seed", args.seed, "--quickdraw", args.quickdraw,
                              "--classes", classes_file, "--no-progress"),
            [r], cores=1, scaling=ROWS_ONE, note="each part at its own rate", fixed=replica_fixed, goal=replica_goal,
            drawings=lambda: lazy.replica_rows(["train_simplified", "train_raw"]) + lazy.test_rows()))
    val_fraction = args.holdout / args.rows
    train_input = lambda: lazy.replica_rows(["train_simplified"]) + lazy.test_rows()  # noqa: E731
    stages.append(Stage(
        "prepare", doodle("prepare", r / "train_simplified", layout.test_csv, "--out", w.store, "--classes",
                          classes_file, "--val-fraction", f"{val_fraction:.6g}", "--seed", args.seed, "--no-progress"),
        [w.store], needs=[r / "train_simplified", layout.test_csv], cores=cores, scaling=ROWS_CORES,
        drawings=train_input, checks=[lambda m: store_check(w.store, train_input(), lazy.test_rows())(m)], head=3))
    overrides = [f"max_steps={args.steps}", f"seed={args.seed}", f"log_every={max(1, min(20, args.steps // 5))}",
                 *args.override]
    for i, config in ((1, args.config), (2, args.second_config)):
        run = w.run(i)
        stages.append(Stage(
            f"train {i}", doodle("train", "--config", config, "--data", w.store, "--out", run, *overrides),
            [run], needs=[w.store], cores=cores, scaling=FIXED, note=f"{args.steps} steps + validation",
            drawings=train_drawings(run, lazy.val_rows), fixed=fixed, info=lambda run=run: speed_line(run)))
        if i == 1:
            stages.append(Stage(
                "loader bench", script("train_bench.py", "--data", w.store, "--presets", Path(args.config).stem,
                                       Path(args.second_config).stem, "--steps", args.bench_steps),
                [], needs=[w.store], cores=cores, scaling=FIXED, note="a measurement"))
        stages += predict_stages(i, run, layout, lazy, cores)
    stages += ensemble_stages(layout, lazy, cores)
    stages += balance_stages(args, layout, lazy)
    for stage in stages:
        if stage.fixed is None and stage.cmd[:3] == [sys.executable, "-m", "doodle"] and stage.name != "prepare":
            stage.fixed = fixed
    return stages


def predict_stages(i: int, run: Path, layout: Layout, lazy: Lazy, cores: int) -> list[Stage]:
    test_out, hold_out = layout.file(f"test{i}.parquet"), layout.file(f"hold{i}.parquet")
    return [
        Stage(f"predict test {i}", doodle("predict", run, "--data", layout.test_csv, "--tta", "flip", "--out",
                                          test_out),
              [test_out], needs=[run / "best.pt"], cores=cores, scaling=TEST_ROWS, drawings=lazy.test_rows,
              checks=[predict_check(test_out, lazy.test_rows, "test CSV rows"), keys_check(test_out, lazy.test_keys)]),
        Stage(f"predict hold {i}", doodle("predict", run, "--data", layout.store / "val", "--tta", "flip", "--out",
                                          hold_out),
              [hold_out], needs=[run / "best.pt"], cores=cores, scaling=FIXED, note="holdout rows (--holdout)",
              drawings=lazy.val_rows, checks=[predict_check(hold_out, lazy.val_rows, "holdout rows")]),
    ]


def ensemble_stages(layout: Layout, lazy: Lazy, cores: int) -> list[Stage]:
    tests = [layout.file("test1.parquet"), layout.file("test2.parquet")]
    holds = [layout.file("hold1.parquet"), layout.file("hold2.parquet")]
    both = lambda: lazy.test_rows() + lazy.val_rows()  # noqa: E731
    ens, stack = layout.file("ens.parquet"), layout.file("stack.parquet")
    return [
        Stage("ensemble map3", doodle("ensemble", *tests, "--fit", "map3", "--holdout", *holds, "--out", ens),
              [ens], needs=tests + holds, cores=1, scaling=TEST_ROWS, note="fit on the holdout", drawings=both,
              checks=[predict_check(ens, lazy.test_rows, "test CSV rows")]),
        Stage("ensemble stack", doodle("ensemble", *tests, "--method", "stack", "--holdout", *holds, "--out", stack),
              [stack], needs=tests + holds, cores=cores, scaling=TEST_ROWS, note="LightGBM fit on the holdout",
              drawings=both, checks=[predict_check(stack, lazy.test_rows, "test CSV rows")]),
    ]


def balance_stages(args: argparse.Namespace, layout: Layout, lazy: Lazy) -> list[Stage]:
    ens, stages = layout.file("ens.parquet"), []
    for method in BALANCE_METHODS:
        out = layout.file("submission.csv" if method == args.submission_method else f"balanced_{method}.csv")
        extra = ["--candidates", str(args.flow_candidates)] if method == "flow" and args.flow_candidates else []
        stages.append(Stage(f"balance {method}", doodle("balance", ens, "--method", method, *extra, "--out", out),
                            [out], needs=[ens], cores=1, scaling=TEST_ROWS, drawings=lazy.test_rows,
                            checks=[csv_rows_check(out, lazy.test_rows)]))
    return stages


# -- validation stage, table, extrapolation -------------------------------------------------------


def validate_stage(layout: Layout, lazy: Lazy, classes: list[str]) -> Result:
    """Stage g, in this process: every balanced CSV checked; submission.csv decides the status."""
    stage = Stage("validate", [], [], cores=1, scaling=TEST_ROWS, drawings=lazy.test_rows)
    print("\n== validate: Kaggle's submission format")
    paths = [layout.file("submission.csv")] + [layout.file(f"balanced_{m}.csv") for m in BALANCE_METHODS]
    paths = [p for p in paths if p.is_file()]
    if not layout.file("submission.csv").is_file():
        print("   skipped: no submission.csv (its balance stage did not make it)")
        return Result(stage, "skipped")
    start = time.perf_counter()
    checks = [validate_submission(p, lazy.test_keys(), classes) for p in paths]
    seconds = time.perf_counter() - start
    for check in checks:
        print("   " + check.report().replace("\n", "\n   "))
    status = "ok" if checks[0].ok else "CHECK FAILED"
    measured = Measured(0, seconds, seconds, 0, "", "")
    return Result(stage, status, measured, drawings=lazy.test_rows() * len(checks))


def _num(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def print_table(results: list[Result]) -> None:
    print(f"\n{'stage':<19}{'status':<14}{'wall s':>9}{'drawings':>12}{'cores':>6}{'drawings/s/core':>16}"
          f"{'cpu/wall':>9}{'peak RSS MB':>12}{'disk MB':>10}")
    for r in results:
        m = r.measured
        rate = r.drawings / m.seconds / r.stage.cores if m and r.drawings and m.seconds > 0 else None
        busy = m.cpu_seconds / m.seconds if m and m.seconds > 0 and m.cpu_seconds else None
        print(f"{r.stage.name:<19}{r.status:<14}{_num(m and m.seconds, ',.1f'):>9}{_num(r.drawings):>12}"
              f"{r.stage.cores:>6}{_num(rate):>16}{_num(busy, '.2f'):>9}"
              f"{_num(m.peak_rss / 2**20 if m and m.peak_rss else None):>12}{r.disk / 1e6:>10,.1f}")


def goal_seconds(r: Result, args: argparse.Namespace) -> float | None:
    """The stage's time at 50 M rows on 16 cores under its scaling assumption."""
    m = r.measured
    if m is None or not r.ok:
        return None
    if r.stage.goal is not None and (own := r.stage.goal(m)) is not None:
        return own
    fixed = r.stage.fixed(m) if r.stage.fixed else 0.0
    if r.stage.scaling == ROWS_CORES and r.drawings:
        factor = (GOAL_ROWS + KAGGLE_TEST_ROWS) / r.drawings * r.stage.cores / GOAL_CORES
    elif r.stage.scaling == ROWS_ONE and r.drawings:
        factor = (GOAL_ROWS + GOAL_RAW_ROWS + KAGGLE_TEST_ROWS) / r.drawings
    elif r.stage.scaling == TEST_ROWS:
        factor = KAGGLE_TEST_ROWS / max(args.test_rows, 1)
    else:
        return m.seconds
    return fixed + (m.seconds - fixed) * factor


ASSUMPTIONS = {
    ROWS_CORES: "linear in rows (50 M + test), divided by cores",
    ROWS_ONE: "linear in rows per part (50 M simplified, 1 M raw, 112,199 test), one process: cores do not help",
    TEST_ROWS: f"linear in test rows ({KAGGLE_TEST_ROWS:,}); not in N",
    FIXED: "does not grow with N: as measured",
}


def print_extrapolation(results: list[Result], args: argparse.Namespace, startup: float) -> None:
    print(f"\nextrapolated to {GOAL_ROWS / 1e6:.0f} M rows on {GOAL_CORES} cores "
          f"(measured: {args.rows:,} rows, {args.test_rows:,} test rows, {cores_available()} cores; start-up kept "
          f"out of the scaling: {startup:.1f} s per model process (torch import), the replica's reading of the real "
          "drawings; model loading and JIT compiling are still scaled, so small runs overstate)")
    print(f"{'stage':<19}{'measured s':>11}{'at 50 M':>12}  assumption")
    for r in results:
        goal = goal_seconds(r, args)
        note = f" ({r.stage.note})" if r.stage.note else ""
        print(f"{r.stage.name:<19}{_num(r.measured and r.measured.seconds, ',.1f'):>11}{_hms(goal):>12}  "
              f"{ASSUMPTIONS[r.stage.scaling]}{note}")
    for r in results:
        if r.stage.name.startswith("train ") and r.ok:
            rate = logged_rate(r.stage.outputs[0])
            if rate:
                per_core = rate / r.stage.cores
                epoch = GOAL_ROWS / (per_core * GOAL_CORES)
                print(f"{r.stage.name}: logged {rate:,.0f} training drawings/s ({per_core:,.0f} per core); "
                      f"one epoch of 50 M at that rate per core on {GOAL_CORES} cores: {_hms(epoch)}")


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def print_loader_bench(results: list[Result]) -> None:
    for r in results:
        if r.stage.name == "loader bench" and r.ok and r.measured:
            print("\nloader bench (benchmarks/train_bench.py on this store):")
            for line in r.measured.stdout.strip().splitlines():
                print(f"   {line}")


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, required=True, help="train rows of the replica (Kaggle: 49.7 M)")
    parser.add_argument("--work", type=Path, required=True, help="folder for the store, runs, predictions, logs")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps of each model (default 300)")
    parser.add_argument("--holdout", type=int, default=None,
                        help="labelled drawings held out (the store's val split; default min(50,000, rows / 10))")
    parser.add_argument("--seed", type=int, default=0, help="seed of the replica, the split and the models")
    parser.add_argument("--replica", type=Path, default=None, help="use this replica instead of writing one")
    parser.add_argument("--test-rows", type=int, default=KAGGLE_TEST_ROWS,
                        help=f"test rows of the replica written (default {KAGGLE_TEST_ROWS:,})")
    parser.add_argument("--raw-rows", type=int, default=None,
                        help="train_raw rows of the replica written (default min(rows, 1,000,000))")
    parser.add_argument("--quickdraw", type=Path, default=DEFAULT_QUICKDRAW, help="the real drawings")
    parser.add_argument("--classes", type=Path, default=None,
                        help="class list (default QUICKDRAW/meta/kaggle_340_classes.txt)")
    parser.add_argument("--config", default="configs/cpu.yaml", help="first model's preset")
    parser.add_argument("--second-config", default="configs/sequence.yaml", help="second model's preset")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for both trainings (repeatable), e.g. data.batch_size=32")
    parser.add_argument("--bench-steps", type=int, default=4, help="batches per measurement of train_bench.py")
    parser.add_argument("--flow-candidates", type=int, default=0,
                        help="flow balancing: classes per drawing (default 0: all, `doodle balance`'s own default, "
                        "the exact optimum)")
    parser.add_argument("--submission-method", choices=BALANCE_METHODS, default="iterative",
                        help="the balancing whose output is submission.csv (default iterative, 1st place's)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier rehearsal's outputs in --work")
    parser.add_argument("--stages", nargs="+", metavar="STAGE", type=lambda s: s.replace("_", " "),
                        help="run only these stages (e.g. prepare, train_1, balance_flow, validate) of the "
                        "rehearsal already in --work, replacing just their outputs; the others are kept")
    args = parser.parse_args(argv)
    if args.rows < 2:
        parser.error("--rows must be at least 2")
    if args.holdout is None:
        args.holdout = max(1, min(50_000, args.rows // 10))
    if not 0 < args.holdout < args.rows:
        parser.error("--holdout must be between 1 and --rows - 1")
    if args.raw_rows is None:
        args.raw_rows = min(args.rows, GOAL_RAW_ROWS)
    return args


def select_stages(stages: list[Stage], wanted: Sequence[str] | None) -> list[Stage]:
    """The stages named in `wanted` (all when None), in workflow order; an unknown name is an error
    that lists the valid ones."""
    if wanted is None:
        return stages
    names = [s.name for s in stages] + ["validate"]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        valid = ", ".join(n.replace(" ", "_") for n in names)
        raise SystemExit(f"--stages: unknown stage {unknown[0].replace(' ', '_')!r} (valid: {valid})")
    return [s for s in stages if s.name in wanted]


def clear_outputs(stages: Sequence[Stage]) -> None:
    """Remove what the stages to be rerun wrote before (a store, a run, a predictions file)."""
    for stage in stages:
        for path in stage.outputs:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def prepare_work(args: argparse.Namespace, layout: Layout) -> None:
    own = args.replica is None
    if args.stages:
        if not layout.logs.is_dir():
            raise SystemExit(f"--stages reruns stages of a rehearsal, and {args.work} holds none: run it whole first")
        return
    if args.work.exists() and any(args.work.iterdir()):
        if not args.overwrite:
            raise SystemExit(f"{args.work} is not empty: pass --overwrite to replace an earlier rehearsal there")
        for path in layout.managed(own):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    layout.logs.mkdir(parents=True, exist_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    layout = Layout(args.work, args.replica or args.work / "replica")
    prepare_work(args, layout)
    classes_file = (args.classes or args.quickdraw / "meta" / "kaggle_340_classes.txt").resolve()
    classes = read_classes(classes_file)
    if args.replica is not None:
        args.test_rows = csv_data_rows(layout.test_csv)
    lazy = Lazy(layout)
    print(f"rehearsal: {args.rows:,} train rows, {args.test_rows:,} test rows, holdout {args.holdout:,}, "
          f"{args.steps} steps per model, {cores_available()} cores, work {args.work}")
    startup = torch_startup(layout.logs)
    stages = select_stages(build_stages(args, layout, lazy, classes_file, startup), args.stages)
    clear_outputs(stages if args.stages else [])
    results = [run_stage(stage, layout.logs) for stage in stages]
    if not args.stages or "validate" in args.stages:
        results.append(validate_stage(layout, lazy, classes))
    print_loader_bench(results)
    print_table(results)
    print_extrapolation(results, args, startup)
    failed = [r.stage.name for r in results if not r.ok]
    print(f"\n{'all stages passed' if not failed else 'NOT passed: ' + ', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
