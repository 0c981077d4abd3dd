"""Real data in one sitting: Google's categories -> download -> prepare -> train -> evaluate ->
export -> serve, within a stated time budget.

    from doodle.quickstart import QuickstartConfig, quickstart
    result = quickstart(QuickstartConfig(["cat", "dog", "fish"], "real", time_budget=900))
    result.map3, result.export                       # the val MAP@3 of the exported model, its folder

Everything lives under `out`: `download/<format>/` (one file per category), `store/` (a per-class
sample, so a store of 20 categories stays small), `run/`, `report/`, `export/`, and
`quickstart.json`, which records what each stage was built from. Run again with the same settings,
each stage reuses what it built (downloads resume; a finished run is kept, an interrupted one is
resumed); a stage whose inputs or settings changed is built again, and every stage after it.

The time budget covers the whole path to a served model: training gets what is left of it once
the data is ready, less a reserve for evaluation and export (`doodle train --time-budget` then
sizes the run to fit on this machine).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from doodle.errors import DoodleError

DEFAULT_CONFIG = "configs/cpu.yaml"
REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
"""Where configs/ is in a source checkout (used when the config is not found from the working folder)."""
EVAL_EXPORT_RESERVE_S = 45.0
"""Seconds of the budget kept for evaluation and export (both take 5-20 s on 2 cores for 15 classes)."""
MIN_TRAIN_SHARE = 0.5
"""Training always gets at least this share of the budget, however long the download took."""
SMALL_INPUT_BYTES = 64 << 20
"""Below this much input (one map task of `prepare`), the store is built without worker processes."""
STATE_FILE = "quickstart.json"
STAGES = ("download", "prepare", "train", "evaluate", "export")
EXPORTED_MODEL = "model.onnx"  # doodle.infer.export.MODEL_FILE, named here so a reused export imports no torch


@dataclass
class QuickstartConfig:
    """What `quickstart` builds (see the module doc)."""

    categories: list[str]
    """Google's category names ("all" for the 345, names with spaces as they are)."""
    out: str | Path = "real"
    """The folder everything is written to."""
    base_url: str | None = None
    """A mirror of Google's bucket (default: $DOODLE_BASE_URL, else Google's)."""
    fmt: str = "simplified"
    """simplified (smaller downloads) or raw (with timing)."""
    per_class: int = 2000
    """Drawings kept per category (a sample by key_id hash; 0: all)."""
    time_budget: float | None = 900.0
    """Seconds from the start to a served model (None: train the config's epochs)."""
    config: str | Path = DEFAULT_CONFIG
    """The training preset."""
    train_overrides: list[str] = field(default_factory=list)
    """More `key=value` settings of training (e.g. `max_steps=50`)."""
    val_fraction: float = 0.1
    """Fraction of each category's sample used for validation (the MAP@3 reported)."""
    seed: int = 0
    """Salt of the sample and the split."""
    progress: bool = True
    """Progress bars."""


@dataclass
class Stage:
    """One stage's wall time and what it did ("built", "reused ...", "resumed ...")."""

    name: str
    seconds: float
    what: str


@dataclass
class QuickstartResult:
    """The folders built and the figures of the exported model."""

    out: Path
    store: Path
    run: Path
    report: Path
    export: Path
    map3: float
    """Val MAP@3 of the exported checkpoint (`doodle evaluate` on the store's val split)."""
    stages: list[Stage]

    def table(self) -> str:
        """Each stage's wall time and what it did, then the total and the MAP@3."""
        lines = [f"  {s.name:<9} {s.seconds:>8.1f} s  {s.what}" for s in self.stages]
        lines.append(f"  {'total':<9} {sum(s.seconds for s in self.stages):>8.1f} s")
        lines.append(f"val MAP@3 of the served model: {self.map3:.4f}")
        return "\n".join(lines)


# -- the path -----------------------------------------------------------------------------------


def quickstart(cfg: QuickstartConfig, echo: Callable[[str], None] = print) -> QuickstartResult:
    """Run download -> prepare -> train -> evaluate -> export (serving is `build_server`'s), reusing
    what an earlier call with the same settings built; `echo` gets one line per stage."""
    from doodle.data.download import check_format, resolve_categories

    check_format(cfg.fmt)
    names = resolve_categories(cfg.categories)
    job = _Job(cfg, names, echo)
    job.stage("download", job.download)
    job.stage("prepare", job.prepare)
    job.stage("train", job.train)
    map3 = job.stage("evaluate", job.evaluate)
    job.stage("export", job.export)
    return QuickstartResult(job.out, job.store, job.run, job.report, job.export_dir, map3, job.stages)


