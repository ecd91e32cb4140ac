"""The optional OpenVINO runtime (inference.openvino_runtime, inference.runtimes).

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
from conftest import offline_env, optional_extra

from srgan_pipeline.inference import check_runtime, prepared_generator, upscale
from srgan_pipeline.models import Generator

CPU = torch.device("cpu")
MISSING = re.escape('upscale.runtime=openvino needs the OpenVINO package, which is not '
                    'installed: pip install -e ".[openvino]"')


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: a second thread only adds barriers (as tests/test_inference.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    waves = np.stack([128 + 90 * np.sin(xx / (3 + c)) * np.cos(yy / 4) for c in range(3)], -1)
    return np.clip(waves + rng.normal(0, 10, waves.shape), 0, 255).astype(np.uint8)


def _grey_levels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


# --------------------------------------------------------------------------- without openvino


def test_without_the_package_the_error_names_the_extra(no_openvino):
    with pytest.raises(ImportError, match=MISSING):
        check_runtime("openvino", CPU, "upscale.runtime")
    with pytest.raises(ImportError, match=MISSING):
        prepared_generator(_generator(), runtime="openvino", device=CPU, precision="fp32",
                           param="upscale.runtime")


def test_the_torch_runtime_needs_no_openvino_and_is_the_inference_copy(no_openvino):
    generator, lr = _generator(), _lr(20, 24)
    check_runtime("torch", CPU)
    prepared = prepared_generator(generator, runtime="torch", device=CPU, precision="fp32")
    assert isinstance(prepared, torch.nn.Module)
    assert np.array_equal(upscale(prepared, lr, tile=16), upscale(generator, lr, tile=16))


def test_unknown_runtime_is_refused():
    with pytest.raises(ValueError, match=r"evaluation.runtime must be one of \['torch', "):
        check_runtime("onnx", CPU, "evaluation.runtime")


# --------------------------------------------------------------------------- with openvino


def test_openvino_is_cpu_only(openvino):
    with pytest.raises(ValueError, match="upscale.runtime=openvino runs on the CPU, but the "
                                         "device is cuda"):
        check_runtime("openvino", torch.device("cuda"), "upscale.runtime")


def test_openvino_fp32_matches_torch_fp32_within_one_grey_level(openvino):
    generator, lr = _generator(), _lr(40, 36, seed=4)
    compiled = prepared_generator(generator, runtime="openvino", device=CPU, precision="fp32")
    assert compiled.precision == "fp32" and compiled.scale == 4
    # the same float32 function, summed in another order: rounding flips a few pixels by 1
    assert _grey_levels(upscale(compiled, lr, tile=16), upscale(generator, lr, tile=16)).max() <= 1


def test_openvino_bf16_stays_within_a_few_grey_levels_of_torch_fp32(openvino):
    generator, lr = _generator(), _lr(40, 36, seed=4)
    compiled = prepared_generator(generator, runtime="openvino", device=CPU, precision="bf16")
    difference = _grey_levels(upscale(compiled, lr, tile=16), upscale(generator, lr, tile=16))
    if compiled.precision == "bf16":  # a CPU with bf16 units: 8 significant bits
        # the bound of torch's own bf16 (tests/test_inference.py)
        assert 0 < difference.max() <= 4 and difference.mean() < 0.5
    else:
        assert difference.max() <= 1


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_tiles_agree_with_one_whole_pass(openvino, precision):
    """Dynamic height and width: every tile shape runs on the one compiled model, and the
    receptive-radius overlap makes tiles agree with untiled inference (as with torch)."""
    generator, lr = _generator(), _lr(37, 45, seed=2)  # odd sizes: unequal tiles
    compiled = prepared_generator(generator, runtime="openvino", device=CPU, precision=precision)
    whole = upscale(compiled, lr, tile=64)
    tiled = upscale(compiled, lr, tile=12)  # 4 x 4 tiles of 9-12 px, six shapes
    assert whole.shape == (4 * 37, 4 * 45, 3)
    # fp32: rounding of different sizes, <= 1 grey level (as torch). bf16: tiles of other
    # shapes may pick other kernels, each rounding to 8 bits: a few levels, very few pixels
    bound, mean = (1, 0.01) if compiled.precision == "fp32" else (4, 0.1)
    difference = _grey_levels(tiled, whole)
    assert difference.max() <= bound and difference.mean() < mean


def test_a_generator_with_the_bicubic_input_skip_converts(openvino):
    generator, lr = _generator(input_skip=True), _lr(24, 20, seed=3)
    compiled = prepared_generator(generator, runtime="openvino", device=CPU, precision="fp32")
    assert _grey_levels(upscale(compiled, lr, tile=64), upscale(generator, lr, tile=64)).max() <= 1


def test_upscale_refuses_a_precision_or_device_the_compiled_model_does_not_run(openvino):
    compiled = prepared_generator(_generator(), runtime="openvino", device=CPU, precision="fp32")
    with pytest.raises(ValueError, match="precision='bf16' but the OpenVINO model was compiled "
                                         "for 'fp32'"):
        upscale(compiled, _lr(8, 8), precision="bf16")
    with pytest.raises(ValueError, match="an OpenVINO model runs on the CPU"):
        upscale(compiled, _lr(8, 8), device="cuda")


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

