"""What a training run writes in its folder, besides checkpoints.

* `train.log`: one human-readable line per event (wall-clock time, elapsed time, step, epoch, loss,
  learning rate, throughput, validation metrics), also sent to the `doodle.train` logger so it is
  echoed on the console;
* `metrics.csv`: one row per logged event with the fixed header `CSV_COLUMNS` (a value an event
  does not have is an empty cell), so the file can be read while the run goes on;
* `tensorboard/`: TensorBoard event files, scalars tagged `<name>/<split>` (`loss/train`,
  `lr/train`, `images_per_s/train`, `loss/val`, `map3/val`, `acc1/val`, `acc3/val`, ...);
* `curves.png`: training and validation loss over steps (left) and validation MAP@3 (right),
  redrawn by `plot()` (the training loop calls it after each validation; `close()` draws it last).

Only rank 0 writes: on any other rank every method is a no-op, so the training loop can call them
unconditionally.

Resuming: `RunLogger(run, resume_step=S)` keeps the rows of `metrics.csv` up to step S and drops
the later ones (which the resumed run is about to log again), appends to `train.log`, and tells
TensorBoard to discard events after S (`purge_step`). Without `resume_step` the run starts afresh:
an existing `metrics.csv` is replaced.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("doodle.train")

CSV_COLUMNS = ("step", "epoch", "split", "loss", "map3", "acc1", "acc3", "lr", "images_per_s", "seconds")
"""The header of metrics.csv, fixed up front: a metric an event lacks is an empty cell."""
PLOT_SIZE = (12.0, 4.5)
PLOT_DPI = 100
"""curves.png is PLOT_SIZE * PLOT_DPI pixels (1200 x 450)."""


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.6g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.4e}"
    return str(value)


def _number(text: str) -> float | None:
    try:
        return float(text) if text not in ("", None) else None
    except ValueError:
        return None


def _as_float(value: Any) -> float | None:
    if value is None:
        return None
    if hasattr(value, "item"):  # numpy or torch scalar
        value = value.item()
    return float(value)


def _elapsed(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class RunLogger:
    """Progress log, metrics CSV, TensorBoard scalars and a curves plot for one run folder."""

    def __init__(self, run_dir: str | os.PathLike[str], rank: int = 0, *, resume_step: int | None = None,
                 tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.rank = rank
        self.enabled = rank == 0
        self.rows: list[dict[str, str]] = []
        """Every row of metrics.csv, kept ones included (what `plot()` draws)."""
        self._csv = self._log = self._writer = None
        self._offset = 0.0
        self._start = time.monotonic()
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.run_dir / "metrics.csv"
        self.log_path = self.run_dir / "train.log"
        self.plot_path = self.run_dir / "curves.png"
        if resume_step is not None:
            self.rows = self._kept_rows(resume_step)
            if self.rows:
                self._offset = max((_number(r.get("seconds", "")) or 0.0) for r in self.rows)
        self._rewrite_csv()
        self._csv = open(self.csv_path, "a", newline="", encoding="utf-8")  # noqa: SIM115 (closed in close)
        self._csv_writer = csv.DictWriter(self._csv, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        self._log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge)
        if resume_step is None:
            self.info(f"run started in {self.run_dir}")
        else:
            self.info(f"run resumed at step {resume_step} ({len(self.rows)} metric rows kept)")

    # -- resume ------------------------------------------------------------------------------
    def _kept_rows(self, resume_step: int) -> list[dict[str, str]]:
        if not self.csv_path.is_file():
            return []
        with open(self.csv_path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        kept = []
        for row in rows:
            step = _number(row.get("step", ""))
            if step is not None and step <= resume_step:
                kept.append({c: row.get(c) or "" for c in CSV_COLUMNS})
        return kept

    def _rewrite_csv(self) -> None:
        """metrics.csv with the current header and the kept rows, replaced atomically."""
        tmp = self.csv_path.with_name(f".{self.csv_path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.csv_path)

    # -- events ------------------------------------------------------------------------------
    @property
    def seconds(self) -> float:
        """Training seconds so far, counting those of the run before a resume."""
        return self._offset + time.monotonic() - self._start

    @property
    def prior_seconds(self) -> float:
        """Training seconds of the run before a resume (0 for a fresh run, and off rank 0)."""
        return self._offset

    def warning(self, msg: str) -> None:
        """A warning line in train.log and on the console."""
        if not self.enabled or self._log is None:
            return
        self._write(f"WARNING {msg}")
        log.warning(msg)

    def _write(self, msg: str) -> None:
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        self._log.write(f"{stamp} [{_elapsed(self.seconds)}] {msg}\n")
        self._log.flush()

    def info(self, msg: str) -> None:
        """A free-form line in train.log and on the console."""
        if not self.enabled or self._log is None:
            return
        self._write(msg)
        log.info(msg)

    def log_train(self, step: int, epoch: float, loss: float, lr: float, images_per_s: float | None = None) -> None:
        """A training progress event (loss averaged over the steps since the last one)."""
        if not self.enabled:
            return
        loss, lr, ips = _as_float(loss), _as_float(lr), _as_float(images_per_s)
        self._row(step, epoch, "train", {"loss": loss, "lr": lr, "images_per_s": ips})
        parts = [f"step {step}", f"epoch {epoch:.2f}", f"loss {loss:.4f}", f"lr {lr:.3g}"]
        if ips is not None:
            parts.append(f"{ips:,.0f} img/s")
        self.info(" ".join(parts))
        self._scalars(step, "train", {"loss": loss, "lr": lr, "images_per_s": ips})

    def log_val(self, step: int, epoch: float, metrics: dict[str, Any]) -> None:
        """A validation event: `metrics` as from `doodle.evaluate.metrics.Metrics.compute()` (map3, acc1, acc3,
        n, loss), any other numeric entry going to train.log and TensorBoard (the CSV keeps its
        fixed columns)."""
        if not self.enabled:
            return
        values = {}
        for key, value in metrics.items():
            try:
                values[key] = _as_float(value)
            except (TypeError, ValueError):  # not a number (a name, a list): not a metric to log
                continue
            if values[key] is None:
                del values[key]
        self._row(step, epoch, "val", values)
        parts = [f"val step {step}", f"epoch {epoch:.2f}"]
        for key in ("loss", "map3", "acc1", "acc3"):
            if key in values:
                parts.append(f"{key} {values[key]:.4f}")
        for key, value in values.items():
            if key not in ("loss", "map3", "acc1", "acc3", "n"):
                parts.append(f"{key} {value:.4g}")
        if "n" in values:
            parts.append(f"(n={int(values['n']):,})")
        self.info(" ".join(parts))
        self._scalars(step, "val", {k: v for k, v in values.items() if k != "n"})
        if self._writer is not None:
            self._writer.flush()

    def _row(self, step: int, epoch: float, split: str, values: dict[str, float | None]) -> None:
        row = {"step": _cell(int(step)), "epoch": _cell(float(epoch)), "split": split,
               "seconds": f"{self.seconds:.1f}"}
        row.update({k: _cell(v) for k, v in values.items() if k in CSV_COLUMNS and k not in row})
        row = {c: row.get(c, "") for c in CSV_COLUMNS}
        self.rows.append(row)
        assert self._csv is not None
        self._csv_writer.writerow(row)
        self._csv.flush()

    def _scalars(self, step: int, split: str, values: dict[str, float | None]) -> None:
        if self._writer is None:
            return
        for name, value in values.items():
            if value is not None:
                self._writer.add_scalar(f"{name}/{split}", value, int(step))

    # -- plot --------------------------------------------------------------------------------
    def _series(self, split: str, key: str) -> tuple[list[float], list[float]]:
        xs, ys = [], []
        for row in self.rows:
            if row.get("split") == split:
                x, y = _number(row.get("step", "")), _number(row.get(key, ""))
                if x is not None and y is not None and math.isfinite(y):
                    xs.append(x)
                    ys.append(y)
        return xs, ys

    def plot(self) -> Path | None:
        """Redraw curves.png from every row so far (atomically); returns its path (None off rank 0)."""
        if not self.enabled:
            return None
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=PLOT_SIZE, dpi=PLOT_DPI)
        FigureCanvasAgg(fig)
        ax_loss, ax_map = fig.subplots(1, 2)
        tx, ty = self._series("train", "loss")
        vx, vy = self._series("val", "loss")
        if tx:
            ax_loss.plot(tx, ty, color="tab:blue", alpha=0.35 if len(tx) > 20 else 1.0, lw=1, label="train")
            if len(tx) > 20:
                ax_loss.plot(tx, _ema(ty, 0.9), color="tab:blue", lw=1.8, label="train (smoothed)")
        if vx:
            ax_loss.plot(vx, vy, color="tab:orange", marker="o", ms=3, lw=1.8, label="validation")
        ax_loss.set(title="loss", xlabel="step", ylabel="cross-entropy")
        mx, my = self._series("val", "map3")
        if mx:
            ax_map.plot(mx, my, color="tab:green", marker="o", ms=3, lw=1.8, label="MAP@3")
            best = max(range(len(my)), key=my.__getitem__)
            ax_map.annotate(f"best {my[best]:.4f}", (mx[best], my[best]), textcoords="offset points",
                            xytext=(0, -14), ha="center", fontsize=8)
        ax_map.set(title="validation MAP@3", xlabel="step", ylabel="MAP@3")
        for ax in (ax_loss, ax_map):
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best", fontsize=8)
        fig.suptitle(self.run_dir.name, fontsize=10)
        fig.tight_layout()
        tmp = self.plot_path.with_name(f".{self.plot_path.name}.tmp")
        fig.savefig(tmp, dpi=PLOT_DPI, format="png")
        os.replace(tmp, self.plot_path)
        return self.plot_path

    # -- end ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Draw the curves one last time and close every file; later calls are no-ops."""
        if not self.enabled:
            return
        try:
            if self.rows:
                self.plot()
        finally:
            if self._writer is not None:
                self._writer.close()
            for handle in (self._csv, self._log):
                if handle is not None:
                    handle.close()
            self.enabled = False

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ema(values: list[float], decay: float) -> list[float]:
    """Bias-corrected exponential moving average (TensorBoard's smoothing)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = decay * avg + (1 - decay) * v
        out.append(avg / (1 - decay**i))
    return out
