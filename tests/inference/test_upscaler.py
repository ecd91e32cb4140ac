"""inference.upscaler: the plan from the inference settings, and the Upscaler it prepares,
which records the device, precision and runtime it really runs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import grey_levels, lr_waves
from PIL import Image

from srgan_pipeline import devices
from srgan_pipeline.inference import (
    InferencePlan,
    inference_model,
    plan_inference,
    receptive_radius,
    upscale,
    upscale_image,
)
from srgan_pipeline.inference import upscaler as upscaler_module
from srgan_pipeline.params import validate_params

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


@pytest.fixture
def generator():
    from srgan_pipeline.models import Generator

    torch.manual_seed(0)
    return Generator(scale=4, channels=8, num_blocks=2).eval()


def _tiles(fp32: int, bf16: int):
    """``tile`` as the parameters give it (upscale.tile / evaluation.tile)."""
    return validate_params("upscale.tile", {"fp32": fp32, "bf16": bf16})


def test_the_upscaler_records_what_it_runs(generator):
    from srgan_pipeline.models import Generator

    upscaler = plan_inference("cpu", "fp32", _tiles(24, 48), block="upscale").prepare(generator)
    assert (upscaler.device, upscaler.precision, upscaler.runtime) == (CPU, "fp32", "torch")
    assert upscaler.tile == 24 and upscaler.channels_last  # fp32's tile
    assert upscaler.scale == 4 and upscaler.receptive_radius == receptive_radius(generator) == 12
    assert upscaler.upscale(lr_waves(7, 9)).shape == (28, 36, 3)
    torch.manual_seed(0)
    x2 = plan_inference("cpu", "fp32", 16).prepare(Generator(scale=2, channels=8, num_blocks=1))
    assert x2.scale == 2 and x2.upscale_image(Image.new("RGB", (9, 7))).size == (18, 14)


def test_a_model_that_does_not_name_its_scale_is_measured():
    shuffle_x2 = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2))
    upscaler = InferencePlan(CPU, "fp32", 8).prepare(shuffle_x2)
    assert (upscaler.scale, upscaler.receptive_radius) == (2, 1)
    assert upscaler.upscale(lr_waves(5, 6)).shape == (10, 12, 3)
    assert "model=" not in repr(upscaler) and "scale=2" in repr(upscaler)


def test_a_prepared_upscaler_gives_the_pixels_of_one_call(generator):
    lr = lr_waves(20, 26, seed=10)
    upscaler = plan_inference("cpu", "fp32", 16).prepare(generator)
    assert np.array_equal(upscaler.upscale(lr), upscale(generator, lr, tile=16))
    image = Image.fromarray(lr).convert("LA")
    assert np.array_equal(np.asarray(upscaler.upscale_image(image)),
                          np.asarray(upscale_image(generator, image, tile=16)))


def test_an_upscaler_copies_the_generator_once(generator, monkeypatch):
    """Prepared once, the copy serves every image; a call on the generator copies it anew,
    in eval mode, in the layout and precision asked."""
    copies = []
    monkeypatch.setattr(upscaler_module, "inference_model",
                        lambda *args, **kwargs: copies.append(1) or inference_model(*args,
                                                                                    **kwargs))
    upscaler = InferencePlan(CPU, "fp32", 16).prepare(generator)
    upscaler.upscale(lr_waves(12, 12))
    upscaler.upscale_image(Image.fromarray(lr_waves(8, 8)))
    assert len(copies) == 1
    assert upscaler.model is not generator and not upscaler.model.training
    upscale(generator, lr_waves(12, 12), tile=16)
    assert len(copies) == 2
    nchw = InferencePlan(CPU, "fp32", 16, channels_last=False).prepare(generator)
    assert not nchw.channels_last and nchw.model.head[0].weight.is_contiguous()
    assert upscaler.model.head[0].weight.is_contiguous(memory_format=torch.channels_last)
    bf16 = InferencePlan(CPU, "bf16", 16).prepare(generator)
    assert next(bf16.model.parameters()).dtype == torch.bfloat16


def test_bf16_inference_stays_within_a_few_grey_levels_of_fp32():
    from srgan_pipeline.models import Generator

    torch.manual_seed(0)
    generator = Generator(scale=4, channels=16, num_blocks=2, residual_init_scale=0.1).eval()
    lr = lr_waves(40, 36, seed=4)
    fp32 = upscale(generator, lr, tile=16)
    prepared = InferencePlan(CPU, "bf16", 16).prepare(generator)
    assert prepared.precision == "bf16"
    assert next(prepared.model.parameters()).dtype == torch.bfloat16
    bf16 = prepared.upscale(lr)
    difference = grey_levels(bf16, fp32)
    assert 0 < difference.max() <= 4 and difference.mean() < 0.5
    assert np.array_equal(upscale(generator, lr, tile=16, precision="bf16"), bf16)
    # a bf16 copy passed to a one-off call runs in its own precision
    assert np.array_equal(upscale(inference_model(generator, precision="bf16"), lr, tile=16),
                          bf16)


def test_auto_precision_follows_the_hardware_and_picks_its_tile(monkeypatch):
    """devices.resolve_precision decides (tests/test_devices.py); the plan takes that
    precision's tile."""
    monkeypatch.setattr(devices, "cpu_bf16", lambda: devices.Bf16Verdict(False, "AVX2 only"))
    plan = plan_inference("cpu", "auto", _tiles(24, 48))
    assert (plan.precision, plan.tile, plan.precision_reason) == ("fp32", 24, "AVX2 only")
    assert plan_inference("cpu", "bf16", _tiles(24, 48)).tile == 48  # asked for: honoured
    monkeypatch.setattr(devices, "cpu_bf16", lambda: devices.Bf16Verdict(True, "AMX"))
    plan = plan_inference("cpu", "auto", _tiles(24, 48))
    assert (plan.precision, plan.tile, plan.precision_reason) == ("bf16", 48, "AMX")
    assert plan_inference("cpu", "fp32", _tiles(24, 48)).tile == 24