class _Job:
    """The state of one quickstart: its folders, the keys of what each stage was built from."""

    def __init__(self, cfg: QuickstartConfig, names: list[str], echo: Callable[[str], None]):
        self.cfg, self.names, self.echo = cfg, names, echo
        self.out = Path(cfg.out)
        self.downloads = self.out / "download" / cfg.fmt
        self.store, self.run = self.out / "store", self.out / "run"
        self.report, self.export_dir = self.out / "report", self.out / "export"
        self.state = _read_state(self.out / STATE_FILE)
        self.started = time.monotonic()
        self.stages: list[Stage] = []
        self.changed = False  # an earlier stage was rebuilt: the later ones are too

    def stage(self, name: str, action: Callable[[], tuple[Any, str]]) -> Any:
        began = time.monotonic()
        value, what = action()
        self.stages.append(Stage(name, time.monotonic() - began, what))
        self.echo(f"[{name}] {self.stages[-1].seconds:.1f} s: {what}")
        return value

    def same(self, name: str, key: str) -> bool:
        """Whether stage `name` was last built from `key` and no stage before it was rebuilt now."""
        return not self.changed and self.state.get(name) == key

    def done(self, name: str, key: str) -> None:
        """Record that stage `name` is (being) built from `key`: every later stage is rebuilt."""
        self.changed = True
        self.state[name] = key
        _write_state(self.out / STATE_FILE, self.state)

    # -- the stages -----------------------------------------------------------------------------
    def download(self) -> tuple[list[Path], str]:
        from doodle.data.download import download, file_name

        complete = [n for n in self.names if (self.downloads / file_name(n, self.cfg.fmt)).is_file()]
        self.files = download(self.names, self.cfg.fmt, self.downloads, base_url=self.cfg.base_url,
                              progress=self.cfg.progress)
        key = _key([(str(p), p.stat().st_size) for p in self.files])
        if not self.same("download", key):
            self.done("download", key)
        fetched = len(self.names) - len(complete)
        counts = f"fetched {fetched}, reused {len(complete)} complete"
        return self.files, f"{len(self.files)} {self.cfg.fmt} files in {self.downloads} ({counts})"

    def prepare(self) -> tuple[dict, str]:
        from doodle.data.store import PrepareConfig, describe, load_manifest, prepare

        # one task's worth of input is read in this process: starting a pool would cost more than it saves
        small = sum(p.stat().st_size for p in self.files) < SMALL_INPUT_BYTES
        # simplified strokes stored once: the CPU recipe trains on them (input.simplify) every epoch
        pc = PrepareConfig(val_fraction=self.cfg.val_fraction, seed=self.cfg.seed, classes=list(self.names),
                           per_class=self.cfg.per_class, workers=1 if small else 0, simplify=True,
                           progress=self.cfg.progress)
        key = _key([self.state.get("download"), _settings(pc)])
        if self.same("prepare", key) and self.store.is_dir():
            manifest = load_manifest(self.store)
            return manifest, f"reused {self.store} ({manifest['accepted']:,} drawings)"
        manifest = prepare(self.files, self.store, pc, overwrite=True)
        self.done("prepare", key)
        self.echo(describe(manifest, max_classes=0))
        return manifest, f"built {self.store} ({manifest['accepted']:,} drawings)"

    def train(self) -> tuple[dict, str]:
        from doodle.runs import Run

        overrides = [*self.cfg.train_overrides, *self._budget_override()]
        config_path = resolve_config(self.cfg.config)
        key = _key([self.state.get("prepare"), config_path.read_text(encoding="utf-8"), self.cfg.train_overrides,
                    self.cfg.time_budget])
        handle = Run(self.run)
        if self.same("train", key) and handle.summary() is not None:
            return handle.summary(), f"reused the finished run {self.run}"
        if self.same("train", key) and handle.resumable:
            self.done("train", key)
            return self._resume()
        return self._train_fresh(key, config_path, overrides)

    def _train_fresh(self, key: str, config_path: Path, overrides: list[str]) -> tuple[dict, str]:
        from doodle.config import load_config
        from doodle.train.config import TrainConfig
        from doodle.train.loop import train

        replaced = self.run.exists()
        shutil.rmtree(self.run, ignore_errors=True)  # our own run folder, built from other settings
        self.done("train", key)  # recorded first: an interrupted run is resumed by the next call
        summary = train(load_config(TrainConfig, config_path, overrides), self.store, self.run)
        note = f" (replaced the run {self.run}: its data or settings changed)" if replaced else ""
        return summary, f"built {self.run}: best val MAP@3 {summary['best_map3']:.4f}{note}"

    def _resume(self) -> tuple[dict, str]:
        from doodle.train.loop import resume

        self.echo(f"resuming the interrupted run {self.run}")
        summary = resume(self.run)
        return summary, f"resumed {self.run}: best val MAP@3 {summary['best_map3']:.4f}"

    def _budget_override(self) -> list[str]:
        """`time_budget=SECONDS`: what is left of the budget for training (when training has the key)."""
        if self.cfg.time_budget is None:
            return []
        left = self.cfg.time_budget - (time.monotonic() - self.started) - EVAL_EXPORT_RESERVE_S
        return [f"time_budget={max(left, self.cfg.time_budget * MIN_TRAIN_SHARE):.0f}"]

    def evaluate(self) -> tuple[float, str]:
        metrics_file = self.report / "metrics.json"
        key = _key([self.state.get("train"), _mtime(self.run / "best.pt")])
        if self.same("evaluate", key) and metrics_file.is_file():
            return orjson.loads(metrics_file.read_bytes())["map3"], f"reused {self.report}"
        from doodle.evaluate.report import evaluate_run

        report = evaluate_run(self.run, [self.store / "val"], self.report, progress=self.cfg.progress)
        self.done("evaluate", key)
        m = report.metrics
        return m["map3"], f"MAP@3 {m['map3']:.4f}, acc@1 {m['acc1']:.4f} on {m['n']:,} val drawings: {self.report}"

    def export(self) -> tuple[Path, str]:
        key = _key([self.state.get("evaluate"), _mtime(self.run / "best.pt")])
        if self.same("export", key) and (self.export_dir / EXPORTED_MODEL).is_file():
            return self.export_dir, f"reused {self.export_dir}"
        from doodle.infer.export import export_onnx

        result = export_onnx(self.run, self.export_dir, check_sources=[self.downloads])
        self.done("export", key)
        agreement = result.agreement
        check = f"; ONNX vs PyTorch top-3 agreement {agreement.top3_agreement:.4f}" if agreement else ""
        return self.export_dir, f"built {self.export_dir}{check}"


