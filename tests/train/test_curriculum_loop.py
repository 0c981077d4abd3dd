"""The training loop hands its curriculum to the loader: an epoch plans only the admitted drawings."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from doodle.config import load_config
from doodle.data.store import iter_store
from doodle.train.config import TrainConfig
from doodle.train.distributed import Env
from doodle.train.loop import Trainer


def test_epochs_plan_only_what_the_curriculum_admits(synth_store: Path, tmp_path: Path, tiny_net) -> None:
    train = list(iter_store(synth_store, "train"))
    classes = sorted({d.word for d in train})
    scores = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"key_id": pa.array([d.key_id for d in train], pa.uint64()),
                             "label": pa.array([classes.index(d.word) for d in train], pa.int32()),
                             "loss": pa.array(np.random.default_rng(0).random(len(train)))}), scores)
    cfg = load_config(TrainConfig, None, ["input.size=32", "data.batch_size=4", "data.workers=0", "epochs=3",
                                          f"curriculum={scores}", "curriculum_start=0.5"])
    trainer = Trainer(cfg, synth_store, tmp_path / "run", Env(0, 1, 0, torch.device("cpu")), resume=False)
    trainer.logger.close()
    per_class = Counter(d.word for d in train)
    for epoch, fraction in ((0, 0.5), (1, 0.75), (2, 1.0)):
        expected = sum(math.ceil(fraction * n - 1e-9) for n in per_class.values())
        assert trainer._batches(epoch).rows == expected
