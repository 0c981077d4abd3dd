"""`train`: the training loop, on CPU, one GPU or many through torchrun (DDP).

What makes `--resume` exact: batch contents are a pure function of (seed, epoch, batch index)
(see `doodle.train.data`), so a checkpoint needs only counters, the optimizer, schedule, scaler
and EMA states and the torch RNG; checkpoints are taken at optimizer-step boundaries; loaders are
started outside the global RNG stream so that restarting one does not shift dropout masks.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import torch

from doodle.config import save_config, to_dict
from doodle.data.store import load_manifest
from doodle.errors import DoodleError
from doodle.fs import check_writable, remove_stale_temporaries
from doodle.models import create_model
from doodle.preprocess import Preprocessor
from doodle.runs import Run
from doodle.runs.checkpoint import atomic_save, average_state_dicts, make_checkpoint, read_checkpoint
from doodle.runs.resume import checked_resume_config
from doodle.train import budget
from doodle.train.budget import Cadence, Costs, budget_line, fit_steps, format_duration
from doodle.train.config import TrainConfig
from doodle.train.distributed import Env, any_rank, barrier, broadcast_object, setup, teardown, weights_in_sync
from doodle.train.losses import make_loss, micro_batch_loss
from doodle.train.optim import Schedule, build_optimizer

log = logging.getLogger(__name__)
MODEL_KEYS = ("image", "points", "lengths", "country", "time_features")


@dataclass
class TrainState:
    """Counters saved in every resumable checkpoint."""

    step: int = 0
    """Optimizer steps done."""
    epoch: int = 0
    """The epoch in progress."""
    batch: int = 0
    """Next batch index of this epoch (for this rank)."""
    accumulate: int = 1
    """Micro-batches per optimizer step now (grows on plateau)."""
    best_map3: float = -1.0
    best_step: int = -1
    best_epoch: float = -1.0
    """Epochs done at the best validation (a fraction for one inside an epoch)."""
    stale_evals: int = 0
    snapshots: list[str] = field(default_factory=list)
    """File names of the weight snapshots kept in RUN/checkpoints, oldest first (for averaging)."""


def train(config: TrainConfig, data: str | Path | None, out: str | Path, *, resume: bool = False) -> dict:
    """Train `config` on the store `data`, writing the run to `out`; returns the final metrics.

    `resume=True` continues the run in `out` from its last checkpoint: `config` must equal the run's
    saved config except for the settings `doodle.runs.resume.CHANGEABLE_ON_RESUME` lists, and
    `data` may be None (the store the run recorded)."""
    env = setup(config.device, config.threads)
    try:
        return Trainer(config, None if data is None else Path(data), Path(out), env, resume).run()
    finally:
        teardown()


def resume(run: str | Path, overrides: list[str] | None = None, *, preset: str | None = None,
           data: str | Path | None = None) -> dict:
    """Continue the run in `run` from its saved config (or `preset`, compared with it) with `overrides`
    (checked by `doodle.runs.resume`); the store is the one it recorded unless `data` names it."""
    from doodle.runs.resume import asked_config

    handle = Run.open(run)
    return train(asked_config(handle, overrides, preset), data, handle.root, resume=True)


class Trainer:
    """One training run; `run()` does it. Split in small methods, each one job."""

    def __init__(self, cfg: TrainConfig, data: Path | None, out: Path, env: Env, resume: bool):
        from doodle.train.logger import RunLogger
        from doodle.train.progress import make_bar

        self._t0, self._prior = time.monotonic(), 0.0  # the run's clock: a time budget counts its set-up too
        self.out, self.env = out, env
        self._found_batch: dict = {}  # run.json's record of what find_batch changed: {"found_batch": [before, after]}
        self._budget: dict = {}  # run.json's record of what time_budget set: {"time_budget": {...}}
        self._deadline, self._stopped_on_clock = float("inf"), False
        self.run_dir = self._open_run(resume)
        self.cfg = checked_resume_config(self.run_dir, self._as_budgeted(cfg)) if resume else cfg
        self.data = self._store(data, resume)
        self.classes: list[str] = load_manifest(self.data)["classes"]
        if not self.classes:
            raise DoodleError(f"store {self.data} has no classes")
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.model = create_model(cfg.model, cfg.input, len(self.classes)).to(env.device)
        if cfg.init_from:
            self._init_from(cfg.init_from)
        self.input_kind = self.model.input_kind
        self.current_input = cfg.input
        self.loss_fn = make_loss(cfg.loss)
        self._epoch_batches = 0  # batches in the epoch being trained (for the epoch of mid-epoch evaluations)
        self._epoch_lengths: list[int] = []  # batches of every epoch of the run (for the steps left)
        self.sample_weights = None
        if cfg.sample_weights or cfg.curriculum:
            from doodle.train.weights import SampleWeights

            self.sample_weights = SampleWeights.from_config(cfg)
        if cfg.find_batch and not resume:  # never re-run on resume: the saved config holds its result
            self._find_batch()
        self.amp_dtype = self._amp_dtype()
        self._build_training()
        if resume:
            self._resume()
            self.current_input = self._preprocessor(max(self.state.epoch - (self.state.batch == 0), 0)).config
        self.ddp = self._wrap_ddp()
        self.logger = RunLogger(out, rank=env.rank, resume_step=self.state.step if resume else None)
        self.bar = make_bar(0, enabled=False)  # the terminal's progress bar, made by run()
        self._prior = self.logger.prior_seconds  # a resumed run's clock goes on from where it was
        if cfg.time_budget:
            self._budget_from_run() if resume else self._fit_budget()
        if env.is_main:
            save_config(cfg, self.run_dir.config_file)
            self.run_dir.write_info(self.data, **self._found_batch, **self._budget)

    # -- set-up ---------------------------------------------------------------------------------
    def _build_training(self) -> None:
        """The optimizer, counters, schedule, scaler and EMA of a run at its first step."""
        cfg = self.cfg
        self.optimizer = build_optimizer(cfg.optim, self.model)
        self.state = TrainState(accumulate=cfg.accumulate)
        self.planned_steps = self._total_steps()
        self.schedule = Schedule(cfg.schedule, self.optimizer, cfg.optim.lr, self.planned_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.ema = self._make_ema()

    def _open_run(self, resume: bool) -> Run:
        """The run folder: opened (and checked resumable) to resume, else created empty."""
        if resume:
            run = Run.open(self.out)
            if not run.resumable:
                raise DoodleError(f"--resume: no {run.last} to resume from")
        else:
            run = Run.create(self.out)
        check_writable(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        if self.env.is_main:  # checkpoint temporaries of a run killed mid-write (up to the model's size each)
            for folder in (self.out, run.snapshot_dir):
                remove_stale_temporaries(folder)
        return run

    def _store(self, data: Path | None, resume: bool) -> Path:
        """The store to train on: `data`, or on resume the one the run recorded (a different store
        with other classes or another training split is refused)."""
        recorded = self.run_dir.data() if resume else None
        if data is None:
            if recorded is None:
                raise DoodleError(f"{self.out} does not record its store: pass --data STORE")
            return recorded
        if recorded is not None and recorded != data.resolve() and recorded.is_dir():
            ours, theirs = load_manifest(recorded), load_manifest(data)
            for key in ("classes", "splits"):
                if ours.get(key) != theirs.get(key):
                    raise DoodleError(f"--resume {self.out}: {data} is not the store the run trains on ({recorded}): "
                                      f"their {key} differ")
        return data

    def _init_from(self, path: str) -> None:
        from doodle.runs.checkpoint import resolve_checkpoint

        data = read_checkpoint(resolve_checkpoint(path))
        if data["classes"] != self.classes:
            raise DoodleError(f"init_from {path}: its classes differ from the store's")
        self.model.load_state_dict(data["model"])

    def _runs_out_of_memory(self) -> bool:
        """Whether the device fails when a batch is too big: CUDA does; a CPU swaps instead."""
        return self.env.device.type == "cuda"

    def _find_batch(self) -> None:
        """Set data.batch_size to 90 % of the largest batch one forward and backward pass fits
        (`find_batch_size`), so that the config the run saves holds it (CUDA only: a CPU swaps
        instead of failing, so there is nothing to find)."""
        if not self._runs_out_of_memory():
            log.warning("find_batch needs a CUDA device; keeping data.batch_size=%d", self.cfg.data.batch_size)
            return
        from doodle.train.batch_finder import find_batch_size, make_try_batch
        from doodle.train.data import EpochBatches

        plan = EpochBatches(self.data, "train", self._preprocessor(0), 64, self.cfg.seed, 0)
        sample = plan[0]
        # Never more than one process's share of the training set: a batch larger than that has no
        # full batch to draw (and a huge batch on a small store is never what anyone wants).
        per_rank = int(plan.group_rows.sum()) // self.env.world_size
        if self.cfg.data.limit_train:
            per_rank = min(per_rank, self.cfg.data.limit_train // self.env.world_size)
        limit = max(1, per_rank)

        def example(n: int):
            reps = -(-n // len(sample["label"]))  # tile the sample batch up to n drawings
            batch = {k: torch.as_tensor(v).repeat(reps, *[1] * (v.ndim - 1))[:n] for k, v in sample.items()
                     if k in MODEL_KEYS + ("label",)}
            return {k: v for k, v in batch.items() if k != "label"}, batch["label"]

        try_batch = make_try_batch(self.model, example, self.loss_fn, self.env.device, amp_dtype=self._amp_dtype())
        found = find_batch_size(try_batch, start=min(self.cfg.data.batch_size, limit), limit=limit)
        if found == limit:
            log.info("find_batch: capped at %d, the training drawings per process", limit)
        # keep a margin for optimizer state and fragmentation
        self._found_batch = {"found_batch": [self.cfg.data.batch_size, max(1, int(found * 0.9))]}
        self.cfg.data.batch_size = max(1, int(found * 0.9))
        log.info("find_batch: %d fits; training with batch_size %d", found, self.cfg.data.batch_size)

    def _amp_dtype(self) -> torch.dtype | None:
        amp = self.cfg.amp
        if amp == "off" or (amp == "auto" and self.env.device.type != "cuda"):
            return None
        if amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
            return torch.float16
        return torch.bfloat16

    def _make_ema(self):
        if self.cfg.ema_decay <= 0:
            return None
        from timm.utils import ModelEmaV3

        # Warm-up: the decay grows with the step count, so early averages follow the model instead
        # of staying near the random initial weights.
        return ModelEmaV3(self.model, decay=self.cfg.ema_decay, use_warmup=True)

    def _wrap_ddp(self):
        if not self.env.distributed:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.env.local_rank] if self.env.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    # -- data -----------------------------------------------------------------------------------
    def _epoch_value(self, schedule: list[tuple[int, int]], default: int, epoch: int) -> int:
        value = default
        for start, v in sorted(schedule):
            if epoch >= start:
                value = v
        return value

    def _preprocessor(self, epoch: int) -> Preprocessor:
        size = self._epoch_value(self.cfg.size_schedule, self.cfg.input.size, epoch)
        return Preprocessor(dataclasses.replace(self.cfg.input, size=size), self.input_kind)

    def _batches(self, epoch: int, split: str = "train"):
        from doodle.train.data import EpochBatches

        cfg = self.cfg
        if split == "train":
            batch = self._epoch_value(cfg.batch_schedule, cfg.data.batch_size, epoch)
            main = EpochBatches(self.data, "train", self._preprocessor(epoch), batch, cfg.seed, epoch,
                                augment=cfg.augment, balanced_block=cfg.data.balanced_block or None,
                                rank=self.env.rank, world_size=self.env.world_size, shuffle=True, drop_last=True,
                                limit=cfg.data.limit_train or None,
                                curriculum=self.sample_weights if cfg.curriculum else None)
            if not cfg.extra_train:
                return main
            from doodle.train.data import MixedBatches

            # extra stores (pseudo-labels): whole batches of each, interleaved with the labelled ones
            extras = [EpochBatches(path, "train", self._preprocessor(epoch), batch, cfg.seed, epoch,
                                   augment=cfg.augment, rank=self.env.rank, world_size=self.env.world_size,
                                   shuffle=True, drop_last=True) for path in cfg.extra_train]
            return MixedBatches([main, *extras], cfg.seed, epoch)
        # Validate at the input the weights were last trained at (progressive resizing changes it at
        # epoch boundaries, just before the end-of-epoch validation).
        return EpochBatches(self.data, "val", Preprocessor(self.current_input, self.input_kind), cfg.data.batch_size,
                            cfg.seed, 0, augment=None, shuffle=False, drop_last=False,
                            limit=cfg.data.limit_val or None)

    def _loader(self, dataset, start: int = 0):
        from doodle.train.data import make_loader

        # Starting a loader draws a seed from the global RNG: keep that out of the training stream.
        with torch.random.fork_rng(devices=[]):
            return iter(make_loader(dataset, workers=self.cfg.data.workers, start=start))

    def _total_steps(self) -> int:
        """Optimizer steps of the whole run at the configured accumulation (the schedule's length)."""
        self._epoch_lengths = [len(self._batches(epoch)) for epoch in range(self.cfg.epochs)]
        total = 0
        for epoch, length in enumerate(self._epoch_lengths):
            steps = length // max(1, self.cfg.accumulate)
            if steps == 0:  # a batch (x accumulation) larger than the data: nothing would train
                raise DoodleError(f"epoch {epoch}: no full batch of {self.cfg.data.batch_size} drawings "
                                  f"(x accumulate {self.cfg.accumulate}) in this process's share of {self.data}'s "
                                  "training split; lower data.batch_size or accumulate")
            total += steps
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    def _steps_left(self, accumulate: int) -> int:
        """Optimizer steps from now to the end of the run at `accumulate` micro-batches per step
        (each epoch drops its last incomplete accumulation)."""
        st = self.state
        left = sum(length // accumulate for length in self._epoch_lengths[st.epoch + 1:])
        if st.epoch < len(self._epoch_lengths):
            left += (self._epoch_lengths[st.epoch] - st.batch) // accumulate
        if self.cfg.max_steps:
            left = min(left, max(0, self.cfg.max_steps - st.step))
        return left

    def _to_device(self, batch: dict) -> dict:
        dev = self.env.device
        return {k: v.to(dev, non_blocking=True) if k != "lengths" else v for k, v in batch.items() if k in MODEL_KEYS}

    def _autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.env.device.type, dtype=self.amp_dtype)

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> dict:
        from doodle.train.progress import log_beside, make_bar

        cfg, st = self.cfg, self.state
        name = cfg.model.family + ("" if self.input_kind == "sequence" and cfg.model.family == "sequence"
                                   else f"/{cfg.model.arch}")
        self.logger.info(f"training {name} on {self.data} ({len(self.classes)} classes) "
                         f"-> {self.out}; device {self.env.device}, {self.env.world_size} process(es)")
        self.bar = make_bar(self.planned_steps, st.step, enabled=None if self.env.is_main else False)
        with log_beside(self.bar), self.bar:
            while st.epoch < cfg.epochs and not self._done():
                self._train_epoch()
                if cfg.eval_every == 0:
                    self._evaluate()
                if cfg.checkpoint_every == 0:
                    self._checkpoint()
            if cfg.eval_every and st.step % cfg.eval_every:
                self._evaluate()
            if cfg.checkpoint_every and st.step % cfg.checkpoint_every:
                self._checkpoint()
        return self._finish()

    def _done(self) -> bool:
        """max_steps reached, or (time_budget) the clock says the run must end now to finish in time.
        Every rank calls it at the same points, so the clock check may agree across ranks there."""
        if self._stopped_on_clock or (self.cfg.max_steps and self.state.step >= self.cfg.max_steps):
            return True
        if self.cfg.time_budget and any_rank(self.env, self._elapsed() > self._deadline):
            self._stop_on_clock()
        return self._stopped_on_clock

    def _train_epoch(self) -> None:
        st = self.state
        dataset = self._batches(st.epoch)
        self._epoch_batches = len(dataset)
        self.current_input = self._preprocessor(st.epoch).config
        loader = self._loader(dataset, start=st.batch)
        self.ddp.train()
        self._window = [0, 0, 0.0, time.perf_counter()]  # since the last log line: micro-batches, drawings, loss, time
        micro = 0
        for index in range(st.batch, len(dataset)):
            micro += 1
            self._tally(*self._forward_backward(next(loader), micro == st.accumulate))
            if micro < st.accumulate:
                continue
            self._optimizer_step()
            micro = 0
            st.batch = index + 1
            self._after_step(len(dataset))
            if self._done():
                return
        self.optimizer.zero_grad(set_to_none=True)  # a last incomplete accumulation is dropped
        st.epoch += 1
        st.batch = 0

    def _forward_backward(self, batch: dict, final_micro: bool) -> tuple[int, torch.Tensor]:
        """One micro-batch: forward, loss, backward (gradients all-reduced only on its step's last);
        returns its drawings and its loss."""
        st = self.state
        labels = batch["label"].to(self.env.device, non_blocking=True)
        # Between optimizer steps DDP must not all-reduce gradients (no_sync), for the forward and
        # the backward pass alike; a context manager can be entered only once, so one block.
        weight = (self.sample_weights.batch(batch["key_id"], st.epoch).to(self.env.device)
                  if self.sample_weights else None)  # per-drawing loss weights (clean, curriculum)
        with self.ddp.no_sync() if self.env.distributed and not final_micro else nullcontext():
            with self._autocast():
                logits = self.ddp(self._to_device(batch))
                loss = micro_batch_loss(self.loss_fn, self.env, logits, labels, weight, st.accumulate)
            self.scaler.scale(loss).backward()
        return len(labels), loss.detach()

    def _tally(self, drawings: int, loss: torch.Tensor) -> None:
        """Count a micro-batch into the training loss and speed of the next log line."""
        self._window[0] += 1
        self._window[1] += drawings
        self._window[2] += float(loss) * self.state.accumulate

    def _after_step(self, batches: int) -> None:
        """After optimizer step: the bar, the log line, validation and checkpoint when they are due."""
        cfg, st = self.cfg, self.state
        self.bar.update()
        if st.step % cfg.log_every == 0:
            n_micro, seen, loss_sum, tick = self._window
            loss = loss_sum / max(n_micro, 1)
            self.logger.log_train(st.step, st.epoch + st.batch / batches, loss, self.schedule.lr,
                                  seen * self.env.world_size / max(time.perf_counter() - tick, 1e-9))
            self.bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            self._window = [0, 0, 0.0, time.perf_counter()]
        if cfg.eval_every and st.step % cfg.eval_every == 0:
            self._evaluate()
            self.ddp.train()
        if cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0:
            self._checkpoint()

    def _optimizer_step(self) -> None:
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self.schedule.after_step(self.state.step)
        if self.ema is not None:
            self.ema.update(self.model, step=self.state.step)

    # -- validation -----------------------------------------------------------------------------
    def eval_model(self) -> torch.nn.Module:
        """The weights that are validated and kept as best: the EMA when on, else the model."""
        return self.ema.module if self.ema is not None else self.model

    @torch.inference_mode()
    def validate(self, model: torch.nn.Module) -> dict | None:
        """Loss, MAP@3, acc@1, acc@3 on the validation split (None when it is empty)."""
        from doodle.evaluate.metrics import Metrics

        dataset = self._batches(self.state.epoch, "val")
        if len(dataset) == 0:
            return None
        was_training = model.training
        model.eval()
        metrics, loss_sum, n = Metrics(), 0.0, 0
        loader = self._loader(dataset)
        for _ in range(len(dataset)):
            batch = next(loader)
            labels = batch["label"].to(self.env.device)
            with self._autocast():
                logits = model(self._to_device(batch)).float()
            loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
            n += len(labels)
            metrics.update(logits.cpu(), labels.cpu())
        model.train(was_training)
        return {"loss": loss_sum / max(n, 1), **metrics.compute()}

    def _evaluate(self) -> None:
        st = self.state
        result = self.validate(self.eval_model()) if self.env.is_main else None
        barrier(self.env)
        if self.env.distributed:
            result = broadcast_object(self.env, result)
        if result is None:
            return
        # epochs done, plus the part of the current one (a mid-epoch evaluation, or max_steps)
        partial = st.batch / self._epoch_batches if st.batch and self._epoch_batches else 0.0
        self.logger.log_val(st.step, st.epoch + partial, result)
        self.schedule.after_eval(result["map3"])
        improved = result["map3"] > st.best_map3
        if improved:
            st.best_map3, st.best_step, st.stale_evals = result["map3"], st.step, 0
            st.best_epoch = st.epoch + partial
            self._save_weights(self.run_dir.best, result)
        else:
            st.stale_evals += 1
            if self.cfg.grow_on_plateau and st.stale_evals >= self.cfg.schedule.plateau_patience:
                st.stale_evals = 0
                self._grow_batch()

    def _grow_batch(self) -> None:
        """Double the accumulation (the effective batch). Fewer optimizer steps are then left, so
        the schedule is spread over them and still ends at the run's last step; an accumulation
        that would leave no full step is not taken."""
        st = self.state
        left = self._steps_left(2 * st.accumulate)
        if left == 0:
            if self._steps_left(st.accumulate):
                self.logger.info(f"validation MAP@3 plateaued: accumulate {st.accumulate} kept, twice as many "
                                 "micro-batches per step would leave no full optimizer step")
            return
        st.accumulate *= 2
        self.schedule.resize(st.step, left)
        self.bar.total = st.step + left
        self.bar.refresh()
        self.logger.info(f"validation MAP@3 plateaued: effective batch doubled (accumulate {st.accumulate}, "
                         f"{left} optimizer steps left)")

    # -- checkpoints ----------------------------------------------------------------------------
    def _checkpoint_dict(self, model_state: dict, metrics: dict | None, train_state: dict | None, *,
                         ema_state: dict | None = None, weights: str = "raw") -> dict:
        cfg = self.cfg
        # The input the weights were last trained at (progressive resizing changes the size).
        return make_checkpoint(model_config=to_dict(cfg.model), input_config=to_dict(self.current_input),
                               input_kind=self.input_kind, classes=self.classes, config=to_dict(cfg),
                               model_state=model_state, train_state=train_state, metrics=metrics,
                               ema_state=ema_state, weights=weights)

    def _state(self, model: torch.nn.Module) -> dict:
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def _ema_state(self) -> dict | None:
        return self._state(self.ema.module) if self.ema is not None else None

    def _save_weights(self, path: Path, metrics: dict | None) -> None:
        """The validated weights (the EMA when on) as a checkpoint that says which they are."""
        if self.env.is_main:
            weights = "ema" if self.ema is not None else "raw"
            atomic_save(self._checkpoint_dict(self._state(self.eval_model()), metrics, None, weights=weights), path)

    def _checkpoint(self) -> None:
        """The resumable RUN/last.pt, plus a weight snapshot for averaging."""
        st, cfg = self.state, self.cfg
        if cfg.sync_check and not weights_in_sync(self.env, self.model):
            raise RuntimeError(f"step {st.step}: ranks hold different weights")
        if self.env.is_main:
            self._snapshot()  # first, so that last.pt lists its own snapshot
            atomic_save(self._resumable(), self.run_dir.last)
        if cfg.sync_check and self.env.is_main:
            with open(self.out / "sync.log", "a") as handle:
                handle.write(f"step {st.step}: weights in sync across {self.env.world_size} ranks\n")
        barrier(self.env)

    def _resumable(self) -> dict:
        """last.pt's content: the weights and everything a resume continues exactly from."""
        train_state = {
            "counters": dataclasses.asdict(self.state),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        return self._checkpoint_dict(self.model.state_dict(), None, train_state, ema_state=self._ema_state())

    def _snapshot(self) -> None:
        keep = max(self.cfg.keep_checkpoints, self.cfg.average_last)
        if keep <= 0:
            return
        name = f"step-{self.state.step:07d}.pt"
        if name not in self.state.snapshots:  # the raw weights, and the EMA beside them when on
            snapshot = self._checkpoint_dict(self._state(self.model), None, None, ema_state=self._ema_state())
            atomic_save(snapshot, self.run_dir.snapshot_dir / name)
            self.state.snapshots.append(name)
        while len(self.state.snapshots) > keep:
            (self.run_dir.snapshot_dir / self.state.snapshots.pop(0)).unlink(missing_ok=True)

    def _resume(self) -> None:
        data = read_checkpoint(self.run_dir.last)
        ts = data["train_state"]
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(ts["optimizer"])
        self.schedule.load_state_dict(ts["schedule"])
        self.scaler.load_state_dict(ts["scaler"])
        if self.ema is not None and data.get("ema"):
            self.ema.module.load_state_dict(data["ema"])
        self.state = TrainState(**ts["counters"])
        torch.set_rng_state(ts["torch_rng"])
        if ts["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ts["cuda_rng"])
        log.info("resumed %s at step %d (epoch %d, batch %d)", self.out, self.state.step, self.state.epoch,
                 self.state.batch)

    # -- time budget ----------------------------------------------------------------------------
    def _elapsed(self) -> float:
        """Seconds this run has taken, set-up included (and, resumed, those before the resume)."""
        return self._prior + time.monotonic() - self._t0

    def _synced_clock(self) -> float:
        """time.perf_counter once the device has done what it was given (CUDA runs asynchronously)."""
        if self.env.device.type == "cuda":
            torch.cuda.synchronize(self.env.device)
        return time.perf_counter()

    def _as_budgeted(self, cfg: TrainConfig) -> TrainConfig:
        """A resume asked with the preset again (epochs and max_steps as they were before the budget
        sized the run) continues the sized run: a budget is never re-measured on resume."""
        record = self.run_dir.info().get("time_budget")
        if record and cfg.time_budget == record["seconds"] and \
                [cfg.epochs, cfg.max_steps] == [record["epochs"][0], record["max_steps"][0]]:
            cfg.epochs, cfg.max_steps = record["epochs"][1], record["max_steps"][1]
        return cfg

    def _fit_budget(self) -> None:
        """time_budget: set max_steps, and epochs so that the data suffices, to what fits in it."""
        cfg = self.cfg
        # every rank plans with rank 0's measurement and clock, so that all plan the same run
        costs, elapsed = broadcast_object(self.env, (self._calibrate(), self._elapsed()))
        cadence = Cadence(self._epoch_lengths[0] // cfg.accumulate, cfg.eval_every, cfg.checkpoint_every)
        steps = fit_steps(costs, cfg.time_budget * (1 - budget.MARGIN) - elapsed, cadence, cfg.max_steps or 10**12)
        if steps == 0:
            self.logger.close()
            raise DoodleError(f"time_budget {cfg.time_budget:g} s is too short for one step: set-up and "
                              f"calibration took {elapsed:.1f} s, a step ~{costs.step:.3g} s, a validation "
                              f"~{costs.validation:.3g} s, the end ~{costs.end:.3g} s")
        before = [cfg.epochs, cfg.max_steps]
        cfg.max_steps, cfg.epochs = steps, self._epochs_for(steps)
        self._build_training()  # the schedule, planned for the sized run
        self._deadline = self._deadline_of(costs)
        self._budget = {"time_budget": {"seconds": cfg.time_budget, "epochs": [before[0], cfg.epochs],
                                        "max_steps": [before[1], steps], "costs": costs.as_dict(),
                                        "setup_s": round(elapsed, 3)}}
        self.logger.info(budget_line(cfg.time_budget, steps, costs, cfg.epochs))
        if cfg.batch_schedule or cfg.size_schedule or cfg.grow_on_plateau:
            self.logger.warning("time budget: the step time was measured at epoch 0's batch and image size; "
                                "batch_schedule, size_schedule and grow_on_plateau change it, and the clock ends the "
                                "run if it runs late")

    def _epochs_for(self, steps: int) -> int:
        """The fewest epochs whose batches hold `steps` optimizer steps (sets cfg.epochs)."""
        self.cfg.epochs = max(1, -(-steps // (self._epoch_lengths[0] // self.cfg.accumulate)))
        while self._total_steps() < steps:  # later epochs hold fewer steps (curriculum, batch_schedule)
            self.cfg.epochs += 1
        return self.cfg.epochs

    def _deadline_of(self, costs: Costs) -> float:
        """The run's seconds after which it must stop to finish its last validation and end in the budget."""
        return self.cfg.time_budget - costs.validation - costs.checkpoint - costs.end

    def _budget_from_run(self) -> None:
        """On resume: the clock's deadline from the costs the run measured (none are measured again)."""
        record = self.run_dir.info().get("time_budget")
        if record:
            self._deadline = self._deadline_of(Costs(**record["costs"]))
        else:  # a run sized by hand with a budget set: the clock alone, with the margin
            self._deadline = self.cfg.time_budget * (1 - budget.MARGIN)

    def _stop_on_clock(self) -> None:
        """The clock backstop fired: end the run now (its last validation and checkpoint still follow)."""
        self._stopped_on_clock = True
        self.logger.warning(f"time budget {format_duration(self.cfg.time_budget)}: stopping on the clock at step "
                            f"{self.state.step} of {self.cfg.max_steps} after {format_duration(self._elapsed())} (the "
                            "steps took longer than measured); validating and writing checkpoints")

    def _calibrate(self) -> Costs:
        """Costs of a step, a validation, a checkpoint and the end, measured on this run's real batches.

        The calibration steps are undone, not counted as training: the weights and the RNG states are
        restored and the optimizer, scaler, EMA, schedule and counters rebuilt (`_build_training`), so
        the run trains exactly what its saved config (max_steps, epochs, time_budget=0) trains."""
        weights = self._state(self.model)
        rng = torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
        try:
            step, epoch = self._time_steps()
            validation, save, plot = self._time_end_parts()
        finally:
            self.model.load_state_dict(weights)
            self.model.zero_grad(set_to_none=True)
            torch.set_rng_state(rng[0])
            if rng[1]:
                torch.cuda.set_rng_state_all(rng[1])
        return Costs(step=step, validation=validation + save / 2, checkpoint=2 * save, epoch=epoch,
                     end=self._end_seconds(validation, save, plot))

    def _time_steps(self) -> tuple[float, float]:
        """(seconds per optimizer step, seconds to start an epoch's loader) over the first batches of
        epoch 0; the first step (warm-up: compilation, allocations, kernel choice) is not timed."""
        acc, dataset = self.cfg.accumulate, self._batches(0)
        micro_batches = min(budget.CALIBRATION_STEPS + 1, len(dataset) // acc) * acc
        self.ddp.train()
        start = time.perf_counter()
        loader, marks = self._loader(dataset), []
        for index in range(micro_batches):
            self._forward_backward(next(loader), (index + 1) % acc == 0)
            if (index + 1) % acc == 0:
                self._optimizer_step()
                marks.append(self._synced_clock())
                if self._calibrated(marks, start):
                    break
        del loader
        step = (marks[-1] - marks[0]) / (len(marks) - 1) if len(marks) > 1 else marks[0] - start
        return step, self._time_epoch_start()

    def _time_epoch_start(self) -> float:
        """Seconds from planning an epoch's batches to its first batch, warm (what each later epoch's
        start costs: its plan, its loader processes, a first batch not yet prefetched)."""
        start = time.perf_counter()
        loader = self._loader(self._batches(0))
        next(loader)
        del loader
        return time.perf_counter() - start

    def _calibrated(self, marks: list[float], start: float) -> bool:
        """Enough steps timed: a long step stops calibration early, at the same step on every rank."""
        spent = marks[-1] - start
        return any_rank(self.env, len(marks) > 2 and spent > budget.CALIBRATION_SHARE * self.cfg.time_budget)

    def _time_end_parts(self) -> tuple[float, float, float]:
        """Seconds of one validation pass, one checkpoint file and one plot, on rank 0 (the only
        one that validates and writes; the others wait for it)."""
        times = (0.0, 0.0, 0.0)
        if self.env.is_main:
            start = self._synced_clock()
            self.validate(self.eval_model())
            validated = self._synced_clock()
            save = self._time_save()
            self.logger.plot()  # once untimed: the first plot pays for matplotlib's import and font cache
            plotting = time.perf_counter()
            self.logger.plot()
            times = (validated - start, save, time.perf_counter() - plotting)
        barrier(self.env)
        return times

    def _time_save(self) -> float:
        """Seconds to write last.pt: the median of three writes (a busy disk makes single writes spiky)."""
        scratch, times = self.out / ".calibration.pt", []
        for _ in range(3):
            start = time.perf_counter()
            atomic_save(self._resumable(), scratch)
            times.append(time.perf_counter() - start)
        scratch.unlink()
        return sorted(times)[1]

    def _end_seconds(self, validation: float, save: float, plot: float) -> float:
        """What the run does after its loop (`_finish`): best.pt when nothing was validated, averaged.pt
        (reading the snapshots, validating the average, writing it), the last plot."""
        end = save + plot
        if self.cfg.average_last:
            end += self.cfg.average_last * save + validation + save
        return end

    # -- the end --------------------------------------------------------------------------------
    def _finish(self) -> dict:
        from doodle.train.progress import done_line

        st = self.state
        summary: dict = {"steps": st.step, "best_map3": st.best_map3, "best_step": st.best_step,
                         "best_epoch": st.best_epoch, "weights": "ema" if self.ema is not None else "raw"}
        if self._stopped_on_clock:
            summary["stopped_on_clock"] = True
        if self.cfg.average_last and self.env.is_main:
            summary["averaged"] = self._average()
        if self.env.is_main:
            if not self.run_dir.best.exists():  # no validation split: the last weights are the best known
                self._save_weights(self.run_dir.best, None)
            summary["seconds"] = round(self._elapsed(), 1)
            self.run_dir.summary_file.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
            self.logger.info(done_line(summary, self.out))
        self.logger.close()  # draws curves.png a last time
        barrier(self.env)
        return summary

    def _average(self) -> dict | None:
        """averaged.pt: the mean of the last `average_last` snapshots' raw or EMA weights
        (`average_weights`), validated; its metrics, with the weights it averaged."""
        from doodle.runs.checkpoint import pick_weights

        pick = self.cfg.averaged_weights
        paths = [self.run_dir.snapshot_dir / name for name in self.state.snapshots[-self.cfg.average_last:]]
        states = [pick_weights(read_checkpoint(p), "ema" if pick == "ema" else "model") for p in paths if p.is_file()]
        if not states:
            return None
        averaged = average_state_dicts(states)
        model = create_model(self.cfg.model, self.cfg.input, len(self.classes)).to(self.env.device)
        model.load_state_dict(averaged)
        result = self.validate(model)
        atomic_save(self._checkpoint_dict(averaged, result, None, weights=pick), self.run_dir.averaged)
        if result is not None:
            self.logger.info(f"average of the {pick} weights of the last {len(states)} checkpoints: "
                             f"MAP@3 {result['map3']:.4f}")
        return {**(result or {}), "weights": pick, "snapshots": len(states)}