def test_bad_settings_are_refused_naming_the_parameter():
    with pytest.raises(ValueError, match=r"upscale.precision must be one of \['auto', 'fp32'"):
        plan_inference("cpu", "half", 16, block="upscale")
    with pytest.raises(ValueError, match=r"evaluation.runtime must be one of \['torch', "):
        plan_inference("cpu", "fp32", 16, "onnx", block="evaluation")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        plan_inference("gpu", "fp32", 16)
    with pytest.raises(ValueError, match=r"precision must be one of \['fp32', 'bf16'\] here "
                                         r"\(plan_inference resolves auto\), got 'auto'"):
        InferencePlan(CPU, "auto", 16)
    with pytest.raises(ValueError, match="serving.tile must be an integer >= 1, got 0"):
        InferencePlan(CPU, "fp32", 0, block="serving")


def test_the_precision_openvino_really_runs_is_recorded_and_warned(generator,
                                                                   openvino_runs_fp32, caplog):
    """bf16 asked, fp32 run (OpenVINO on a CPU without bf16 units, stood in for here so that
    this runs without the extra): the Upscaler says fp32, keeps the tile asked for (bf16's),
    and the log says why."""
    plan = plan_inference("cpu", "bf16", _tiles(8, 16), "openvino", block="upscale")
    assert (plan.precision, plan.tile, plan.runtime) == ("bf16", 16, "openvino")
    with caplog.at_level(logging.WARNING, logger=upscaler_module.__name__):
        upscaler = plan.prepare(generator)
    assert upscaler.model.asked == "bf16"
    assert (upscaler.device, upscaler.precision, upscaler.runtime) == (CPU, "fp32", "openvino")
    assert upscaler.tile == 16 and not upscaler.channels_last and upscaler.scale == 4
    assert "upscale.precision=bf16: OpenVINO runs fp32 on this CPU" in caplog.text
    lr = lr_waves(20, 18, seed=3)
    assert grey_levels(upscaler.upscale(lr), upscale(generator, lr, tile=16)).max() <= 1
