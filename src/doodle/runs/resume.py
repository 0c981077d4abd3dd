"""What a resume may change: a resumed run continues its saved config, and only settings that cannot
change what it computes may differ from it.

A resume is exact (the weights equal those of the uninterrupted run, bit for bit) because batch
contents are a pure function of the saved config (seed, epoch, batch index). Any other setting that
differs would silently train a different run from the step it resumes at, or crash on a schedule
planned for another length, so it is refused with the key, the saved value and the asked one.
"""

from __future__ import annotations

import logging
from typing import Any

from doodle.config import load_config, to_dict
from doodle.errors import DoodleError
from doodle.runs.run import Run

log = logging.getLogger(__name__)

CHANGEABLE_ON_RESUME = {
    "data.workers": "loader processes: batch contents do not depend on them",
    "threads": "CPU threads of the model",
    "log_every": "how often training loss and speed are logged",
    "sync_check": "the multi-process weight check at checkpoints",
    "keep_checkpoints": "snapshots kept on disk (never fewer than average_last)",
}
"""The settings a resume may change, and why each leaves the run's result as it is."""


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1} (lists and scalars are leaves)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(saved: Any, asked: Any) -> list[tuple[str, Any, Any]]:
    """(key, saved value, asked value) for every setting that differs, in field order."""
    old, new = flatten(to_dict(saved)), flatten(to_dict(asked))
    return [(key, old.get(key), new.get(key)) for key in dict.fromkeys([*old, *new]) if old.get(key) != new.get(key)]


def checked_resume_config(run: Run, asked: Any) -> Any:
    """`asked` (a TrainConfig) if it may resume `run`, else DoodleError naming the first setting it
    changes. A batch size that `find_batch` replaced counts as unchanged when asked at its value
    before the search (a preset given again), since the search is never re-run on resume."""
    saved = run.config()
    found = run.info().get("found_batch")
    if found and asked.data.batch_size == found[0]:
        asked.data.batch_size = saved.data.batch_size
    applied = []
    for key, old, new in config_changes(saved, asked):
        if key not in CHANGEABLE_ON_RESUME:
            raise DoodleError(f"--resume {run.root}: {key} is {old!r} in the run and {new!r} here; a resumed run keeps "
                              f"its config (only {', '.join(CHANGEABLE_ON_RESUME)} may change): start a new run "
                              "with --out to train with it")
        applied.append(f"{key} {old!r} -> {new!r}")
    if applied:
        log.warning("resuming %s with %s", run.root, "; ".join(applied))
    return asked


def asked_config(run: Run, overrides: list[str] | None = None, preset: str | None = None) -> Any:
    """The config a resume asks for: the run's saved config (or `preset`) plus `overrides`, not yet
    checked (training checks it with `checked_resume_config`)."""
    from doodle.train.config import TrainConfig

    return load_config(TrainConfig, preset or run.config_file, overrides)


def resume_config(run: Run, overrides: list[str] | None = None, preset: str | None = None) -> Any:
    """The config to resume `run` with: `asked_config`, checked by `checked_resume_config`."""
    return checked_resume_config(run, asked_config(run, overrides, preset))
