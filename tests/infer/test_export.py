"""`doodle export`: ONNX models of every family, their preprocessing JSON, and the check that ONNX
Runtime and PyTorch agree on real drawings."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from conftest import SMALL_STORE_CLASSES

from doodle.cli import main
from doodle.errors import DoodleError
from doodle.infer.export import MODEL_FILE, PREPROCESSING_FILE, export_onnx, is_export, load_export, ort_feed
from doodle.models import ModelConfig, create_model
from doodle.preprocess import InputConfig
from doodle.runs.checkpoint import atomic_save, make_checkpoint

CLASSES = ["cat", "eye", "camera", "guitar", "apple"]
SMALL_RNN = dict(conv_channels=[16], conv_kernels=[3], rnn_hidden=16, rnn_layers=1)
FAMILIES = {
    "cnn": (ModelConfig(family="cnn", arch="resnet10t", country_dim=4, time_features=True),
            InputConfig(size=32, simplify=True, country=True, time_features=True), "image"),
    "sequence": (ModelConfig(family="sequence", **SMALL_RNN), InputConfig(max_points=96), "sequence"),
    "sequence-gru": (ModelConfig(family="sequence", rnn="gru", **SMALL_RNN), InputConfig(max_points=64), "sequence"),
    "learned-raster": (ModelConfig(family="learned-raster", arch="resnet10t", raster_grid=8, raster_features=8,
                                   raster_dilations=[1, 2]), InputConfig(max_points=64), "sequence"),
}


def checkpoint_of(name: str, tmp_path, classes: list[str] = CLASSES) -> str:
    """A real checkpoint file of a freshly initialised model of one family."""
    model_cfg, inputs, kind = FAMILIES[name]
    torch.manual_seed(0)
    model = create_model(model_cfg, inputs, len(classes))
    path = tmp_path / f"{name}.pt"
    atomic_save(make_checkpoint(model_config=asdict(model_cfg), input_config=asdict(inputs), input_kind=kind,
                                classes=list(classes), config={}, model_state=model.state_dict(),
                                metrics={"map3": 0.5}), path)
    return str(path)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_family_exports_and_agrees(name, quickdraw, tmp_path):
    out = tmp_path / "export"
    result = export_onnx(checkpoint_of(name, tmp_path), out, check_sources=[quickdraw / "raw"], check_n=40)
    assert result.agreement is not None and result.agreement.drawings == 40
    assert result.agreement.max_abs_diff < 1e-4 and result.agreement.top3_agreement == 1.0
    assert is_export(out) and sorted(p.name for p in out.iterdir()) == [MODEL_FILE, PREPROCESSING_FILE]

    spec = json.loads((out / PREPROCESSING_FILE).read_text())
    model_cfg, inputs, kind = FAMILIES[name]
    assert spec["classes"] == CLASSES and spec["input_kind"] == kind
    assert spec["input_config"] == asdict(inputs) and spec["model_config"]["family"] == model_cfg.family
    assert spec["output"] == "log_probs" and spec["check"]["top3_agreement"] == 1.0 and spec["code_version"]
    expected_inputs = ["image", "country", "time_features"] if kind == "image" else ["points", "lengths"]
    assert spec["inputs"] == expected_inputs

    # read back: the same preprocessing, any batch size (the batch axis is dynamic)
    loaded = load_export(out)
    assert loaded.classes == CLASSES and asdict(loaded.preprocessor.config) == asdict(inputs)
    from doodle.data.formats import read

    drawings = [d for _, d in zip(range(7), read(quickdraw / "raw" / "cat.ndjson"), strict=False)]
    for n in (1, 7):
        logp = loaded.session.run(None, ort_feed(loaded.session, loaded.preprocessor(drawings[:n])))[0]
        assert logp.shape == (n, len(CLASSES))
        np.testing.assert_allclose(np.exp(logp).sum(1), 1.0, atol=1e-5)


def test_cli_export_prints_the_check(quickdraw, tmp_path, capsys):
    ckpt = checkpoint_of("cnn", tmp_path)
    assert main(["export", ckpt, "--format", "onnx", "--out", str(tmp_path / "e"), "--check-data",
                 str(quickdraw / "raw" / "cat.ndjson"), "--check-n", "16"]) == 0
    out = capsys.readouterr().out
    check = [line for line in out.splitlines() if "16 drawings" in line]
    assert len(check) == 1 and check[0].startswith("ONNX Runtime vs PyTorch on 16 drawings")  # said once
    assert "top-3 identical for 100.0%" in check[0] and "top3_agreement=" not in out
    assert is_export(tmp_path / "e")


def test_cli_int8_export_prints_the_val_scores(small_store, tmp_path, capsys):
    ckpt = checkpoint_of("cnn", tmp_path, list(SMALL_STORE_CLASSES))
    assert main(["export", ckpt, "--out", str(tmp_path / "q"), "--no-check", "--quantize", "int8",
                 "--calibration-data", str(small_store), "--calibration-n", "8", "--score-n", "12"]) == 0
    out = capsys.readouterr().out
    assert f"int8 calibrated on 8 drawings of {small_store}/train; MAP@3 on 12 drawings of {small_store}/val" in out
    assert main(["export", ckpt, "--out", str(tmp_path / "r"), "--no-check", "--quantize", "int8"]) == 2
    assert "--calibration-data STORE" in capsys.readouterr().err


def test_export_errors(quickdraw, tmp_path, capsys):
    ckpt = checkpoint_of("cnn", tmp_path)
    with pytest.raises(DoodleError, match="does not exist"):
        export_onnx(ckpt, tmp_path / "x", check_sources=[tmp_path / "nowhere"])
    with pytest.raises(DoodleError, match="no real drawings"):
        export_onnx(ckpt, tmp_path / "x", check_sources=[])
    with pytest.raises(DoodleError, match="not an ONNX export folder"):
        load_export(tmp_path)
    export_onnx(ckpt, tmp_path / "nocheck", check=False)  # no data needed without the check
    assert json.loads((tmp_path / "nocheck" / PREPROCESSING_FILE).read_text())["check"] is None
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert main(["export", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "y"), "--no-check"]) == 2
    assert "is not a readable checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad-export"
    bad.mkdir()
    (bad / MODEL_FILE).write_bytes(b"garbage")
    (bad / PREPROCESSING_FILE).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(DoodleError, match="not a doodle export"):
        load_export(bad)


def test_int8_export(quickdraw, small_store, tmp_path):
    """--quantize int8: a smaller, quantised graph calibrated on the store's training drawings and
    scored, with the float model, on its val split; the check says how close it stays."""
    ckpt = checkpoint_of("cnn", tmp_path, list(SMALL_STORE_CLASSES))
    plain = export_onnx(ckpt, tmp_path / "f32", check_sources=[quickdraw / "raw"], check_n=32)
    result = export_onnx(ckpt, tmp_path / "int8", check_sources=[quickdraw / "raw"], check_n=32, quantize="int8",
                         calibration_store=small_store, calibration_n=48, score_n=40)
    import onnx

    ops = {n.op_type for n in onnx.load(str(result.model_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert result.model_path.stat().st_size < plain.model_path.stat().st_size / 2
    assert result.agreement.drawings == 32 and 0 < result.agreement.max_abs_diff < 5
    q = result.quantization
    assert (q.store, q.calibration_drawings, q.scored_drawings) == (str(small_store), 48, 40)
    assert 0 <= q.map3_float <= 1 and 0 <= q.map3_int8 <= 1
    spec = json.loads(result.preprocessing_path.read_text())
    assert spec["quantization"].startswith("int8") and spec["quantization_check"] == asdict(q)
    assert plain.quantization is None and json.loads(plain.preprocessing_path.read_text())["quantization_check"] is None
    with pytest.raises(DoodleError, match="calibrates on training drawings"):
        export_onnx(ckpt, tmp_path / "x", check=False, quantize="int8")
    with pytest.raises(DoodleError, match="only used by --quantize"):
        export_onnx(ckpt, tmp_path / "x", check=False, calibration_store=small_store)
    with pytest.raises(DoodleError, match="not a doodle store"):
        export_onnx(ckpt, tmp_path / "x", check=False, quantize="int8", calibration_store=small_store / "val")
    with pytest.raises(DoodleError, match="unknown quantization"):
        export_onnx(ckpt, tmp_path / "x", quantize="int4")


def test_int8_calibrates_on_training_drawings_and_scores_on_others(small_store, tmp_path, monkeypatch):
    """The drawings int8 is calibrated on come from the train split, those it is scored on from the
    val split, and no key_id is in both."""
    import doodle.infer.export as export

    seen: dict[str, list] = {"calibration": [], "scoring": []}
    real_quantize, real_map3 = export.quantize_int8, export.onnx_map3

    def quantize(path, preprocessor, drawings, *args, **kwargs):
        seen["calibration"] += drawings
        return real_quantize(path, preprocessor, drawings, *args, **kwargs)

    def map3(path, preprocessor, drawings, classes, *args, **kwargs):
        seen["scoring"].append([d.key_id for d in drawings])
        return real_map3(path, preprocessor, drawings, classes, *args, **kwargs)

    monkeypatch.setattr(export, "quantize_int8", quantize)
    monkeypatch.setattr(export, "onnx_map3", map3)
    ckpt = checkpoint_of("cnn", tmp_path, list(SMALL_STORE_CLASSES))
    result = export_onnx(ckpt, tmp_path / "int8", check=False, quantize="int8", calibration_store=small_store,
                         calibration_n=64, score_n=0)
    from doodle.data.store import iter_store

    train = {d.key_id for d in iter_store(small_store, "train")}
    val = {d.key_id for d in iter_store(small_store, "val")}
    calibrated = {d.key_id for d in seen["calibration"]}
    float_scored, int8_scored = (set(k) for k in seen["scoring"])
    assert len(calibrated) == 64 and calibrated <= train
    assert float_scored == int8_scored == val  # score_n=0: the whole val split, both models alike
    assert not calibrated & float_scored
    assert result.quantization.scored_drawings == len(val)


def test_calibration_and_scoring_refuse_a_shared_key_id(small_store, monkeypatch):
    import doodle.infer.export as export

    real = export.split_drawings
    leaked = real(small_store, "val", SMALL_STORE_CLASSES, 1)

    def leaky(store, split, classes, n):
        return real(store, split, classes, n) + (leaked if split == "train" else [])

    monkeypatch.setattr(export, "split_drawings", leaky)
    with pytest.raises(DoodleError, match="in both its train and val splits"):
        export.calibration_and_scoring(small_store, SMALL_STORE_CLASSES, 16, 16)
    monkeypatch.setattr(export, "split_drawings", real)
    calibration, scoring = export.calibration_and_scoring(small_store, SMALL_STORE_CLASSES, 16, 0)
    assert len(calibration) == 16 and {d.word for d in scoring} == set(SMALL_STORE_CLASSES)
    assert not {d.key_id for d in calibration} & {d.key_id for d in scoring}