# -- serving ------------------------------------------------------------------------------------


def build_server(export: str | Path, host: str = "127.0.0.1", port: int = 8000) -> tuple[Any, Any]:
    """(uvicorn server, engine) serving `export` as `doodle serve` does (`doodle.serve.server.build_server`)."""
    from doodle.serve.server import build_server as server_for

    return server_for(_serve_settings(export, host, port))


def serve(export: str | Path, host: str = "127.0.0.1", port: int = 8000, echo: Callable[[str], None] = print) -> None:
    """Serve `export` until Ctrl+C (a port that is taken is one line of error)."""
    from doodle.serve.server import serve_model

    serve_model(_serve_settings(export, host, port),
                announce=lambda engine: echo(f"serving {export} at http://{host}:{port}/  (API: POST /predict; "
                                             "Ctrl+C stops)"))


def _serve_settings(export: str | Path, host: str, port: int) -> Any:
    from doodle.serve.settings import ServeSettings

    return ServeSettings.from_env(model=str(export), host=host, port=port)


# -- helpers ------------------------------------------------------------------------------------


def resolve_config(config: str | Path) -> Path:
    """The training preset: as given, else the same relative path in this checkout's configs/."""
    path = Path(config)
    if path.is_file():
        return path
    fallback = REPO_CONFIGS / path.name
    if not path.is_absolute() and fallback.is_file():
        return fallback
    raise DoodleError(f"training config {config} not found")


def _settings(config: Any) -> dict:
    """A config's fields that shape the result (not how many processes build it, nor progress bars)."""
    data = dataclasses.asdict(config)
    for name in ("progress", "workers"):
        data.pop(name, None)
    return data


def _key(value: Any) -> str:
    """A short digest of what a stage is built from."""
    return hashlib.sha256(orjson.dumps(value, default=str)).hexdigest()[:16]


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


def _read_state(path: Path) -> dict:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):  # absent or damaged: every stage is checked afresh
        return {}


def _write_state(path: Path, state: dict) -> None:
    from doodle.data.formats.common import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as handle:
        handle.write(orjson.dumps(state, option=orjson.OPT_INDENT_2))
