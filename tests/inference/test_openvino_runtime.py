"""The optional OpenVINO runtime (inference.openvino_runtime), as an Upscaler runs it.

OpenVINO is an optional extra, not part of `test`: the tests of the OpenVINO path skip where
it is not installed (CI), and run where it is. Its absence is simulated everywhere
(``sys.modules["openvino"] = None`` makes ``import openvino`` raise ImportError), so the
error a user without it gets is tested in CI too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import grey_levels, lr_waves, offline_env, optional_extra

from srgan_pipeline import devices
from srgan_pipeline.inference import InferencePlan, check_runtime, plan_inference, upscale
from srgan_pipeline.models import Generator

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")
MISSING = re.escape('upscale.runtime=openvino needs the OpenVINO package, which is not '
                    'installed: pip install -e ".[openvino]"')


@pytest.fixture
def no_openvino(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)


@pytest.fixture
def openvino():
    return optional_extra("openvino", "openvino")


def _generator(**kwargs) -> Generator:
    torch.manual_seed(0)
    return Generator(scale=4, channels=16, num_blocks=2, residual_init_scale=0.1,
                     **kwargs).eval()


def _lr(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth colour waves plus noise, as benchmarks/upscale.py."""
    return lr_waves(height, width, seed, period=3, phase=0, rows=4, noise=10)


def _compiled(generator: Generator, precision: str, tile: int = 16):
    """``generator`` as an Upscaler of runtime openvino."""
    return InferencePlan(CPU, precision, tile, "openvino").prepare(generator)


# --------------------------------------------------------------------------- without openvino


def test_without_the_package_the_error_names_the_extra(no_openvino):
    with pytest.raises(ImportError, match=MISSING):
        check_runtime("openvino", CPU, "upscale.runtime")
    with pytest.raises(ImportError, match=MISSING):
        plan_inference("cpu", "fp32", 16, "openvino", block="upscale")


def test_the_torch_runtime_needs_no_openvino_and_is_the_inference_copy(no_openvino):
    generator, lr = _generator(), _lr(20, 24)
    check_runtime("torch", CPU)
    prepared = plan_inference("cpu", "fp32", 16, "torch").prepare(generator)
    assert isinstance(prepared.model, torch.nn.Module) and prepared.runtime == "torch"
    assert np.array_equal(prepared.upscale(lr), upscale(generator, lr, tile=16))


def test_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match=r"evaluation.runtime must be one of \['torch', "):
        check_runtime("onnx", CPU, "evaluation.runtime")


# --------------------------------------------------------------------------- with openvino


def test_openvino_is_cpu_only(openvino):
    with pytest.raises(ValueError, match="upscale.runtime=openvino runs on the CPU, but the "
                                         "device is cuda"):
        check_runtime("openvino", torch.device("cuda"), "upscale.runtime")
    with pytest.raises(ValueError, match="upscale.runtime=openvino runs on the CPU"):
        InferencePlan(torch.device("cuda"), "fp32", 16, "openvino", block="upscale")


def test_openvino_fp32_matches_torch_fp32_within_one_grey_level(openvino):
    generator, lr = _generator(), _lr(40, 36, seed=4)
    compiled = _compiled(generator, "fp32")
    assert compiled.precision == "fp32" and compiled.scale == 4
    # the same float32 function, summed in another order: rounding flips a few pixels by 1
    assert grey_levels(compiled.upscale(lr), upscale(generator, lr, tile=16)).max() <= 1


def test_openvino_bf16_stays_within_a_few_grey_levels_of_torch_fp32(openvino):
    generator, lr = _generator(), _lr(40, 36, seed=4)
    compiled = _compiled(generator, "bf16")
    difference = grey_levels(compiled.upscale(lr), upscale(generator, lr, tile=16))
    if compiled.precision == "bf16":  # a CPU with bf16 units: 8 significant bits
        # the bound of torch's own bf16 (tests/inference/test_upscaler.py)
        assert 0 < difference.max() <= 4 and difference.mean() < 0.5
    else:
        assert difference.max() <= 1


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_tiles_agree_with_one_whole_pass(openvino, precision):
    """Dynamic height and width: every tile shape runs on the one compiled model, and the
    receptive-radius overlap makes tiles agree with untiled inference (as with torch)."""
    generator, lr = _generator(), _lr(37, 45, seed=2)  # odd sizes: unequal tiles
    whole = _compiled(generator, precision, tile=64).upscale(lr)
    compiled = _compiled(generator, precision, tile=12)
    tiled = compiled.upscale(lr)  # 4 x 4 tiles of 9-12 px, six shapes
    assert whole.shape == (4 * 37, 4 * 45, 3)
    # fp32: rounding of different sizes, <= 1 grey level (as torch). bf16: tiles of other
    # shapes may pick other kernels, each rounding to 8 bits: a few levels, very few pixels
    bound, mean = (1, 0.01) if compiled.precision == "fp32" else (4, 0.1)
    difference = grey_levels(tiled, whole)
    assert difference.max() <= bound and difference.mean() < mean


def test_a_generator_with_the_bicubic_input_skip_converts(openvino):
    generator, lr = _generator(input_skip=True), _lr(24, 20, seed=3)
    compiled = _compiled(generator, "fp32", tile=64)
    assert grey_levels(compiled.upscale(lr), upscale(generator, lr, tile=64)).max() <= 1


def test_the_upscaler_records_the_precision_openvino_really_runs(openvino):
    """bf16 asked: OpenVINO runs bf16 where the CPU has bf16 units, else fp32; the Upscaler
    records what the compiled model reports, and runs it on the CPU in float32 NCHW."""
    compiled = _compiled(_generator(), "bf16")
    ran = "bf16" if devices.cpu_has_fast_bf16() else "fp32"
    assert (compiled.device, compiled.precision, compiled.runtime) == (CPU, ran, "openvino")
    assert compiled.model.precision == ran and not compiled.channels_last
    assert compiled.receptive_radius == 12 and compiled.tile == 16


def test_openvino_sends_no_telemetry_and_writes_nothing_home(openvino, tmp_path):
    """`import openvino` loads its converter, which sends usage events (and writes ~/intel)
    unless the user opted out; import_openvino loads it with that switched off. Child process,
    offline by construction (conftest.offline_env records every attempt), with neither CI
    variables (OpenVINO is silent in CI) nor an opt-out file."""
    env, log = offline_env(tmp_path / "offline")
    home = tmp_path / "home"
    home.mkdir()
    code = ("import torch\n"
            "from srgan_pipeline.inference.openvino_runtime import OpenVINOModel\n"
            "from srgan_pipeline.models import Generator\n"
            "model = OpenVINOModel(Generator(channels=8, num_blocks=1).eval())\n"
            "print(tuple(model(torch.rand(1, 3, 8, 8)).shape))\n")
    child = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_CURRENT_TEST")}
    done = subprocess.run([sys.executable, "-c", code], env={**child, **env, "HOME": str(home)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[0] == "(1, 3, 32, 32)"
    assert log.read_text() == ""
    assert list(home.iterdir()) == []

