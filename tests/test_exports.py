"""Exports: each format round-trips to the project's own fp32 upscale; refusals write nothing."""

import json

import numpy as np
import pytest
import torch
from conftest import grey_levels, optional_extra

from srgan_pipeline import exports
from srgan_pipeline.exports import ExportError, export_generator, reference_upscale
from srgan_pipeline.model_card import model_card
from srgan_pipeline.models import Generator
from srgan_pipeline.params import ParameterError, validate_params

CONFIG = {"scale": 4, "channels": 8, "num_blocks": 1, "input_skip": True}
BASE = {"model": "srgan", "formats": ["onnx"], "name": None,
        "output_dir": "data/07_model_output/exports", "onnx_opset": 17, "verify_image": None}


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return Generator(**CONFIG).eval()


@pytest.fixture(scope="module")
def photo():
    # a crop of the LR of a real photograph (scikit-image's chelsea, as export checks by default)
    return exports.verification_photo(None, 4)[20:44, 30:62]


@pytest.fixture(scope="module")
def card(generator):
    return model_card({"generator_config": CONFIG, "phase": "adversarial", "step": 7}, "srgan")


@pytest.fixture(scope="module")
def exported(generator, card, photo, tmp_path_factory):
    for module, extra in (("onnxruntime", "export"), ("ncnn", "export"), ("pnnx", "export"),
                          ("safetensors", "export"), ("onnxscript", "export")):
        optional_extra(module, extra)
    folder = tmp_path_factory.mktemp("exports")
    written = export_generator(generator, card, formats=("safetensors", "onnx", "ncnn"),
                               name="tiny", folder=folder, opset=17, photo=photo)
    return folder, written


def test_every_format_is_written_checked_and_nothing_else_is_left(exported):
    folder, written = exported
    assert {f: w["files"] for f, w in written.items()} == {
        "safetensors": ["tiny.safetensors"], "onnx": ["tiny.onnx"],
        "ncnn": ["tiny-x4.bin", "tiny-x4.param"]}  # Upscayl reads the scale from the name
    assert all(w["max_grey_level_diff"] <= exports.TOLERANCE for w in written.values())
    assert sorted(p.name for p in folder.iterdir()) == [
        "tiny-x4.bin", "tiny-x4.param", "tiny.model_card.json", "tiny.onnx", "tiny.safetensors"]
    assert json.loads((folder / "tiny.model_card.json").read_text())["scale"] == 4


def test_safetensors_holds_the_weights_and_the_config_to_rebuild_them(exported, generator):
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = exported[0] / "tiny.safetensors"
    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata()
    assert json.loads(metadata["generator_config"]) == CONFIG
    assert json.loads(metadata["model_card"])["weights_licence"].startswith("the weights follow")
    rebuilt = Generator(**json.loads(metadata["generator_config"]))
    rebuilt.load_state_dict(load_file(str(path)))
    for key, tensor in generator.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], tensor), key


def test_onnx_is_rgb_unit_range_with_dynamic_size_on_any_image(exported, generator):
    import onnx
    import onnxruntime

    path = exported[0] / "tiny.onnx"
    model = onnx.load(str(path))
    assert [(o.domain, o.version) for o in model.opset_import if o.domain == ""] == [("", 17)]
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[:2] == [1, 3] and all(isinstance(d, str) for d in dims[2:])
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["model_card"])["generator_config"] == CONFIG
    # another size than the one checked at export: height and width really are dynamic
    lr = np.random.default_rng(1).integers(0, 256, (13, 21, 3), dtype=np.uint8)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": lr.transpose(2, 0, 1)[None].astype(np.float32) / 255})[0]
    assert out.shape == (1, 3, 52, 84) and 0 <= out.min() and out.max() <= 1
    ours = reference_upscale(generator, lr)
    theirs = np.floor(out[0].transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)
    assert grey_levels(ours, theirs).max() <= exports.TOLERANCE


def test_ncnn_param_names_the_blobs_upscayl_reads(exported):
    param = (exported[0] / "tiny-x4.param").read_text().split("\n")
    assert param[0] == "7767517"  # ncnn's param magic
    layers = [line.split() for line in param[2:] if line]
    assert layers[0][:2] == ["Input", "in0"] and "out0" in layers[-1]


def test_a_check_that_fails_names_the_format_and_writes_nothing(generator, card, photo,
                                                               tmp_path, monkeypatch):
    optional_extra("ncnn", "export")
    monkeypatch.setattr(exports, "TOLERANCE", -1)  # no output can be that close
    with pytest.raises(ExportError, match=r"ncnn: ncnn's output differs from the project's fp32 "
                                          r"untiled upscale by up to \d+ grey levels"):
        export_generator(generator, card, formats=("ncnn",), name="tiny", folder=tmp_path,
                         opset=17, photo=photo)
    assert list(tmp_path.iterdir()) == []  # not even a temporary folder


def test_a_missing_package_is_refused_before_any_work(generator, card, photo, tmp_path,
                                                      monkeypatch):
    real = exports.importlib.util.find_spec
    monkeypatch.setattr(exports.importlib.util, "find_spec",
                        lambda name: None if name == "pnnx" else real(name))
    with pytest.raises(ExportError, match=r'export.formats: ncnn needs pnnx, not installed: '
                                          r'pip install -e "\.\[export\]"'):
        export_generator(generator, card, formats=("safetensors", "ncnn"), name="tiny",
                         folder=tmp_path / "out", opset=17, photo=photo)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"onnx_opset": 14}, r"export.onnx_opset: must be 15, 16 or 17"),
    ({"formats": ["tflite"]}, r"export.formats\[0\]: must be 'safetensors', 'onnx' or 'ncnn'"),
    ({"formats": []}, r"export.formats"),
    ({"name": "../elsewhere"}, r"export.name: must be a file name stem"),
    ({"model": "best"}, r"export.model: must be 'srresnet', 'srgan' or an MLflow model URI"),
])
def test_settings_a_format_cannot_carry_are_refused_when_validated(change, message):
    with pytest.raises(ParameterError, match=message):
        validate_params("export", {**BASE, **change})


def test_formats_from_the_command_line_are_space_separated():
    assert validate_params("export", {**BASE, "formats": "onnx ncnn"}).formats == ("onnx", "ncnn")


def test_a_verification_image_that_does_not_read_is_named(tmp_path):
    (tmp_path / "lr.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"lr\.png"):
        exports.verification_photo(str(tmp_path / "lr.png"), 4)
