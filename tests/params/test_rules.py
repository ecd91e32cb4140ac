"""Rules shared by several blocks (params/rules.py), refused in each block that has them."""

from __future__ import annotations

import pytest
from conftest import with_settings
from test_params import BASE, check

from srgan_pipeline.params import ParameterError


@pytest.mark.parametrize("block", ["evaluation", "upscale"])
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_openvino_beside_a_device_that_is_not_the_cpu_is_refused(block, device):
    params = with_settings(BASE[block], {"runtime": "openvino", "device": device})
    with pytest.raises(ParameterError) as error:
        check(block, params)
    assert str(error.value) == (
        f"{block}.runtime=openvino runs on the CPU, but {block}.device is {device}: set "
        f"{block}.device=cpu, or {block}.runtime=torch")


@pytest.mark.parametrize("block", ["evaluation", "upscale"])
def test_openvino_on_the_cpu_or_a_device_chosen_on_the_machine_is_left_to_run_time(block):
    for device in ("cpu", "auto"):  # auto: inference.check_runtime, once the device is known
        check(block, with_settings(BASE[block], {"runtime": "openvino", "device": device}))
