"""`doodle train`: train a model on a store, from a YAML preset plus key=value overrides."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  doodle train --config configs/cpu.yaml --data store/ --out runs/cpu
  doodle train --config configs/cpu.yaml --data store/ --out runs/cpu optim.lr=0.002 epochs=20
  doodle train --config configs/cpu.yaml --data store/ --out runs/cpu --resume   # after an interruption
  torchrun --nproc_per_node 8 -m doodle train --config configs/seresnext50-128.yaml --data store/ --out runs/se50
  doodle train --config configs/cpu.yaml --show-config                          # every option, documented

RUN/ receives: config.yaml (resolved), train.log, metrics.csv, tensorboard/, curves.png, last.pt
(resumable), best.pt (best validation MAP@3), checkpoints/ (snapshots), averaged.pt, summary.json.
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
    p.add_argument("--config", metavar="FILE", help="a YAML preset (default: built-in defaults)")
    p.add_argument("--data", metavar="STORE", help="the store to train on")
    p.add_argument("--out", metavar="RUN", help="the run folder to write")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN from its last checkpoint")
    p.add_argument("--show-config", action="store_true", help="print the resolved config with docs and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from doodle.config import describe_config, load_config
    from doodle.errors import DoodleError
    from doodle.train.config import TrainConfig

    config = load_config(TrainConfig, args.config, args.overrides)
    if args.show_config:
        print("\n".join(describe_config(config)))
        return 0
    if not args.data or not args.out:
        raise DoodleError("--data STORE and --out RUN are required to train")
    from doodle.train.loop import train

    summary = train(config, args.data, args.out, resume=args.resume)
    print(f"best validation MAP@3 {summary['best_map3']:.4f} at step {summary['best_step']}; run in {args.out}")
    return 0
