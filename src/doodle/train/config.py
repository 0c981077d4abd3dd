"""The training config: every knob of `doodle train`, typed and documented (presets in configs/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from doodle.config import AT_LEAST_0, AT_LEAST_1, FRACTION, POSITIVE, PROBABILITY, Parsed, Range, check_ranges
from doodle.errors import DoodleError
from doodle.models.registry import ModelConfig
from doodle.preprocess import InputConfig
from doodle.render.augment import AugmentConfig
from doodle.train.budget import parse_duration


@dataclass
class DataConfig:
    """How batches are drawn from the store."""

    batch_size: int = 128
    """Drawings per step and per process (before accumulation)."""
    workers: int = 1
    """Loader processes per training process (rendering and augmentation run there)."""
    balanced_block: int = 0
    """Balanced epochs: each epoch takes one block of about this many drawings per class (0: off)."""
    limit_train: int = 0
    """Use only the first N training drawings of each epoch's plan (0: all)."""
    limit_val: int = 0
    """Validate on the first N validation drawings (0: all)."""

    def __post_init__(self) -> None:
        check_ranges(self, batch_size=AT_LEAST_1, workers=AT_LEAST_0, balanced_block=AT_LEAST_0,
                     limit_train=AT_LEAST_0, limit_val=AT_LEAST_0)


@dataclass
class OptimConfig:
    """The optimizer."""

    name: Literal["adamw", "sgd"] = "adamw"
    """adamw or sgd (with momentum)."""
    lr: float = 3e-3
    """Peak learning rate (for the effective batch)."""
    weight_decay: float = 1e-4
    """Decoupled weight decay (not applied to biases and norm layers)."""
    momentum: float = 0.9
    """sgd: momentum."""
    nesterov: bool = True
    """sgd: Nesterov momentum."""
    betas: tuple[float, float] = (0.9, 0.999)
    """adamw: moment decay rates."""
    grad_clip: float = 0.0
    """Clip the gradient norm to this value (0: off)."""

    def __post_init__(self) -> None:
        check_ranges(self, lr=POSITIVE, weight_decay=AT_LEAST_0, momentum=FRACTION, betas=FRACTION,
                     grad_clip=AT_LEAST_0)


@dataclass
class ScheduleConfig:
    """The learning-rate schedule (stepped every optimizer step, except plateau: every validation)."""

    name: Literal["cosine", "plateau", "onecycle", "constant"] = "cosine"
    """cosine (with warm restarts), plateau (reduce on plateau), onecycle, constant."""
    warmup_steps: int = 0
    """Linear warm-up steps from warmup_lr (cosine, plateau, constant)."""
    warmup_lr: float = 1e-5
    """Learning rate at the start of the warm-up."""
    cycle_steps: int = 0
    """cosine: steps of the first cycle (0: one cycle over the whole run, no restart)."""
    cycle_mul: float = 1.0
    """cosine: each restart's cycle is this many times longer (1.2 for one top team)."""
    cycle_decay: float = 1.0
    """cosine: the peak learning rate is multiplied by this at each restart."""
    min_lr: float = 1e-6
    """cosine, plateau: the lowest learning rate."""
    plateau_factor: float = 0.5
    """plateau: multiply the learning rate by this when validation MAP@3 stops improving."""
    plateau_patience: int = 1
    """plateau: validations without improvement before reducing."""
    pct_start: float = 0.25
    """onecycle: fraction of the run spent increasing the learning rate."""

    def __post_init__(self) -> None:
        check_ranges(self, warmup_steps=AT_LEAST_0, warmup_lr=AT_LEAST_0, cycle_steps=AT_LEAST_0,
                     cycle_mul=POSITIVE, cycle_decay=POSITIVE, min_lr=AT_LEAST_0,
                     plateau_factor=Range(0, 1, low_open=True, high_open=True), plateau_patience=AT_LEAST_0,
                     pct_start=Range(0, 1, low_open=True, high_open=True))


@dataclass
class LossConfig:
    """The training loss."""

    label_smoothing: float = 0.0
    """Cross-entropy label smoothing."""
    top3_weight: float = 0.0
    """Mix (1 - w) * cross-entropy + w * top-3 loss (24th place used 0.9 in a second phase)."""
    top3_margin: float = 1.0
    """top-3 loss: hinge margin between the true logit and the third-best other logit."""

    def __post_init__(self) -> None:
        check_ranges(self, label_smoothing=FRACTION, top3_weight=PROBABILITY, top3_margin=AT_LEAST_0)


