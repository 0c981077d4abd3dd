"""What a resume may change: the config comparison on its own (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

from doodle.config import load_config, save_config, to_dict
from doodle.errors import DoodleError
from doodle.runs import Run
from doodle.runs.resume import CHANGEABLE_ON_RESUME, config_changes, flatten, resume_config
from doodle.train.config import TrainConfig


def saved_run(tmp_path: Path, *overrides: str) -> Run:
    run = Run(tmp_path / "run")
    run.root.mkdir()
    save_config(load_config(TrainConfig, None, list(overrides)), run.config_file)
    return run


def test_flatten_and_changes_name_dotted_keys():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": 1, "a.c": [1, 2], "d": None}
    a = load_config(TrainConfig, None, ["optim.lr=0.1"])
    b = load_config(TrainConfig, None, ["optim.lr=0.2", "batch_schedule=[[0, 8]]"])
    assert config_changes(a, b) == [("optim.lr", 0.1, 0.2), ("batch_schedule", [], [[0, 8]])]
    assert config_changes(a, a) == []


def test_no_overrides_give_the_saved_config(tmp_path: Path):
    run = saved_run(tmp_path, "epochs=3", "optim.lr=0.01")
    assert resume_config(run) == run.config()


@pytest.mark.parametrize("key", sorted(CHANGEABLE_ON_RESUME))
def test_every_changeable_setting_is_applied(tmp_path: Path, key: str, caplog):
    run = saved_run(tmp_path)
    value = {"data.workers": 3, "threads": 2, "log_every": 7, "sync_check": True, "keep_checkpoints": 9}[key]
    cfg = resume_config(run, [f"{key}={str(value).lower()}"])
    assert flatten(to_dict(cfg))[key] == value
    assert f"{key} " in caplog.text and "->" in caplog.text  # listed in the log


@pytest.mark.parametrize("override, old, new", [("optim.lr=0.5", "0.003", "0.5"), ("epochs=99", "10", "99"),
                                                ("max_steps=5", "0", "5"), ("data.batch_size=8", "128", "8"),
                                                ("model.arch=resnet34", "'resnet18'", "'resnet34'")])
def test_a_setting_that_changes_the_run_is_refused_naming_key_old_and_new(tmp_path: Path, override, old, new):
    run = saved_run(tmp_path)
    key = override.split("=")[0]
    with pytest.raises(DoodleError, match=rf"--resume .*run: {key} is {old} in the run and {new} here"):
        resume_config(run, [override])


def test_a_preset_given_again_is_compared_with_the_saved_config(tmp_path: Path):
    preset = tmp_path / "preset.yaml"
    preset.write_text("epochs: 4\noptim:\n  lr: 0.01\n")
    run = saved_run(tmp_path, "epochs=4", "optim.lr=0.01")
    assert resume_config(run, ["data.workers=0"], str(preset)).data.workers == 0
    preset.write_text("epochs: 5\noptim:\n  lr: 0.01\n")
    with pytest.raises(DoodleError, match="epochs is 4 in the run and 5 here"):
        resume_config(run, [], str(preset))


def test_the_batch_find_batch_replaced_counts_as_unchanged(tmp_path: Path):
    run = saved_run(tmp_path, "find_batch=true", "data.batch_size=90")
    run.write_info(tmp_path / "store", found_batch=[16, 90])
    # the preset's batch size (16, before the search) or the saved one: both resume at 90
    assert resume_config(run, ["data.batch_size=16"]).data.batch_size == 90
    assert resume_config(run).data.batch_size == 90
    with pytest.raises(DoodleError, match="data.batch_size is 90 in the run and 32 here"):
        resume_config(run, ["data.batch_size=32"])
