"""Loader throughput beside model throughput, per preset: is the loader the bottleneck?

    .venv/bin/python benchmarks/train_bench.py --data STORE [--presets cpu sequence ...] [--steps 8]

For each preset (configs/NAME.yaml) it measures, in this one process:
* loader: drawings/s of ONE loader worker, i.e. computing `EpochBatches[i]` (read from the store,
  augment, simplify/render or sequence features) for a few batches, median per batch;
* model: training images/s of one optimizer step (forward, backward, AdamW/SGD step) on batches
  prepared in advance, median per step, at the preset's batch size (capped by --max-batch on CPU);
* the workers the preset asks for, and `loader x workers / model`: above 1, the loader keeps up.
On a CPU the loader workers and the model share the same cores, so the ratio is an upper bound
there; on a GPU machine the workers have cores of their own.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from doodle.config import load_config
from doodle.data.store import load_manifest
from doodle.models import create_model
from doodle.preprocess import Preprocessor
from doodle.train.config import TrainConfig
from doodle.train.data import EpochBatches
from doodle.train.losses import make_loss
from doodle.train.optim import build_optimizer

REPO = Path(__file__).resolve().parents[1]


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(preset: str, store: Path, steps: int, max_batch: int, device: torch.device) -> dict:
    cfg = load_config(TrainConfig, REPO / "configs" / f"{preset}.yaml")
    batch = min(cfg.data.batch_size, max_batch)
    classes = load_manifest(store)["classes"]
    torch.manual_seed(0)
    model = create_model(cfg.model, cfg.input, len(classes)).to(device)
    ds = EpochBatches(store, "train", Preprocessor(cfg.input, model.input_kind), batch, 0, 0, augment=cfg.augment,
                      balanced_block=None)
    n = min(steps, len(ds))
    ds[0]  # warm-up: JIT compile, first window read
    indices = iter(range(1, n + 1))
    loader_s = median_time(lambda: ds[next(indices) % len(ds)], n)
    batches = [ds[i % len(ds)] for i in range(2)]
    tensors = [{k: torch.as_tensor(v).to(device) for k, v in b.items() if k not in ("key_id",)} for b in batches]
    optimizer, loss_fn = build_optimizer(cfg.optim, model), make_loss(cfg.loss)
    model.train()

    def step(i=[0]):  # noqa: B006 - a counter across calls
        b = tensors[i[0] % len(tensors)]
        i[0] += 1
        loss = loss_fn(model(b), b["label"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()
    model_s = median_time(step, steps)
    loader_rate = batch / loader_s
    model_rate = batch / model_s
    return {"preset": preset, "input": f"{model.input_kind} {cfg.input.encoding if model.input_kind == 'image' else ''}"
            f"{cfg.input.size if model.input_kind == 'image' else cfg.input.max_points}", "arch":
            cfg.model.arch if cfg.model.family != "sequence" else "conv+bilstm", "batch": batch,
            "loader": loader_rate, "workers": cfg.data.workers, "model": model_rate,
            "ratio": loader_rate * cfg.data.workers / model_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a store made by doodle prepare")
    parser.add_argument("--presets", nargs="+", default=["cpu", "cnn", "sequence", "learned-raster",
                                                         "mobilenet-grey-64", "seresnext50-128"])
    parser.add_argument("--steps", type=int, default=6, help="timed batches/steps per measurement")
    parser.add_argument("--max-batch", type=int, default=64, help="cap on the batch size (CPU memory and time)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device {device}, {torch.get_num_threads()} torch threads; median of {args.steps} batches/steps")
    print(f"{'preset':<20}{'input':<28}{'arch':<20}{'batch':>6}{'loader/s/worker':>16}{'workers':>8}"
          f"{'model img/s':>12}{'loader/model':>13}")
    for preset in args.presets:
        r = bench(preset, args.data, args.steps, args.max_batch, device)
        print(f"{r['preset']:<20}{r['input']:<28}{r['arch']:<20}{r['batch']:>6}{r['loader']:>16,.0f}{r['workers']:>8}"
              f"{r['model']:>12,.0f}{r['ratio']:>12.1f}x")


if __name__ == "__main__":
    main()
