"""Models to evaluate in the report tests and the screenshot script.

* `points_run`: a stand-in model whose guesses follow from the number of points of a drawing, on
  synthetic drawings: no training, some right and some wrong guesses (for tests).
* `train_small`: a small CNN trained for a few seconds on real simplified drawings of the committed
  sample (tests/fixtures/quickdraw), evaluated on the sample's raw drawings of the same words: a
  real report, with real mistakes (for the README screenshot).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict
from pathlib import Path

import torch

POINTS_CLASSES = ["circle", "square", "star"]
REAL_CLASSES = ["airplane", "camera", "cat", "eye", "headphones", "map", "television"]
SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "quickdraw"


class PointsModel(torch.nn.Module):
    """Class scores from the number of points: the guesses follow from the drawing alone."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))

    def forward(self, batch):
        return torch.sin(batch["lengths"].float()[:, None] * self.w[None, :] * 7)


def points_run(tmp_path: Path, monkeypatch, per_class: int = 9) -> tuple[Path, Path]:
    """(a checkpoint path that loads `PointsModel`, a folder of synthetic drawings of its classes)."""
    import doodle.infer.predict as predict_mod
    from doodle.data.synth import synth
    from doodle.preprocess import InputConfig, Preprocessor

    data = tmp_path / "data"
    synth(data, per_class=per_class, classes=POINTS_CLASSES)
    (tmp_path / "run.pt").write_bytes(b"")
    monkeypatch.setattr(predict_mod, "load_model", lambda path, weights="model": (
        PointsModel().eval(), Preprocessor(InputConfig(max_points=256), "sequence"), list(POINTS_CLASSES), {}))
    return tmp_path / "run.pt", data


def train_small(out: Path, classes: list[str] = REAL_CLASSES, steps: int = 60, per_class: int = 120) -> Path:
    """out/best.pt: a seeded resnet10t at 32 px trained on `per_class` real simplified drawings per class."""
    from doodle.data.formats import read
    from doodle.models import ModelConfig, create_model
    from doodle.preprocess import InputConfig, Preprocessor
    from doodle.runs.checkpoint import atomic_save, make_checkpoint

    drawings, labels = [], []
    for label, name in enumerate(classes):
        path = next((SAMPLE / "simplified").glob(f"JulienDuranleau_{name}*.ndjson"))  # cat_2k for cat
        batch = list(itertools.islice(read(path), per_class))
        drawings += batch
        labels += [label] * len(batch)
    inputs, arch = InputConfig(encoding="order-speed-accel", size=32, simplify=True), ModelConfig(arch="resnet10t")
    torch.manual_seed(0)
    model = create_model(arch, inputs, len(classes))
    fit(model, torch.from_numpy(Preprocessor(inputs, "image")(drawings)["image"]), torch.tensor(labels), steps)
    ckpt = make_checkpoint(model_config=asdict(arch), input_config=asdict(inputs), input_kind="image",
                           classes=list(classes), config={}, model_state=model.eval().state_dict())
    out.mkdir(parents=True, exist_ok=True)
    atomic_save(ckpt, out / "best.pt")
    return out


def fit(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, steps: int) -> None:
    """A few AdamW steps on random batches of 48 (seeded)."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (48,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model({"image": images[idx]}), targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def real_sources(classes: list[str] = REAL_CLASSES) -> list[Path]:
    """The sample's raw ndjson files of `classes` (drawings the small model never saw)."""
    return [SAMPLE / "raw" / f"{name}.ndjson" for name in classes]