@dataclass
class TrainConfig:
    """Everything `doodle train` does; saved as RUN/config.yaml and inside every checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The network."""
    input: InputConfig = field(default_factory=InputConfig)
    """Preprocessing from drawings to model input."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Vector augmentation of training drawings (before rendering)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Batches from the store."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """The optimizer."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """The learning-rate schedule."""
    loss: LossConfig = field(default_factory=LossConfig)
    """The loss."""
    epochs: int = 10
    """Passes over the training data (or balanced epochs)."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: when the epochs are done)."""
    accumulate: int = 1
    """Micro-batches per optimizer step (effective batch = batch_size * accumulate * processes)."""
    batch_schedule: list[tuple[int, int]] = field(default_factory=list)
    """Batch-size growth: (epoch, batch_size) pairs, e.g. [[0, 128], [4, 256]]."""
    grow_on_plateau: bool = False
    """Double the accumulation (the effective batch) whenever validation MAP@3 stops improving."""
    size_schedule: list[tuple[int, int]] = field(default_factory=list)
    """Progressive resizing: (epoch, image size) pairs, e.g. [[0, 64], [6, 96]]."""
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """Mixed precision: auto = bf16 (or fp16) on CUDA, off on CPU."""
    ema_decay: float = 0.0
    """Keep an exponential moving average of the weights with this decay (0: off), e.g. 0.999."""
    average_last: int = 0
    """At the end, average the weights of the last K checkpoints into averaged.pt (0: off)."""
    average_weights: Literal["auto", "raw", "ema"] = "auto"
    """Which weights of the snapshots average_last averages: raw, ema, or auto (ema when ema_decay > 0)."""
    eval_every: int = 0
    """Validate every N optimizer steps (0: at the end of every epoch)."""
    checkpoint_every: int = 0
    """Write a resumable checkpoint every N optimizer steps (0: at the end of every epoch)."""
    keep_checkpoints: int = 3
    """Step checkpoints kept in RUN/checkpoints (at least average_last)."""
    log_every: int = 20
    """Log training loss and speed every N optimizer steps."""
    seed: int = 0
    """Seed of initialisation, data order and augmentation."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when present, else CPU."""
    threads: int = 0
    """CPU threads for the model (0: all cores, shared among the training processes of this machine)."""
    find_batch: bool = False
    """Before training, find the largest batch that fits the device (bisection) and use it."""
    init_from: str | None = None
    """Start from the weights of this checkpoint (fine-tuning), not from scratch."""
    extra_train: list[str] = field(default_factory=list)
    """Further stores whose train split is mixed into every epoch (e.g. `doodle pseudo-label` output, with
    init_from for fine-tuning); their class list must equal the main store's. Batches come whole from one store."""
    sample_weights: str | None = None
    """Per-drawing loss weights: a Parquet file with key_id and weight columns (`doodle clean`); others weigh 1."""
    curriculum: str | None = None
    """Difficulty scores (a `doodle clean` file: key_id and loss): epoch e trains only on the easiest fraction
    curriculum_start + (1 - curriculum_start) * e / (epochs - 1) of the scored drawings (unscored ones always)."""
    curriculum_start: float = 0.5
    """Fraction of the scored drawings admitted in the first epoch (all of them by the last)."""
    sync_check: bool = False
    """Multi-process runs: check at every checkpoint that all ranks hold identical weights."""
    time_budget: Annotated[float, Parsed(parse_duration)] = 0
    """Wall-clock seconds the run may take on this machine, or 90s, 15m, 1.5h (0: off); a calibration
    sets max_steps and epochs to fit."""

    def __post_init__(self) -> None:
        check_ranges(self, epochs=AT_LEAST_1, max_steps=AT_LEAST_0, accumulate=AT_LEAST_1, ema_decay=FRACTION,
                     average_last=AT_LEAST_0, eval_every=AT_LEAST_0, checkpoint_every=AT_LEAST_0,
                     keep_checkpoints=AT_LEAST_0, log_every=AT_LEAST_1, seed=Range(0, 2**32 - 1),
                     threads=AT_LEAST_0, curriculum_start=PROBABILITY,
                     time_budget=Range(0, 10**8))
        if self.average_weights == "ema" and self.ema_decay == 0:
            raise DoodleError("average_weights=ema needs EMA weights: set ema_decay (e.g. 0.999) or "
                              "average_weights=raw")

    @property
    def averaged_weights(self) -> str:
        """The snapshot weights averaged into averaged.pt: "raw" or "ema"."""
        if self.average_weights == "auto":
            return "ema" if self.ema_decay > 0 else "raw"
        return self.average_weights
