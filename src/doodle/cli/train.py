"""`doodle train`: train a model on a store, from a YAML preset plus key=value overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

from doodle.cli.options import existing_path, store_folder

EPILOG = """\
examples:
  doodle train --config configs/cpu.yaml --data store/ --out runs/cpu
  doodle train --config configs/cpu.yaml --data store/ --out runs/cpu optim.lr=0.002 epochs=20
  doodle train --resume runs/cpu                                 # after an interruption: its own config
  doodle train --resume runs/cpu data.workers=4                  # only settings that keep the result may change
  torchrun --nproc_per_node 8 -m doodle train --config configs/seresnext50-128.yaml --data store/ --out runs/se50
  doodle train --config configs/cpu.yaml --data store/ --out runs/cpu --time-budget 15m  # sized to 15 minutes
  doodle train --config configs/cpu.yaml --show-config                          # every option, documented

RUN/ receives: config.yaml (resolved), run.json (the store, the code version), train.log, metrics.csv,
tensorboard/, curves.png, last.pt (resumable; raw and EMA weights), best.pt (best validation MAP@3;
the EMA when on), checkpoints/ (snapshots), averaged.pt, summary.json.

--resume continues a run from its saved config.yaml and last.pt, on the store it recorded; it is
exact (the weights equal those of an uninterrupted run). Overrides given with it may change only
data.workers, threads, log_every, sync_check and keep_checkpoints; any other change (or a --config
that differs from the saved one) is refused with the key, the saved value and the asked one.
find_batch is never re-run on resume: the batch size it found is in the saved config.

--time-budget (the key time_budget, in seconds) sizes the run to a wall-clock time on this machine:
a few timed steps of the real batches, one validation, one checkpoint and the end are measured first
(then undone), and max_steps and epochs are set to what fits with a 10 % margin, so the learning-rate
schedule spans the real run. The values are saved in config.yaml (the measurement in run.json):
--resume reuses them, and the same config.yaml with time_budget=0 trains the same run again. Should
the steps run slower than measured, the run stops on the clock, validating and writing checkpoints.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a CNN, stroke-sequence or learned-rasterisation model on a store",
        description="Train a model on a store made by `doodle prepare`. The config is a YAML preset\n"
        "(configs/*.yaml) with key=value overrides; the resolved config is saved in RUN/config.yaml.\n"
        "Runs on CPU, one GPU, or many GPUs and nodes through torchrun (DDP).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=0.001")
    p.add_argument("--config", metavar="FILE", type=existing_path, help="a YAML preset (default: built-in defaults)")
    p.add_argument("--data", metavar="STORE", type=store_folder, help="the store to train on")
    p.add_argument("--out", metavar="RUN", help="the run folder to write")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUN",
                   help="continue RUN (or --out) from its last checkpoint, with its saved config")
    p.add_argument("--time-budget", metavar="DURATION",
                   help="size the run to this wall-clock time: 900 (seconds), 90s, 15m, 1.5h (sets time_budget)")
    p.add_argument("--show-config", action="store_true", help="print the resolved config with docs and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from doodle.config import describe_config, load_config
    from doodle.errors import DoodleError
    from doodle.train.config import TrainConfig

    args.overrides = _with_budget(args)
    if args.resume is not None:
        return _resume(args)
    config = load_config(TrainConfig, args.config, args.overrides)
    if args.show_config:
        print("\n".join(describe_config(config)))
        return 0
    if not args.data or not args.out:
        raise DoodleError("--data STORE and --out RUN are required to train (or --resume RUN to continue one)")
    from doodle.train.loop import train

    return _report(train(config, args.data, args.out), args.out)


def _resume(args: argparse.Namespace) -> int:
    from doodle.errors import DoodleError
    from doodle.runs import Run

    run, overrides = args.resume, list(args.overrides)
    if run is not True and "=" in run and not Path(run).exists():  # `--out RUN --resume key=value`
        run, overrides = True, [run, *overrides]
    if run is True:
        if not args.out:
            raise DoodleError("--resume needs the run: --resume RUN (or --out RUN --resume)")
        run = args.out
    elif args.out and Path(args.out).resolve() != Path(run).resolve():
        raise DoodleError(f"--resume {run} and --out {args.out} name different runs")
    handle = Run.open(run)  # a missing run is one line before torch loads
    if args.show_config:
        from doodle.config import describe_config
        from doodle.runs.resume import resume_config

        print("\n".join(describe_config(resume_config(handle, overrides, args.config))))
        return 0
    from doodle.train.loop import resume

    return _report(resume(run, overrides, preset=args.config, data=args.data), run)


def _with_budget(args: argparse.Namespace) -> list[str]:
    """The overrides, with --time-budget as time_budget=SECONDS (a bad duration is a DoodleError)."""
    if args.time_budget is None:
        return list(args.overrides)
    from doodle.train.budget import parse_duration

    return [*args.overrides, f"time_budget={parse_duration(args.time_budget)!r}"]


def _report(summary: dict, out: str) -> int:
    import logging

    from doodle.train.progress import done_line

    # The trainer logged this line (train.log and the console); under -q the console shows no info
    # lines, so it is printed: a quiet run still ends by saying how it went.
    if not logging.getLogger("doodle.train").isEnabledFor(logging.INFO):
        print(done_line(summary, out))
    return 0
