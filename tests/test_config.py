"""The typed config loader: YAML, inheritance, overrides, type checks, docs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

import pytest

from doodle.config import Parsed, describe_config, field_docs, from_dict, load_config, save_config, to_dict
from doodle.errors import DoodleError


@dataclass
class Optim:
    lr: float = 1e-3
    """Learning rate."""
    name: Literal["adamw", "sgd"] = "adamw"
    """Optimizer."""


@dataclass
class Config:
    epochs: int = 2
    """Passes over the data."""
    sizes: list[tuple[int, int]] = field(default_factory=list)
    """(epoch, size) pairs."""
    note: str | None = None
    """Free text."""
    optim: Optim = field(default_factory=Optim)
    """The optimizer."""


def test_yaml_base_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("epochs: 5\noptim: {lr: 0.1, name: sgd}\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\noptim: {lr: 0.2}\nsizes: [[0, 64], [3, 96]]\n")
    cfg = load_config(Config, tmp_path / "child.yaml", ["optim.lr=3e-3", "note=hello world", "epochs=7"])
    assert cfg == Config(epochs=7, sizes=[(0, 64), (3, 96)], note="hello world", optim=Optim(lr=0.003, name="sgd"))
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(Config, tmp_path / "resolved.yaml") == cfg
    assert load_config(Config, None, ["note=null"]).note is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["epoch=3"], "unknown config key epoch; did you mean epochs?; valid keys here: epochs, sizes, note, optim"),
        (["lr=3"], "unknown config key lr; did you mean optim.lr?; valid keys"),
        (["optim.nmae=sgd"], "unknown config key optim.nmae; did you mean optim.name?"),
        (["colour=red"], "unknown config key colour; valid keys here"),
        (["optim.momentum=0.9"], "unknown config key optim.momentum"),
        (["epochs=three"], "epochs: expected int, got 'three'"),
        (["epochs=2.5"], "epochs: expected int"),
        (["optim.name=adam"], "optim.name: 'adam' is not one of 'adamw', 'sgd'"),
        (["sizes=[[1, 2, 3]]"], "sizes[0]: expected 2 values, got 3"),
        (["epochs"], "is not of the form key=value"),
        (["epochs=3", "epochs.x=1"], "'epochs' is a value, not a section"),
        (["epochs.x=1"], "epochs: expected int, got {'x': 1}"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(DoodleError, match=re.escape(message)):
        load_config(Config, None, overrides)


def test_int_promotes_to_float_and_docs():
    assert from_dict(Config, {"optim": {"lr": 1}}).optim.lr == 1.0
    assert field_docs(Config) == {"epochs": "Passes over the data.", "sizes": "(epoch, size) pairs.",
                                  "note": "Free text.", "optim": "The optimizer."}
    lines = describe_config(Config())
    assert "optim.lr = 0.001  # Learning rate." in lines
    assert to_dict(Config())["optim"] == {"lr": 0.001, "name": "adamw"}


def test_missing_file():
    with pytest.raises(DoodleError, match="not found"):
        load_config(Config, "/nonexistent.yaml")


@dataclass
class Switches:
    amp: Literal["auto", "off", "bf16"] = "auto"
    """A choice that includes YAML 1.1's boolean word "off"."""
    answer: Literal["yes", "no"] = "no"
    """Another."""


def test_yaml_boolean_words_stay_literal_choices(tmp_path):
    # YAML reads `off` and `yes` as booleans; a Literal field takes the word back instead of failing.
    (tmp_path / "s.yaml").write_text("amp: off\nanswer: yes\n")
    assert load_config(Switches, tmp_path / "s.yaml") == Switches(amp="off", answer="yes")
    assert load_config(Switches, None, ["amp=off", "answer=no"]) == Switches(amp="off", answer="no")
    with pytest.raises(DoodleError, match="amp: True is not one of 'auto', 'off', 'bf16'"):
        load_config(Switches, None, ["amp=on"])


# -- value ranges of the real configs ----------------------------------------------------------


