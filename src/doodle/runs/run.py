"""`Run`: one training run's folder, the single place that knows its layout.

    RUN/config.yaml      the resolved training config (every field; `find_batch`'s result included)
    RUN/run.json         the store it trains on, the code version, and what `find_batch` changed
    RUN/last.pt          the resumable checkpoint (weights, EMA, optimizer, schedule, counters, RNG)
    RUN/best.pt          the best validated weights (the EMA when ema_decay > 0)
    RUN/averaged.pt      the average of the last `average_last` snapshots
    RUN/checkpoints/     weight snapshots, oldest first (raw weights, plus the EMA when on)
    RUN/train.log, metrics.csv, tensorboard/, curves.png, summary.json

Training creates a run (`Run.create`) or reopens one to resume it (`Run.open`); prediction,
evaluation, export, serving and cleaning open one to find a checkpoint (`Run.checkpoint`). A
checkpoint file carries everything to rebuild its model on its own (`doodle.runs.checkpoint`), so
those stages also accept a bare `.pt` file where they accept a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from doodle.errors import DoodleError
from doodle.version import code_version

CHECKPOINTS = {"best": "best.pt", "last": "last.pt", "averaged": "averaged.pt"}
"""The checkpoints a run may hold, by the names `--checkpoint` takes."""


@dataclass(frozen=True)
class Run:
    """A run folder (see the module doc for its files)."""

    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def info_file(self) -> Path:
        return self.root / "run.json"

    @property
    def last(self) -> Path:
        return self.root / "last.pt"

    @property
    def best(self) -> Path:
        return self.root / "best.pt"

    @property
    def averaged(self) -> Path:
        return self.root / "averaged.pt"

    @property
    def snapshot_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def summary_file(self) -> Path:
        return self.root / "summary.json"

    # -- creating and opening -------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path) -> Run:
        """A new run in `root`; a folder that already holds a run (a resumable checkpoint) is refused.
        A folder whose run died before its first checkpoint is trained afresh."""
        run = cls(Path(root))
        if run.resumable:
            raise DoodleError(f"{run.root} already holds a run; resume it with `doodle train --resume {run.root}` "
                              "or choose another --out")
        return run

    @classmethod
    def open(cls, root: str | Path) -> Run:
        """An existing run: a folder with its saved config."""
        run = cls(Path(root))
        if not run.root.is_dir():
            raise DoodleError(f"run {run.root} not found")
        if not run.config_file.is_file():
            raise DoodleError(f"{run.root} is not a run folder (no config.yaml)")
        return run

    @property
    def resumable(self) -> bool:
        """Whether the run has a resumable checkpoint."""
        return self.last.is_file()

    # -- what it holds --------------------------------------------------------------------------
    def config(self) -> Any:
        """The saved training config (a `TrainConfig`)."""
        from doodle.config import load_config
        from doodle.train.config import TrainConfig

        return load_config(TrainConfig, self.config_file)

    def info(self) -> dict:
        """run.json: {"data": store, "code_version": ..., "found_batch": [from, to] or absent}; {} when absent
        (a run from before run.json existed)."""
        return orjson.loads(self.info_file.read_bytes()) if self.info_file.is_file() else {}

    def write_info(self, data: str | Path, **extra: Any) -> None:
        """Record the store the run trains on (and `extra` facts, e.g. `found_batch`)."""
        info = {**self.info(), "data": str(Path(data).resolve()), "code_version": code_version(), **extra}
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.info_file.with_name(".run.json.tmp")
        tmp.write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
        tmp.replace(self.info_file)

    def data(self) -> Path | None:
        """The store the run trains on (None for a run that did not record it)."""
        data = self.info().get("data")
        return Path(data) if data else None

    def summary(self) -> dict | None:
        """summary.json of a finished run (None while it runs or after it was interrupted)."""
        return orjson.loads(self.summary_file.read_bytes()) if self.summary_file.is_file() else None

    def snapshots(self) -> list[Path]:
        """The weight snapshots in RUN/checkpoints, oldest first."""
        return sorted(self.snapshot_dir.glob("step-*.pt"))

    def checkpoint(self, which: str = "best") -> Path:
        """The checkpoint file named `which`: "best", "last", "averaged", "ema" (last.pt, whose EMA
        weights `load_checkpoint(..., weights="ema")` takes) or a file name in the run."""
        if which == "ema":  # the EMA weights at the end of training live in the resumable checkpoint
            which = "last"
        candidate = self.root / CHECKPOINTS.get(which, which)
        if not candidate.is_file():
            present = ", ".join(sorted(p.name for p in self.root.glob("*.pt"))) or "none"
            raise DoodleError(f"no checkpoint {candidate.name!r} in {self.root} (checkpoints there: {present})")
        return candidate


def resolve_checkpoint(run_or_path: str | Path, which: str = "best") -> Path:
    """A checkpoint file: `run_or_path` itself when it is a file, else `Run.checkpoint(which)`;
    `which` may also be a path to a file."""
    path = Path(run_or_path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise DoodleError(f"{path} is neither a checkpoint file nor a run folder")
    if Path(which).is_file():
        return Path(which)
    return Run(path).checkpoint(which)
