"""benchmarks/recipes and benchmarks/recipe_search.py: a variants file resolves to fully specified
training configs that depend on pinned files only, so its table can be regenerated whatever
happens to the live presets under configs/."""

from __future__ import annotations

import shutil

import pytest
import yaml
from conftest import REPO, load_benchmark

from doodle.config import load_config, to_dict
from doodle.train.config import TrainConfig

RECIPES = REPO / "benchmarks" / "recipes"
CPU_Q15 = RECIPES / "cpu-q15.txt"


@pytest.fixture(scope="module")
def search():
    return load_benchmark("recipe_search")


def test_cpu_q15_depends_on_pinned_configs_only(search):
    variants = search.read_variants(CPU_Q15)
    assert len(variants) == 13
    assert search.unpinned_files(variants) == []
    assert {f for v in variants for f in search.config_files(v.config)} == {RECIPES / "cpu-resnet18d-e12.yaml"}


def test_cpu_q15_resolves_to_the_configs_of_its_table(search):
    configs = search.resolved_configs(CPU_Q15)
    preset = configs["r18d_e12_s0"]
    assert (preset["model"]["arch"], preset["epochs"], preset["amp"], preset["data"]["workers"]) == (
        "resnet18d", 12, "off", 3)
    assert (configs["r18_s0"]["model"]["arch"], configs["r18_s0"]["epochs"]) == ("resnet18", 14)
    assert configs["r18d_e12_s3"]["seed"] == 3 and configs["r18_80px"]["input"]["size"] == 80
    assert configs["r18_os16"]["model"]["trunk_kwargs"] == {"output_stride": 16}


def _missing(written: dict, resolved: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields of `resolved` that `written` leaves to their defaults."""
    out = []
    for key, value in resolved.items():
        if key not in written:
            out.append(prefix + key)
        elif isinstance(value, dict) and isinstance(written[key], dict) and key != "trunk_kwargs":
            out += _missing(written[key], value, f"{prefix}{key}.")
    return out


def test_pinned_configs_write_out_every_field(search):
    """A pinned config leaves nothing to the defaults, which may change: its keys are every field
    (a field added to the config must be added to it, with the value that keeps its behaviour)."""
    pinned = sorted(RECIPES.glob("*.yaml"))
    assert pinned
    for path in pinned:
        data = yaml.safe_load(path.read_text())
        resolved = to_dict(load_config(TrainConfig, path))
        assert "base" not in data, path
        assert not _missing(data, resolved), f"{path.name} leaves to their defaults: {_missing(data, resolved)}"
        assert data == resolved, path


def test_the_variants_do_not_change_with_configs_cpu_yaml(search, tmp_path):
    """The recipes folder, next to a configs/cpu.yaml rewritten beyond recognition, resolves to the
    same configs as in the repository."""
    copy = tmp_path / "benchmarks" / "recipes"
    shutil.copytree(RECIPES, copy)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "cpu.yaml").write_text(
        "model: {family: cnn, arch: resnet34, dropout: 0.5}\nepochs: 3\ninput: {size: 48}\n")
    moved = search.resolved_configs(copy / "cpu-q15.txt", pinned=copy)
    assert moved == search.resolved_configs(CPU_Q15)
    assert moved["r18d_e12_s0"] != to_dict(load_config(TrainConfig, tmp_path / "configs" / "cpu.yaml",
                                                     ["amp=off", "data.workers=3"]))


def test_a_live_preset_is_refused_or_warned_about(search, tmp_path):
    variants_file = tmp_path / "live.txt"
    live, pinned = REPO / "configs" / "cpu.yaml", RECIPES / "cpu-resnet18d-e12.yaml"
    variants_file.write_text(f"a | {live} | epochs=1\nb | {pinned} | seed=1\n")
    variants = search.read_variants(variants_file)
    with pytest.raises(search.VariantsError, match="outside"):
        search.check_pinned(variants)
    warnings = search.check_pinned(variants, allow_unpinned=True)
    assert len(warnings) == 1 and "configs/cpu.yaml" in warnings[0]
    assert search.main(["--data", str(tmp_path), "--variants", str(variants_file), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()  # refused before anything was written or trained


def test_a_pinned_config_inheriting_a_live_preset_is_refused(search, tmp_path):
    pinned = tmp_path / "recipes"
    pinned.mkdir()
    (pinned / "child.yaml").write_text(f"base: {REPO / 'configs' / 'cpu.yaml'}\nepochs: 2\n")
    (pinned / "v.txt").write_text("a | child.yaml | seed=0\n")
    variants = search.read_variants(pinned / "v.txt")
    assert search.unpinned_files(variants, pinned) == [REPO / "configs" / "cpu.yaml"]
    with pytest.raises(search.VariantsError, match="outside"):
        search.resolved_configs(pinned / "v.txt", pinned=pinned)


def test_bad_lines_are_refused(search, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("only | two\n")
    with pytest.raises(search.VariantsError, match="bad.txt:1"):
        search.read_variants(bad)


def test_a_resolved_variant_trains_from_its_written_config(search, tmp_path):
    """The search writes each variant's resolved config for `doodle train --config`: read back, it
    is the same config, overrides included."""
    from doodle.config import save_config

    (variant,) = [v for v in search.read_variants(CPU_Q15) if v.name == "r18_os16"]
    cfg = search.resolve(variant)
    save_config(cfg, tmp_path / "v.yaml")
    assert load_config(TrainConfig, tmp_path / "v.yaml") == cfg