@pytest.mark.parametrize(("override", "message"), [
    ("epochs=0", "epochs must be at least 1, got 0"),
    ("seed=-1", "seed must be in [0, 4294967295], got -1"),
    ("accumulate=0", "accumulate must be at least 1"),
    ("ema_decay=1", "ema_decay must be in [0, 1)"),
    ("data.batch_size=0", "data.batch_size must be at least 1, got 0"),
    ("data.workers=-1", "data.workers must be at least 0, got -1"),
    ("optim.lr=0", "optim.lr must be above 0, got 0.0"),
    ("optim.lr=.nan", "optim.lr must be above 0, got nan"),
    ("optim.betas=[0.9, 1.5]", "optim.betas must be in [0, 1), got (0.9, 1.5)"),
    ("schedule.pct_start=1", "schedule.pct_start must be in (0, 1)"),
    ("loss.label_smoothing=1", "loss.label_smoothing must be in [0, 1)"),
    ("input.size=4", "input.size must be in [8, 1024], got 4"),
    ("input.line_width=0", "input.line_width must be above 0"),
    ("augment.flip=1.5", "augment.flip must be in [0, 1], got 1.5"),
    ("augment.scale=[0.9, -1]", "augment.scale must be above 0"),
])
def test_train_config_values_out_of_range_name_the_key(override: str, message: str):
    from doodle.train.config import TrainConfig

    with pytest.raises(DoodleError) as info:
        load_config(TrainConfig, None, [override])
    assert str(info.value) == message or str(info.value).startswith(message)


def test_out_of_range_is_one_line_from_the_cli(capsys, tmp_path):
    from doodle.cli import main

    (tmp_path / "_manifest.json").write_text("{}")  # passes the command line's store check
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "data.batch_size=0"]) == 2
    assert capsys.readouterr().err == "doodle train: error: data.batch_size must be at least 1, got 0\n"
    assert not (tmp_path / "run").exists()


def test_defaults_and_every_preset_are_in_range():
    from pathlib import Path

    from doodle.train.config import TrainConfig

    TrainConfig()
    presets = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert presets
    for preset in presets:
        load_config(TrainConfig, preset)


def test_range_text_and_bounds():
    from doodle.config import FRACTION, POSITIVE, Range

    assert str(FRACTION) == "in [0, 1)" and str(POSITIVE) == "above 0" and str(Range(0.5, 2.5)) == "in [0.5, 2.5]"
    assert FRACTION.holds(0) and not FRACTION.holds(1) and not POSITIVE.holds(0) and POSITIVE.holds(1e-9)
    assert not Range(0, 1).holds(float("nan"))


def _minutes(text: str) -> float:
    if not text.endswith("m"):
        raise DoodleError(f"{text!r} is not in minutes")
    return 60.0 * float(text[:-1])


@dataclass
class Timed:
    budget: Annotated[float, Parsed(_minutes)] = 0
    """Seconds, or minutes written as 15m."""


def test_a_parsed_field_takes_a_number_or_its_text_form(tmp_path):
    assert load_config(Timed, None, ["budget=15m"]).budget == 900.0
    assert load_config(Timed, None, ["budget=90"]).budget == 90.0  # a number is the field's type as it is
    (tmp_path / "t.yaml").write_text("budget: 2m\n")
    assert load_config(Timed, tmp_path / "t.yaml").budget == 120.0
    with pytest.raises(DoodleError, match=re.escape("budget: '15x' is not in minutes")):
        load_config(Timed, None, ["budget=15x"])
    assert field_docs(Timed) == {"budget": "Seconds, or minutes written as 15m."}


def test_the_time_budget_takes_units_in_yaml_and_overrides(tmp_path):
    from doodle.train.config import TrainConfig

    assert load_config(TrainConfig, None, ["time_budget=1.5h"]).time_budget == 5400.0
    (tmp_path / "run.yaml").write_text("time_budget: 15m\n")
    assert load_config(TrainConfig, tmp_path / "run.yaml").time_budget == 900.0
